#!/usr/bin/env bash
# One GPU check, one run, under 8 minutes: build with CUDA (sm_90), op tests on CUDA, both benchmark
# suites, plots. Everything lands in $OUT (default ./out): device_check.log, results/<gpu>.csv, *.png.
#
#   bash benchmarks/device_check.sh                # on an H100/H200
#   bash benchmarks/device_check.sh --cpu-dry-run  # anywhere: tiny shapes, no build / CUDA stages
#
# Each stage runs under `timeout`, bounded by what is left of the overall budget (DEVICE_CHECK_BUDGET,
# seconds, default 450), so one hang loses one stage and the plots still get drawn.
# Wheels in .whl/ (peers and build tools, no network on the device) are installed first; see
# benchmarks/README.md for how to download them.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-./out}"
mkdir -p "$OUT/results"
LOG="$OUT/device_check.log"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
START=$(date +%s)
BUDGET="${DEVICE_CHECK_BUDGET:-450}"
RESERVE=40  # kept back for the plots and the summary

DRY=0
[ "${1:-}" = "--cpu-dry-run" ] && DRY=1
if [ $DRY = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "no CUDA device visible to torch: running the CPU dry run" | tee -a "$LOG"
    DRY=1
fi

log() { echo "[$(date +%T) +$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }

# stage NAME SECONDS CMD...: run CMD under timeout, within the budget; never aborts the script.
stage() {
    local name=$1 limit=$2; shift 2
    local left=$(( BUDGET - RESERVE - ($(date +%s) - START) ))
    [ "$name" = plot ] && left=$(( BUDGET - ($(date +%s) - START) ))
    [ $left -lt $limit ] && limit=$left
    if [ $limit -lt 10 ]; then log "SKIP  $name (budget spent)"; return 0; fi
    log "START $name (limit ${limit}s): $*"
    timeout --kill-after=10 "$limit" "$@" >>"$LOG" 2>&1
    local rc=$?
    if [ $rc = 124 ] || [ $rc = 137 ]; then log "TIMEOUT $name after ${limit}s"
    elif [ $rc != 0 ]; then log "FAIL  $name (rc=$rc)"
    else log "OK    $name"; fi
    return 0
}

log "device_check on $(hostname), dry run: $DRY, python: $PY, out: $OUT"
{ command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; } >>"$LOG" 2>&1
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'card:',
torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')" 2>&1 | tee -a "$LOG"
command -v nvcc >/dev/null && nvcc --version | tail -1 >>"$LOG"

BENCH=(-m benchmarks.bench_perspective_ce --out "$OUT/results")
STEP=(-m benchmarks.bench_mind_step --out "$OUT/results")
CONS=(-m benchmarks.bench_answer_consistency --out "$OUT/results")
if [ $DRY = 1 ]; then
    log "SKIP  wheels, CUDA build, op tests on CUDA (dry run)"
    ls .whl/*.whl >>"$LOG" 2>&1 || log "no wheels in .whl/"
    stage info 60 "$PY" -m mindcore.info
    stage bench-op 240 "$PY" "${BENCH[@]}" --device cpu --shapes tiny --tokens 64 --dtypes fp32 \
        --providers floor,eager,reference,cpu,triton,liger,cce --modes fwd+bwd --reps 2
    stage bench-cons 60 "$PY" "${CONS[@]}" --device cpu --shapes tiny --questions 2 --dtypes fp32 \
        --modes fwd+bwd --reps 2
    stage bench-step 180 "$PY" "${STEP[@]}" --device cpu --shapes tiny --quick --reps 1 --path-len 16
else
    if ls .whl/*.whl >/dev/null 2>&1; then
        stage wheels 60 "$PY" -m pip install --no-index --no-deps .whl/*.whl
    else
        log "no wheels in .whl/: liger / cce will be skipped if absent from the image"
    fi
    stage build 240 env MINDCORE_TARGET_DEVICE=cuda MINDCORE_CUDA_ARCHS=90 MAX_JOBS="${MAX_JOBS:-16}" \
        "$PY" -m pip install --no-build-isolation --no-deps -e .
    stage info 30 "$PY" -m mindcore.info
    stage op-tests 80 "$PY" -m pytest tests/ops -x -q
    # torch.compile of the eager reference only at the small head: it compiles per shape (~1 min each)
    stage bench-qwen0.5b 75 "$PY" "${BENCH[@]}" --device cuda --shapes qwen2.5-0.5b --tokens 8192 \
        --dtypes bf16 --modes fwd,fwd+bwd --reps 10
    stage bench-llama8b 75 "$PY" "${BENCH[@]}" --device cuda --shapes llama3.1-8b --tokens 16384 \
        --dtypes bf16 --modes fwd+bwd --reps 10 --providers floor,eager,reference,triton,cuda,liger,cce
    stage bench-qwen7b 60 "$PY" "${BENCH[@]}" --device cuda --shapes qwen2.5-7b --tokens 8192 \
        --dtypes bf16 --modes fwd+bwd --reps 10 --providers floor,eager,reference,triton,cuda,liger,cce
    stage bench-cons 30 "$PY" "${CONS[@]}" --device cuda --shapes llama3.1-8b --questions 8 \
        --dtypes bf16 --modes fwd,fwd+bwd --reps 10
    stage bench-step 100 "$PY" "${STEP[@]}" --device cuda --shapes smollm2-135m,qwen2.5-0.5b --reps 3
fi
stage plot 30 "$PY" -m benchmarks.plot "$OUT"/results/*.csv --out "$OUT"
log "done in $(( $(date +%s) - START ))s; rows:"
tail -n +1 "$OUT"/results/*.csv | cut -d, -f7-19 | column -s, -t 2>/dev/null | tee -a "$LOG" | tail -40
exit 0
