"""Shared setup for the IgFold 1.0.1 + AntiBERTy 0.1.3 reference scripts.

IgFold 1.0.1 declares ``antiberty>=1.0.0``, whose runner downloads its weights from a model hub at
run time. The venv built by ``setup_venv.sh`` holds antiberty 0.1.3 instead, which ships the same
AntiBERTy weights inside the wheel. The only API difference IgFold 1.0.1 hits is the runner's
constructor: ``igfold.runner.IgFoldRunner`` calls ``AntiBERTyRunner(device=...)`` while 0.1.3's
``AntiBERTyRunner()`` takes no argument. ``embed(sequences, return_attention=True)`` is the same in
both (hidden states and attentions including the [CLS]/[SEP] positions, which ``fold()`` strips).

This module provides a 0.1.3 runner that accepts ``device``, loads BERT with eager attention (so the
attention probabilities are returned on every transformers 4.x), patches it into ``igfold.runner``,
and loads the four IgFold members in the order ``fold()`` uses (sorted file names).
"""

import json
import os
import warnings

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402

import antiberty  # noqa: E402
from antiberty import AntiBERTy  # noqa: E402
from antiberty.AntiBERTyRunner import CHECKPOINT_PATH, VOCAB_FILE  # noqa: E402

import igfold  # noqa: E402
import igfold.runner  # noqa: E402
from igfold.utils.checkpoint import find_weights, load_model  # noqa: E402

if int(transformers.__version__.split(".")[0]) >= 5:
    raise RuntimeError(
        f"transformers {transformers.__version__}: the AntiBERTy 0.1.3 BertTokenizer silently maps every residue "
        "to [UNK] under transformers 5.x; install transformers<5 (see tools/reference/setup_venv.sh)."
    )

# Antibodies used for the goldens (tests/data/igfold_<name>.safetensors) and tests/data/antibodies.fasta.
# Chains are in fold() order: heavy first.
ANTIBODIES = {
    # IgFold README quick-start paired Fv
    "paired": {
        "H": "EVQLVQSGPEVKKPGTSVKVSCKASGFTFMSSAVQWVRQARGQRLEWIGWIVIGSGNTNYAQKFQERVTITRDMSTSTAYMELSSLRSEDTAVYYCAAPYCSSISCNDGFDIWGQGTMVTVS",
        "L": "DVVMTQTPFSLPVSLGDQASISCRSSQSLVHSNGNTYLHWYLQKPGQSPKLLIYKVSNRFSGVPDRFSGSGSGTDFTLKISRVEAEDLGVYFCSQSTHVPYTFGGGTKLEIK",
    },
    # trastuzumab (Herceptin) VH / VL
    "trastuzumab": {
        "H": "EVQLVESGGGLVQPGGSLRLSCAASGFNIKDTYIHWVRQAPGKGLEWVARIYPTNGYTRYADSVKGRFTISADTSKNTAYLQMNSLRAEDTAVYYCSRWGGDGFYAMDYWGQGTLVTVSS",
        "L": "DIQMTQSPSSLSASVGDRVTITCRASQDVNTAVAWYQQKPGKAPKLLIYSASFLYSGVPSRFSGSRSGTDFTLTISSLQPEDFATYYCQQHYTTPPTFGQGTKVEIK",
    },
    # IgFold README quick-start nanobody (single heavy chain)
    "nanobody": {
        "H": "QVQLQESGGGLVQAGGSLTLSCAVSGLTFSNYAMGWFRQAPGKEREFVAAITWDGGNTYYTDSVKGRFTISRDNAKNTVFLQMNSLKPEDTAVYYCAAKLLGSSRYELALAGYDYWGQGTQVTVS",
    },
}


class AntiBERTyRunner013(antiberty.AntiBERTyRunner):
    """antiberty 0.1.3 runner with the 1.0.0 constructor signature IgFold 1.0.1 uses."""

    def __init__(self, device=None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        try:
            model = AntiBERTy.from_pretrained(CHECKPOINT_PATH, attn_implementation="eager")
        except (TypeError, ValueError):  # very old transformers without attn_implementation
            model = AntiBERTy.from_pretrained(CHECKPOINT_PATH)
        self.model = model.to(self.device)
        self.model.eval()
        self.tokenizer = transformers.BertTokenizer(vocab_file=VOCAB_FILE, do_lower_case=False)
        ids = self.tokenizer(" ".join("ACDEFGHIKLMNPQRSTVWY"))["input_ids"]
        if ids != [2] + list(range(5, 25)) + [3]:
            raise RuntimeError(f"AntiBERTy tokenizer is broken under transformers {transformers.__version__}: {ids}")


igfold.runner.AntiBERTyRunner = AntiBERTyRunner013


def setup_torch(threads=1):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")


def member_paths():
    """igfold_1, igfold_2, igfold_3, igfold_5 weight files, sorted as IgFoldRunner loads them."""
    return find_weights(None, num_models=4)


def load_reference(device="cpu"):
    """Return (antiberty_runner, [4 IgFold members]) exactly as IgFoldRunner would build them."""
    models = [load_model(p, device=device) for p in member_paths()]
    return AntiBERTyRunner013(device=device), models


def make_runner(device="cpu"):
    """An igfold.IgFoldRunner using the 0.1.3 AntiBERTy runner."""
    return igfold.IgFoldRunner(num_models=4, device=device, verbose=False)


def versions():
    import importlib.metadata as md

    import numpy

    return {
        "igfold": md.version("igfold"),
        "antiberty": md.version("antiberty"),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
    }


def seq_metadata(seq_dict):
    return json.dumps(seq_dict)
