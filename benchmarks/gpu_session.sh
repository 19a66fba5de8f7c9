#!/usr/bin/env bash
# Issue 5's GPU checks as one prepared lease (about 8 minutes on an H200, start not counted):
#
#   run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=580)
#
# The device image has torch, scikit-learn, pandas and matplotlib but not skorch: put its
# wheel in the git-ignored .whl/ first (benchmarks/README.md, "On a lent GPU"). Each step has
# its own time limit, writes its JSON to $OUT (at most 8 files come back) and prints a
# one-line summary, so a step that runs over costs only itself. Order = priority.
set -u
OUT=${OUT:-/tmp/goldisk_gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
fi
python3 -c "import skorch, torch; print('torch', torch.__version__, torch.cuda.get_device_name())" \
    || { echo "skorch or CUDA missing: see benchmarks/README.md"; exit 1; }
step() {  # step SECONDS NAME COMMAND...: run with a limit, say how it ended
    local limit=$1 name=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - t0)) s (limit $limit s)"
    tail -n 6 "$OUT/$name.log"
}
# 5.6: float64 on the GPU against the CPU reference, both engines (~1 min)
step 100 correctness python3 benchmarks/gpu_correctness.py --out "$OUT/gpu_correctness.json"
# 5.3: ResNet-18, d = 1,000, batch 128: floors, then 1 and 16 directions per block, each with
# the whole batch and micro-batches of 64 (peak = max_memory_allocated)
step 330 resnet python3 benchmarks/bench_scale.py --device cuda --only scale --kinds sparse \
    --chunks 1 16 --job-timeout 90 --out "$OUT/bench_scale_cuda_resnet.json"
# 5.2: subspace-training overhead at D = 1,047,210
step 60 overhead python3 benchmarks/bench_scale.py --device cuda --only overhead --repeats 10 \
    --out "$OUT/bench_scale_cuda_overhead.json"
# 5.1: Fort's Figure-4 sweep (sparse), and one configuration by each engine
step 80 sweep python3 benchmarks/bench_sweep.py --device cuda --projection sparse \
    --peak-tflops 67 --out "$OUT/bench_sweep_fig4_sparse_cuda.json"
