#!/usr/bin/env bash
# Compiles every CUDA kernel with NVRTC for sm_80 and sm_90 (no GPU needed) and prints the
# per-kernel report (PTX size, registers, spills); the same test run executes the kernels'
# source on the CPU against the CPU backend (kernels/tests/cuda_backend, needs c++). Called by tools/test.sh with its test venv:
#   bash kernels/ci/nvrtc_check.sh target/test-tools/venv
# Installs PyPI's NVRTC wheel into that venv (once) and points the test at the library with
# FERROFOLD_NVRTC_LIB; FERROFOLD_REQUIRE_NVRTC=1 makes a missing library a failure, not a skip.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv="${1:?usage: nvrtc_check.sh VENV}"
nvrtc_version=12.9.86
lib_dir() {
    "$venv/bin/python" - <<'PY'
import importlib.util, os, sys
spec = importlib.util.find_spec("nvidia.cuda_nvrtc")
if spec is None:
    sys.exit(1)
print(os.path.join(list(spec.submodule_search_locations)[0], "lib"))
PY
}
if ! dir="$(lib_dir 2>/dev/null)" || [ ! -e "$dir/libnvrtc.so.12" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "nvidia-cuda-nvrtc-cu12==$nvrtc_version"
    dir="$(lib_dir)"
fi
export FERROFOLD_NVRTC_LIB="$dir"
export FERROFOLD_REQUIRE_NVRTC=1
cargo test --release -p ferrofold-kernels --features cuda -- --nocapture
