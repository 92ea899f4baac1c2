#!/usr/bin/env bash
# Qwen3-0.6B for sglangmux. sglangmux reads MODEL_NAME and PORT from this file's text (it never
# runs it to find them) and then starts it with `bash qwen3-0.6b.sh`.
MODEL_NAME=Qwen/Qwen3-0.6B
PORT=30001

# --enable-memory-saver lets sglangmux release the GPU memory while another model serves;
# --enable-weights-cpu-backup keeps the weights in CPU memory so waking takes seconds.
exec python3 -m sglang.launch_server \
  --model-path Qwen/Qwen3-0.6B \
  --served-model-name "$MODEL_NAME" \
  --host 127.0.0.1 \
  --port "$PORT" \
  --mem-fraction-static 0.4 \
  --enable-memory-saver \
  --enable-weights-cpu-backup
