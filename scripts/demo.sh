#!/usr/bin/env bash
# The demo: the two example launch scripts, with the SGLang simulator standing in for sglang.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$root/src/simulator/python${PYTHONPATH:+:$PYTHONPATH}"
export SGLANG_SIM_TOKEN_MS="${SGLANG_SIM_TOKEN_MS:-30}"
# The per-model logs go to a fresh temporary directory, not into the checkout: a demo must leave
# the source tree as it found it (the tests run from it next).
export LOG_DIR="${LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/sglangmux-demo-logs.XXXXXX")}"
cat <<MSG
sglangmux demo: two simulated SGLang models behind http://127.0.0.1:${LISTEN_PORT:-30100}
In another terminal:
  examples/sglangmux-manual/request_models.sh
  examples/sglangmux-manual/request_qwen.sh
  examples/sglangmux-manual/request_hf.sh
Dashboard: http://127.0.0.1:${LISTEN_PORT:-30100}/ui
Ctrl+C stops sglangmux and both model servers.
Per-model logs: $LOG_DIR
MSG
exec "$root/examples/sglangmux-manual/start_sglangmux.sh" "$@"
