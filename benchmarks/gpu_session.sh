#!/usr/bin/env bash
# Issue 5's GPU checks as one prepared lease (about 8-9 minutes on an H200, start not counted):
#
#   run(command="GOLDISK_COMMIT=<git rev-parse HEAD> bash benchmarks/gpu_session.sh",
#       carry=[".whl"], timeout_s=580)
#
# Order = priority. Each step has its own time limit, clamped so that the whole script ends
# by BUDGET_S (560 s, under run()'s 580); every script saves its JSON after each row, so a
# step cut short keeps what it measured. $OUT gets one JSON per step plus session.log (all
# the output), 5 files (at most 8 come back). No step needs skorch; its wheel in .whl/
# (benchmarks/README.md, "On a lent GPU") is installed when present.
set -u
OUT=${OUT:-/tmp/goldisk_gpu}
mkdir -p "$OUT"
LOG="$OUT/session.log"
END=$((SECONDS + ${BUDGET_S:-560}))
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
echo "commit: ${GOLDISK_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}" | tee -a "$LOG"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
    2>&1 | tee -a "$LOG" | grep -q '^torch' || { echo "no CUDA device: nothing to measure"; exit 1; }
python3 -c "import skorch" 2>/dev/null || echo "note: skorch not installed (no step needs it)"
step() {  # step SECONDS NAME COMMAND...: run within min(SECONDS, time left), say how it ended
    local want=$1 name=$2; shift 2
    local left=$((END - SECONDS))
    local limit=$((want < left ? want : left))
    if [ "$limit" -lt 20 ]; then echo "== $name: skipped, $left s left"; return; fi
    local t0=$SECONDS part=/tmp/goldisk_step_$name.log
    timeout -k 5 "$limit" "$@" >"$part" 2>&1
    local rc=$?
    { echo "===== $name: exit $rc after $((SECONDS - t0)) s (limit $limit s)"; cat "$part"; } >>"$LOG"
    echo "== $name: exit $rc after $((SECONDS - t0)) s (limit $limit s)"
    grep '^summary:' "$part" || tail -n 3 "$part"
}
# 5.6: float64 on the GPU against the CPU reference, both engines (~1 min)
step 110 correctness python3 benchmarks/gpu_correctness.py --out "$OUT/gpu_correctness.json"
# 5.3: ResNet-18, d = 1,000, batch 128: forward-backward (the budget), then goldisk with 1 and
# 16 directions per block, each with the whole batch and micro-batches of 64 (peak =
# max_memory_allocated), then the bare-HVP floors; rows stop starting at the deadline
step 300 resnet python3 benchmarks/bench_scale.py --device cuda --only scale --kinds sparse \
    --chunks 1 16 --job-timeout 80 --deadline 285 --out "$OUT/bench_scale_cuda_resnet.json"
# 5.2: subspace-training overhead at D = 1,047,210
step 60 overhead python3 benchmarks/bench_scale.py --device cuda --only overhead --repeats 10 \
    --out "$OUT/bench_scale_cuda_overhead.json"
# 5.1: Fort's Figure-4 sweep (sparse), and one configuration by each engine
step 80 sweep python3 benchmarks/bench_sweep.py --device cuda --projection sparse \
    --peak-tflops 67 --out "$OUT/bench_sweep_fig4_sparse_cuda.json"
echo "== done after $SECONDS s; files in $OUT: $(ls "$OUT" | wc -l)"
