#!/usr/bin/env bash
# The world model's Base variant (issue 17), trained fairly on one GPU: stage 1 (flow matching at every
# noise level, full resolution) from the shipped model's weights, compiled, then packaged with the Base
# sampler. Resumable: a checkpoint carried in .carry/base (the previous call's $OUT/base) is continued.
# $OUT gets the packaged Base model and log (one tar) and the newest checkpoint as a tar split into 15 MB
# parts (the device returns files up to 16 MB): `cat base_ckpt.tar.* | tar -x -C .carry` to resume.
set -u
W=${WORK:-/tmp/wbase}
source scripts/device_env.sh
mkdir -p $W $OUT
[ -d .carry/base ] && cp -r .carry/base $W/ && echo "resuming from $(cat $W/base/checkpoints/latest)"
date +%T; python3 -m helios.recipes.default_model --work $W --videos ${VIDEOS:-1500} --sections ${SECTIONS:-2} \
  --corpus-seed 4 --codec-from src/helios/default_model/codec --from-model src/helios/default_model/mid \
  --batch-size ${BATCH:-64} --compile --phase offload base package-base --base-steps 100000 \
  --base-minutes ${MINUTES:-6} --package-to $W/base_model 2>&1 \
  | grep --line-buffered -v Warning | tee $W/train.log | grep --line-buffered -E "stage|offloaded|packaged|resum"
date +%T
latest=$(cat $W/base/checkpoints/latest)
tar -cf - -C $W base/checkpoints/$latest base/checkpoints/latest | split -b 15M - $OUT/base_ckpt.tar.
cp $W/base/log.jsonl $OUT/ 2>/dev/null
tar -cf $OUT/base_model.tar -C $W base_model train.log
ls -la $OUT
