#!/usr/bin/env bash
# Runs every test, including those that need Python readers and the real weights.
# Sets up (once, idempotent) what they need: a venv with gemmi and Biopython to read our
# PDB/mmCIF output back, and the igfold/antiberty wheels from PyPI (weights are converted
# into $FERROFOLD_HOME, default ~/.cache/ferrofold, never into the repository).
set -euo pipefail
cd "$(dirname "$0")/.."

tools_dir="${FERROFOLD_TEST_TOOLS:-$PWD/target/test-tools}"
venv="$tools_dir/venv"
wheels="$tools_dir/wheels"
if ! "$venv/bin/python" -c "import gemmi, Bio" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        gemmi==0.7.5 biopython==1.88
fi
mkdir -p "$wheels"
if [ ! -f "$wheels/igfold-1.0.1-py3-none-any.whl" ] || [ ! -f "$wheels/antiberty-0.1.3-py3-none-any.whl" ]; then
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: \
        -d "$wheels" igfold==1.0.1 antiberty==0.1.3
fi
export FERROFOLD_CHECK_PYTHON="$venv/bin/python"
export FERROFOLD_WHEELS="$wheels"

# AlphaFold2's end-to-end test needs random parameters in the official layout (356 MiB,
# regenerated from the JAX reference's seeded generator; never stored in the repository).
af2_params="$tools_dir/af2/params_model_1_ptm.npz"
if [ ! -f "$af2_params" ]; then
    FERROFOLD_AF2_VENV="$tools_dir/af2-venv" bash tools/reference/af2/setup_venv.sh
    mkdir -p "$tools_dir/af2"
    "$tools_dir/af2-venv/bin/python" tools/reference/af2/make_params.py \
        "$tools_dir/af2/partial.npz" --model model_1_ptm --seed 0
    mv "$tools_dir/af2/partial.npz" "$af2_params"
fi
export FERROFOLD_AF2_PARAMS="$af2_params"

cargo test --workspace --release "$@"
bash kernels/ci/nvrtc_check.sh "$venv" # CUDA kernels compiled with NVRTC for sm_80/sm_90 (no GPU)
# The tests that need the readers, wheels and parameters set up above (ignored in a
# plain run).
cargo test --release -p ferrofold-io -- --ignored
cargo test --release --test af2_model -- --ignored
cargo test --release --test templates_search -- --ignored
# The CUDA backend inside the whole AlphaFold2 and IgFold models, its kernels emulated on the
# CPU (about three minutes on 2 cores), against the same JAX and PyTorch goldens.
cargo test --release --features cuda --test af2_cuda --test igfold_cuda_emulated \
    -- --include-ignored
