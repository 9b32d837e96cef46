#!/usr/bin/env bash
# Two-GPU measurements (issues 14, 15) on a two-GPU machine, each part switched by a variable:
#   TESTS=1  the two-GPU tests (tests/gpu/test_multi_gpu.py);
#   TRAIN=1  one 14B LoRA training step (benchmarks/train_step_14b.py) per TRAIN_RUNS item: on one card, FSDP2
#            over both (each card its own sample), with its flags (--context-parallel: one sample, half its
#            tokens each; --offload-activations);
#   SPEED=1  one row per item of SPEED_GPUS (default "1 2"; random 14B weights, STEPS=1,1,1 by default: the
#            paper's workload, 384×640, 240 frames): 1 = the one-GPU baseline on the first card, with our
#            Wan decoder's timing on the second card meanwhile (VAE=1); n > 1 = context parallelism over n
#            cards, ours and diffusers' own (Ulysses), in one torchrun run. OURS adds flags to our runs
#            (e.g. "--vae-decoder helios --vae-compile").
set -u
STEPS=${STEPS:-1,1,1}; TAG=${STEPS//,/}${TAG:-}
source scripts/device_env.sh
run_on() { python3 -m torch.distributed.run --standalone --nproc-per-node="$1" "${@:2}"; }
if [ "${TESTS:-0}" = 1 ]; then
  python3 -m pytest -q tests/gpu/${GPU_TESTS:-test_multi_gpu.py} -p no:cacheprovider >"$OUT/gpu_tests_multi.txt" 2>&1
  grep -E "^E |passed|failed" "$OUT/gpu_tests_multi.txt" | head -20
fi
if [ "${TRAIN:-0}" = 1 ]; then
  # TRAIN_RUNS: "launcher:flags" items, launcher one (first card) or fsdp (both cards, torchrun); flags joined by +
  for item in ${TRAIN_RUNS:-one: fsdp: fsdp:--context-parallel}; do
    launcher=${item%%:*}; flags=${item#*:}; flags=${flags//+/ }; tag=$launcher${flags//--/_}; tag=${tag// /}
    date +%T; echo "$launcher $flags"
    if [ "$launcher" = one ]; then RUN="env CUDA_VISIBLE_DEVICES=0 python3"; else RUN="run_on 2"; fi
    $RUN benchmarks/train_step_14b.py --rows ${ROWS:-2x1} $flags --out "$OUT/train_step_14b_$tag.json" 2>&1 \
      | grep -v Warn | tail -2
  done
fi
if [ "${SPEED:-0}" = 1 ]; then
  FAST="--preset helios-distilled --steps $STEPS --frames 240 --compile --attention cudnn --vae-dtype bf16 --vae-channels-last --no-breakdown ${OURS:-}"
  if [ "${VAE:-0}" = 1 ]; then
    (CUDA_VISIBLE_DEVICES=1 python3 benchmarks/vae_decode.py --out "$OUT/vae_decode.json" >"$OUT/vae_decode.log" 2>&1) &
  fi
  for gpus in ${SPEED_GPUS:-1 2}; do
    date +%T
    if [ "$gpus" = 1 ]; then
      CUDA_VISIBLE_DEVICES=0 python3 -m helios.cli bench speed $FAST --out "$OUT/speed_${TAG}_one_gpu.json" 2>&1 \
        | grep -v Warning | tail -2
      wait
    else
      run_on "$gpus" -m helios.cli bench speed $FAST --compare diffusers-compiled \
        --out "$OUT/speed_${TAG}_${gpus}_gpus.json" 2>&1 | grep -v Warning | tail -4
    fi
  done
  date +%T; tail -8 "$OUT/vae_decode.log" 2>/dev/null
fi
