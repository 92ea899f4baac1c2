#!/usr/bin/env bash
# Asks Qwen3-0.6B; sglangmux wakes it if another model is awake.
set -euo pipefail
url="${SGLANGMUX_URL:-http://127.0.0.1:30100}"
curl -sS --fail-with-body "$url/v1/chat/completions" \
  -H 'Content-Type: application/json' \
  -d '{"model": "Qwen/Qwen3-0.6B", "messages": [{"role": "user", "content": "Say hello in one sentence."}], "max_tokens": 32}'
echo
