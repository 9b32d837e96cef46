#!/usr/bin/env bash
# Issue 12: an A/B of equal length from the Mid, each arm on its own GPU: stage 2 continued with the recipe
# options OPTS_A (arm ARM_A; default "plain", no options: the control) and with OPTS_B (arm ARM_B; default
# "repatch": --repatch 2, 8-pixel tokens, model/repatch.py; e.g. ARM_B=two_stage OPTS_B="--pyramid-ratios 1 1
# --pyramid-steps 12 12"),
# on one corpus rendered and encoded once (VIDEOS × SECTIONS, the Mid's corpus seed and binding encoder) — an arm
# with --start-curriculum STEPS gets its own, the same videos with their starts ordered as a curriculum; both arms
# share the one card where only one GPU is lent. ARM_B=none runs arm A alone on GPU 0 (to set against a control
# judged before, from the same corpus, seeds and script).
# Each arm trains to STEPS steps (MINUTES caps a call), is packaged, and — once it has all STEPS — is judged
# on its GPU with scripts/judge_world.sh (PROMPTS held-out prompts, SCENES conditioning scenes, the history
# and word losses, the I2V direction test). The work folder (.work/ab, ignored) survives on a machine still
# warm, so a next call with a larger STEPS continues both arms; a cold machine starts over. $OUT: per arm
# its log, packaged model and NAME_eval.tar; merge the parts locally.
set -u
source scripts/device_env.sh
export WORK=${WORK:-$PWD/.work/ab}
EXTRA=${EXTRA:---history-loss 24 --word-loss 24 --word-loss-i2v 24 --i2v-direction 40} DEADLINE=${DEADLINE:-570}
source scripts/judge_world.sh
mkdir -p $W/base
COMMON="--videos ${VIDEOS:-600} --sections ${SECTIONS:-4} --corpus-seed 4 --text-binding --first-section 0.5
  --codec-from src/helios/default_model/codec --from-model src/helios/default_model/mid"
needs_base() { [[ "${OPTS_A:-}" != *--start-curriculum* ]] || { [ "${ARM_B:-}" != none ] && [[ "${OPTS_B:---repatch 2}" != *--start-curriculum* ]]; }; }
needs_base && { [ -f $W/base/shards/index.json ] || CUDA_VISIBLE_DEVICES=0 python3 -m helios.recipes.default_model --work $W/base \
  $COMMON --phase offload 2>&1 | grep -v Warn | tail -1; }
echo "corpus ready at ${SECONDS}s"
arm() {  # name, GPU, extra recipe options
  local name=$1 gpu=$2
  mkdir -p $W/$name
  if [[ "$3" == *--start-curriculum* ]]; then  # its own corpus: the same videos, starts from their anchors out
    [ -f $W/$name/shards/index.json ] || CUDA_VISIBLE_DEVICES=$gpu python3 -m helios.recipes.default_model \
      --work $W/$name $COMMON $3 --phase offload 2>&1 | grep -v Warn | tail -1
  else
    ln -sfn $W/base/shards $W/$name/shards
  fi
  CUDA_VISIBLE_DEVICES=$gpu python3 -m helios.recipes.default_model --work $W/$name $COMMON --phase refine package \
    --mid-steps $STEPS --mid-minutes ${MINUTES:-7} --batch-size ${BATCH:-64} --compile $3 \
    --package-to $W/$name/model 2>&1 | grep -v Warn > $W/$name/train.log
  local reached=$(tail -1 $W/$name/refine/log.jsonl | python3 -c "import json,sys; print(json.load(sys.stdin)['step'])")
  echo "$name: step $reached of $STEPS at ${SECONDS}s"; tail -1 $W/$name/refine/log.jsonl
  cp $W/$name/refine/log.jsonl $OUT/${name}_log.jsonl
  tar -cf $OUT/${name}_model.tar -C $W/$name model
  [ "$reached" -ge "$STEPS" ] && [ "${JUDGE:-1}" = 1 ] && judge $W/$name/model $name $gpu
}
STEPS=${STEPS:?STEPS: the steps both arms train to}
arm ${ARM_A:-plain} 0 "${OPTS_A:-}" &
[ "${ARM_B:-}" = none ] || arm ${ARM_B:-repatch} $SECOND_GPU "${OPTS_B:---repatch 2}" &
wait
rm -f $OUT/card.txt
ls -la $OUT
