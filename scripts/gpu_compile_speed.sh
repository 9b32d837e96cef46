#!/usr/bin/env bash
# Issue 12: does regional torch.compile speed up stage-2 training of the small default model?
# One device call: a small corpus (VIDEOS) rendered and encoded once, then the same refine run twice
# from the shipped model (batch BATCH, MINUTES each), eager and compiled; steps per minute from the
# trainer's log.jsonl (a record every 50 steps with the wall seconds: the rate is taken between the
# first and the last record, so the compiled run's compilation, before its first record, is left out).
# Also runs the RAFT test where torchvision exists.
set -u
W=/tmp/speed; mkdir -p $W
source scripts/device_env.sh
python3 -m pytest -q tests/bench/test_heliosbench_models.py -k raft -p no:cacheprovider 2>&1 | tail -2 | tee "$OUT/raft_test.txt"
COMMON="--corpus-seed 4 --first-section 0.5 --codec-from src/helios/default_model/codec --from-model src/helios/default_model/mid"
date +%T; python3 -m helios.recipes.default_model --work $W/base --videos ${VIDEOS:-256} --sections 4 $COMMON --phase offload 2>&1 | grep -v Warn | tail -1
for mode in eager compiled; do
  mkdir -p $W/$mode && cp -r $W/base/shards $W/$mode/
  date +%T; python3 -m helios.recipes.default_model --work $W/$mode --videos ${VIDEOS:-256} --sections 4 $COMMON \
    --phase refine --mid-steps 100000 --mid-minutes ${MINUTES:-1.5} --batch-size ${BATCH:-128} \
    $([ $mode = compiled ] && echo --compile) 2>&1 | grep -v Warn > "$OUT/train_$mode.log"
  cp $W/$mode/refine/log.jsonl "$OUT/log_$mode.jsonl"
  python3 -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; a,b=r[0],r[-1]; \
print(sys.argv[2], b['step'], 'steps;', round((b['step']-a['step'])/(b['seconds']-a['seconds']),2), \
'steps/s from step', a['step'], 'to', b['step'])" "$OUT/log_$mode.jsonl" $mode
done
date +%T
