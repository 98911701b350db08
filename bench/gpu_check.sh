#!/usr/bin/env bash
# The GPU check of bench/gpu_check.py with the wheels the device image lacks (Python 3.12, no internet).
#   here:        bash bench/gpu_check.sh fetch     # downloads ~61 MB of wheels into .wheels/ (git-ignored)
#   on the GPU:  bash bench/gpu_check.sh run       # device tool: run(command=..., carry=[".wheels"])
# The device image has torch, lightning, timm, torchmetrics, scikit-image, numba, scipy, pandas,
# matplotlib; these wheels add the rest of what run.py, the MIM task and sp_generation.py import.
# opencv-python-headless 4.11 (50 MB) instead of 5.x (58 MB), and no hf-xet (only for hub downloads,
# which never happen here), keep the carried tree (wheels + repo, ~63.5 MB) under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(
  jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0 importlib_resources==7.1.0
  albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2 simsimd==6.5.16
  opencv-python-headless==4.11.0.86 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0
  typing-inspection==0.4.5 segmentation_models_pytorch==0.6.0 huggingface_hub==2.4.0
  httpx2==2.16.2 httpcore2==2.16.2 h11==0.16.0 anyio==4.16.0 sniffio==1.3.1 idna==3.20 click==8.5.1
  safetensors==0.8.0
)
case "${1:-}" in
  fetch)
    grep -qxF "/.wheels/" .git/info/exclude 2>/dev/null || echo "/.wheels/" >> .git/info/exclude
    python -m pip download --quiet --dest .wheels --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
      "${WHEELS[@]}"
    du -sh .wheels
    ;;
  run)
    python -m pip install --quiet --no-index --no-deps .wheels/*.whl
    export PYTHONUNBUFFERED=1
    python bench/gpu_check.py --device cuda --out "${OUT:-.}/gpu_check.json" 2>&1 | tee "${OUT:-.}/gpu_check.log"
    ;;
  *)
    echo "usage: bash bench/gpu_check.sh fetch|run" >&2
    exit 2
    ;;
esac
