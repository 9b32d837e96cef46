#!/usr/bin/env bash
# Issue 12: does pyramid RoPE alignment (TransformerConfig.pyramid_rope_alignment) help the world model?
# An A/B of equal length: one corpus rendered and encoded once (VIDEOS × SECTIONS, the shipped model's
# corpus seed and binding text encoder), then stage 2 continued from the shipped model twice — plain, and
# with the alignment turned on — to STEPS steps each, compiled, each packaged. MINUTES is only a safety cap
# per arm: check that both logs reach STEPS. Resumable: a call continues each arm from .carry/align/ARM
# (unpack the previous call's parts there: `cat arm_ARM.tar.* | tar -x -C .carry/align`), so STEPS can
# grow from call to call. $OUT gets per arm one tar (packaged model, log, newest checkpoint) split into
# 15 MB parts; judge the models on the CPU (benchmarks/README.md, "pyramid RoPE alignment").
set -u
W=${WORK:-/tmp/walign}
source scripts/device_env.sh
mkdir -p $W/base
COMMON="--videos ${VIDEOS:-600} --sections ${SECTIONS:-4} --corpus-seed 4 --text-binding --first-section 0.5
  --codec-from src/helios/default_model/codec --from-model src/helios/default_model/mid"
date +%T; python3 -m helios.recipes.default_model --work $W/base $COMMON --phase offload 2>&1 | grep -v Warn | tail -1
for arm in ${ARMS:-plain aligned}; do
  mkdir -p $W/$arm && ln -sfn $W/base/shards $W/$arm/shards
  [ -d .carry/align/$arm/refine ] && cp -r .carry/align/$arm/refine $W/$arm/ \
    && echo "$arm: resuming from $(cat $W/$arm/refine/checkpoints/latest)"
  date +%T; python3 -m helios.recipes.default_model --work $W/$arm $COMMON --phase refine package \
    --mid-steps ${STEPS:-900} --mid-minutes ${MINUTES:-4.5} --batch-size ${BATCH:-64} --compile \
    $([ $arm = aligned ] && echo --pyramid-rope-alignment) --package-to $W/$arm/model 2>&1 \
    | grep -v Warn > $W/$arm/train.log
  tail -2 $W/$arm/train.log; tail -1 $W/$arm/refine/log.jsonl
  latest=$(cat $W/$arm/refine/checkpoints/latest)
  tar -cf - -C $W $arm/model $arm/train.log $arm/refine/log.jsonl $arm/refine/checkpoints/$latest \
    $arm/refine/checkpoints/latest | split -b 15M - $OUT/arm_$arm.tar.
done
rm -f $OUT/card.txt  # (the card is in the output above) two arms × 4 parts fill the 8 files a call returns
date +%T; ls -la $OUT
