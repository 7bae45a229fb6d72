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

structure_module is the whole head (folding.StructureModule, 8 fold iterations sharing one set of
weights) on its own inputs (structure_module_inputs): representations {single [L,384], pair
[L,L,128]} and the batch features it reads (aatype with GLY and UNK, seq_mask with the last residue
padded, and the atom14/atom37 masks and gather indices exactly as data_transforms.make_atom14_masks
builds them). It carries all 45 structure_module params (prefix "alphafold/alphafold_iteration/",
keys "structure_module/..."); the fold_iteration/ ones equal fold_iteration.safetensors'.
It is called with compute_loss=True, which only stops __call__ from dropping traj / sidechains /
final_atom14_positions from its return value (no loss is computed in __call__); the script checks
that compute_loss=False returns the same final_atom_positions / final_atom_mask / act.

embeddings is EmbeddingsAndEvoformer up to the stacks (input embedder, recycling, relpos, extra-MSA
embedding; templates off) on its own feature batch (embeddings_inputs), with the pieces as
output/<piece>; heads holds the five heads' logits on make_inputs' representations plus
alphafold.common.confidence's pLDDT / PAE / pTM as output/confidence/*. See embedding_head_goldens.
"""
import argparse
import copy
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
AF_ITER = "alphafold/alphafold_iteration/"
SM = AF_ITER + "structure_module/"

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


def structure_module_inputs(seed, base):
    """Inputs of the structure_module golden: single/pair from make_inputs, batch features here.

    Drawn from their own generator so that make_inputs (and every other golden) is unchanged.
    """
    from alphafold.common import residue_constants as rc

    rng = np.random.default_rng([seed, 23456])
    aatype = rng.integers(0, 20, size=(L,)).astype(np.int32)
    aatype[2] = rc.restype_order["G"]  # GLY: no side-chain atoms
    aatype[6] = rc.unk_restype_index  # UNK (20): no atoms at all, all-zero maps
    seq_mask = np.ones(L, np.float32)
    seq_mask[-1] = 0.0  # padding
    # data_transforms.make_atom14_masks (TF), in numpy
    a14_to_a37, a37_to_a14, a14_mask = [], [], []
    for rt in rc.restypes:
        names = rc.restype_name_to_atom14_names[rc.restype_1to3[rt]]
        a14_to_a37.append([(rc.atom_order[n] if n else 0) for n in names])
        idx14 = {n: i for i, n in enumerate(names)}
        a37_to_a14.append([(idx14[n] if n in idx14 else 0) for n in rc.atom_types])
        a14_mask.append([(1.0 if n else 0.0) for n in names])
    a37_to_a14.append([0] * 37)
    a14_mask.append([0.0] * 14)
    a37_mask = np.zeros([21, 37], np.float32)
    for r, letter in enumerate(rc.restypes):
        for name in rc.residue_atoms[rc.restype_1to3[letter]]:
            a37_mask[r, rc.atom_order[name]] = 1
    return {
        "single": base["single_act"],
        "pair": base["pair_act"],
        "aatype": aatype,
        "seq_mask": seq_mask,
        "atom14_atom_exists": np.array(a14_mask, np.float32)[aatype],
        "residx_atom37_to_atom14": np.array(a37_to_a14, np.int32)[aatype],
        "atom37_atom_exists": a37_mask[aatype],
    }


# The round trip runs un-jitted, the goldens jitted. Eight chained fold iterations amplify the
# XLA rounding differences: eager vs jit differ by up to 2.6e-4 in sidechains/angles_sin_cos
# (l2-normalised from vectors with norm down to 0.096), 2.5e-3 in Å positions (|x| <= 68).
ROUND_TRIP_TOL = {"structure_module": 1e-3}

SM_BATCH = ["aatype", "seq_mask", "atom14_atom_exists", "residx_atom37_to_atom14",
            "atom37_atom_exists"]


# --- embeddings (EmbeddingsAndEvoformer before the stacks) and the heads ---------------------------

# model_1_ptm only (not in af2-param-keys-model_1.txt); as make_params.check_layout
PAE_KEYS = {AF_ITER + "predicted_aligned_error_head/logits//weights": (128, 64),
            AF_ITER + "predicted_aligned_error_head/logits//bias": (64,)}

EMB_BATCH = ["aatype", "residue_index", "seq_mask", "target_feat", "msa_feat", "msa_mask",
             "extra_msa", "extra_has_deletion", "extra_deletion_value", "extra_msa_mask",
             "prev_pos", "prev_msa_first_row", "prev_pair"]
HEAD_REPS = ["single", "structure_module", "pair", "msa"]


def embeddings_inputs(seed):
    """Feature batch of the embeddings golden, shaped like the monomer pipeline's (one ensemble
    member): aatype with a GLY, residue_index with a chain gap of 40, last residue padded (zero
    features, residue_index 0), msa_feat = [cluster one-hot 23, has_deletion, deletion_value,
    deletion_mean, cluster_profile 23], extra MSA tokens 0..22, and a random previous iteration:
    prev_pos an extended CA trace (pseudo-beta distances from ~2 to ~40 A, none within 1e-3 A^2 of
    a bin edge), prev_msa_first_row / prev_pair N(0.5, 2^2).
    Drawn from their own generator so that make_inputs (and every other golden) is unchanged.
    """
    from alphafold.common import residue_constants as rc

    rng = np.random.default_rng([seed, 34567])
    f32 = np.float32
    cfg = af2_ref.official_model_config("model_1")
    c = cfg.model.embeddings_and_evoformer
    pad = L - 1
    aatype = rng.integers(0, 20, size=(L,)).astype(np.int32)
    aatype[2] = rc.restype_order["G"]  # pseudo-beta is CA
    aatype[pad] = 0
    seq_mask = np.ones(L, f32)
    seq_mask[pad] = 0.0
    residue_index = np.arange(L, dtype=np.int32)
    residue_index[6:] += 40  # chain gap: offsets clip at both ends
    residue_index[pad] = 0
    target_feat = np.zeros((L, 22), f32)  # [has_break, aatype one-hot (21)]
    target_feat[np.arange(L), 1 + aatype] = 1.0
    target_feat[6, 0] = 1.0  # has_break after the gap (exercises the column)

    def deletions(shape, p):
        has = (rng.random(shape) < p).astype(f32)
        count = has * rng.integers(1, 12, size=shape)
        return has, (2 / np.pi * np.arctan(count / 3)).astype(f32)

    msa = rng.integers(0, 22, size=(S, L))  # 21 = gap
    msa[rng.random((S, L)) < 0.05] = 22  # bert mask token
    msa[0] = aatype
    has_del, del_val = deletions((S, L), 0.15)
    del_mean = (2 / np.pi * np.arctan(rng.random((S, L)) * 5 / 3)).astype(f32)
    profile = rng.dirichlet(np.full(23, 0.3), size=(S, L)).astype(f32)
    msa_feat = np.concatenate([np.eye(23, dtype=f32)[msa], has_del[..., None], del_val[..., None],
                               del_mean[..., None], profile], axis=-1)
    msa_mask = np.ones((S, L), f32)
    extra = rng.integers(0, 23, size=(S_EXTRA, L)).astype(np.int32)
    extra_has_del, extra_del_val = deletions((S_EXTRA, L), 0.2)
    extra_mask = (rng.random((S_EXTRA, L)) > 0.2).astype(f32)
    target_feat[pad] = 0.0
    msa_feat[:, pad] = 0.0
    msa_mask[:, pad] = 0.0
    for a in (extra, extra_has_del, extra_del_val, extra_mask):
        a[:, pad] = 0
    # previous positions: extended CA trace, CB 1.53 A off CA, other atoms scattered round CA
    step = rng.standard_normal((L, 3)) + np.array([2.0, 0.0, 0.0])
    ca = np.cumsum(3.8 * step / np.linalg.norm(step, axis=-1, keepdims=True), axis=0)
    pos = ca[:, None, :] + 1.5 * rng.standard_normal((L, 37, 3))
    pos[:, rc.atom_order["CA"]] = ca
    u = rng.standard_normal((L, 3))
    pos[:, rc.atom_order["CB"]] = ca + 1.53 * u / np.linalg.norm(u, axis=-1, keepdims=True)
    pos = (pos + 5.0 * rng.standard_normal(3)).astype(f32)
    pos[pad] = 0.0
    pb = np.where((aatype == rc.restype_order["G"])[:, None], pos[:, rc.atom_order["CA"]],
                  pos[:, rc.atom_order["CB"]]).astype(np.float64)
    d2 = np.sum((pb[:, None] - pb[None]) ** 2, axis=-1)
    edges2 = np.linspace(c.prev_pos.min_bin, c.prev_pos.max_bin, c.prev_pos.num_bins) ** 2
    assert np.min(np.abs(d2[..., None] - edges2)) > 1e-3, "a distance sits on a bin edge"
    return {
        "aatype": aatype,
        "residue_index": residue_index,
        "seq_mask": seq_mask,
        "target_feat": target_feat,
        "msa_feat": msa_feat,
        "msa_mask": msa_mask,
        "extra_msa": extra,
        "extra_has_deletion": extra_has_del,
        "extra_deletion_value": extra_del_val,
        "extra_msa_mask": extra_mask,
        "prev_pos": pos,
        "prev_msa_first_row": (0.5 + 2 * rng.standard_normal((L, c.msa_channel))).astype(f32),
        "prev_pair": (0.5 + 2 * rng.standard_normal((L, L, c.pair_channel))).astype(f32),
    }


def heads_inputs(base):
    """The heads golden's representations, taken from make_inputs: single = single_act,
    structure_module (the structure module's final single act) = initial_act, pair = pair_act,
    msa = msa_act."""
    return {"single": base["single_act"], "structure_module": base["initial_act"],
            "pair": base["pair_act"], "msa": base["msa_act"]}


def embedding_head_goldens(cfg, gc):
    """The embeddings and heads goldens, in the goldens() format (prefix alphafold_iteration/).

    embeddings: the official EmbeddingsAndEvoformer (templates off) with both stacks made the
    identity by an interceptor (one block each, EvoformerIteration returns its input and so builds
    no parameters; 0 blocks is not supported by layer_stack) and single_activations skipped: its
    msa/pair outputs are the evoformer stack's inputs (input embedder + recycling + relpos), and
    the Linear/LayerNorm calls are captured for the pieces.
    heads: the five heads (predicted_aligned_error_head is model_1_ptm's) on the representations;
    add_confidence() then appends alphafold.common.confidence's metrics on the stored logits.
    """
    c = copy.deepcopy(cfg.model.embeddings_and_evoformer)
    c.template.enabled = False
    c.evoformer_num_block = 1
    c.extra_msa_stack_num_block = 1
    h = cfg.model.heads
    key = jax.random.PRNGKey(0)
    captured = ("preprocess_1d", "preprocess_msa", "left_single", "right_single",
                "prev_pos_linear", "prev_msa_first_row_norm", "prev_pair_norm", "pair_activiations",
                "extra_msa_activations")

    def embeddings(i):
        cap = {}

        def intercept(next_f, args, kwargs, ctx):
            if ctx.method_name != "__call__":
                return next_f(*args, **kwargs)
            if isinstance(ctx.module, modules.EvoformerIteration):
                return kwargs["activations"]
            name = ctx.module.module_name.split("/")[-1]
            if name == "single_activations":
                return jnp.zeros(args[0].shape[:-1] + (c.seq_channel,), args[0].dtype)
            out = next_f(*args, **kwargs)
            if name in captured:
                cap[name] = (args[0], out)
            return out

        with hk.intercept_methods(intercept):
            rep = modules.EmbeddingsAndEvoformer(c, gc)(i, is_training=False,
                                                        safe_key=prng.SafeKey(key))
        assert sorted(cap) == sorted(captured), sorted(cap)
        return {
            "msa": rep["msa"],
            "pair": rep["pair"],
            "extra_msa": cap["extra_msa_activations"][1],
            "input_embedder/msa": cap["preprocess_1d"][1][None] + cap["preprocess_msa"][1],
            "input_embedder/pair": cap["left_single"][1][:, None] + cap["right_single"][1][None],
            "relpos": cap["pair_activiations"][1],
            "recycle/prev_pos_dgram": cap["prev_pos_linear"][0],
            "recycle/prev_pos_linear": cap["prev_pos_linear"][1],
            "recycle/prev_msa_first_row_norm": cap["prev_msa_first_row_norm"][1],
            "recycle/prev_pair_norm": cap["prev_pair_norm"][1],
        }

    def heads(i):
        reps = {k: i[k] for k in HEAD_REPS}
        out = {}
        for name, head, cfg_h, keys in [
                ("predicted_lddt", modules.PredictedLDDTHead, h.predicted_lddt, ["logits"]),
                ("distogram", modules.DistogramHead, h.distogram, ["logits", "bin_edges"]),
                ("masked_msa", modules.MaskedMsaHead, h.masked_msa, ["logits"]),
                ("experimentally_resolved", modules.ExperimentallyResolvedHead,
                 h.experimentally_resolved, ["logits"]),
                ("predicted_aligned_error", modules.PredictedAlignedErrorHead,
                 h.predicted_aligned_error, ["logits", "breaks"])]:
            ret = head(cfg_h, gc)(reps, None, is_training=False)
            out.update({f"{name}/{k}": ret[k] for k in keys})
        return out

    return {
        "embeddings": (AF_ITER, EMB_BATCH, embeddings, None),
        "heads": (AF_ITER, HEAD_REPS, heads, None),
    }


def add_confidence(out_dir, seed):
    """Appends output/confidence/* to heads.safetensors: alphafold.common.confidence on the stored
    float32 logits, as model.get_confidence_metrics does for a monomer (pTM with asym_id=None, no
    residue_weights), plus ptm_weighted with residue_weights = input/residue_weights (the seq mask,
    last residue 0; the fork's predicted_tm_score).
    L = 11 clips pTM's d0 at 19 residues, so the pTM of input/pae_logits_32 (random f16-exact logits
    [32,32,64], stored as float16) is added too, unweighted (ptm_32) and with
    input/residue_weights_32 (0/1, 26 ones: ptm_32_weighted)."""
    from alphafold.common import confidence
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = os.path.join(out_dir, "heads.safetensors")
    with safe_open(path, "np") as f:
        meta = f.metadata()
    t = load_file(path)
    t = {k: v for k, v in t.items() if not k.startswith(("output/confidence/",
                                                          "input/residue_weights",
                                                          "input/pae_logits_32"))}
    plddt_logits = t["output/predicted_lddt/logits"]
    pae_logits = t["output/predicted_aligned_error/logits"]
    breaks = t["output/predicted_aligned_error/breaks"]
    weights = np.ones(L, np.float32)
    weights[-1] = 0.0
    rng = np.random.default_rng([seed, 45678])
    logits_32 = (3 * rng.standard_normal((32, 32, 64))).astype(np.float16)
    weights_32 = np.ones(32, np.float32)
    weights_32[rng.choice(32, 6, replace=False)] = 0.0
    f32_32 = logits_32.astype(np.float32)
    pae = confidence.compute_predicted_aligned_error(pae_logits, breaks)
    conf = {
        "plddt": confidence.compute_plddt(plddt_logits),
        "aligned_confidence_probs": pae["aligned_confidence_probs"],
        "predicted_aligned_error": pae["predicted_aligned_error"],
        "max_predicted_aligned_error": np.reshape(pae["max_predicted_aligned_error"], [1]),
        "ptm": np.reshape(confidence.predicted_tm_score(pae_logits, breaks, asym_id=None), [1]),
        "ptm_weighted": np.reshape(confidence.predicted_tm_score(
            pae_logits, breaks, residue_weights=weights, asym_id=None), [1]),
        "ptm_32": np.reshape(confidence.predicted_tm_score(f32_32, breaks, asym_id=None), [1]),
        "ptm_32_weighted": np.reshape(confidence.predicted_tm_score(
            f32_32, breaks, residue_weights=weights_32, asym_id=None), [1]),
    }
    t["input/residue_weights"] = weights
    t["input/pae_logits_32"] = logits_32
    t["input/residue_weights_32"] = weights_32
    t.update({f"output/confidence/{k}": np.asarray(v, np.float32) for k, v in conf.items()})
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, path, metadata=meta)
    for k, v in conf.items():
        print(f"    output/confidence/{k:29s} {str(np.shape(v)):18s} |max| {np.abs(v).max():.3g}")


# --- templates (TemplateEmbedding and the template torsion rows) ---------------------------------

TEMPLATE_BATCH = ["template_aatype", "template_all_atom_positions", "template_all_atom_masks",
                  "template_pseudo_beta", "template_pseudo_beta_mask", "template_mask"]
TEMPLATE_ATOMS = ["template_aatype", "template_all_atom_positions", "template_all_atom_masks"]


def template_inputs(seed, base):
    """Inputs of the template goldens: query pair_act / pair_mask from make_inputs (last residue
    padded) and two templates, the second with template_mask 0, built from plausible chains
    (NeRF backbone with ideal bonds, phi/psi/omega near a helix for template 0 and a strand with
    one cis peptide for template 1; side chains, O and CB by the official torsion_angles_to_frames
    and literature positions from random chi angles). Template 0 is fully real (ARG, LYS, GLY
    included); template 1 has GLY, an UNK residue (backbone atoms only) and a gap (21) at the
    padded last residue with all-zero positions and masks, as the pipeline makes them. Seven atoms
    are marked missing (mask 0, positions kept): two CBs, an O, an N, a CG, a CA and a C.
    Residue 0's N sits on an axis at a power-of-two distance from the origin ((8,0,0), (0,0,-16)).
    Its pre-omega frame is built from the zero-padded previous residue (origin, origin, N): the
    Gram-Schmidt residue of two collinear vectors, which the robust normalisation (eps 1e-8) blows
    up into arbitrary sin/cos unless it is exactly zero, as it is only for such an N.
    No pseudo-beta squared distance lies within 1e-2 A^2 of a distogram bin edge.
    Drawn from their own generator so that make_inputs (and every other golden) is unchanged.
    """
    from alphafold.common import residue_constants as rc
    from alphafold.model import all_atom, r3

    deg = np.pi / 180
    aa = rc.restype_order
    a14_to_a37 = np.zeros((21, 14), np.int64)
    for r, letter in enumerate(rc.restypes):
        for k, n in enumerate(rc.restype_name_to_atom14_names[rc.restype_1to3[letter]]):
            a14_to_a37[r, k] = rc.atom_order[n] if n else 0
    a14_exists = np.asarray(rc.restype_atom14_mask)

    def place(a, b, c, bond, angle, torsion):  # NeRF: d, |cd| = bond, bcd = angle, abcd = torsion
        bc = (c - b) / np.linalg.norm(c - b)
        n = np.cross(b - a, bc)
        n /= np.linalg.norm(n)
        d = np.array([-bond * np.cos(angle), bond * np.sin(angle) * np.cos(torsion),
                      bond * np.sin(angle) * np.sin(torsion)])
        return c + np.stack([bc, np.cross(n, bc), n], -1) @ d

    def chain(rng, aatype, phi0, psi0, n0, cis=None):
        phi = (phi0 + 10 * rng.standard_normal(L)) * deg
        psi = (psi0 + 10 * rng.standard_normal(L)) * deg
        omega = (180 + 5 * rng.standard_normal(L)) * deg
        if cis is not None:
            omega[cis] = 5 * deg
        n, ca = [np.zeros(3)], [np.array([1.458, 0.0, 0.0])]
        c = [place(np.array([0.0, 1.0, 0.0]), n[0], ca[0], 1.525, 111.2 * deg, 0.0)]
        for i in range(L - 1):
            n.append(place(n[i], ca[i], c[i], 1.329, 116.2 * deg, psi[i]))
            ca.append(place(ca[i], c[i], n[i + 1], 1.458, 121.7 * deg, omega[i]))
            c.append(place(c[i], n[i + 1], ca[i + 1], 1.525, 111.2 * deg, phi[i + 1]))
        rot, trans = quat_affine.make_transform_from_reference(np.array(n), np.array(ca),
                                                               np.array(c))
        rot, trans = np.asarray(rot), np.asarray(trans)
        backb = r3.Rigids(r3.Rots(*[jnp.asarray(rot[:, a, b]) for a in range(3) for b in range(3)]),
                          r3.Vecs(*[jnp.asarray(trans[:, a]) for a in range(3)]))
        build = np.where(aatype < 20, aatype, 0)  # UNK and gap built as ALA, atoms removed below
        angles = np.stack([omega, phi, psi] + list(rng.uniform(-np.pi, np.pi, (4, L))), -1)
        sin_cos = np.stack([np.sin(angles), np.cos(angles)], -1).astype(np.float32)
        frames = all_atom.torsion_angles_to_frames(jnp.asarray(build), backb, jnp.asarray(sin_cos))
        a14 = all_atom.frames_and_literature_positions_to_atom14_pos(jnp.asarray(build), frames)
        a14 = np.stack([np.asarray(a14.x), np.asarray(a14.y), np.asarray(a14.z)], -1)
        pos, mask = np.zeros((L, 37, 3)), np.zeros((L, 37), np.float32)
        for i in range(L):
            keep = a14_exists[build[i]] > 0
            if aatype[i] == rc.unk_restype_index:
                backbone = [rc.atom_order[a] for a in ("N", "CA", "C", "O")]
                keep &= np.isin(a14_to_a37[build[i]], backbone)
            elif aatype[i] > 20:
                keep[:] = False
            pos[i, a14_to_a37[build[i]][keep]] = a14[i, keep]
            mask[i, a14_to_a37[build[i]][keep]] = 1.0
        # random orientation, residue 0's N moved to n0 exactly
        q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
        real = mask > 0
        pos[real] = (pos[real] - pos[0, rc.atom_order["N"]]) @ q.T + np.asarray(n0)
        return pos, mask

    for attempt in range(100):
        rng = np.random.default_rng([seed, 56789, attempt])
        aatype = rng.integers(0, 20, size=(2, L)).astype(np.int32)
        aatype[0, [1, 3, 5, 8]] = [aa["R"], aa["G"], aa["K"], aa["F"]]
        aatype[1, [2, 4, 6, 7, L - 1]] = [aa["M"], aa["G"], aa["D"], rc.unk_restype_index, 21]
        pos0, mask0 = chain(rng, aatype[0], -60, -45, (8.0, 0.0, 0.0))
        pos1, mask1 = chain(rng, aatype[1], -120, 130, (0.0, 0.0, -16.0), cis=6)
        pos = np.stack([pos0, pos1]).astype(np.float32)
        mask = np.stack([mask0, mask1])
        o = rc.atom_order
        for t, i, atom in [(0, 4, "CB"), (0, 6, "O"), (0, 8, "N"), (0, 1, "CG"), (1, 2, "CA"),
                           (1, 5, "C"), (1, 9, "CB")]:
            mask[t, i, o[atom]] = 0.0
        pb, pb_mask = modules.pseudo_beta_fn(jnp.asarray(aatype), jnp.asarray(pos),
                                             jnp.asarray(mask))
        pb = np.asarray(pb, np.float64)
        d2 = ((pb[:, :, None] - pb[:, None]) ** 2).sum(-1)
        edges = np.linspace(3.25, 50.75, 39) ** 2
        if np.abs(d2[..., None] - edges).min() > 1e-2:
            break
    else:
        raise RuntimeError("no template draw keeps the distogram away from the bin edges")
    return {
        "pair_act": base["pair_act"],
        "pair_mask": base["pair_mask"],
        "template_aatype": aatype,
        "template_all_atom_positions": pos,
        "template_all_atom_masks": mask,
        "template_pseudo_beta": np.asarray(pb, np.float32),
        "template_pseudo_beta_mask": np.asarray(pb_mask, np.float32),
        "template_mask": np.array([1.0, 0.0], np.float32),
    }


def template_goldens(cfg, gc):
    """The template goldens, in the goldens() format.

    template_embedding: modules.TemplateEmbedding (prefix evoformer/) on the query pair_act with
    pair_mask as mask_2d; its params keep the template pair stack's layer axis (2 blocks, like the
    npz). single_template_embedding: modules.SingleTemplateEmbedding called on each template
    (output [T, L, L, 64]); single_template_embedding_unit_vector: the same with
    use_template_unit_vector = True (False in every monomer config). Both share the params of
    template_embedding.safetensors.
    template_torsion_embedding: the template rows of the main MSA (EmbeddingsAndEvoformer, branch
    `c.template.embed_torsion_angles`, Alg. 2 lines 7-8), copied here as it can't be called on its
    own; check_template_torsion_copy compares it with the official EmbeddingsAndEvoformer.
    """
    c = cfg.model.embeddings_and_evoformer
    tcfg = c.template
    tcfg_uv = copy.deepcopy(tcfg)
    tcfg_uv.use_template_unit_vector = True
    single_batch = TEMPLATE_BATCH[:-1]  # template_mask is not read per template

    def template_embedding(i):
        return modules.TemplateEmbedding(tcfg, gc)(
            i["pair_act"], {k: i[k] for k in TEMPLATE_BATCH}, i["pair_mask"], is_training=False)

    def single_template(config):
        def fn(i):
            module = modules.SingleTemplateEmbedding(config, gc)
            num_templ = i["template_aatype"].shape[0]
            return jnp.stack([module(i["pair_act"], {k: i[k][t] for k in single_batch},
                                     i["pair_mask"], is_training=False)
                              for t in range(num_templ)])
        return fn

    def template_torsion(i):
        return template_torsion_rows(c, gc, i)

    T = "template_embedding.safetensors"
    return {
        "template_embedding": (EVO, ["pair_act", "pair_mask"] + TEMPLATE_BATCH,
                               template_embedding, None),
        "single_template_embedding": (EVO + "template_embedding/",
                                      ["pair_act", "pair_mask"] + single_batch,
                                      single_template(tcfg), T),
        "single_template_embedding_unit_vector": (EVO + "template_embedding/",
                                                  ["pair_act", "pair_mask"] + single_batch,
                                                  single_template(tcfg_uv), T),
        "template_torsion_embedding": (EVO, TEMPLATE_ATOMS, template_torsion, None),
    }


def template_torsion_rows(c, gc, batch):
    """modules.EmbeddingsAndEvoformer.__call__, `if c.template.enabled and
    c.template.embed_torsion_angles:` (Alg. 2 lines 7-8), verbatim but for the returned dict."""
    from alphafold.model import all_atom, common_modules

    dtype = jnp.float32
    num_templ, num_res = batch['template_aatype'].shape
    aatype_one_hot = jax.nn.one_hot(batch['template_aatype'], 22, axis=-1)
    ret = all_atom.atom37_to_torsion_angles(
        aatype=batch['template_aatype'],
        all_atom_pos=batch['template_all_atom_positions'],
        all_atom_mask=batch['template_all_atom_masks'],
        placeholder_for_undefined=not gc.zero_init)
    template_features = jnp.concatenate([
        aatype_one_hot,
        jnp.reshape(ret['torsion_angles_sin_cos'], [num_templ, num_res, 14]),
        jnp.reshape(ret['alt_torsion_angles_sin_cos'], [num_templ, num_res, 14]),
        ret['torsion_angles_mask']], axis=-1).astype(dtype)
    template_activations = common_modules.Linear(
        c.msa_channel, initializer='relu', name='template_single_embedding')(template_features)
    template_activations = jax.nn.relu(template_activations)
    template_activations = common_modules.Linear(
        c.msa_channel, initializer='relu', name='template_projection')(template_activations)
    torsion_angle_mask = ret['torsion_angles_mask'][:, :, 2].astype(dtype)
    return {
        "msa": template_activations,  # [T, L, c_m], appended to the MSA rows
        "msa_mask": torsion_angle_mask,  # [T, L], appended to msa_mask (psi mask)
        "torsion_angles_sin_cos": ret['torsion_angles_sin_cos'],
        "alt_torsion_angles_sin_cos": ret['alt_torsion_angles_sin_cos'],
        "torsion_angles_mask": ret['torsion_angles_mask'],
    }


def check_template_torsion_copy(cfg, gc, seed, out_dir):
    """template_torsion_embedding's stored rows and mask are what the official
    EmbeddingsAndEvoformer appends to the MSA: run it (templates on, one block per stack) on
    embeddings_inputs + the template inputs, with every EvoformerIteration replaced by an
    interceptor that rolls the template rows to the front of the MSA (the output crops to the
    first num_sequences rows) and writes the template rows' MSA mask it is given into the next
    row. Parameters: randomize_flat by official key, so the two Linear layers equal the golden's."""
    from safetensors.numpy import load_file

    g = load_file(os.path.join(out_dir, "template_torsion_embedding.safetensors"))
    c = copy.deepcopy(cfg.model.embeddings_and_evoformer)
    c.evoformer_num_block = 1
    c.extra_msa_stack_num_block = 1
    batch = dict(embeddings_inputs(seed))
    batch.update({k: v for k, v in template_inputs(seed, make_inputs(seed)).items()
                  if k.startswith("template_")})
    batch.update({k: g[f"input/{k}"] for k in TEMPLATE_ATOMS})
    num_seq, num_templ = batch["msa_feat"].shape[0], batch["template_aatype"].shape[0]

    def fn(b):
        def intercept(next_f, args, kwargs, ctx):
            if ctx.method_name == "__call__" and isinstance(ctx.module, modules.EvoformerIteration):
                act = kwargs["activations"]
                if act["msa"].shape[0] != num_seq + num_templ:  # the extra-MSA stack
                    return act
                # template rows first, then their MSA mask [L, T] in row num_templ, channels :T
                msa = jnp.roll(act["msa"], -num_seq, axis=0)
                msa = msa.at[num_templ, :, :num_templ].set(kwargs["masks"]["msa"][num_seq:].T)
                return {"msa": msa, "pair": act["pair"]}
            return next_f(*args, **kwargs)

        with hk.intercept_methods(intercept):
            rep = modules.EmbeddingsAndEvoformer(c, gc)(
                b, is_training=False, safe_key=prng.SafeKey(jax.random.PRNGKey(0)))
        return rep["msa"][:num_templ], rep["msa"][num_templ, :, :num_templ].T

    f = hk.transform(fn)
    shapes = af2_ref.flatten_haiku(jax.eval_shape(f.init, jax.random.PRNGKey(0), batch))
    flat = af2_ref.randomize_flat({AF_ITER + k: tuple(v.shape) for k, v in shapes.items()},
                                  seed, layer_axes=False)
    params = af2_ref.unflatten_haiku({k[len(AF_ITER):]: v for k, v in flat.items()})
    rows, mask = jax.jit(f.apply)(params, jax.random.PRNGKey(0), batch)
    assert np.array_equal(np.asarray(mask), g["output/msa_mask"]), "template msa mask"
    err = float(np.abs(np.asarray(rows) - g["output/msa"]).max())
    assert err <= 1e-5 * np.abs(g["output/msa"]).max(), ("template msa rows", err)
    print(f"template_torsion_embedding equals EmbeddingsAndEvoformer's template rows "
          f"(max diff {err:.1e})")


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

    def structure_module(i, compute_loss=True):
        ret = folding.StructureModule(sm, gc, compute_loss=compute_loss)(
            {"single": i["single"], "pair": i["pair"]}, {k: i[k] for k in SM_BATCH},
            is_training=False, safe_key=prng.SafeKey(key))
        out = {
            "representations/structure_module": ret["representations"]["structure_module"],
            "final_atom_positions": ret["final_atom_positions"],
            "final_atom_mask": ret["final_atom_mask"],
        }
        if compute_loss:
            sc = ret["sidechains"]
            out.update({
                "traj": ret["traj"],  # [num_layer, L, 7], translation in Å
                "sidechains/angles_sin_cos": sc["angles_sin_cos"][-1],
                "sidechains/unnormalized_angles_sin_cos": sc["unnormalized_angles_sin_cos"][-1],
                "final_atom14_positions": ret["final_atom14_positions"],
            })
        return out

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
        "structure_module": (AF_ITER, ["single", "pair"] + SM_BATCH, structure_module, None),
    }


def run_one(name, spec, inputs, official, seed, out_dir, param_dtype=np.float32):
    prefix, in_names, fn, params_file = spec
    inp = {k: jnp.asarray(inputs[k]) for k in in_names}
    f = hk.transform(fn)
    shapes = af2_ref.flatten_haiku(jax.eval_shape(f.init, jax.random.PRNGKey(0), inp))
    shapes = {k: tuple(v.shape) for k, v in shapes.items()}
    # every parameter must be an official key with the official (per-layer) shape; a module that
    # contains a whole layer stack (the template pair stack) has the official stacked shape
    for k, s in shapes.items():
        full = prefix + k
        assert full in official, f"{name}: {full} is not an official key"
        n_lead, _ = af2_ref.layer_axis(full)
        assert official[full][n_lead:] == s or official[full] == s, (full, s, official[full])
    stacked = {k for k, s in shapes.items()
               if af2_ref.layer_axis(prefix + k)[0] and official[prefix + k] == s}
    params = af2_ref.randomize_flat({prefix + k: s for k, s in shapes.items() if k not in stacked},
                                    seed, layer_axes=False)
    params.update(af2_ref.randomize_flat({prefix + k: shapes[k] for k in stacked}, seed))
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
    official = {**af2_ref.load_official_keys(), **PAE_KEYS}
    inputs = make_inputs(args.seed)
    own_inputs = {"structure_module": structure_module_inputs(args.seed, inputs)}
    own_inputs.update(embeddings=embeddings_inputs(args.seed), heads=heads_inputs(inputs))
    specs = {**goldens(cfg, gc), **embedding_head_goldens(cfg, gc)}
    tmpl = template_goldens(cfg, gc)
    specs.update(tmpl)
    own_inputs.update(dict.fromkeys(tmpl, template_inputs(args.seed, inputs)))
    names = args.only or list(specs)
    produced = {}
    for name in names:
        path, tensors, params = run_one(name, specs[name], own_inputs.get(name, inputs), official,
                                         args.seed, args.out, np.dtype(args.param_dtype))
        produced[name] = params
        print(f"{os.path.relpath(path, af2_ref.ROOT)}  {os.path.getsize(path) / 1024:.0f} KiB")
        for k, v in tensors.items():
            if not k.startswith("params/"):
                print(f"    {k:40s} {str(v.shape):18s} {v.dtype}  |max| {np.abs(v).max():.3g}")
        if not any(k.startswith("params/") for k in tensors):
            print(f"    params: {len(params)} arrays in {specs[name][3]}")
        else:
            print(f"    params/: {len(params)} arrays")
        if name == "heads":
            add_confidence(args.out, args.seed)
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
            tol = ROUND_TRIP_TOL.get(name, 1e-4)
            assert err <= tol * max(1.0, float(np.abs(ref).max())), (name, k, err)
    print(f"round trip ok: {len(names)} goldens rebuilt from the files")
    if "template_torsion_embedding" in names:
        check_template_torsion_copy(cfg, gc, args.seed, args.out)
    if "structure_module" in names:
        # compute_loss=False (what AlphaFold uses at inference) returns the same arrays
        g = load_file(os.path.join(args.out, "structure_module.safetensors"))
        inp = {k: g[f"input/{k}"] for k in specs["structure_module"][1]}
        fn = hk.transform(lambda i: specs["structure_module"][2](i, compute_loss=False))
        flat = {k[len("params/" + AF_ITER):]: v.astype(np.float32) for k, v in g.items()
                if k.startswith("params/")}
        out = jax.jit(fn.apply)(af2_ref.unflatten_haiku(flat), jax.random.PRNGKey(0), inp)
        for k, v in out.items():
            assert np.array_equal(np.asarray(v), g[f"output/{k}"]), ("compute_loss=False", k)
        # its fold_iteration params are those of fold_iteration.safetensors
        if "fold_iteration" in produced:
            for k, v in produced["fold_iteration"].items():
                assert np.array_equal(v, produced["structure_module"][k]), k
    # shared params must really be the params file's arrays
    for name in names:
        pf = specs[name][3]
        owner = pf and pf.replace(".safetensors", "")
        if owner in produced:
            for k, v in produced[name].items():
                assert k in produced[owner] and np.array_equal(v, produced[owner][k]), (name, k)


if __name__ == "__main__":
    main()
