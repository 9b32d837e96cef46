#!/usr/bin/env bash
# FP8 attention on one GPU (issue 14): its tests on the card, the kernel and call-error benchmark, then
# both speed workloads with FP8 GEMMs and each attention backend of ATTENTIONS (cuDNN's bf16 attention
# as the same machine's baseline). Run from the repository root with the wheels of .whl/.
set -u
source scripts/device_env.sh
if [ "${TESTS:-1}" = 1 ]; then
  python3 -m pytest -q tests/gpu/test_cuda_paths.py -k fp8 tests/model/test_fp8_attention.py tests/model/test_attention.py \
    -p no:cacheprovider 2>&1 | tail -15 | tee "$OUT/gpu_tests.txt"
fi
[ "${KERNEL:-1}" = 1 ] && python3 benchmarks/fp8_attention.py --out "$OUT/fp8_attention.json" 2>&1 | grep -v Warn | tail -12
SPEED="python3 -m helios.cli bench speed --preset helios-distilled --workload both --frames 240 --compile
  --vae-dtype bf16 --vae-channels-last --vae-decoder helios --vae-compile --no-breakdown"
# FP8 GEMMs with each attention backend in ATTENTIONS, one process each (cudnn: the same call's baseline)
for attention in ${ATTENTIONS:-fp8 cudnn}; do
  $SPEED --attention $attention --fp8 per_row --out "$OUT/speed_fp8_gemms_${attention}.json" 2>&1 | grep -v Warn | tail -4
done
ls "$OUT"
