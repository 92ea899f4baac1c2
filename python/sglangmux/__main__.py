"""`python -m sglangmux` behaves exactly like the `sglangmux` command."""

from sglangmux.launcher import main

if __name__ == "__main__":
    main()
