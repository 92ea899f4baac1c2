"""sglangmux: one OpenAI-compatible endpoint in front of many SGLang servers on one GPU host.

The daemon is written in TypeScript and runs on Node.js >= 20; this package carries its
bundle and the `sglangmux` command (see `sglangmux.launcher`), which finds Node and runs it.
"""

import json
import os

__all__ = ["__version__"]


def _read_version() -> str:
    # In a checkout (PYTHONPATH=python, or an editable install), package.json is the one
    # version number; an installed wheel has the same number in its metadata.
    package_json = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "package.json")
    try:
        with open(package_json, encoding="utf-8") as f:
            data = json.load(f)
        if isinstance(data, dict) and data.get("name") == "sglangmux" and isinstance(data.get("version"), str):
            return data["version"]
    except (OSError, ValueError):
        pass
    try:
        from importlib.metadata import version

        return version("sglangmux")
    except Exception:  # not installed, or Python < 3.8
        return "0+unknown"


__version__ = _read_version()
