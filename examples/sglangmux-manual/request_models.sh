#!/usr/bin/env bash
# Lists the models sglangmux serves, and their states.
set -euo pipefail
url="${SGLANGMUX_URL:-http://127.0.0.1:30100}"
curl -sS --fail-with-body "$url/v1/models"
echo
curl -sS --fail-with-body "$url/health"
echo
