#!/usr/bin/env bash
# Issue 13's declared comparison (benchmarks/README.md, "Tenth session"): the teacher and an ODE-initialised
# student judged on PROMPTS held-out prompts (default 600) and SCENES conditioning scenes (default 450), split
# over processes (PROMPT_PART / SCENE_PART each, default 75) and GPUs, merged here with
# `python -m helios.recipes.evaluate_world --merge`.
#   TRAIN=1: GPU 0 first trains the student as the eighth session's ODE-1,000 student (600 videos, PAIRS=3072
#            ODE pairs, Staged ODE Init ODE_STEPS=1000 at batch 32), packaged and returned as student.tar, then
#            judges it; meanwhile the teacher is judged on the other GPUs.
#   TRAIN=0: STUDENT (a model folder, e.g. carried) and/or the teacher are judged on every GPU.
#   JUDGE: which to judge ("teacher student"); DRIFT_FRAMES: the student's 1,440-frame drift run (0: none).
#   Every process stops at DEADLINE seconds after the start (a call lasts 600 s), so what is done comes back:
#   NAME_eval.tar holds one JSON per finished part.
set -u
source scripts/device_env.sh
W=${WORK:-/tmp/wd} PROMPTS=${PROMPTS:-600} SCENES=${SCENES:-450} PROMPT_PART=${PROMPT_PART:-75} SCENE_PART=${SCENE_PART:-75}
WORK=$W source scripts/judge_world.sh
GPU_COUNT=$(nvidia-smi -L | wc -l)
JUDGE=${JUDGE:-teacher student}
ALL=$(seq -s " " 0 $((GPU_COUNT - 1)))
if [ "${TRAIN:-0}" = 1 ]; then
  OTHERS=$(seq -s " " 1 $((GPU_COUNT - 1)))
  [[ " $JUDGE " == *" teacher "* ]] && judge src/helios/default_model/mid teacher "${OTHERS:-0}" &
  R="python3 -m helios.recipes.default_model --work $W --videos 600 --sections 2 --corpus-seed 4
     --codec-from src/helios/default_model/codec --from-model src/helios/default_model/mid --batch-size 32"
  export CUDA_VISIBLE_DEVICES=0
  { $R --phase offload ode-pairs --ode-pairs ${PAIRS:-3072} &&
    $R --phase distill-ode --distill-steps ${ODE_STEPS:-1000} --distill-minutes ${ODE_MINUTES:-6} &&
    $R --phase package-distilled --package-to $W/models/student; } 2>&1 | grep --line-buffered -v Warning |
    tee $OUT/train.log | grep --line-buffered -E "offloaded|recorded|packaged|stopped"
  unset CUDA_VISIBLE_DEVICES
  tar -cf $OUT/student.tar -C $W models/student
  echo "student trained at ${SECONDS}s"
  [[ " $JUDGE " == *" student "* ]] && judge $W/models/student student 0 ${DRIFT_FRAMES:-1440}
  wait
else
  [[ " $JUDGE " == *" teacher "* ]] && judge src/helios/default_model/mid teacher "$ALL" &
  [[ " $JUDGE " == *" student "* ]] && judge ${STUDENT:?STUDENT: the student model folder} student "$ALL" ${DRIFT_FRAMES:-1440} &
  wait
fi
ls -la $OUT
