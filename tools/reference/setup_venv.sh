#!/usr/bin/env bash
# Build the Python reference environment for ferrofold: IgFold 1.0.1 running on AntiBERTy 0.1.3.
#
#   bash tools/reference/setup_venv.sh            # venv at ${FERROFOLD_REF_VENV:-tools/reference/.venv}
#
# Idempotent: a venv whose stamp matches this script's pins is left alone (FORCE=1 rebuilds).
# Everything comes from PyPI with the ordinary pip client:
#   * torch from PyPI. There is no CPU-only torch wheel on PyPI; the Linux wheel pulls the CUDA
#     runtime packages (~3 GB of nvidia-*; ~5.3 GB venv, ~1.5 min here). `--no-deps` does not work:
#     `import torch` then fails on libcudart/libcublasLt. The scripts run torch on the CPU.
#   * igfold==1.0.1 with --no-deps: it declares antiberty>=1.0.0, whose runner downloads weights
#     from a model hub at run time. antiberty==0.1.3 (also --no-deps) ships the same weights in the
#     wheel; tools/reference/igfold_ref.py adapts its runner to the constructor IgFold 1.0.1 calls.
#   * IgFold's real runtime deps by hand: einops, numpy, biopython, safetensors, and transformers<5
#     (transformers 5.x silently turns every residue into [UNK] with the 0.1.3 BertTokenizer).
#   * gemmi and biopython for structure-file checks elsewhere.
# No OpenMM/pdbfixer (refinement), no anarcii (renumbering/truncation): the scripts disable both.
# Set FERROFOLD_REF_WHEELS=/dir to install igfold/antiberty from local wheels instead of PyPI.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${FERROFOLD_REF_VENV:-$ROOT/tools/reference/.venv}"
PYTHON="${PYTHON:-python3}"

TORCH_SPEC="torch==2.15.0"
PIP_DEPS=(
    "transformers==4.57.6"
    "tokenizers==0.22.2"
    "huggingface_hub==0.36.2"
    "safetensors==0.8.0"
    "einops==0.8.2"
    "numpy==2.4.6"
    "biopython==1.88"
    "gemmi==0.7.5"
    "tqdm"
)
REF_PKGS=("igfold==1.0.1" "antiberty==0.1.3")

STAMP_TEXT="$TORCH_SPEC ${PIP_DEPS[*]} ${REF_PKGS[*]}"
STAMP="$VENV/.ferrofold-ref-stamp"

if [[ "${FORCE:-0}" != "1" && -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_TEXT" ]] \
    && "$VENV/bin/python" -c "import torch, igfold, antiberty, transformers, gemmi, Bio" 2>/dev/null; then
    echo "reference venv up to date: $VENV"
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

"${PIP[@]}" install -q "$TORCH_SPEC"
"${PIP[@]}" install -q "${PIP_DEPS[@]}"

if [[ -n "${FERROFOLD_REF_WHEELS:-}" ]]; then
    "${PIP[@]}" install -q --no-deps \
        "$FERROFOLD_REF_WHEELS"/igfold-1.0.1-py3-none-any.whl \
        "$FERROFOLD_REF_WHEELS"/antiberty-0.1.3-py3-none-any.whl
else
    "${PIP[@]}" install -q --no-deps "${REF_PKGS[@]}"
fi

# sanity: versions, weights present, tokenizer intact
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md, os
import transformers, antiberty, igfold
from antiberty.AntiBERTyRunner import CHECKPOINT_PATH, VOCAB_FILE
assert md.version("igfold") == "1.0.1" and md.version("antiberty") == "0.1.3"
assert int(transformers.__version__.split(".")[0]) < 5, transformers.__version__
assert os.path.isfile(os.path.join(CHECKPOINT_PATH, "pytorch_model.bin"))
w = os.path.join(os.path.dirname(igfold.__file__), "trained_models", "IgFold")
assert sorted(f for f in os.listdir(w) if f.endswith(".safetensors")) == [
    "igfold_1.safetensors", "igfold_2.safetensors", "igfold_3.safetensors", "igfold_5.safetensors"]
tok = transformers.BertTokenizer(vocab_file=VOCAB_FILE, do_lower_case=False)
assert tok(" ".join("ACDEFGHIKLMNPQRSTVWY"))["input_ids"] == [2] + list(range(5, 25)) + [3]
print("reference venv ok: igfold 1.0.1, antiberty 0.1.3, transformers", transformers.__version__)
EOF

echo "$STAMP_TEXT" > "$STAMP"
echo "built $VENV in $(( $(date +%s) - start )) s"
