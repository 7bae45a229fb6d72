#!/usr/bin/env bash
# Build the Python reference environment for the AlphaFold2 (v2.3) monomer model, CPU only.
#
#   bash tools/reference/af2/setup_venv.sh     # venv at ${FERROFOLD_AF2_VENV:-tools/reference/af2/.venv}
#
# Idempotent: a venv whose stamp matches this script's pins is left alone (FORCE=1 rebuilds).
# Everything comes from PyPI with the ordinary pip client:
#   * jax/jaxlib 0.4.26 (CPU wheels; the version the shared notes used), dm-haiku 0.0.12,
#     numpy 1.26.4 (jaxlib 0.4.26 predates numpy 2), dm-tree, ml-collections, absl-py,
#     immutabledict, scipy, safetensors; biopython 1.81 for alphafold.data.mmcif_parsing / templates
#     (template_features_ref.py; the last Biopython line with Bio.Data.SCOPData).
#   * The model code: `alphafold-colabfold==2.3.1` with --no-deps. The official `alphafold` on PyPI
#     is only 2.0.0; alphafold-colabfold 2.3.1 is ColabFold's fork of DeepMind v2.3.1 and is the
#     closest to it (later 2.3.x releases add Pallas kernels, bucketing, fp8, and import
#     `colabfold_kernels`). Its declared deps (tensorflow-cpu, docker, pandas, biopython, chex) are
#     not needed by alphafold.model.modules/folding and are not installed.
#   The fork's *defaults* differ from the official monomer config; the scripts here never use the
#   fork's config as is but call af2_ref.official_model_config(), which sets
#   fuse_projection_weights=False on all (evoformer, extra-MSA, template) triangle multiplications
#   and global_config.bfloat16=False (see README.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
VENV="${FERROFOLD_AF2_VENV:-$ROOT/tools/reference/af2/.venv}"
PYTHON="${PYTHON:-python3}"

PIP_DEPS=(
    "jax==0.4.26"
    "jaxlib==0.4.26"
    "dm-haiku==0.0.12"
    "numpy==1.26.4"
    "scipy==1.13.1"
    "ml_dtypes==0.4.1"
    "opt_einsum==3.3.0"
    "dm-tree==0.1.8"
    "ml-collections==0.1.1"
    "absl-py==2.1.0"
    "immutabledict==4.2.0"
    "jmp==0.0.4"
    "tabulate==0.9.0"
    "PyYAML==6.0.1"
    "safetensors==0.4.5"
    "biopython==1.81"
)
NODEPS_PKGS=("alphafold-colabfold==2.3.1")

STAMP_TEXT="${PIP_DEPS[*]} ${NODEPS_PKGS[*]}"
STAMP="$VENV/.ferrofold-af2-stamp"
CHECK='import jax, jaxlib, haiku, tree, ml_collections, safetensors.numpy, alphafold.model.modules, alphafold.model.folding'

if [[ "${FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" ]] \
    && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
    echo "af2 reference venv up to date: $VENV"
    exit 0
fi

start=$(date +%s)
if [[ "${FORCE:-0}" == "1" ]]; then
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

"${PIP[@]}" install -q "${PIP_DEPS[@]}"
"${PIP[@]}" install -q --no-deps "${NODEPS_PKGS[@]}"

"$VENV/bin/python" - <<PYEOF
import importlib.metadata as md
$CHECK
assert md.version("alphafold-colabfold") == "2.3.1", md.version("alphafold-colabfold")
assert jax.__version__ == "0.4.26" and haiku.__version__ == "0.0.12"
print("af2 reference venv ok: jax", jax.__version__, "haiku", haiku.__version__,
      "alphafold-colabfold", md.version("alphafold-colabfold"))
PYEOF

echo "$STAMP_TEXT" > "$STAMP"
echo "built $VENV in $(( $(date +%s) - start )) s"
