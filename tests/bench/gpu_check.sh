#!/usr/bin/env bash
# The LAMM checks that need a GPU, as one device run (docs/lamm.md, "On a GPU"):
#   the CPU-vs-GPU parity test of LammForecaster.to("cuda"), then encode / step throughput on the GPU.
# On the device machine's image (python3 with CUDA torch, pytest, numpy, pandas, pyarrow; no
# LightGBM, so the GBM-head rows are left out there), from the repository root:
#   bash tests/bench/gpu_check.sh            # writes $OUT/lamm_gpu.json (or runs/bench/ without $OUT)
set -euo pipefail
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
out="${OUT:-runs/bench}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 -m pytest -q -p no:cacheprovider tests/test_lamm_gpu.py -rs
python3 -m tests.bench.bench_lamm --device cuda --threads 8 --out "$out/lamm_gpu.json"
