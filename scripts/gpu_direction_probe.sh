#!/usr/bin/env bash
# Issue 12: the direction learnability probe (benchmarks/world_direction_probe.py), one arm per card on two GPUs
# (both on the one card where there is only one):
# by default captioned (true direction words) and shuffled (the control: random direction words). ARM_A/ARM_B
# pick the arms, OPTS_A/OPTS_B add probe options to each (e.g. OPTS_B="--coarse-motion-dropout 0.5", "--corpus
# placed --scenes 1024", "--pyramid-steps 12 12"), NAME_A/
# NAME_B name their files. Measured at each of STEPS (default "1200 4000"), batch BATCH (16), learning rate
# LR (2e-4), HELD_OUT (24) held-out scenes; a step takes ~0.16 s on an H200, and a call must end within 10
# minutes. $OUT: each arm's JSON, log (line by line, so a cut-off call keeps what it measured) and contact
# sheet of generated placed clips (sheet_NAME_ARM.png, rewritten at each measurement), and
# with SAVE=1, probe_models.tar (each arm's model after its last step; two Mids may exceed what $OUT brings back).
set -u
source scripts/device_env.sh
probe() {  # name, arm, GPU, extra options
  CUDA_VISIBLE_DEVICES=$3 python3 benchmarks/world_direction_probe.py --device cuda --arms $2 $4 \
    --steps ${STEPS:-1200 4000} --batch ${BATCH:-16} --lr ${LR:-2e-4} --held-out ${HELD_OUT:-24} \
    ${SAVE:+--save $PWD/.work/probe_models/$1} --sheet $OUT/sheet_$1 --out $OUT/probe_$1.json 2>&1 | grep --line-buffered -v Warn > $OUT/probe_$1.log
}
probe ${NAME_A:-captioned} ${ARM_A:-captioned} 0 "${OPTS_A:-}" &
probe ${NAME_B:-shuffled} ${ARM_B:-shuffled} $SECOND_GPU "${OPTS_B:-}" &
wait
tail -n 4 $OUT/probe_*.log | cut -c1-400
[ -n "${SAVE:-}" ] && tar -cf $OUT/probe_models.tar -C .work probe_models
rm -f $OUT/card.txt
