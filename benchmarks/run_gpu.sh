#!/usr/bin/env bash
# The GPU benchmark run, in one command: the Triton Normal KL check, every benchmark in quick
# mode on CUDA, and the one-GPU DDP throughput; tables, plots and a log go to OUT_DIR.
#
#     bash benchmarks/run_gpu.sh OUT_DIR [SECONDS_PER_SCRIPT]
#
# (DEVICE=cpu runs the same on the CPU, to try the script where there is no GPU.)
#
# Each part runs under its own time limit and a failing part does not stop the others, so that a
# short lease on a GPU machine always brings back what finished. probgen is used from this
# checkout (PYTHONPATH), with the machine's own torch.
set -u
out=${1:?usage: run_gpu.sh OUT_DIR [SECONDS_PER_SCRIPT]}
limit=${2:-150}
device=${DEVICE:-cuda}
here=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
log="$out/log.txt"
cd "$here" || exit 1
{
  date -u
  [ "$device" = cuda ] && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  python3 -c "import sys, torch, pyro; print(sys.version.split()[0], torch.__version__, pyro.__version__, torch.cuda.is_available())"
} 2>&1 | tee "$log"
run() {
  local name=$1
  shift
  echo "== $name: $*" | tee -a "$log"
  local t0=$SECONDS
  timeout $((limit + 30)) "$@" 2>&1 | tee -a "$log"
  echo "== $name: exit ${PIPESTATUS[0]}, $((SECONDS - t0)) s" | tee -a "$log"
}
run triton_check python3 benchmarks/gpu_triton_check.py --device "$device"
for name in kl_normal_speed kl_kernels vae_step kl_analytic_vs_mc elbo_gradients kl_closed_forms; do
  run "$name" python3 benchmarks/run_all.py --device "$device" --quick --out-dir "$out" --only "$name" \
    --timeout "$limit"
done
run ddp_throughput python3 benchmarks/ddp_throughput.py --device "$device" --nproc 1 \
  --batch 256,4096 --steps 50 --warmup 10 --rounds 2 --timeout 60 --out "$out/ddp_throughput.md"
