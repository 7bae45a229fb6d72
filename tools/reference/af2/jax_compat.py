"""Shims that let alphafold-colabfold 2.3.1 (written for jax 0.4.x) run on a new jax (>= 0.5).

Imported by af2_ref.py before haiku / alphafold, and only when jax >= 0.5: the pinned venv of
setup_venv.sh (jax 0.4.26, haiku 0.0.12, numpy 1.26) never loads it. Checked with jax/jaxlib 0.11.2,
dm-haiku 0.0.17, dm-tree 0.1.10, ml-collections 1.1.0, immutabledict 4.3.1, jmp 0.0.4, numpy 2.5.
Each shim only fills in what is missing, so it is a no-op where the old API still exists. numpy 2
needs none for the model path (the fork's only numpy-2 removal, np.string_, is in
alphafold/data/msa_pairing.py, multimer data pipeline, never imported here).
"""
import functools
import sys
import types

import jax
import jax.numpy as jnp


def _missing(mod, name):
    try:
        getattr(mod, name)  # jax's module __getattr__ raises AttributeError for removed names
        return False
    except AttributeError:
        return True


def apply():
    # 1. jax.tree_map: deprecated in 0.4.26, removed in 0.6. ~60 uses in the fork (modules.py,
    #    folding.py, mapping.py, quat_affine.py, ...); jax.tree.map is the same function.
    if _missing(jax, "tree_map"):
        jax.tree_map = jax.tree.map

    # 2. jax.util (public alias of jax._src.util) is gone; mapping.sharded_apply (behind
    #    inference_subbatch, i.e. every subbatched attention/transition at inference) decorates
    #    with jax.util.wraps(fun, docstr=...). It only copies name/doc, so functools.wraps does.
    if _missing(jax, "util"):
        util = types.ModuleType("jax.util")
        util.wraps = lambda wrapped, namestr=None, docstr=None, **kw: functools.wraps(wrapped)
        jax.util = sys.modules["jax.util"] = util

    # 3. jnp.clip(x, a_min=, a_max=): the a_min/a_max keywords (numpy < 2 names) were deprecated
    #    in jax 0.4.27 and removed; modules.py's relative-position encoding (and the multimer one)
    #    call it that way. Map them to min=/max=.
    clip = jnp.clip
    if not getattr(clip, "_ferrofold_compat", False):
        @functools.wraps(clip)
        def clip_compat(*args, a_min=None, a_max=None, **kwargs):
            if a_min is not None:
                kwargs["min"] = a_min
            if a_max is not None:
                kwargs["max"] = a_max
            return clip(*args, **kwargs)

        clip_compat._ferrofold_compat = True
        jnp.clip = clip_compat


apply()
