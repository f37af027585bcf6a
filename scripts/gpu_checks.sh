#!/usr/bin/env bash
# The checks that need the GPU machine (16 cores + one H100/H200), in one run of under 2 minutes:
#   1. `pytest -m gpu`: the learner on CUDA against the CPU (docs: scaling and GPU);
#   2. scripts/benchmark_train.py with device=cuda and the GPU preset (target >= 20,000 env steps/s, docs: performance);
#   3. scripts/benchmark_envs.py on 16 cores (b/a and b/c of the batched env, docs: performance).
# Run `bash scripts/gpu_checks.sh` from the project root on the GPU machine; wheels it lacks and cannot
# download can be put in .whl/ beforehand (they are installed to /tmp/site). Outputs go to $OUT (or
# /tmp/gpu_checks), one file per check; each check has its own time limit, and a failing one does not
# stop the others. Leave MUJOCO_GL unset there.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
fi
OUT="${OUT:-/tmp/gpu_checks}"
mkdir -p "$OUT"
status=0

check() {  # check NAME SECONDS COMMAND...: runs COMMAND with a time limit, output to $OUT/NAME.txt
  local name=$1 seconds=$2
  shift 2
  echo "== $name: $*"
  local start=$SECONDS
  timeout "$seconds" "$@" > "$OUT/$name.txt" 2>&1
  local rc=$?
  tail -n 25 "$OUT/$name.txt"
  echo "== $name: exit $rc after $((SECONDS - start)) s"
  [ "$rc" -eq 0 ] || status=1
}

{ nvidia-smi; nproc; python3 -c "import torch, mujoco; print(torch.__version__, mujoco.__version__, torch.cuda.is_available())"; } \
  > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
check pytest_gpu 180 python3 -m pytest -q -m gpu -p no:cacheprovider tests/mlsh/test_gpu.py
check benchmark_train 240 python3 scripts/benchmark_train.py --device cuda --set +preset=gpu --iterations 2 --no-scaling
check benchmark_envs 120 python3 scripts/benchmark_envs.py --num-envs 256 --repeats 3
exit "$status"
