#!/usr/bin/env bash
# Asks SmolLM2-360M-Instruct, streaming the answer as it is generated.
set -euo pipefail
url="${SGLANGMUX_URL:-http://127.0.0.1:30100}"
curl -sS -N --fail-with-body "$url/v1/chat/completions" \
  -H 'Content-Type: application/json' \
  -d '{"model": "HuggingFaceTB/SmolLM2-360M-Instruct", "messages": [{"role": "user", "content": "Name three colours."}], "max_tokens": 32, "stream": true}'
echo
