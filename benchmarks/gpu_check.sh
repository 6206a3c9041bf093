#!/usr/bin/env bash
# What a GPU machine measures, in one run of under 10 minutes (benchmarks/gpu_check.sh from the
# repository root; PYTHON=... to choose the interpreter, which needs torch with CUDA and the
# project's dependencies; nothing is downloaded):
#   1. the smoke profile's claims on cuda, from an empty cache (the harness end to end on a GPU);
#   2. the population speed-up (benchmarks/bench_engine.py) on cuda, 8 seeds of the cpu profile's MLP
#      (width 128, batch 64), against the loop on cuda and on this machine's CPU;
#   3. the Hessian-vector-product and loss-surface benchmarks (benchmarks/bench_geometry.py) on cuda;
#   4. `lossscape plan --profile gpu` with this GPU probed (the plan's real figures, not the
#      nominal ones), then a 5-minute slice of the gpu profile: the budget and timing grids of
#      the MNIST-1D setting, whose planned time is printed beside the measured one.
# Each step prints its own figures and its wall time; a step that fails is reported and the
# others still run, and the script exits non-zero at the end if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
work=$(mktemp -d)
failed=()

step() {  # step NAME LIMIT_S COMMAND...: run it under a time limit, print its wall time
  local name=$1 limit=$2; shift 2
  echo; echo "=== gpu_check: $name (limit ${limit} s)"
  local t0=$SECONDS
  timeout "$limit" "$@"; local rc=$?
  echo "=== gpu_check: $name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || failed+=("$name (exit $rc)")
}

"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('gpu_check:', torch.__version__, torch.cuda.get_device_name(0))" \
  || { echo "gpu_check: needs a CUDA device and torch with CUDA" >&2; exit 2; }

step "smoke claims on cuda" 150 "$PY" -m pytest claims --profile smoke --device cuda --report-only -q \
  -p no:cacheprovider --cache-dir "$work/smoke" --report-dir "$work/smoke-report"
step "population speed-up, the cpu profile's MLP" 60 "$PY" benchmarks/bench_engine.py --device cuda --width 128 --epochs 2 --repeats 2
step "HVP and surface benchmarks" 90 "$PY" benchmarks/bench_geometry.py --device cuda --grid 21
step "plan of the gpu profile, probed" 60 "$PY" -m lossscape.cli plan --profile gpu --cache-dir "$work/gpu"
# The slice: its plan first (the cached column is 0 here), then the claims that use those grids.
step "gpu slice: budget and timing grids of mnist1d-conv1d" 300 "$PY" -m pytest claims -m gpu -q \
  -p no:cacheprovider --report-only --cache-dir "$work/gpu" --report-dir "$work/gpu-report" \
  -k "mnist1d-conv1d and (BS-1 or BS-3)"
"$PY" -m lossscape.cli plan --profile gpu --cache-dir "$work/gpu" | grep -E "mnist1d-conv1d/(budget|timing) |^plan "
# What those grids' runs took, from the cache (population runs share one clock: counted once).
"$PY" - "$work/gpu" <<'PY'
import json, sys
from pathlib import Path
seen, total = set(), 0.0
for meta in Path(sys.argv[1]).glob("*/run.json"):
    m = json.loads(meta.read_text())
    key = (json.dumps({k: v for k, v in m["config"].items() if k != "seed"}, sort_keys=True), m["total_time_s"])
    if key not in seen:
        seen.add(key)
        total += m["total_time_s"]
print(f"gpu_check: the slice's runs trained in {total:.1f} s (sum over trainings, from their cache entries)")
PY

echo
if [ ${#failed[@]} -gt 0 ]; then
  echo "gpu_check: FAILED: ${failed[*]}"; exit 1
fi
echo "gpu_check: all steps passed"
