#!/usr/bin/env bash
# Issue 12: does pyramid RoPE alignment (TransformerConfig.pyramid_rope_alignment) help the world model?
# One device call, an A/B of equal length: one corpus rendered and encoded once (VIDEOS × SECTIONS, the
# shipped model's corpus seed and binding text encoder), then stage 2 continued from the shipped model
# twice — plain, and with the alignment turned on — for STEPS steps each (MINUTES caps each arm), compiled,
# each packaged. $OUT gets both packaged models (one tar each) and their training logs; judge them on
# the CPU (benchmarks/README.md, "pyramid RoPE alignment").
set -u
W=${WORK:-/tmp/walign}
source scripts/device_env.sh
mkdir -p $W/base $OUT
COMMON="--videos ${VIDEOS:-600} --sections ${SECTIONS:-4} --corpus-seed 4 --text-binding --first-section 0.5
  --codec-from src/helios/default_model/codec --from-model src/helios/default_model"
date +%T; python3 -m helios.recipes.default_model --work $W/base $COMMON --phase offload 2>&1 | grep -v Warn | tail -1
for arm in ${ARMS:-plain aligned}; do
  mkdir -p $W/$arm && ln -s $W/base/shards $W/$arm/shards
  date +%T; python3 -m helios.recipes.default_model --work $W/$arm $COMMON --phase refine package \
    --mid-steps ${STEPS:-1500} --mid-minutes ${MINUTES:-2.7} --batch-size ${BATCH:-64} --compile \
    $([ $arm = aligned ] && echo --pyramid-rope-alignment) --package-to $W/$arm/model 2>&1 \
    | grep -v Warn > $OUT/train_$arm.log
  tail -2 $OUT/train_$arm.log; tail -1 $W/$arm/refine/log.jsonl
  cp $W/$arm/refine/log.jsonl $OUT/log_$arm.jsonl
  tar -cf $OUT/model_$arm.tar -C $W/$arm model
done
date +%T; ls -la $OUT
