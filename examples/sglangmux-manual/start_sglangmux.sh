#!/usr/bin/env bash
# Serves both models on one endpoint (default http://127.0.0.1:30100).
# Uses `sglangmux` from PATH (pip/uv install), else the bundle of this checkout (npm run build).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if command -v sglangmux >/dev/null 2>&1; then
  run=(sglangmux)
else
  run=(node "$here/../../dist/sglangmux.mjs")
fi
exec "${run[@]}" \
  --listen-port "${LISTEN_PORT:-30100}" \
  --log-dir "${LOG_DIR:-$here/sglangmux-logs}" \
  "$@" \
  "$here/qwen3-0.6b.sh" \
  "$here/smollm2-360m.sh"
