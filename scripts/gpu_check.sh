#!/usr/bin/env bash
# GPU checks after a change that touches GPU code paths: the GPU-only tests, the transformer's parity
# with diffusers on the card, and the headline speed row (14B random weights, the paper's 1/1/1
# workload, 384×640, 240 → 261 frames, compiled + cuDNN attention + bf16 channels-last VAE).
# Run from the repository root on the device machine with the wheels of .whl/ (see the device README).
set -u
source scripts/device_env.sh
python3 -m pytest -q tests/gpu tests/model/test_transformer_parity.py tests/model/test_attention.py -p no:cacheprovider \
    2>&1 | tail -15 | tee "$OUT/gpu_tests.txt"
python3 -m helios.cli bench speed --preset helios-distilled --steps 1,1,1 --frames 240 --compile --attention cudnn \
    --vae-dtype bf16 --vae-channels-last --no-breakdown --out "$OUT/speed_111_bf16.json" 2>&1 | tail -8
