"""Per-module goldens of the official AlphaFold2 v2.3 monomer modules (model_1 config), random params.

    python tools/reference/af2/make_module_goldens.py [--out tests/data/af2] [--seed 0]

Each golden is a safetensors file (float32; int32 for aatype) holding
  input/<name>     the module's inputs,
  output[/<name>]  what the official module returns (is_training=False: no dropout),
  params/<key>     parameters under their OFFICIAL npz key ("<haiku scope>//<name>", the full
                   "alphafold/alphafold_iteration/..." path) with the layer axis of stacked scopes
                   (evoformer_iteration: 48, extra_msa_stack: 4) dropped: one block's slice.
Parameters are shared to keep the files small: the main-stack module goldens carry no params/; they
use the params/ of evoformer_iteration.safetensors (same official keys). invariant_point_attention
uses the params/ of fold_iteration.safetensors. The file's metadata (one key, "af2_golden", a JSON
object) names its params file ("params_file"), the official prefix and the param keys.
Parameter values: af2_ref.random_value, seeded per (seed, official key), so a key has the same values
in every golden.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import af2_ref  # noqa: E402  (sets XLA env before jax is imported)

import haiku as hk  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from alphafold.model import folding, modules, prng, quat_affine  # noqa: E402

EVO = "alphafold/alphafold_iteration/evoformer/"
MAIN = EVO + "evoformer_iteration/"
EXTRA = EVO + "extra_msa_stack/"
SM = "alphafold/alphafold_iteration/structure_module/"

L, S, S_EXTRA = 11, 5, 5  # residues, MSA rows, extra-MSA rows


def make_inputs(seed):
    rng = np.random.default_rng([seed, 12345])
    f32 = np.float32
    cfg = af2_ref.official_model_config("model_1")
    c = cfg.model.embeddings_and_evoformer
    # MSA mask: ~15% random zeros, row 3 fully padded (mask 0); every column keeps >= 1 real entry.
    msa_mask = (rng.random((S, L)) > 0.15).astype(f32)
    msa_mask[3] = 0.0
    msa_mask[0] = 1.0
    # residue (sequence) mask: last residue is padding -> pair mask = outer(seq_mask, seq_mask)
    seq_mask = np.ones(L, f32)
    seq_mask[-1] = 0.0
    pair_mask = (seq_mask[:, None] * seq_mask[None, :]).astype(f32)
    extra_mask = (rng.random((S_EXTRA, L)) > 0.2).astype(f32)
    extra_mask[0] = 1.0
    extra_mask[4] = 0.0
    # random rigid frames for the structure module: unit quaternion (w, x, y, z) + translation
    quat = rng.standard_normal((L, 4)).astype(f32)
    quat /= np.linalg.norm(quat, axis=-1, keepdims=True)
    trans = rng.standard_normal((L, 3)).astype(f32)
    sc = cfg.model.heads.structure_module
    return {
        "msa_act": rng.standard_normal((S, L, c.msa_channel)).astype(f32),
        "msa_mask": msa_mask,
        "pair_act": rng.standard_normal((L, L, c.pair_channel)).astype(f32),
        "pair_mask": pair_mask,
        "extra_msa_act": rng.standard_normal((S_EXTRA, L, c.extra_msa_channel)).astype(f32),
        "extra_msa_mask": extra_mask,
        "single_act": rng.standard_normal((L, sc.num_channel)).astype(f32),
        "initial_act": rng.standard_normal((L, sc.num_channel)).astype(f32),
        "seq_mask": seq_mask[:, None].copy(),
        "affine": np.concatenate([quat, trans], axis=-1).astype(f32),
        "aatype": rng.integers(0, 20, size=(L,)).astype(np.int32),
    }


def goldens(cfg, gc):
    """name -> (official prefix, input names, fn(inputs) -> output(s), params file or None)."""
    evo = cfg.model.embeddings_and_evoformer.evoformer
    sm = cfg.model.heads.structure_module
    key = jax.random.PRNGKey(0)

    def evo_iter(i):
        out = modules.EvoformerIteration(evo, gc, is_extra_msa=False, name="evoformer_iteration")(
            {"msa": i["msa_act"], "pair": i["pair_act"]},
            {"msa": i["msa_mask"], "pair": i["pair_mask"]},
            is_training=False, safe_key=prng.SafeKey(key))
        return {"msa": out["msa"], "pair": out["pair"]}

    def fold_iter(i):
        new_act, out = folding.FoldIteration(sm, gc, name="fold_iteration")(
            {"act": i["single_act"], "affine": i["affine"]},
            sequence_mask=i["seq_mask"], update_affine=True, is_training=False,
            initial_act=i["initial_act"], safe_key=prng.SafeKey(key),
            static_feat_2d=i["pair_act"], aatype=i["aatype"])
        scd = out["sc"]
        frames = scd["frames"]  # r3.Rigids [L, 8]
        rot = jnp.stack([getattr(frames.rot, n) for n in
                         ("xx", "xy", "xz", "yx", "yy", "yz", "zx", "zy", "zz")], -1)
        tr = jnp.stack([frames.trans.x, frames.trans.y, frames.trans.z], -1)
        atom = scd["atom_pos"]  # r3.Vecs [L, 14]
        return {
            "act": new_act["act"],
            "affine": out["affine"],
            "angles_sin_cos": scd["angles_sin_cos"],
            "unnormalized_angles_sin_cos": scd["unnormalized_angles_sin_cos"],
            "frames_rot": rot.reshape(rot.shape[:-1] + (3, 3)),
            "frames_trans": tr,
            "atom_pos": jnp.stack([atom.x, atom.y, atom.z], -1),
        }

    def ipa(i):
        affine = quat_affine.QuatAffine.from_tensor(i["affine"])
        return folding.InvariantPointAttention(sm, gc)(
            inputs_1d=i["single_act"], inputs_2d=i["pair_act"], mask=i["seq_mask"], affine=affine)

    E = "evoformer_iteration.safetensors"
    return {
        "evoformer_iteration": (EVO, ["msa_act", "msa_mask", "pair_act", "pair_mask"], evo_iter, None),
        "msa_row_attention_with_pair_bias": (MAIN, ["msa_act", "msa_mask", "pair_act"],
            lambda i: modules.MSARowAttentionWithPairBias(
                evo.msa_row_attention_with_pair_bias, gc)(
                i["msa_act"], i["msa_mask"], i["pair_act"], is_training=False), E),
        "msa_column_attention": (MAIN, ["msa_act", "msa_mask"],
            lambda i: modules.MSAColumnAttention(evo.msa_column_attention, gc)(
                i["msa_act"], i["msa_mask"], is_training=False), E),
        "msa_transition": (MAIN, ["msa_act", "msa_mask"],
            lambda i: modules.Transition(evo.msa_transition, gc, name="msa_transition")(
                i["msa_act"], i["msa_mask"], is_training=False), E),
        "outer_product_mean": (MAIN, ["msa_act", "msa_mask"],
            lambda i: modules.OuterProductMean(
                evo.outer_product_mean, gc,
                num_output_channel=cfg.model.embeddings_and_evoformer.pair_channel,
                name="outer_product_mean")(
                i["msa_act"], i["msa_mask"], is_training=False), E),
        "triangle_multiplication_outgoing": (MAIN, ["pair_act", "pair_mask"],
            lambda i: modules.TriangleMultiplication(
                evo.triangle_multiplication_outgoing, gc, name="triangle_multiplication_outgoing")(
                i["pair_act"], i["pair_mask"], is_training=False), E),
        "triangle_multiplication_incoming": (MAIN, ["pair_act", "pair_mask"],
            lambda i: modules.TriangleMultiplication(
                evo.triangle_multiplication_incoming, gc, name="triangle_multiplication_incoming")(
                i["pair_act"], i["pair_mask"], is_training=False), E),
        "triangle_attention_starting_node": (MAIN, ["pair_act", "pair_mask"],
            lambda i: modules.TriangleAttention(
                evo.triangle_attention_starting_node, gc, name="triangle_attention_starting_node")(
                i["pair_act"], i["pair_mask"], is_training=False), E),
        "triangle_attention_ending_node": (MAIN, ["pair_act", "pair_mask"],
            lambda i: modules.TriangleAttention(
                evo.triangle_attention_ending_node, gc, name="triangle_attention_ending_node")(
                i["pair_act"], i["pair_mask"], is_training=False), E),
        "pair_transition": (MAIN, ["pair_act", "pair_mask"],
            lambda i: modules.Transition(evo.pair_transition, gc, name="pair_transition")(
                i["pair_act"], i["pair_mask"], is_training=False), E),
        # extra-MSA stack: c_m = extra_msa_channel = 64, global (multi-query) column attention
        "msa_column_global_attention": (EXTRA, ["extra_msa_act", "extra_msa_mask"],
            lambda i: modules.MSAColumnGlobalAttention(
                evo.msa_column_attention, gc, name="msa_column_global_attention")(
                i["extra_msa_act"], i["extra_msa_mask"], is_training=False), None),
        "fold_iteration": (SM, ["single_act", "affine", "seq_mask", "initial_act", "pair_act",
                                "aatype"], fold_iter, None),
        "invariant_point_attention": (SM + "fold_iteration/", ["single_act", "pair_act",
                                      "seq_mask", "affine"], ipa, "fold_iteration.safetensors"),
    }


def run_one(name, spec, inputs, official, seed, out_dir, param_dtype=np.float32):
    prefix, in_names, fn, params_file = spec
    inp = {k: jnp.asarray(inputs[k]) for k in in_names}
    f = hk.transform(fn)
    shapes = af2_ref.flatten_haiku(jax.eval_shape(f.init, jax.random.PRNGKey(0), inp))
    shapes = {k: tuple(v.shape) for k, v in shapes.items()}
    # every parameter must be an official key with the official (per-layer) shape
    for k, s in shapes.items():
        full = prefix + k
        assert full in official, f"{name}: {full} is not an official key"
        n_lead, _ = af2_ref.layer_axis(full)
        assert official[full][n_lead:] == s, (full, s, official[full])
    params = af2_ref.randomize_flat({prefix + k: s for k, s in shapes.items()}, seed,
                                    layer_axes=False)
    hk_params = af2_ref.unflatten_haiku({k: params[prefix + k] for k in shapes})
    out = jax.jit(f.apply)(hk_params, jax.random.PRNGKey(0), inp)

    tensors = {f"input/{k}": np.asarray(v) for k, v in inp.items()}
    if isinstance(out, dict):
        tensors.update({f"output/{k}": np.asarray(v, np.float32) for k, v in out.items()})
    else:
        tensors["output"] = np.asarray(out, np.float32)
    if params_file is None:
        tensors.update({f"params/{k}": v.astype(param_dtype) for k, v in params.items()})
    for k, v in tensors.items():
        assert np.all(np.isfinite(v)), (name, k)
    meta = {
        "module": name,
        "official_prefix": prefix,
        "params_file": params_file or "self",
        "param_keys": sorted(params),
        "seed": seed,
        "params_dtype": np.dtype(param_dtype).name,
        "source": "alphafold-colabfold 2.3.1 (fork of DeepMind AlphaFold v2.3.1), "
                  "af2_ref.official_model_config('model_1'), is_training=False",
    }
    path = os.path.join(out_dir, f"{name}.safetensors")
    # one metadata key: safetensors writes several keys in random order (files not byte-stable)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, path,
              metadata={"af2_golden": json.dumps(meta, sort_keys=True)})
    return path, tensors, params


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(af2_ref.ROOT, "tests", "data", "af2"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="subset of golden names")
    ap.add_argument("--param-dtype", choices=["float32", "float16"], default="float32",
                    help="storage dtype of params/ (values are f16-exact either way; float16 halves "
                         "the files; outputs are the same)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    cfg = af2_ref.official_model_config("model_1")
    gc = cfg.model.global_config
    official = af2_ref.load_official_keys()
    inputs = make_inputs(args.seed)
    specs = goldens(cfg, gc)
    names = args.only or list(specs)
    produced = {}
    for name in names:
        path, tensors, params = run_one(name, specs[name], inputs, official, args.seed, args.out,
                                         np.dtype(args.param_dtype))
        produced[name] = params
        print(f"{os.path.relpath(path, af2_ref.ROOT)}  {os.path.getsize(path) / 1024:.0f} KiB")
        for k, v in tensors.items():
            if not k.startswith("params/"):
                print(f"    {k:40s} {str(v.shape):18s} {v.dtype}  |max| {np.abs(v).max():.3g}")
        if not any(k.startswith("params/") for k in tensors):
            print(f"    params: {len(params)} arrays in {specs[name][3]}")
        else:
            print(f"    params/: {len(params)} arrays")
    # round trip: rebuild every module from the files alone and reproduce its stored output
    from safetensors.numpy import load_file
    for name in names:
        prefix, in_names, fn, params_file = specs[name]
        g = load_file(os.path.join(args.out, f"{name}.safetensors"))
        p = g if params_file is None else load_file(os.path.join(args.out, params_file))
        flat = {k[len("params/" + prefix):]: v.astype(np.float32) for k, v in p.items()
                if k.startswith("params/" + prefix)}
        f = hk.transform(fn)
        want = af2_ref.flatten_haiku(jax.eval_shape(f.init, jax.random.PRNGKey(0),
                                                    {k: g[f"input/{k}"] for k in in_names}))
        hk_params = af2_ref.unflatten_haiku({k: flat[k] for k in want})
        out = f.apply(hk_params, jax.random.PRNGKey(0), {k: g[f"input/{k}"] for k in in_names})
        outs = out if isinstance(out, dict) else {None: out}
        for k, v in outs.items():
            ref = g["output" if k is None else f"output/{k}"]
            err = float(np.max(np.abs(np.asarray(v) - ref)))
            assert err <= 1e-4 * max(1.0, float(np.abs(ref).max())), (name, k, err)
    print(f"round trip ok: {len(names)} goldens rebuilt from the files")
    # shared params must really be the params file's arrays
    for name in names:
        pf = specs[name][3]
        owner = pf and pf.replace(".safetensors", "")
        if owner in produced:
            for k, v in produced[name].items():
                assert k in produced[owner] and np.array_equal(v, produced[owner][k]), (name, k)


if __name__ == "__main__":
    main()
