# Sourced by device scripts that judge world models on the GPU: `judge MODEL NAME "GPUS" [DRIFT_FRAMES]`
# runs `evaluate_world` on PROMPTS held-out prompts and SCENES conditioning scenes, split into parts of
# PROMPT_PART / SCENE_PART (each part its own process, round-robin over GPUS), plus EXTRA (one more part's
# arguments, e.g. "--history-loss 24 --word-loss 24") and a drift run of DRIFT_FRAMES frames (0: none).
# Every process stops DEADLINE seconds after the calling script's start; $OUT/NAME_eval.tar gets one JSON
# per finished part — merge them with `python -m helios.recipes.evaluate_world --merge`.
W=${WORK:?WORK: the work folder}
DEADLINE=${DEADLINE:-560}
PROMPTS=${PROMPTS:-100} SCENES=${SCENES:-40} PROMPT_PART=${PROMPT_PART:-25} SCENE_PART=${SCENE_PART:-10}
split() {  # total, per part, the counted flag, the other flag: one evaluate_world argument string per part
  for ((skip = 0; skip < $1; skip += $2)); do
    echo "--skip $skip $3 $(($1 - skip < $2 ? $1 - skip : $2)) $4 0 --drift-frames 0"
  done
}
judge() {
  local model=$1 name=$2 gpus=($3) k=0 args
  mkdir -p $W/eval
  mapfile -t args < <(split $PROMPTS $PROMPT_PART --prompts --conditioning; split $SCENES $SCENE_PART --conditioning --prompts)
  [ "${4:-0}" != 0 ] && args+=("--prompts 0 --conditioning 0 --drift-frames $4")
  [ -n "${EXTRA:-}" ] && args+=("--prompts 0 --conditioning 0 --drift-frames 0 $EXTRA")
  for a in "${args[@]}"; do
    CUDA_VISIBLE_DEVICES=${gpus[$((k % ${#gpus[@]}))]} timeout $((DEADLINE - SECONDS)) python3 -m helios.recipes.evaluate_world \
      --model $model --device cuda $a --out $W/eval/${name}_part$k.json > $W/eval/${name}_part$k.log 2>&1 &
    k=$((k + 1))
  done
  wait
  tar -cf $OUT/${name}_eval.tar -C $W/eval $(cd $W/eval && ls ${name}_part*.json 2>/dev/null)
  echo "$name: $(ls $W/eval/${name}_part*.json 2>/dev/null | wc -l) of $k parts finished at ${SECONDS}s"
  grep -h -i "error\|Traceback" $W/eval/${name}_part*.log | head -5
}
