"""``python -m sglang.launch_server <args>``: exec the SGLang simulator with the same args.

os.execvp keeps the pid, so whoever started this script (and its process group) owns the
simulator directly: signals reach it and killing the group kills it.

Environment:
  SGLANG_SIM_NODE    node binary (default: ``node`` on PATH)
  SGLANG_SIM_BUNDLE  simulator bundle (default: dist/sglang-sim.mjs of the repository
                     that contains this file)
"""

import os
import sys

BUNDLE_RELATIVE = os.path.join("dist", "sglang-sim.mjs")


def _repo_root():
    """The nearest directory above this file holding package.json (the sglangmux checkout)."""
    here = os.path.dirname(os.path.realpath(__file__))
    cur = here
    while True:
        if os.path.isfile(os.path.join(cur, "package.json")):
            return cur
        parent = os.path.dirname(cur)
        if parent == cur:
            # Layout fallback: <repo>/src/simulator/python/sglang/launch_server.py
            return os.path.normpath(os.path.join(here, "..", "..", "..", ".."))
        cur = parent


def main():
    bundle = os.environ.get("SGLANG_SIM_BUNDLE") or os.path.join(_repo_root(), BUNDLE_RELATIVE)
    if not os.path.isfile(bundle):
        sys.stderr.write(
            "sglang (sglangmux simulator): bundle not found: %s\n"
            "Run `npm run build` in the sglangmux repository first.\n" % bundle
        )
        sys.exit(1)
    node = os.environ.get("SGLANG_SIM_NODE") or "node"
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(node, [node, bundle] + sys.argv[1:])
    except OSError as e:
        sys.stderr.write("sglang (sglangmux simulator): cannot exec %s: %s\n" % (node, e))
        sys.exit(1)


if __name__ == "__main__":
    main()
