#!/usr/bin/env bash
# One GPU check, one call, ~6 minutes including the build: CUDA build (sm_90), float64 correctness of
# every GPU provider (benchmarks/gpu_check.py), compute-sanitizer where the runtime allows it, a
# torch.profiler kernel table, GPU clocks, and benchmark rows for every provider and peer at the
# Llama-3-8B (N=16384) and Qwen2.5-0.5B (N=8192) heads in bf16. Everything lands in $OUT (default
# ./out): device_check.log, gpu_check.csv, profile_*.txt, results/<gpu>.csv, *.png.
#
#   bash benchmarks/device_check.sh                # on an H100/H200 (fails loudly without CUDA torch)
#   bash benchmarks/device_check.sh --cpu-dry-run  # anywhere: the same stages on the CPU, tiny shapes
#
# Each stage runs under `timeout`, bounded by what is left of the overall budget (DEVICE_CHECK_BUDGET,
# seconds, default 360), so one hang loses one stage and the plots still get drawn. No network:
# wheels in .whl/ (peers, build tools; see benchmarks/README.md) install with PIP_NO_INDEX=1.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-./out}"
mkdir -p "$OUT/results"
LOG="$OUT/device_check.log"
: >"$LOG"
# The device image has python3 (3.12, CUDA torch); a local .venv wins where one exists.
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}"
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1
START=$(date +%s)
BUDGET="${DEVICE_CHECK_BUDGET:-360}"
RESERVE=25  # kept back for the plots and the summary
FAILED=0

DRY=0
[ "${1:-}" = "--cpu-dry-run" ] && DRY=1
log() { echo "[$(date +%T) +$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
if [ $DRY = 0 ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>>"$LOG"; then
    log "ERROR: $PY has no CUDA torch or sees no GPU ($("$PY" -c 'import torch; print(torch.__version__)' 2>&1));"
    log "       run on the device machine, or pass --cpu-dry-run"
    exit 1
fi

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
    if [ $rc = 124 ] || [ $rc = 137 ]; then log "TIMEOUT $name after ${limit}s"; FAILED=$((FAILED + 1))
    elif [ $rc != 0 ]; then log "FAIL  $name (rc=$rc)"; FAILED=$((FAILED + 1))
    else log "OK    $name"; fi
    return 0
}

log "device_check on $(hostname), dry run: $DRY, python: $PY, out: $OUT, budget: ${BUDGET}s"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu \
        --format=csv >>"$LOG" 2>&1
fi
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__,
'card:', torch.cuda.get_device_name() if torch.cuda.is_available() else 'none')" 2>&1 | tee -a "$LOG"
command -v nvcc >/dev/null && nvcc --version | tail -1 >>"$LOG"

BENCH=(-m benchmarks.bench_perspective_ce --out "$OUT/results")
PEERS=floor,eager,torch-lce,triton,cublas,cuda,liger,liger-mean,cce
if [ $DRY = 1 ]; then
    log "SKIP  wheels, CUDA build, compute-sanitizer (dry run)"
    stage info 60 "$PY" -m mindcore.info
    stage correctness 150 "$PY" -m benchmarks.gpu_check --device cpu --out "$OUT"
    stage profile 60 "$PY" -m benchmarks.gpu_check --device cpu --profile --providers cpu,cublas --out "$OUT"
    stage bench-op 180 "$PY" "${BENCH[@]}" --device cpu --shapes tiny --tokens 64 --dtypes fp32,bf16 \
        --providers floor,eager,torch-lce,cpu,triton,cublas,liger,liger-mean,cce --modes fwd+bwd --reps 1
else
    if ls .whl/*.whl >/dev/null 2>&1; then
        stage wheels 40 "$PY" -m pip install --no-index --no-deps .whl/*.whl
    else
        log "no wheels in .whl/: liger / cce are skipped if absent from the image"
    fi
    stage build 150 env MINDCORE_TARGET_DEVICE=cuda MINDCORE_CUDA_ARCHS=90 MAX_JOBS="${MAX_JOBS:-16}" \
        "$PY" -m pip install --no-index --no-build-isolation --no-deps -e .
    stage info 20 "$PY" -m mindcore.info
    stage correctness 70 "$PY" -m benchmarks.gpu_check --out "$OUT"
    if command -v compute-sanitizer >/dev/null; then
        # Refused on some device runtimes: the log says which; a refusal is not a kernel bug.
        stage memcheck 30 compute-sanitizer --tool memcheck --error-exitcode 3 "$PY" -m benchmarks.gpu_check \
            --quick --dtypes bf16 --out "$OUT/sanitizer"
        stage racecheck 30 compute-sanitizer --tool racecheck --error-exitcode 3 "$PY" -m benchmarks.gpu_check \
            --quick --dtypes bf16 --providers cublas,triton --out "$OUT/sanitizer"
    else
        log "SKIP  compute-sanitizer (not on PATH)"
    fi
    stage profile 25 "$PY" -m benchmarks.gpu_check --profile --out "$OUT"
    stage bench-qwen0.5b 50 "$PY" "${BENCH[@]}" --device cuda --shapes qwen2.5-0.5b --tokens 8192 \
        --dtypes bf16 --modes fwd,fwd+bwd --reps 10 --providers "$PEERS"
    stage bench-llama8b 70 "$PY" "${BENCH[@]}" --device cuda --shapes llama3.1-8b --tokens 16384 \
        --dtypes bf16 --modes fwd+bwd --reps 10 --providers "$PEERS"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=clocks.sm,clocks.mem,temperature.gpu,power.draw \
        --format=csv >>"$LOG" 2>&1
fi
stage plot 20 "$PY" -m benchmarks.plot "$OUT"/results/*.csv --out "$OUT"
log "done in $(( $(date +%s) - START ))s, $FAILED stage(s) failed or timed out; rows:"
tail -n +1 "$OUT"/results/*.csv | cut -d, -f7-19 | column -s, -t 2>/dev/null | tee -a "$LOG" | tail -40
[ $FAILED = 0 ]
