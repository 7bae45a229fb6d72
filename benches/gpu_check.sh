#!/usr/bin/env bash
# The CUDA backend on a GPU machine (issue 5), in two steps, because the device machine has no
# Rust toolchain:
#
#   bash benches/gpu_check.sh build   # here: binaries into target/gpu-check/ (about 5 MB)
#   bash benches/gpu_check.sh run     # there, with target/gpu-check carried along
#
# `run` (each step's output goes to the report, and a failing step does not stop the others):
#   1. every kernel compiled by NVRTC for the device's architecture, with registers and spills;
#   2. every op of the CUDA backend against the CPU backend on GPU 0 and on the emulated device
#      (FERROFOLD_REQUIRE_GPU=1: no GPU is a failure);
#   3. the fused ops timed on the CPU and the GPU (kernels/examples/gpu_ops.rs).
# The report goes to $OUT/gpu_check.md where the device tool sets OUT, else target/gpu-check/.
#
# The driver, NVRTC and cuBLAS are loaded at run time from the usual places; the image's
# /usr/local/cuda/lib64 and /usr/local/nvidia/lib64 are added to the loader's path.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=target/gpu-check

build() {
    set -e
    mkdir -p "$dir"
    cargo build --release -p ferrofold-kernels --features cuda --example gpu_ops
    cp target/release/examples/gpu_ops "$dir/"
    # The test binaries, by name, from cargo's build messages.
    cargo test --release -p ferrofold-kernels --features cuda --no-run --message-format=json |
        python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] in ("cuda_backend", "nvrtc_compile"):
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
' "$dir"
    ls -la "$dir"
}

run() {
    local report="${OUT:-$dir}/gpu_check.md"
    export LD_LIBRARY_PATH="/usr/local/nvidia/lib64:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
    if [ -z "${FERROFOLD_NVRTC_LIB:-}" ] && [ -d /usr/local/cuda/lib64 ]; then
        export FERROFOLD_NVRTC_LIB=/usr/local/cuda/lib64
    fi
    export FERROFOLD_REQUIRE_GPU=1 FERROFOLD_REQUIRE_NVRTC=1 RUST_BACKTRACE=1
    export FERROFOLD_NVRTC_REPORT="${OUT:-$dir}/nvrtc-kernels.md"
    local status=0
    step() {
        echo "## $1" >>"$report"
        echo '```' >>"$report"
        shift
        if ! "$@" >>"$report" 2>&1; then
            status=1
            echo "FAILED: $*" >>"$report"
        fi
        echo '```' >>"$report"
    }
    {
        echo "# GPU check $(date -u +%Y-%m-%dT%H:%MZ)"
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    } >"$report"
    step "NVRTC: every kernel" "$dir/nvrtc_compile" --nocapture
    step "CUDA backend against the CPU backend" "$dir/cuda_backend" --nocapture --test-threads 1
    step "Fused ops timed" "$dir/gpu_ops" 64 128 256 512
    cat "$report"
    return $status
}

case "${1:-}" in
build) build ;;
run) run ;;
*)
    echo "usage: bash benches/gpu_check.sh build|run" >&2
    exit 2
    ;;
esac
