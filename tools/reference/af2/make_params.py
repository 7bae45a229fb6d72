"""Write random AlphaFold2 monomer parameters in the official npz layout.

    python tools/reference/af2/make_params.py OUT.npz [--model model_1] [--seed 0]

The keys and shapes come from the official Haiku model itself: modules.AlphaFold is initialised
abstractly (jax.eval_shape of hk.transform(...).init on a tiny batch: no compute), then every array
is filled with non-zero random values (af2_ref.random_value). For model_1 the result is checked
against /work/shared/reference/af2-param-keys-model_1.txt (336 arrays, 93,229,082 parameters);
model_1_ptm must equal that plus the predicted_aligned_error_head.
Output: np.savez (uncompressed) with keys "<haiku scope>//<name>", float32. ~373 MB for model_1.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import af2_ref  # noqa: E402  (sets XLA env before jax is imported)

import numpy as np  # noqa: E402


def tiny_batch(cfg, num_res=8, num_msa=3, num_extra=2, num_templ=4):
    """Abstract feature batch with the official per-feature shapes (leading ensemble axis 1)."""
    import jax
    import jax.numpy as jnp

    f32, i32 = jnp.float32, jnp.int32
    S = jax.ShapeDtypeStruct
    E, L, T = 1, num_res, num_templ
    c = cfg.model.embeddings_and_evoformer
    batch = {
        "aatype": S((E, L), i32),
        "residue_index": S((E, L), i32),
        "seq_length": S((E,), i32),
        "seq_mask": S((E, L), f32),
        "target_feat": S((E, L, 22), f32),
        "msa_feat": S((E, num_msa, L, 49), f32),
        "msa_mask": S((E, num_msa, L), f32),
        "extra_msa": S((E, num_extra, L), i32),
        "extra_has_deletion": S((E, num_extra, L), f32),
        "extra_deletion_value": S((E, num_extra, L), f32),
        "extra_msa_mask": S((E, num_extra, L), f32),
        "template_aatype": S((E, T, L), i32),
        "template_all_atom_positions": S((E, T, L, 37, 3), f32),
        "template_all_atom_masks": S((E, T, L, 37), f32),
        "template_mask": S((E, T), f32),
        "template_pseudo_beta": S((E, T, L, 3), f32),
        "template_pseudo_beta_mask": S((E, T, L), f32),
        "atom14_atom_exists": S((E, L, 14), f32),
        "atom37_atom_exists": S((E, L, 37), f32),
        "residx_atom14_to_atom37": S((E, L, 14), i32),
        "residx_atom37_to_atom14": S((E, L, 37), i32),
        # the fork's AlphaFold takes the recycling state in the batch (one iteration per call)
        "prev": {
            "prev_pos": S((L, 37, 3), f32),
            "prev_msa_first_row": S((L, c.msa_channel), f32),
            "prev_pair": S((L, L, c.pair_channel), f32),
        },
    }
    return batch


def param_shapes(model_name):
    import haiku as hk
    import jax
    from alphafold.model import modules

    cfg = af2_ref.official_model_config(model_name)

    def forward(batch):
        model = modules.AlphaFold(cfg.model)
        return model(batch, is_training=False, compute_loss=False,
                     ensemble_representations=False)

    fn = hk.transform(forward)
    shapes = jax.eval_shape(fn.init, jax.random.PRNGKey(0), tiny_batch(cfg))
    flat = af2_ref.flatten_haiku(shapes)
    return {k: tuple(v.shape) for k, v in flat.items()}, {k: v.dtype for k, v in flat.items()}


def official_shapes(model_name, keys_file=af2_ref.PARAM_KEYS_MODEL_1):
    """{key: shape} of model_1 or model_1_ptm from the official key list; None for others."""
    ref = af2_ref.load_official_keys(keys_file)
    if model_name == "model_1_ptm":
        ref["alphafold/alphafold_iteration/predicted_aligned_error_head/logits//weights"] = (128, 64)
        ref["alphafold/alphafold_iteration/predicted_aligned_error_head/logits//bias"] = (64,)
    elif model_name != "model_1":
        return None
    return ref


def check_layout(model_name, shapes, dtypes):
    ref = official_shapes(model_name)
    if ref is None:
        print(f"note: no reference key list for {model_name}; layout not checked")
        return
    missing = sorted(set(ref) - set(shapes))
    extra = sorted(set(shapes) - set(ref))
    bad = sorted(k for k in set(ref) & set(shapes) if ref[k] != shapes[k])
    assert all(np.dtype(d) == np.float32 for d in dtypes.values())
    if missing or extra or bad:
        for k in missing:
            print("missing", k, ref[k])
        for k in extra:
            print("extra  ", k, shapes[k])
        for k in bad:
            print("shape  ", k, shapes[k], "official", ref[k])
        raise SystemExit(f"{model_name}: layout differs from the official key list")
    n = sum(int(np.prod(s)) for s in shapes.values())
    print(f"{model_name}: layout matches the official key list "
          f"({len(shapes)} arrays, {n} parameters)")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output .npz path (outside the repo, e.g. /tmp/af2/params_model_1.npz)")
    ap.add_argument("--model", default="model_1", help="model_1 (default), model_1_ptm, ...")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shapes-from", metavar="KEYS_TXT",
                    help="take the shapes from this copy of af2-param-keys-model_1.txt instead of "
                         "the Haiku model (model_1 / model_1_ptm; numpy alone, e.g. on a GPU "
                         "machine without the reference venv): the same arrays, the same values")
    args = ap.parse_args()

    t0 = time.time()
    if args.shapes_from:
        shapes = official_shapes(args.model, args.shapes_from)
        if shapes is None:
            raise SystemExit(f"--shapes-from: no key list for {args.model}")
    else:
        shapes, dtypes = param_shapes(args.model)
        check_layout(args.model, shapes, dtypes)
    params = af2_ref.randomize_flat(shapes, args.seed)
    for k, v in params.items():
        # Rounding to float16 can turn the odd tiny value into an exact zero; a layer that
        # stayed at Haiku's zero init would be all zeros.
        assert v.shape == shapes[k] and v.dtype == np.float32 and np.count_nonzero(v) > 0.99 * v.size, k
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
    np.savez(args.out, **params)
    print(f"wrote {args.out}: {len(params)} arrays, "
          f"{os.path.getsize(args.out) / 2**20:.1f} MiB in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
