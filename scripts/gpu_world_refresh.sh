#!/usr/bin/env bash
# One GPU session of the world recipe, run as concurrent processes on one card (each small model is
# launch-bound, so several share the GPU well):
#   A  fine-tune the shipped codec's decoder (encoder frozen: latents, hence the model, stay valid)
#   B  encode the corpus with the shipped codec, then continue stage 2 of the shipped model (refine)
#   C  the Table-5 ablation at the default model's scale: stage 1 full / no anchor / no corrupt
# then package the refined model with the new decoder. Everything lands in $OUT/world.tar.
set -u
W=${WORK:-/tmp/world}; THREADS=${THREADS:-3}
MIN_REFINE=${MIN_REFINE:-6.5}; MIN_ABL=${MIN_ABL:-6}; ABL_STEPS=${ABL_STEPS:-100000}
source scripts/device_env.sh
mkdir -p $W $OUT
R="python3 -m helios.recipes.default_model --work $W --videos ${VIDEOS:-600}"
SHIPPED=src/helios/default_model
$R --report codec.json --phase codec --codec-from $SHIPPED/codec --codec-steps ${CODEC_STEPS:-100000} \
   --codec-lr 2e-4 --codec-batch 16 --codec-minutes ${MIN_CODEC:-6} > $W/codec.log 2>&1 &
A=$!
( $R --report refine.json --phase offload refine --codec-from $SHIPPED/codec --from-model $SHIPPED/mid \
     --mid-steps 100000 --mid-minutes $MIN_REFINE --batch-size 64 > $W/refine.log 2>&1 ) &
B=$!
while [ ! -f $W/shards/index.json ] && kill -0 $B 2>/dev/null; do sleep 2; done; sleep 2
for v in full no_anchor no_corrupt; do
  $R --report abl_$v.json --phase ablations --ablation $v --ablation-steps $ABL_STEPS --ablation-minutes $MIN_ABL \
     > $W/abl_$v.log 2>&1 &
done
wait
python3 - <<PY
from pathlib import Path
from helios.recipes.default_model import package, DEFAULT_SAMPLER
package(Path("$W/default_model"), Path("$W/codec"), Path("$W/refine/export"), DEFAULT_SAMPLER, {})
PY
python3 -c "import torch; print(torch.cuda.get_device_name())" > $W/card.txt
tar --ignore-failed-read -C $W -cf $OUT/world.tar default_model codec ablation/full/export ablation/no_anchor/export \
   ablation/no_corrupt/export ablation/full/log.jsonl ablation/no_anchor/log.jsonl ablation/no_corrupt/log.jsonl \
   refine/log.jsonl codec.json refine.json card.txt $(cd $W && ls *.log abl_*.json)
tail -n 3 $W/*.log
