#!/usr/bin/env bash
# Issue 14: the VAE decode overlapped with the next chunk's denoising (--overlap-vae) on the full compiled
# stack (cuDNN attention, our compiled bf16 decoder), both workloads, one GPU. One process per row:
# bf16 with overlap (against diffusers compiled, same process), bf16 without (the same machine's
# baseline), FP8 GEMMs with overlap. Run from the repository root with the wheels of .whl/.
set -u
source scripts/device_env.sh
SPEED="python3 -m helios.cli bench speed --preset helios-distilled --workload both --frames 240 --compile
  --attention cudnn --vae-dtype bf16 --vae-channels-last --vae-decoder helios --vae-compile --no-breakdown"
for row in ${ROWS:-bf16_overlap bf16 fp8_overlap}; do
  flags=""
  case $row in *overlap*) flags="$flags --overlap-vae";; esac
  case $row in fp8*) flags="$flags --fp8 per_row";; esac
  [ "$row" = bf16_overlap ] && flags="$flags --compare diffusers-compiled"
  date +%T; echo "$row:$flags"
  $SPEED $flags --out "$OUT/speed_$row.json" 2>&1 | grep -v Warn | tail -6
done
date +%T; ls "$OUT"
