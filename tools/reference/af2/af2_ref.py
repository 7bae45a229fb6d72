"""Shared helpers for the AlphaFold2 (v2.3 monomer) reference scripts.

Model code: alphafold-colabfold 2.3.1 (ColabFold's fork of DeepMind AlphaFold v2.3.1), installed by
setup_venv.sh. `official_model_config` turns the fork's config into the official monomer one.
"""
import os
import re

# Keep XLA on CPU and skip the slow oneDNN matmul rewrite (see af2-reference-gotchas.md).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_disable_hlo_passes=onednn-matmul-rewriter")

import numpy as np  # noqa: E402


def _jax_version():
    """Installed jax version as a tuple, None without jax (numpy-only helpers); jax not imported."""
    from importlib import metadata
    try:
        return tuple(int(x) for x in re.findall(r"\d+", metadata.version("jax"))[:2])
    except metadata.PackageNotFoundError:
        return None


# A new jax (>= 0.5; the GPU machine has 0.11) needs shims before haiku/alphafold are imported.
# The pinned venv (jax 0.4.26) never loads them.
if (_jax_version() or (0, 0)) >= (0, 5):
    import jax_compat  # noqa: F401,E402  (same folder, on sys.path as af2_ref itself is)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PARAM_KEYS_MODEL_1 = "/work/shared/reference/af2-param-keys-model_1.txt"

# Scopes whose parameters carry a leading layer axis in the official npz.
_STACKED = [
    ("alphafold/alphafold_iteration/evoformer/evoformer_iteration/", 48),
    ("alphafold/alphafold_iteration/evoformer/extra_msa_stack/", 4),
    ("/template_pair_stack/__layer_stack_no_state/", 2),
]


def official_model_config(name="model_1"):
    """The fork's model_config(name) with the settings that make it the official monomer config.

    The fork (alphafold-colabfold 2.3.1) differs from DeepMind v2.3 in its defaults:
      * every TriangleMultiplication has fuse_projection_weights=True (ColabFold converts the
        official unfused weights at load time); the official monomer config has False, which gives
        the official parameter names (left_projection, ..., layer_norm_input, center_layer_norm).
      * global_config has a `bfloat16` flag (monomer default False in 2.3.1) that the official
        monomer config does not have; forced False (pure float32).
    Nothing else is changed: subbatch_size 4, zero_init True, deterministic False, eval_dropout False
    (dropout is off because the scripts always pass is_training=False).
    """
    from alphafold.model import config as af_config

    cfg = af_config.model_config(name)
    evo = cfg.model.embeddings_and_evoformer
    for stack in (evo.evoformer, evo.template.template_pair_stack):
        for k in ("triangle_multiplication_outgoing", "triangle_multiplication_incoming"):
            stack[k].fuse_projection_weights = False
    gc = cfg.model.global_config
    gc.bfloat16 = False
    gc.bfloat16_output = False
    assert not gc.multimer_mode and not gc.use_remat and not gc.eval_dropout
    assert gc.subbatch_size == 4 and gc.zero_init
    return cfg


def layer_axis(key):
    """Number of leading layer axes (0 or 1) of an official parameter key and the layer count."""
    for pat, n in _STACKED:
        if pat in key and (pat.startswith("/") or key.startswith(pat)):
            return 1, n
    return 0, 1


def load_official_keys(path=PARAM_KEYS_MODEL_1):
    """{key: shape} from af2-param-keys-model_1.txt."""
    out = {}
    with open(path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            key, shape, _dtype = line.rstrip("\n").split("\t")
            out[key] = tuple(int(s) for s in re.findall(r"\d+", shape))
    return out


def flatten_haiku(params):
    """Haiku {module: {name: array}} -> {"module//name": array} (the official npz key format)."""
    return {f"{mod}//{name}": arr for mod, d in params.items() for name, arr in d.items()}


def unflatten_haiku(flat):
    out = {}
    for key, arr in flat.items():
        mod, name = key.split("//")
        out.setdefault(mod, {})[name] = arr
    return out


def random_value(key, shape, rng, n_lead=0):
    """Non-zero random values for one parameter, by the parameter's role.

    weights N(0, 1/fan_in); biases/offsets N(0, 0.1^2); LayerNorm scales 1 + N(0, 0.1^2).
    `n_lead` leading axes are layer axes (not part of fan_in).
    Values are rounded to float16-representable float32 numbers, so a golden may store its params
    as float16 (half the size) and still be exact after an f16 -> f32 cast.
    """
    return _f16_exact(_random_value(key, shape, rng, n_lead))


def _f16_exact(x):
    return x.astype(np.float16).astype(np.float32)


def _random_value(key, shape, rng, n_lead):
    name = key.split("//")[-1]
    core = shape[n_lead:]
    if name == "scale":
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name in ("bias", "offset", "output_b", "gating_b"):
        return (0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name == "trainable_point_weights":
        # softplus'd inside IPA; official init softplus^-1(1) = 0.5413
        return (0.5413 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    if name == "output_w":
        fan_in = int(np.prod(core[:-1]))  # [heads, head_dim, out] / OPM [c, c, out]
    elif name in ("weights", "query_w", "key_w", "value_w", "gating_w", "feat_2d_weights"):
        fan_in = int(core[0])  # [in, ...]
    else:
        raise ValueError(f"unknown parameter kind: {key} {shape}")
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


def randomize_flat(flat_shapes, seed, prefix="", layer_axes=True):
    """{key: shape} -> {key: random float32 array}; deterministic per (seed, full key).

    Each array gets its own generator seeded from (seed, key) so a key's values do not depend on
    which other keys are present. `layer_axes=False`: the shapes of stacked scopes are given
    without their layer axis (single-block goldens).
    """
    import zlib

    out = {}
    for key in sorted(flat_shapes):
        full = prefix + key
        shape = tuple(flat_shapes[key])
        n_lead = layer_axis(full)[0] if layer_axes else 0
        rng = np.random.default_rng([seed, zlib.crc32(full.encode())])
        out[key] = random_value(full, shape, rng, n_lead)
    return out
