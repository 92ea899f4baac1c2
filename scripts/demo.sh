#!/usr/bin/env bash
# The demo: the two example launch scripts, with the SGLang simulator standing in for sglang.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PYTHONPATH="$root/src/simulator/python${PYTHONPATH:+:$PYTHONPATH}"
export SGLANG_SIM_TOKEN_MS="${SGLANG_SIM_TOKEN_MS:-30}"
cat <<MSG
sglangmux demo: two simulated SGLang models behind http://127.0.0.1:${LISTEN_PORT:-30100}
In another terminal:
  examples/sglangmux-manual/request_models.sh
  examples/sglangmux-manual/request_qwen.sh
  examples/sglangmux-manual/request_hf.sh
Dashboard: http://127.0.0.1:${LISTEN_PORT:-30100}/ui
Ctrl+C stops sglangmux and both model servers.
MSG
exec "$root/examples/sglangmux-manual/start_sglangmux.sh" "$@"
