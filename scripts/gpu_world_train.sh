#!/usr/bin/env bash
# Resumable stage-2 training of the default model (issue 12) in one device call:
#   render + encode a corpus whose every chunk has the caption true to it (bounces and events
#   included), with the binding text encoder; continue stage 2 from a packaged model (FROM_MODEL) or
#   from the checkpoint carried in .carry/refine (the previous call's); package the model; optionally
#   judge it (EVAL=1) on the GPU. $OUT gets the packaged model, the newest checkpoint and the logs.
# Keep MINUTES well under the call's limit: rendering + encoding 3,000 videos and packaging (its drift
# calibration runs on the CPU) take about 4 minutes beside the training (a 10-minute call at
# MINUTES=5.3 ran out before packaging).
set -u
W=${WORK:-/tmp/world}
source scripts/device_env.sh
mkdir -p $W $OUT
[ -d .carry/refine ] && cp -r .carry/refine $W/ && echo "resuming from $(cat $W/refine/checkpoints/latest)"
date +%T; python3 -m helios.recipes.default_model --work $W --videos ${VIDEOS:-3000} --sections ${SECTIONS:-4} \
  --corpus-seed 4 --text-binding --first-section ${FIRST:-0.5} --codec-from src/helios/default_model/codec \
  --from-model ${FROM_MODEL:-src/helios/default_model/mid} --phase offload refine package \
  --mid-steps 100000 --mid-minutes ${MINUTES:-6} --batch-size ${BATCH:-64} ${COMPILE:+--compile} --package-to $W/default_model 2>&1 \
  | grep --line-buffered -v Warning | tee $W/train.log | grep --line-buffered -E "stage|offloaded|packaged|resum"
# the newest checkpoint only (the next call resumes from it), the model and the log
mkdir -p $OUT/refine/checkpoints
latest=$(cat $W/refine/checkpoints/latest)
cp -r $W/refine/checkpoints/$latest $W/refine/checkpoints/latest $OUT/refine/checkpoints/
cp $W/refine/*.jsonl $OUT/refine/ 2>/dev/null
tar -cf $OUT/world_model.tar -C $W default_model train.log
if [ "${EVAL:-0}" = 1 ]; then
  timeout ${EVAL_SECONDS:-150} python3 -m helios.recipes.evaluate_world --model $W/default_model --device cuda --prompts 100 \
    --drift-frames ${DRIFT_FRAMES:-0} --out $OUT/eval.json 2>&1 | grep -v Warning | tail -40
fi
ls -la $OUT
