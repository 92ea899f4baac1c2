"""Hatchling build hook: puts the esbuild bundle of the daemon into the wheel and the sdist.

In a checkout, the bundle (dist/sglangmux.mjs, with dist/THIRD_PARTY_LICENSES.txt beside it)
is rebuilt with `npm run build` (after `npm ci` when node_modules is missing) whenever it is
missing or older than the sources: src/**, package.json, package-lock.json, scripts/build.mjs and
scripts/lazy-parts.mjs.

In an unpacked sdist (it has PKG-INFO at its root), the shipped bundle is used as it is, so
building a wheel from the sdist needs no Node toolchain.

Wheel: dist/sglangmux.mjs -> sglangmux/_bundle/sglangmux.mjs (and the licences beside it).
Sdist: dist/sglangmux.mjs -> dist/sglangmux.mjs (and the licences beside it); the rest of
dist/ (the simulator bundle, Python artifacts) stays out.
Editable wheel: nothing is copied; the launcher runs the checkout's dist/sglangmux.mjs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import List, Optional

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

BUNDLE = "sglangmux.mjs"
LICENSES = "THIRD_PARTY_LICENSES.txt"
MIN_NODE_MAJOR = 20
# Inputs of the bundle, relative to the project root. Directories are walked.
SOURCES = ("src", "package.json", "package-lock.json", os.path.join("scripts", "build.mjs"), os.path.join("scripts", "lazy-parts.mjs"))


class BundleError(Exception):
    pass


def _newest_source(root: str) -> Optional[tuple]:
    """(mtime, relative path) of the newest input of the bundle, or None when there is none."""
    newest = None
    for rel in SOURCES:
        path = os.path.join(root, rel)
        if os.path.isfile(path):
            candidates = [path]
        elif os.path.isdir(path):
            candidates = []
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames[:] = [d for d in dirnames if d not in ("node_modules", "__pycache__")]
                candidates.extend(os.path.join(dirpath, f) for f in filenames)
        else:
            continue
        for f in candidates:
            mtime = os.stat(f).st_mtime
            if newest is None or mtime > newest[0]:
                newest = (mtime, os.path.relpath(f, root))
    return newest


def stale_reason(root: str) -> Optional[str]:
    """Why the bundle in dist/ must be rebuilt, or None when it is up to date."""
    outputs = [os.path.join("dist", BUNDLE), os.path.join("dist", LICENSES)]
    for rel in outputs:
        if not os.path.isfile(os.path.join(root, rel)):
            return f"{rel} is missing"
    oldest_output = min(os.stat(os.path.join(root, rel)).st_mtime for rel in outputs)
    newest = _newest_source(root)
    if newest is not None and newest[0] > oldest_output:
        return f"{newest[1]} is newer than the bundle in dist/"
    return None


def _node_major(node: str) -> Optional[int]:
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.match(r"\s*v?(\d+)\.", out)
    return int(m.group(1)) if m else None


def build_bundle(root: str, reason: str, log) -> None:
    """Runs `npm ci` (when node_modules is missing) and `npm run build` in root."""
    what = "the esbuild bundle of the daemon (dist/sglangmux.mjs)"
    fixes = (
        f"Install Node.js >= {MIN_NODE_MAJOR} with npm and build again, or build from the sdist, "
        "which ships a prebuilt bundle."
    )
    node = shutil.which("node")
    npm = shutil.which("npm")
    missing = [name for name, path in (("node", node), ("npm", npm)) if path is None]
    if missing:
        raise BundleError(
            f"sglangmux build: {what} must be built because {reason}, but "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not on PATH. {fixes}"
        )
    major = _node_major(node)
    if major is None or major < MIN_NODE_MAJOR:
        found = "an unreadable version" if major is None else f"Node {major}"
        raise BundleError(
            f"sglangmux build: {what} must be built because {reason}, but {node} is "
            f"{found}; Node >= {MIN_NODE_MAJOR} is needed. {fixes}"
        )
    steps: List[List[str]] = []
    if not os.path.isdir(os.path.join(root, "node_modules")):
        steps.append([npm, "ci"])
    steps.append([npm, "run", "build"])
    for cmd in steps:
        shown = " ".join(["npm"] + cmd[1:])
        log(f"sglangmux build: {reason}; running `{shown}`")
        # The build's output goes to stderr: stdout may be a PEP 517 channel.
        rc = subprocess.call(cmd, cwd=root, stdout=sys.stderr)
        if rc != 0:
            raise BundleError(f"sglangmux build: `{shown}` failed with exit code {rc} (in {root}).")
    reason_after = stale_reason(root)
    if reason_after is not None:
        raise BundleError(f"sglangmux build: `npm run build` ran but {reason_after}.")


class SglangmuxBundleHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def _log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def initialize(self, version: str, build_data: dict) -> None:
        root = self.root
        dist = os.path.join(root, "dist")
        in_sdist = os.path.isfile(os.path.join(root, "PKG-INFO"))
        try:
            if in_sdist:
                for name in (BUNDLE, LICENSES):
                    if not os.path.isfile(os.path.join(dist, name)):
                        raise BundleError(
                            f"sglangmux build: this sdist lacks dist/{name}; it was not built by "
                            "scripts/publish_pypi.sh or `python -m build` from a checkout."
                        )
            else:
                reason = stale_reason(root)
                if reason is not None:
                    build_bundle(root, reason, self._log)
        except BundleError as e:
            if self.target_name == "wheel" and version == "editable":
                # The editable install runs the checkout's dist/ live; `npm run build` later fixes it.
                self._log(f"{e}\nsglangmux build: continuing the editable install; run `npm run build` before `sglangmux`.")
                return
            self._log(str(e))
            sys.exit(1)

        files = {name: os.path.join(dist, name) for name in (BUNDLE, LICENSES)}
        if self.target_name == "wheel":
            if version == "editable":
                return
            for name, path in files.items():
                build_data["force_include"][path] = f"sglangmux/_bundle/{name}"
        elif self.target_name == "sdist":
            for name, path in files.items():
                build_data["force_include"][path] = f"dist/{name}"
