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

cargo test --workspace --release "$@"
# The io tests that need the readers and wheels set up above (ignored in a plain run).
cargo test --release -p ferrofold-io -- --ignored
