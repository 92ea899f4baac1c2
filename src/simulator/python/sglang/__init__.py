"""Stand-in for the real ``sglang`` package, used by sglangmux's tests and demos.

Only ``python -m sglang.launch_server`` exists: it replaces itself (same pid) with the
Node-based SGLang simulator bundled at ``dist/sglang-sim.mjs``. Put the directory that
contains this package on PYTHONPATH to use it; see docs/simulator.md.
"""

__version__ = "0.0.0+sglangmux.simulator"
