#!/usr/bin/env bash
# The search issue's GPU checks, for a lent GPU machine (its python3 has torch but not optuna), run
# from the repository root:
#
#   bench/gpu_checks.sh jobs     the CUDA tests, then several trials at once (N = 1, 2, 4, 8)  ~3 min
#   bench/gpu_checks.sh search   the bare command's default plan (8 minutes on a GPU), timed  ~9 min
#
# Each step's output goes to $OUT (default runs/gpu): jobs.out, or search.out, best.yaml and the
# gzipped journal.  optuna and what it needs that the machine lacks travel as wheels in .whl/ (made
# here with `pip download`, see bench/README.md "Several trials at once on one GPU") and are installed
# under /tmp/site first.  DEVICE=cpu SMALL=1 PY=.venv/bin/python runs the same steps in minutes on a
# CPU, to try the script before a GPU is at hand.
set -uo pipefail
step=${1:-}
if [ "$step" != jobs ] && [ "$step" != search ]; then
    echo "error: step: expected jobs or search, got '$step' (usage: bench/gpu_checks.sh jobs|search)" >&2
    exit 2
fi
OUT=${OUT:-runs/gpu}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
mkdir -p "$OUT"
if [ -d .whl ] && ! "$PY" -c "import optuna, optuna_dashboard" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
"$PY" -c "import torch; print('torch', torch.__version__, 'on',
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')" | tee "$OUT/$step.out"
rc=0

case $step in
jobs)
    "$PY" -m pytest -q -p no:cacheprovider tests/test_trainer_cuda.py 2>&1 | tee -a "$OUT/jobs.out" || rc=1
    if [ "${SMALL:-0}" = 1 ]; then set -- --jobs 1,2 --epochs 2 --train-limit 256; else set --; fi   # N = 1,2,4,8, 3 epochs
    "$PY" bench/bench_jobs.py --device "$DEVICE" "$@" 2>&1 | tee -a "$OUT/jobs.out" || rc=1
    ;;
search)
    runs=$(mktemp -d)
    if [ "${SMALL:-0}" = 1 ]; then set -- --time 90s; else set --; fi
    TIMEFORMAT='real %R'
    { time "$PY" -m search.run --budget 20000 --device "$DEVICE" --storage "$runs/cnnsearch.log" --out-dir "$runs" \
        --artifact-dir "$runs/artifacts" "$@" >> "$OUT/search.out" 2>&1; echo "exit $?" >> "$OUT/search.out"; } \
        2>> "$OUT/search.out"
    grep -q "^exit 0$" "$OUT/search.out" || rc=1
    cp "$runs/budget-20000/best.yaml" "$OUT/best.yaml" || rc=1
    gzip -9c "$runs/cnnsearch.log" > "$OUT/cnnsearch.log.gz" || rc=1
    rm -rf "$runs"
    tail -n 12 "$OUT/search.out"
    ;;
esac
exit $rc
