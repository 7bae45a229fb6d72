#!/usr/bin/env bash
# The CUDA backend on a GPU machine (issue 5), in two steps, because the device machine has no
# Rust toolchain:
#
#   bash benches/gpu_check.sh build   # here: binaries, parameter key list and AF2 features
#                                     # into target/gpu-check/ (about 12 MB), wheels into .whl/
#   bash benches/gpu_check.sh run     # there, with target/gpu-check and .whl carried along
#
# `run` (each step's output goes to the report, with a time limit; a failing step does not stop
# the others):
#   1. every kernel compiled by NVRTC for the device's architecture, with registers and spills;
#   2. every op of the CUDA backend against the CPU backend on GPU 0, in fp32 and in bf16
#      storage (FERROFOLD_REQUIRE_GPU=1: no GPU is a failure);
#   3. the random model_1_ptm parameters made with numpy alone (make_params.py --shapes-from:
#      the same values as tools/test.sh makes), then AF2 model_1_ptm on GPU 0 against the JAX
#      golden, and in bf16 storage against the CPU (tests/af2_cuda.rs);
#   4. the fused ops timed on the CPU and the GPU (kernels/examples/gpu_ops.rs), one AF2
#      iteration at L=256 with FERROFOLD_CUDA_PROFILE=1 and FERROFOLD_PROFILE=1 (time in
#      copies, kernels and GEMMs, and per op; the default precision, bf16 storage), and L=256 predicted on the GPU in fp32, tf32,
#      tf32 with FERROFOLD_CUDA_ATTENTION=tf32-tensor-cores, bf16 (bf16 storage), and bf16 with
#      FERROFOLD_CUDA_ATTENTION=bf16-tensor-cores (the tensor-core kernel that reads and
#      writes bf16), and on the CPU, each compared with the GPU's fp32
#      (benches/compare_predictions.py);
#   5. AF2 model_1_ptm, single sequence, 4 iterations, ferrofold on the GPU (each of
#      GPU_CHECK_PRECISIONS, default "bf16 bf16tc fp32 tf32 tf32tc", the default precision
#      first in case the device time runs out; tf32tc is tf32 with
#      FERROFOLD_CUDA_ATTENTION=tf32-tensor-cores, bf16tc bf16 with bf16-tensor-cores) and JAX
#      on the GPU (benches/af2_vs_jax.py
#      --device cuda; GPU_CHECK_REUSE_JAX=JSON takes JAX's figures from an earlier run, e.g.
#      benches/results/af2_jax_h200_2026-11-29.json for an H200 (L = 256 and 512),
#      GPU_CHECK_NO_JAX=1 leaves JAX out), and with GPU_CHECK_MEMORY_LENGTHS the longest single
#      sequences with --recycles 0 (--memory-check).
# GPU_CHECK_LENGTHS (default "256 512 1024") chooses step 5's lengths; GPU_CHECK_SPEED_LIMIT
# and GPU_CHECK_MEMORY_LIMIT its steps' time limits in seconds. The report goes to
# $OUT/gpu_check.md where the device tool sets OUT, else target/gpu-check/.
#
# The driver, NVRTC and cuBLAS are loaded at run time. cudarc looks for unversioned names
# (libnvrtc.so, libcublas.so) or CUDA 12's, so `run` links whatever versions the machine has
# into one folder at the front of LD_LIBRARY_PATH.
set -uo pipefail
cd "$(dirname "$0")/.."
dir=target/gpu-check

build() {
    set -e
    mkdir -p "$dir/features"
    cargo build --release -p ferrofold-kernels --features cuda --example gpu_ops
    cp target/release/examples/gpu_ops "$dir/"
    cargo build --release --features cuda
    cp target/release/ferrofold "$dir/"
    # The test binaries, by name, from cargo's build messages.
    { cargo test --release -p ferrofold-kernels --features cuda --no-run --message-format=json
      cargo test --release --features cuda --test af2_cuda --no-run --message-format=json; } |
        python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") \
            and m["target"]["name"] in ("cuda_backend", "nvrtc_compile", "af2_cuda"):
        shutil.copy(m["executable"], sys.argv[1] + "/" + m["target"]["name"])
' "$dir"
    cp /work/shared/reference/af2-param-keys-model_1.txt "$dir/"
    # What the JAX reference needs beyond the device image's jax 0.11 (tools/reference/af2/
    # jax_compat.py bridges the model code to it), carried as wheels in .whl/ (git-ignored).
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >>.git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        -d .whl alphafold-colabfold==2.3.1 dm-haiku==0.0.17 dm-tree==0.1.10 \
        immutabledict==4.3.1 jmp==0.0.4 ml-collections==1.1.0 safetensors==0.4.5
    # Features for step 5: made here, where the reference venv is.
    local py="${FERROFOLD_AF2_VENV:-target/test-tools/af2-venv}/bin/python"
    for L in 256 512 1024 2048; do
        [ -f "$dir/features/ss${L}_E4.npz" ] ||
            "$py" benches/af2_vs_jax.py --_write-features "$dir/features/ss${L}_E4.npz" \
                "$L" 1 0 0 3 1 >/dev/null
    done
    for L in 2048 4096; do
        [ -f "$dir/features/ss${L}_E1.npz" ] ||
            "$py" benches/af2_vs_jax.py --_write-features "$dir/features/ss${L}_E1.npz" \
                "$L" 1 0 0 0 1 >/dev/null
    done
    # Deflated: mostly zeros (padding rows, an empty template), and the working tree that
    # travels to the device machine is limited to 64 MiB.
    python3 - "$dir"/features/*.npz <<'PY'
import os, sys, zipfile
for path in sys.argv[1:]:
    with zipfile.ZipFile(path) as z:
        if all(i.compress_type == zipfile.ZIP_DEFLATED for i in z.infolist()):
            continue
        members = [(i.filename, z.read(i)) for i in z.infolist()]
    with zipfile.ZipFile(path + ".tmp", "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    os.replace(path + ".tmp", path)
PY
    strip "$dir"/gpu_ops "$dir"/ferrofold "$dir"/cuda_backend "$dir"/nvrtc_compile "$dir"/af2_cuda
    ls -l "$dir"
    du -sh "$dir"
}

# Links the CUDA libraries cudarc loads by name into one folder.
link_cuda_libraries() {
    local links=/tmp/ferrofold-cuda-libs
    mkdir -p "$links"
    for lib in nvrtc nvrtc-builtins cublas cublasLt; do
        local found
        # Not the link-time stubs: they load, and answer every call with garbage.
        found=$(find /usr/local/cuda*/ /usr/lib/x86_64-linux-gnu /opt -name "lib$lib.so*" \
            -type f -not -path '*/stubs/*' 2>/dev/null | sort -V | tail -1)
        if [ -n "$found" ]; then
            ln -sf "$found" "$links/lib$lib.so"
            echo "lib$lib.so -> $found"
            export LD_LIBRARY_PATH="$(dirname "$found"):${LD_LIBRARY_PATH:-}"
        else
            echo "lib$lib.so: not found"
        fi
    done
    export LD_LIBRARY_PATH="$links:/usr/local/nvidia/lib64:${LD_LIBRARY_PATH:-}"
    export FERROFOLD_NVRTC_LIB="$links/libnvrtc.so"
}

# One input predicted on the GPU in fp32, tf32 and bf16 and on the CPU; each compared with the
# GPU's fp32 (CA RMSD, largest CA deviation, largest pLDDT difference).
compare_precisions() {
    local params=$1 features=$2 name
    name=$(basename "$features" .npz)
    for run in cuda:fp32 cuda:tf32 cuda:bf16 cpu:fp32; do
        "$dir/ferrofold" predict --model model_1_ptm --params "$params" --features "$features" \
            --device "${run%%:*}" --precision "${run##*:}" --out "/tmp/precision-${run/:/-}" \
            2>&1 | tail -1 || return 1
    done
    for precision in tf32 bf16; do
        FERROFOLD_CUDA_ATTENTION=$precision-tensor-cores "$dir/ferrofold" predict \
            --model model_1_ptm --params "$params" --features "$features" --device cuda \
            --precision $precision --out "/tmp/precision-cuda-${precision}tc" 2>&1 | tail -1 ||
            return 1
    done
    for run in cuda-tf32 cuda-tf32tc cuda-bf16 cuda-bf16tc cpu-fp32; do
        echo -n "$run vs cuda-fp32: "
        python3 benches/compare_predictions.py /tmp/precision-cuda-fp32 "/tmp/precision-$run" \
            "$name" || return 1
    done
}

run() {
    local out="${OUT:-$dir}"
    local report="$out/gpu_check.md"
    local params=/tmp/ferrofold-af2/params_model_1_ptm.npz
    export FERROFOLD_REQUIRE_GPU=1 FERROFOLD_REQUIRE_NVRTC=1 RUST_BACKTRACE=1
    export FERROFOLD_NVRTC_REPORT="$out/nvrtc-kernels.md"
    local status=0
    step() {
        local limit=$1 title=$2
        shift 2
        echo "## $title" >>"$report"
        echo '```' >>"$report"
        local t0=$SECONDS
        if ! timeout "$limit" "$@" >>"$report" 2>&1; then
            status=1
            echo "FAILED (or over ${limit} s): $*" >>"$report"
        fi
        echo "(${title}: $((SECONDS - t0)) s)" >>"$report"
        echo '```' >>"$report"
        echo "$title: $((SECONDS - t0)) s" >&2
    }
    {
        echo "# GPU check $(date -u +%Y-%m-%dT%H:%MZ)"
        echo '```'
        nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
        nvcc --version | tail -2
        link_cuda_libraries
        python3 -c 'import jax; print("jax", jax.__version__, jax.devices())' 2>&1 | tail -1
        echo '```'
    } >"$report" 2>&1
    link_cuda_libraries >/dev/null
    step 120 "NVRTC: every kernel" "$dir/nvrtc_compile" --nocapture
    step 180 "CUDA backend against the CPU backend (GPU 0)" env FERROFOLD_GPU_ONLY=1 \
        "$dir/cuda_backend" backend:: --nocapture --test-threads 1
    step 60 "Random model_1_ptm parameters (numpy)" python3 \
        tools/reference/af2/make_params.py "$params" --model model_1_ptm --seed 0 \
        --shapes-from "$dir/af2-param-keys-model_1.txt"
    step 240 "AF2 model_1_ptm on GPU 0 against the JAX golden" env CARGO_MANIFEST_DIR="$PWD" \
        FERROFOLD_AF2_PARAMS="$params" "$dir/af2_cuda" gpu_0 --include-ignored --nocapture
    step 180 "Fused ops timed" "$dir/gpu_ops" 256 512 1024
    step 120 "Where the time goes: AF2 single sequence L=256, one iteration" env \
        FERROFOLD_CUDA_PROFILE=1 FERROFOLD_PROFILE=1 "$dir/ferrofold" predict --model model_1_ptm --params "$params" \
        --features "$dir/features/ss256_E4.npz" --recycles 0 --device cuda --out /tmp/profile256
    step 240 "AF2 single sequence L=256, 4 iterations: the GPU's precisions and the CPU" \
        compare_precisions "$params" "$dir/features/ss256_E4.npz"
    [ -d .whl ] && python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
    # JAX's figures of the same lengths can come from an earlier run's JSON (the reference
    # does not change when ferrofold does); each precision after the first reuses the first's.
    local reuse="${GPU_CHECK_REUSE_JAX:-}" first=1
    # tf32tc / bf16tc: that precision with attention's products on tensor cores too (the fused
    # kernel).
    for precision in ${GPU_CHECK_PRECISIONS:-bf16 bf16tc fp32 tf32 tf32tc}; do
        local json="$out/af2_gpu_$precision.json" attention=gemms
        case $precision in
            *tc) precision=${precision%tc} attention=$precision-tensor-cores ;;
        esac
        step "${GPU_CHECK_SPEED_LIMIT:-600}" \
            "AF2 single sequence, 4 iterations, on GPU 0: ferrofold --precision $precision (attention: $attention) and JAX" \
            env FERROFOLD_CUDA_ATTENTION=$attention \
            python3 benches/af2_vs_jax.py --device cuda --single-sequence \
            --binary "$dir/ferrofold" --python python3 --params "$params" \
            --workdir "$dir/features" --threads 16 --jax-runs 1 --precision "$precision" \
            --lengths ${GPU_CHECK_LENGTHS:-256 512 1024} --json "$json" \
            ${reuse:+--reuse-jax "$reuse"} $([ "${GPU_CHECK_NO_JAX:-0}" = 1 ] && echo --no-jax)
        [ "$first" = 1 ] && [ -f "$json" ] && reuse="$json"
        first=0
    done
    if [ -n "${GPU_CHECK_MEMORY_LENGTHS:-}" ]; then
        step "${GPU_CHECK_MEMORY_LIMIT:-600}" "AF2 single sequence, one iteration, longest" \
            python3 benches/af2_vs_jax.py --device cuda --binary "$dir/ferrofold" \
            --params "$params" --workdir "$dir/features" --threads 16 \
            --memory-check $GPU_CHECK_MEMORY_LENGTHS
    fi
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
