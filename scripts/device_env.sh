# Sourced by the scripts/gpu_*.sh device scripts: the wheels the device machine lacks (WHEELS, default .whl:
# diffusers, av, ftfy, … — see benchmarks/README.md), this checkout's sources on the path, $OUT made,
# the card's name in $OUT/card.txt, and SECOND_GPU.
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  "${WHEELS:-.whl}"/*.whl || { echo "installing the wheels of ${WHEELS:-.whl} failed"; exit 1; }
export PYTHONPATH=$PWD/src:/tmp/site OMP_NUM_THREADS=${THREADS:-4} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/card.txt"
# The card of a script's second arm: GPU 1, or GPU 0 again where only one is lent.
SECOND_GPU=$(( $(nvidia-smi -L | wc -l) > 1 ? 1 : 0 ))
