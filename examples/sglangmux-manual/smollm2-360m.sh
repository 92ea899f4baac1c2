#!/usr/bin/env bash
# SmolLM2-360M-Instruct, a second small Hugging Face model, for sglangmux.
MODEL_NAME=HuggingFaceTB/SmolLM2-360M-Instruct
PORT=30002

exec python3 -m sglang.launch_server \
  --model-path HuggingFaceTB/SmolLM2-360M-Instruct \
  --served-model-name "$MODEL_NAME" \
  --host 127.0.0.1 \
  --port "$PORT" \
  --mem-fraction-static 0.4 \
  --enable-memory-saver \
  --enable-weights-cpu-backup
