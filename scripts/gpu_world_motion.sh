#!/usr/bin/env bash
# Issue 12, one device call: why the default model ignores motion words, and what training fixes it.
#   1. the drift (1,440 frames of a two-object prompt) of the shipped model and of a candidate
#      (CANDIDATE, a packaged model folder; default: the shipped one), on the GPU, in the background
#      (BASELINES=0 skips it);
#   2. one corpus, then VARIANTS refine runs of the candidate side by side on the one GPU, each
#      "name:first_section:r0,r1,r2[:motion_weight]" (share of first chunks; samples per pyramid stage
#      per step; the stage-2 loss's extra weight on moving latent elements, default 0);
#   3. each packaged variant judged (100 prompts, word loss, sensitivity) at GUIDANCE.
# $OUT gets every JSON, log, packaged model (tar) and newest checkpoint (resumable with RESUME=1:
# .carry/motion/<name>/refine/checkpoints from the previous call, optimizer parts joined again).
set -u
W=${WORK:-/tmp/motion}; CANDIDATE=${CANDIDATE:-src/helios/default_model/mid}; THREADS=${THREADS:-2}
source scripts/device_env.sh
mkdir -p $W $OUT
judge() {  # model, name, extra args
  timeout ${EVAL_SECONDS:-200} python3 -m helios.recipes.evaluate_world --model $1 --device cuda --out $OUT/$2.json "${@:3}" \
    > $OUT/$2.log 2>&1
}
if [ "${BASELINES:-1}" = 1 ]; then
  judge src/helios/default_model/mid shipped_drift --prompts 0 --drift-frames 1440 &
  judge $CANDIDATE candidate_drift --prompts 0 --drift-frames 1440 &
fi
date +%T; python3 -m helios.recipes.default_model --work $W/corpus --videos ${VIDEOS:-1000} --sections 4 --corpus-seed 4 \
  --text-binding --codec-from src/helios/default_model/codec --phase offload 2>&1 | grep -E "offloaded|Error"
for spec in ${VARIANTS:-}; do
  IFS=: read name first ratios motion <<< "$spec"
  mkdir -p $W/$name && ln -sfn $W/corpus/shards $W/$name/shards
  [ "${RESUME:-0}" = 1 ] && [ -d .carry/motion/$name ] && cp -r .carry/motion/$name/refine $W/$name/
  mkdir -p $OUT/$name/checkpoints
  ( timeout ${TRAIN_SECONDS:-330} python3 -m helios.recipes.default_model --work $W/$name --text-binding \
      --first-section $first --pyramid-ratios ${ratios//,/ } --motion-weight ${motion:-0} --codec-from src/helios/default_model/codec \
      --from-model $CANDIDATE --phase refine package --mid-steps 100000 --mid-minutes ${MINUTES:-3} \
      --batch-size ${BATCH:-64} --compile --package-to $W/$name/default_model 2>&1 \
      | grep --line-buffered -E "stage|packaged|Error" > $OUT/$name/train.log
    latest=$(cat $W/$name/refine/checkpoints/latest)  # kept before judging: the call may end any time
    cp -r $W/$name/refine/checkpoints/$latest $W/$name/refine/checkpoints/latest $OUT/$name/checkpoints/
    # files over 16 MB do not come back: the optimizer state in parts (cat them to resume)
    ( cd $OUT/$name/checkpoints/$latest && split -b 15M optimizer.pt optimizer.pt.part- && rm optimizer.pt )
    python3 - $W/$name/default_model/sampler.json ${GUIDANCE:-2.5} <<'PY'
import json, sys
path, scale = sys.argv[1], float(sys.argv[2])
settings = json.load(open(path)); settings["guidance_scale"] = scale; json.dump(settings, open(path, "w"), indent=1)
PY
    tar -cf $OUT/$name/model.tar -C $W/$name default_model
    judge $W/$name/default_model $name --prompts 100 --word-loss 24 --sensitivity ${SENSITIVITY:-2} --drift-frames 0 ) &
done
wait; date +%T
for f in $OUT/*.log; do echo "== $f"; grep -v Warning $f | tail -${TAIL:-25}; done
