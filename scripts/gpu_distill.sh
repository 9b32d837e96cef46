#!/usr/bin/env bash
# Stage 3 of the default model on the device machine (issue 13), in one call:
#   offload a corpus + record the teacher's ODE pairs + Staged ODE Init, then DMD (+ GAN) for each of VARIANTS (full and/or the Table-5 ablations)
#   with SEEDS, each packaged as a model folder. $OUT gets the models and the logs (at most 8 files come back).
#   EVAL=1: the teacher and every student judged on the GPU like the teacher (100 held-out prompts, I2V/V2V,
#   1,440 frames of a two-object prompt) after its training; the teacher beside the first run (JUDGE_TEACHER=0: students
#   only). PARALLEL=1: the runs of VARIANTS × SEEDS × GUIDANCES train side by side on the one GPU. GUIDANCES: the
#   real score's guidance values (official convention; empty: the teacher's). JUDGE_ODE=1: the ODE-initialised
#   student, packaged and judged too (is a defect DMD's or already the initialisation's?). INIT_ODE: a transformer
#   folder (e.g. carried from an earlier call) used as the ODE-initialised student: no pairs, no ODE phase.
#   RENOISE_ANNEAL: generator updates of Dynamic Re-noise's anneal (default the official 500).
#   With several GPUs, PARALLEL runs go round-robin over them. RETURN_MODELS=0: only the judged figures come back
#   (judged.tar, re-made after every judge), not a model tar per run (at most 8 files come back).
# Budget (H200): offload + pairs about 1 minute, ODE init ODE_MINUTES (400 steps in 1.5), each DMD run
# DMD_MINUTES or DMD_STEPS (about 170 steps a minute at batch 32) + packaging. The work folder (1.3 GB) stays there.
set -u
W=${WORK:-/tmp/wd}
source scripts/device_env.sh
mkdir -p $W $OUT
judge() {  # model folder, name
  [ "${EVAL:-0}" = 1 ] || return 0
  mkdir -p $W/judged
  timeout ${EVAL_SECONDS:-300} python3 -m helios.recipes.evaluate_world --model $1 --device cuda --prompts 100 \
    --drift-frames ${DRIFT_FRAMES:-1440} --out $W/judged/$2.json > $W/$2.log 2>&1
  grep -v Warning $W/$2.log | tail -45 >> $OUT/judged.log
  (flock 9; tar -cf $OUT/judged.tar -C $W judged) 9>$W/judged.lock
}
[ "${JUDGE_TEACHER:-1}" = 1 ] && judge src/helios/default_model/mid teacher &
R="python3 -m helios.recipes.default_model --work $W --videos ${VIDEOS:-600} --sections 2 --corpus-seed 4
   --codec-from src/helios/default_model/codec --from-model src/helios/default_model/mid --batch-size ${BATCH:-32}"
quiet() { grep --line-buffered -v Warning | tee -a $OUT/distill.log | grep --line-buffered -E "stage|offloaded|recorded|packaged|step"; }
if [ -n "${INIT_ODE:-}" ]; then
  $R --phase offload 2>&1 | quiet
  mkdir -p $W/distill_ode && rm -rf $W/distill_ode/export && cp -r $INIT_ODE $W/distill_ode/export
else
  $R --phase offload ode-pairs --ode-pairs ${PAIRS:-1024} 2>&1 | quiet
  $R --phase distill-ode --distill-minutes ${ODE_MINUTES:-1.5} 2>&1 | quiet
fi
if [ "${JUDGE_ODE:-0}" = 1 ]; then  # packaged before any DMD run exists, so the ODE student is the one packaged
  $R --phase package-distilled --package-to $W/models/ode_init 2>&1 | quiet
  tar -cf $OUT/ode_init.tar -C $W models/ode_init
  judge $W/models/ode_init ode_init &
fi
run() {  # variant, seed, real guidance (may be empty): DMD (+ GAN), packaged, returned, judged
  local name=$1_seed$2${3:+_guidance$3}
  $R --phase distill-dmd package-distilled --distill-variant $1 --distill-seed $2 ${3:+--real-guidance $3} \
    --distill-minutes ${DMD_MINUTES:-3} --distill-steps ${DMD_STEPS:-100000} --gan-start ${GAN_START:-200} \
    ${RENOISE_ANNEAL:+--renoise-anneal $RENOISE_ANNEAL} \
    --package-to $W/models/$name 2>&1 | quiet
  # after every run, so that a call cut short still returns what is done
  [ "${RETURN_MODELS:-1}" = 1 ] && tar -cf $OUT/$name.tar -C $W models/$name $(cd $W && ls -d distill_dmd*/log.jsonl 2>/dev/null)
  judge $W/models/$name $name
}
[ "${DMD:-1}" = 1 ] || VARIANTS=none  # DMD=0: the ODE student alone (with JUDGE_ODE=1)
GPU_COUNT=$(nvidia-smi -L | wc -l) n=0
for v in ${VARIANTS:-full}; do
  [ "$v" = none ] && continue
  for seed in ${SEEDS:-0}; do
    for guidance in ${GUIDANCES:-""}; do
      (export CUDA_VISIBLE_DEVICES=$((n % GPU_COUNT)); run $v $seed "$guidance") &
      n=$((n + 1))
      [ "${PARALLEL:-0}" = 1 ] || wait $!  # (one at a time, its judge included)
    done
  done
done
wait; ls -la $OUT
