#!/usr/bin/env bash
# One GPU session for the default model (issue 12), two concurrent processes on one card:
#   A  a codec decoder that also sees the previous latent frame (no stop-motion), trained with the
#      shipped encoder frozen: latents, and so the shipped transformer, stay valid
#   B  encode the corpus with the shipped encoder and continue stage 2 of the shipped model
# then package the default model with both. Everything lands in $OUT/world.tar.
set -u
W=${WORK:-/tmp/world}
MIN_CODEC=${MIN_CODEC:-6}; MIN_REFINE=${MIN_REFINE:-6}
source scripts/device_env.sh
mkdir -p $W $OUT
R="python3 -m helios.recipes.default_model --work $W --videos ${VIDEOS:-600}"
SHIPPED=src/helios/default_model
FROM=${FROM_MODEL:-$SHIPPED/mid}  # the transformer to continue (a packaged world model)
$R --report codec.json --phase codec --codec-from $SHIPPED/codec --codec-context \
   --decoder-channels ${DECODER:-48 96 128} --codec-steps 100000 --codec-lr ${CODEC_LR:-1e-3} --codec-batch 16 \
   --codec-minutes $MIN_CODEC > $W/codec.log 2>&1 &
( $R --report refine.json --phase offload refine --codec-from $SHIPPED/codec --from-model $FROM \
     --mid-steps 100000 --mid-minutes $MIN_REFINE --batch-size 64 > $W/refine.log 2>&1 ) &
wait
python3 - <<PY
from pathlib import Path
from helios.recipes.default_model import package, DEFAULT_SAMPLER
package(Path("$W/default_model"), Path("$W/codec"), Path("$W/refine/export"), DEFAULT_SAMPLER, {})
PY
tail -n 4 $W/codec.log $W/refine.log
tar -cf $OUT/world.tar -C $W default_model $(cd $W && ls *.json *.log)
ls -la $OUT
