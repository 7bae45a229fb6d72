"""End-to-end golden of the official AlphaFold2 v2.3 monomer model (model_1_ptm, random params).

    python tools/reference/af2/make_model_golden.py [--out tests/data/af2] [--seed 0]
        [--params /tmp/af2/params_model_1_ptm.npz]

Writes
  tests/data/af2/model_features.npz            processed features (the model's input contract,
                                                /work/shared/reference/af2-features.md), unpadded:
                                                E = num_recycle+1 = 4 identical slices, L = 24,
                                                S = 6 MSA rows, X = 8 extra rows, T = 1 template.
                                                Keys prefixed aux_ are not model inputs (the raw MSA
                                                the features were built from, for pipeline tests).
  tests/data/af2/model_1_ptm_outputs.safetensors  the official model's outputs on those features,
                                                plus the recycling state after recycles 0, 1, 2;
                                                metadata key "af2_golden" (JSON).
and the random parameters (356 MiB, not in the repo) at --params; if that file exists it must equal
what make_params.py's generator gives for --seed (checked array by array).

The features are built here in numpy, deterministically, the way the official TF pipeline would
build them with the random parts switched off: the MSA rows are split into S cluster centres and
X extra rows by hand (no sample_msa shuffle), no BERT masking (masked_msa_replace_fraction = 0),
extra rows assigned to their nearest centre and summarised into cluster_profile /
cluster_deletion_mean exactly as data_transforms.nearest_neighbor_clusters / summarize_clusters do,
no crop_extra_msa shuffle, no fixed-size padding.

The model: the fork's modules.AlphaFold (alphafold-colabfold 2.3.1) runs ONE recycling iteration
per call and takes the recycling state from batch["prev"]. The official AlphaFold module runs
num_recycle + 1 = 4 iterations, iteration r on feature slice [r], with prev zero at r = 0 and
prev = {final_atom_positions, msa_first_row, pair} of iteration r-1 afterwards. This script does
exactly that loop around one jitted call (one compiled graph reused 4 times).
"""
import argparse
import hashlib
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import af2_ref  # noqa: E402  (sets XLA env before jax is imported)

import haiku as hk  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

from alphafold.common import confidence  # noqa: E402
from alphafold.common import residue_constants as rc  # noqa: E402
from alphafold.model import all_atom, modules  # noqa: E402

import make_params  # noqa: E402

MODEL = "model_1_ptm"
F32, I32 = np.float32, np.int32

# ---------------------------------------------------------------------------------------------
# Inputs. Query: ubiquitin residues 1-24 (UniProt P0CG48). Rows are written in the processed
# alphabet (AF order ARNDCQEGHILKMFPSTWYV, X = 20, gap '-' = 21). deletions: {column: count} =
# deletion_matrix (a3m lowercase insertions to the left of that column).
QUERY = "MQIFVKTLTGKTITLEVEPSDTIE"
MSA = [  # cluster centres; row 0 = query
    (QUERY, {}),
    ("MQIFVKTLTGKTIALEVEPSDTVE", {}),
    ("MKIFVKTLSGKTITLDVEPSDT--", {7: 1}),
    ("-QVFVKTLTGRTITLEVEGSDTIE", {10: 2, 20: 1}),
    ("MQIFVRTLDGKSI--EVEPNDTIE", {15: 5}),
    ("MQLFVKTITGKTVTLEVEASDXIE", {3: 1}),
]
EXTRA = [  # extra (non-centre) rows
    ("MQIFVKTLTGKTIALEVEPSDTVQ", {}),
    ("MKIFVKTLSGKTVTLDVEPSDT--", {}),
    ("--VFVKTLTGRTITLEVEGSETIE", {9: 1}),
    ("MQIFVRSLDGKSI--EVEPNDSIE", {15: 3, 4: 1}),
    ("MQLFVKTITGKTVSLEVEASDKIE", {}),
    ("MQIYVKTLTGKTITLEVEPSDTIE", {18: 7}),
    ("-----KTLTGKTITLEIEPSDTIE", {5: 2}),
    ("MQIFVKTLTGKTITLEVEPADTIE", {12: 1, 13: 1}),
]
TEMPLATE_SEQ = "MQIYVKSLTGKTITLEV-PSDSIE"  # template residue types; '-' = unaligned (missing)
HELIX = dict(phi=-57.0, psi=-47.0, omega=180.0)  # ideal right-handed alpha helix
SPIN = 30.0  # free rotation of the placed template about its N_0 -> N_next axis (degrees)


def encode(seq):
    table = {a: i for i, a in enumerate(rc.restypes_with_x_and_gap)}  # ..., 'X' 20, '-' 21
    return np.array([table[a] for a in seq], I32)


def deletion_row(dels, n):
    d = np.zeros(n, F32)
    for col, cnt in dels.items():
        d[col] = cnt
    return d


def msa_features(L, msa_rows=MSA, extra_rows=EXTRA, strict=True):
    """MSA features from (sequence, {column: deletions}) rows; `strict`: no nearest-centre ties."""
    msa = np.stack([encode(s) for s, _ in msa_rows])
    dm = np.stack([deletion_row(d, L) for _, d in msa_rows])
    extra = np.array([encode(s) for s, _ in extra_rows], I32).reshape(len(extra_rows), L)
    edm = np.array([deletion_row(d, L) for _, d in extra_rows], F32).reshape(len(extra_rows), L)
    assert msa.shape[1] == L and extra.shape[1] == L
    msa_mask = np.ones(msa.shape, F32)
    extra_mask = np.ones(extra.shape, F32)

    # data_transforms.nearest_neighbor_clusters (gap_agreement_weight 0; mask token weight 0)
    w = np.concatenate([np.ones(21), np.zeros(1), np.zeros(1)]).astype(F32)
    oh = lambda x: np.eye(23, dtype=F32)[x]  # noqa: E731
    sample = msa_mask[:, :, None] * oh(msa)
    ext = extra_mask[:, :, None] * oh(extra)
    agreement = ext.reshape(len(extra), L * 23) @ (sample * w).reshape(len(msa), L * 23).T
    assign = np.argmax(agreement, axis=1).astype(I32)
    top2 = np.sort(agreement, axis=1)[:, -2:]
    if strict and len(msa) > 1:
        assert np.all(top2[:, 1] > top2[:, 0]), "nearest-centre tie: argmax tie-break would matter"

    # data_transforms.summarize_clusters
    def csum(x):  # tf.math.unsorted_segment_sum over the centre each extra row is assigned to
        out = np.zeros((len(msa),) + x.shape[1:], F32)
        np.add.at(out, assign, x)
        return out
    mask_counts = F32(1e-6) + msa_mask + csum(extra_mask)  # the centre itself counts
    msa_sum = csum(extra_mask[:, :, None] * oh(extra)) + oh(msa)
    cluster_profile = msa_sum / mask_counts[:, :, None]
    del_sum = csum(extra_mask * edm) + dm
    cluster_deletion_mean = del_sum / mask_counts

    # data_transforms.make_msa_feat (masked_msa off: msa is the unmasked MSA)
    atan = lambda x: (np.arctan(x / 3.0) * (2.0 / np.pi)).astype(F32)  # noqa: E731
    msa_feat = np.concatenate([
        oh(msa), np.clip(dm, 0, 1)[..., None], atan(dm)[..., None],
        cluster_profile, atan(cluster_deletion_mean)[..., None]], axis=-1).astype(F32)
    feats = {
        "msa_feat": msa_feat,
        "msa_mask": msa_mask,
        "extra_msa": extra,
        "extra_has_deletion": np.clip(edm, 0, 1).astype(F32),
        "extra_deletion_value": atan(edm),
        "extra_msa_mask": extra_mask,
    }
    aux = {
        "aux_msa": msa, "aux_deletion_matrix": dm, "aux_extra_deletion_matrix": edm,
        "aux_extra_cluster_assignment": assign,
    }
    return feats, aux


# ---------------------------------------------------------------------------------------------
# Template: an ideal alpha helix (N, CA, C, O from internal coordinates; CB from the residue's
# ideal backbone-frame position in residue_constants), atom37 masks for N, CA, C, O, CB only
# (no CB for Gly), one unaligned residue (all zeros, aatype gap 21).

def _place(a, b, c, bond, angle, torsion):
    """NeRF: atom d with |cd| = bond, angle(b, c, d) = angle, dihedral(a, b, c, d) = torsion."""
    bc = (c - b) / np.linalg.norm(c - b)
    n = np.cross(b - a, bc)
    n /= np.linalg.norm(n)
    m = np.cross(n, bc)
    ang, tor = np.radians(angle), np.radians(torsion)
    return c + bond * (-np.cos(ang) * bc + np.sin(ang) * np.cos(tor) * m
                       + np.sin(ang) * np.sin(tor) * n)


def dihedral(a, b, c, d):
    b0, b1, b2 = a - b, c - b, d - c
    b1 = b1 / np.linalg.norm(b1)
    v = b0 - np.dot(b0, b1) * b1
    w = b2 - np.dot(b2, b1) * b1
    return np.degrees(np.arctan2(np.dot(np.cross(b1, v), w), np.dot(v, w)))


def ideal_helix(n_res):
    """float64 backbone [n_res, 4 (N, CA, C, O), 3]."""
    nca, cac, cn = 1.458, 1.525, 1.329  # bond lengths (Engh & Huber)
    a_ncac, a_cacn, a_cnca = 111.2, 116.2, 121.7  # bond angles
    n = np.zeros(3)
    ca = np.array([nca, 0.0, 0.0])
    c = ca + cac * np.array([-np.cos(np.radians(a_ncac)), np.sin(np.radians(a_ncac)), 0.0])
    bb = [[n, ca, c]]
    for _ in range(n_res - 1):
        n, ca, c = bb[-1]
        n1 = _place(n, ca, c, cn, a_cacn, HELIX["psi"])
        ca1 = _place(ca, c, n1, nca, a_cnca, HELIX["omega"])
        c1 = _place(c, n1, ca1, cac, a_ncac, HELIX["phi"])
        bb.append([n1, ca1, c1])
    out = []
    for n, ca, c in bb:
        o = _place(n, ca, c, 1.231, 120.5, HELIX["psi"] + 180.0)
        out.append([n, ca, c, o])
    return np.array(out)


def _rotation_to(u, v):
    """Rotation matrix taking unit vector u onto unit vector v."""
    w = np.cross(u, v)
    s, cth = np.linalg.norm(w), np.dot(u, v)
    if s < 1e-12:
        assert cth > 0
        return np.eye(3)
    k = w / s
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * K + (1 - cth) * K @ K


def _axis_rotation(axis, angle):
    k = axis / np.linalg.norm(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def template_features(L, template_seq=TEMPLATE_SEQ):
    """Template atom37 positions/masks, aatype, pseudo-beta; and how it was placed.

    Placement. The official template torsion features (all_atom.atom37_to_torsion_angles) are
    computed for masked torsions too and enter the template MSA row unmasked wherever the psi mask
    is 1. pre_omega of a residue whose predecessor is absent (residue 0, and the residue after the
    unaligned one) is built from a frame whose first and third points are both the all-zero
    padding, i.e. e1 = -e0: a degenerate Gram-Schmidt whose result is pure fp32 rounding noise
    amplified to O(1), unless the residue's N lies exactly on a coordinate axis at a power-of-two
    distance, where every step is exact and the feature is exactly (0, 0). The helix is placed
    rigidly, and scaled by < 0.5 %, so that N of both of those residues sits on a coordinate axis
    at 2^k.
    """
    aat = encode(template_seq)
    missing = int(np.flatnonzero(aat == 21)[0])
    assert (aat == 21).sum() == 1 and 0 < missing < L - 1
    nxt = missing + 1
    bb = ideal_helix(L)
    d = np.linalg.norm(bb[0, 0] - bb[nxt, 0])
    # candidate placements: N_0 at A, N_next at B, both on coordinate axes at power-of-two
    # distances from the origin (>= 1 A); the helix is scaled uniformly by |B - A| / d
    best = None
    pw = [2.0 ** k for k in range(0, 6)]
    for p in pw:
        for q in pw:
            for B in (np.array([0.0, q, 0.0]), np.array([q, 0.0, 0.0]), np.array([-q, 0.0, 0.0])):
                A = np.array([p, 0.0, 0.0])
                if np.allclose(A, B):
                    continue
                dev = abs(np.linalg.norm(A - B) / d - 1)
                if best is None or dev < best[0]:
                    best = (dev, A, B)
    dev, A, B = best
    assert dev < 0.005, f"no power-of-two placement within 0.5% scaling (best {dev:.4f})"
    scale = np.linalg.norm(B - A) / d
    # rigid transform: N_0 -> A, direction N_0 -> N_next onto A -> B; then spin about that axis
    p0, p1 = bb[0, 0], bb[nxt, 0]
    R = _rotation_to((p1 - p0) / np.linalg.norm(p1 - p0), (B - A) / np.linalg.norm(B - A))
    R = _axis_rotation(B - A, np.radians(SPIN)) @ R
    bb = scale * (bb - p0) @ R.T + A
    assert np.abs(bb[0, 0] - A).max() < 1e-9 and np.abs(bb[nxt, 0] - B).max() < 1e-9
    bb[0, 0] = A  # exact (the float64 transform leaves ~1e-15)
    bb[nxt, 0] = B

    pos = np.zeros((L, 37, 3))
    mask = np.zeros((L, 37), F32)
    n_i, ca_i, c_i, o_i, cb_i = (rc.atom_order[a] for a in ("N", "CA", "C", "O", "CB"))
    for i in range(L):
        if aat[i] == 21:
            continue
        n, ca, c, o = bb[i]
        pos[i, [n_i, ca_i, c_i, o_i]] = bb[i]
        mask[i, [n_i, ca_i, c_i, o_i]] = 1
        resname = rc.restype_1to3[rc.restypes_with_x[aat[i]]] if aat[i] < 20 else "UNK"
        if resname != "GLY":
            local = dict((a, np.array(x)) for a, g, x in rc.rigid_group_atom_positions[resname]
                         if g == 0)["CB"]
            e1 = (c - ca) / np.linalg.norm(c - ca)
            u = n - ca
            e2 = u - np.dot(u, e1) * e1
            e2 /= np.linalg.norm(e2)
            e3 = np.cross(e1, e2)
            pos[i, cb_i] = ca + local[0] * e1 + local[1] * e2 + local[2] * e3
            mask[i, cb_i] = 1
    pos = pos.astype(F32)
    # exactness of the two designed atoms after the float32 cast
    assert np.array_equal(pos[0, n_i], A.astype(F32)) and np.array_equal(pos[nxt, n_i], B.astype(F32))

    is_gly = aat == rc.restype_order["G"]
    pb = np.where(is_gly[:, None], pos[:, ca_i], pos[:, cb_i]).astype(F32)
    pb_mask = np.where(is_gly, mask[:, ca_i], mask[:, cb_i]).astype(F32)
    feats = {
        "template_aatype": aat[None],
        "template_all_atom_positions": pos[None],
        "template_all_atom_masks": mask[None],
        "template_mask": np.ones(1, F32),
        "template_pseudo_beta": pb[None],
        "template_pseudo_beta_mask": pb_mask[None],
    }
    geo = {"missing_residue": missing, "helix_scale": float(scale), "N0": A.tolist(),
           f"N{nxt}": B.tolist(), "spin_deg": SPIN}
    # geometry self-check (float64, before the cast)
    geo["check"] = {
        "phi_1": round(float(dihedral(bb[0, 2], bb[1, 0], bb[1, 1], bb[1, 2])), 3),
        "psi_1": round(float(dihedral(bb[1, 0], bb[1, 1], bb[1, 2], bb[2, 0])), 3),
        "omega_1": round(float(dihedral(bb[1, 1], bb[1, 2], bb[2, 0], bb[2, 1])), 3),
        "CA_i_CA_i+3": round(float(np.linalg.norm(bb[5, 1] - bb[8, 1])), 3),
    }
    return feats, geo



def atom14_tables(aatype):
    """data_transforms.make_atom14_masks (TF), in numpy."""
    a14_to_a37, a37_to_a14, a14_mask = [], [], []
    for rt in rc.restypes:
        names = rc.restype_name_to_atom14_names[rc.restype_1to3[rt]]
        a14_to_a37.append([(rc.atom_order[n] if n else 0) for n in names])
        idx14 = {n: i for i, n in enumerate(names)}
        a37_to_a14.append([(idx14[n] if n in idx14 else 0) for n in rc.atom_types])
        a14_mask.append([(1.0 if n else 0.0) for n in names])
    a14_to_a37.append([0] * 14)
    a37_to_a14.append([0] * 37)
    a14_mask.append([0.0] * 14)
    a37_mask = np.zeros([21, 37], F32)
    for r, letter in enumerate(rc.restypes):
        for name in rc.residue_atoms[rc.restype_1to3[letter]]:
            a37_mask[r, rc.atom_order[name]] = 1
    return {
        "atom14_atom_exists": np.array(a14_mask, F32)[aatype],
        "atom37_atom_exists": a37_mask[aatype],
        "residx_atom14_to_atom37": np.array(a14_to_a37, I32)[aatype],
        "residx_atom37_to_atom14": np.array(a37_to_a14, I32)[aatype],
    }


def build_features(num_recycle, query=QUERY, msa_rows=MSA, extra_rows=EXTRA,
                   template_seq=TEMPLATE_SEQ, strict=True):
    """Processed features (E = num_recycle + 1 identical slices), aux arrays and template geometry.

    Defaults: the golden's inputs. msa_rows[0] must be the query; template_seq=None: no template
    features at all (geo is then None).
    """
    L = len(query)
    aatype = encode(query)
    assert aatype.max() < 20
    single = {
        "aatype": aatype,
        "residue_index": np.arange(L, dtype=I32),
        "seq_length": np.array(L, I32),
        "seq_mask": np.ones(L, F32),
        # [between_segment_residues (0), one_hot(aatype, 21)]
        "target_feat": np.concatenate([np.zeros((L, 1), F32), np.eye(21, dtype=F32)[aatype]], -1),
    }
    assert msa_rows[0][0] == query
    msa, aux = msa_features(L, msa_rows, extra_rows, strict)
    templ, geo = template_features(L, template_seq) if template_seq is not None else ({}, None)
    feats = {**single, **msa, **templ, **atom14_tables(aatype)}
    E = num_recycle + 1
    feats = {k: np.ascontiguousarray(np.broadcast_to(v[None], (E,) + v.shape)) for k, v in
             feats.items()}
    for k, v in feats.items():
        assert v.dtype in (F32, I32), k
    return feats, aux, geo


def synthetic_inputs(L, n_msa, n_extra, template=True, seed=0):
    """Deterministic random inputs of any size, in build_features' argument format.

    Query: L random residues (20 standard types). MSA rows (row 0 = query) and extra rows: the
    query with ~25% substitutions (X allowed), ~5% gaps and deletions at ~3% of columns. Template
    (template=True): the query with ~20% substitutions and residue 17 unaligned, as in the golden
    (that index keeps template_features' exact power-of-two placement), so L >= 19.
    """
    rng = np.random.default_rng([seed, L, n_msa, n_extra])
    aa = np.array(list(rc.restypes))
    query = "".join(rng.choice(aa, L))

    def variant(sub, gap, dele):
        s = np.array(list(query))
        hit = rng.random(L) < sub
        s[hit] = rng.choice(np.array(list(rc.restypes_with_x)), hit.sum())
        s[rng.random(L) < gap] = "-"
        cols = np.flatnonzero(rng.random(L) < dele)
        return "".join(s), {int(c): int(rng.integers(1, 6)) for c in cols}

    assert n_msa >= 1 and n_extra >= 0
    msa_rows = [(query, {})] + [variant(0.25, 0.05, 0.03) for _ in range(n_msa - 1)]
    extra_rows = [variant(0.25, 0.05, 0.03) for _ in range(n_extra)]
    template_seq = None
    if template:
        assert L >= 19, "the template's unaligned residue is residue 17"
        t = np.array(list(query))
        hit = rng.random(L) < 0.2
        t[hit] = rng.choice(aa, hit.sum())
        t[17] = "-"
        template_seq = "".join(t)
    return query, msa_rows, extra_rows, template_seq


def make_features(L, n_msa, n_extra, num_recycle=3, template=True, seed=0):
    """build_features on synthetic_inputs(L, n_msa, n_extra): (feats, aux, geo).

    MSA rows / extra rows / 1 template (or none) exactly as the golden's builder makes them, at
    any size; no fixed-size padding. Nearest-centre ties are allowed (argmax takes the first).
    """
    query, msa_rows, extra_rows, template_seq = synthetic_inputs(L, n_msa, n_extra, template, seed)
    return build_features(num_recycle, query, msa_rows, extra_rows, template_seq, strict=False)


def check_template_torsions(feats, geo):
    """The template torsion features are insensitive to rounding (see template_features)."""
    f = jax.jit(lambda a, p, m: all_atom.atom37_to_torsion_angles(a, p, m, False))
    a = feats["template_aatype"][0]
    p = feats["template_all_atom_positions"][0]
    m = feats["template_all_atom_masks"][0]
    ref = {k: np.asarray(v) for k, v in f(a, p, m).items()}
    nxt = geo["missing_residue"] + 1
    for r in (0, nxt):  # the designed degenerate pre_omega frames give exactly (0, 0)
        assert np.all(ref["torsion_angles_sin_cos"][0, r, 0] == 0), r
    rng = np.random.default_rng(7)
    worst = 0.0
    for _ in range(3):
        noise = (rng.standard_normal(p.shape) * 1e-4).astype(F32) * (m[..., None] > 0)
        noise[0, 0, rc.atom_order["N"]] = 0  # keep the designed atoms exact
        noise[0, nxt, rc.atom_order["N"]] = 0
        got = f(a, p + noise, m)
        for k in ("torsion_angles_sin_cos", "alt_torsion_angles_sin_cos"):
            worst = max(worst, float(np.abs(np.asarray(got[k]) - ref[k]).max()))
    assert worst < 1e-2, f"template torsion features amplify 1e-4 A noise to {worst}"
    # template distogram (39 bins, 3.25..50.75 A): no pseudo-beta distance near a bin edge
    pb = feats["template_pseudo_beta"][0, 0].astype(np.float64)
    pm = feats["template_pseudo_beta_mask"][0, 0]
    d = np.sqrt(((pb[:, None] - pb[None]) ** 2).sum(-1)[np.outer(pm, pm) > 0])
    margin = float(np.abs(d[:, None] - np.linspace(3.25, 50.75, 39)[None]).min())
    assert margin > 1e-4, f"a template pseudo-beta distance is within {margin:.2g} A " \
        "of a distogram bin edge: fp32 rounding could flip the bin"
    return {"torsion_max_change_for_1e-4A_noise": worst, "dgram_min_margin_A": margin}


def dgram_margin(prev_pos, aatype, lo=3.25, hi=20.75, n=15):
    """Smallest |d - edge| (A) of the recycled pseudo-beta distogram (prev_pos_linear input)."""
    ca, cb = rc.atom_order["CA"], rc.atom_order["CB"]
    pb = np.where((aatype == rc.restype_order["G"])[:, None], prev_pos[:, ca], prev_pos[:, cb])
    pb = pb.astype(np.float64)
    d = np.sqrt(((pb[:, None] - pb[None]) ** 2).sum(-1))
    return float(np.abs(d[..., None] - np.linspace(lo, hi, n)).min())


class RecyclingAlphaFold(hk.Module):
    """The official v2.3 AlphaFold recycling loop, in one graph, around the fork's iteration.

    Written for the cross-check only: prev starts at zero; hk.while_loop runs iterations
    0..num_recycle-1 on feature slices [r] (num_ensemble = E // (num_recycle + 1) = 1) and keeps
    prev = {final_atom_positions, msa_first_row, pair}; the last iteration runs on slice
    [num_recycle] and is returned. Called like the official RunModel: ensemble_representations=
    True. Same module name as the official one, so the parameter names are the official ones.
    """

    def __init__(self, config, name="alphafold"):
        super().__init__(name=name)
        self.config = config

    def __call__(self, batch):
        c = self.config
        evo = c.embeddings_and_evoformer
        impl = modules.AlphaFoldIteration(c, c.global_config)
        n_slices, num_res = batch["aatype"].shape
        per_iter = n_slices // (c.num_recycle + 1)

        def iteration(prev, r):
            sliced = jax.tree_util.tree_map(
                lambda x: jax.lax.dynamic_slice_in_dim(x, r * per_iter, per_iter, axis=0), batch)
            return impl(ensembled_batch=sliced, non_ensembled_batch=prev, is_training=False,
                        compute_loss=False, ensemble_representations=True)

        def next_prev(ret):
            return {"prev_pos": ret["structure_module"]["final_atom_positions"],
                    "prev_msa_first_row": ret["representations"]["msa_first_row"],
                    "prev_pair": ret["representations"]["pair"]}

        prev = {"prev_pos": jnp.zeros([num_res, rc.atom_type_num, 3]),
                "prev_msa_first_row": jnp.zeros([num_res, evo.msa_channel]),
                "prev_pair": jnp.zeros([num_res, num_res, evo.pair_channel])}
        body = lambda x: (x[0] + 1, next_prev(iteration(x[1], x[0])))  # noqa: E731
        if hk.running_init():
            _, prev = body((0, prev))
        else:
            _, prev = hk.while_loop(lambda x: x[0] < c.num_recycle, body, (0, prev))
        return iteration(prev, c.num_recycle)


def official_loop_check(cfg, params, feats, out):
    """Max |difference| between the golden and the official in-graph recycling loop."""
    f = jax.jit(hk.transform(lambda b: RecyclingAlphaFold(cfg.model)(b)).apply)
    ret = f(params, jax.random.PRNGKey(0), {k: jnp.asarray(v) for k, v in feats.items()})
    ret = jax.tree_util.tree_map(np.asarray, ret)
    pairs = {
        "final_atom_positions": ret["structure_module"]["final_atom_positions"],
        "representations/pair": ret["representations"]["pair"],
        "representations/single": ret["representations"]["single"],
        "distogram/logits": ret["distogram"]["logits"],
        "predicted_lddt/logits": ret["predicted_lddt"]["logits"],
        "predicted_aligned_error/logits": ret["predicted_aligned_error"]["logits"],
        "masked_msa/logits": ret["masked_msa"]["logits"],
    }
    return {k: float(np.abs(v - out[k]).max()) for k, v in pairs.items()}


def save_npz_stable(path, arrays):
    """np.savez layout (uncompressed .npy members) with fixed zip timestamps: byte-stable."""
    import io
    import zipfile
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for k in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arrays[k]), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0)),
                        buf.getvalue())


def content_sha256(arrays):
    h = hashlib.sha256()
    for k in sorted(arrays):
        v = np.ascontiguousarray(arrays[k])
        h.update(k.encode() + str(v.dtype).encode() + str(v.shape).encode() + v.tobytes())
    return h.hexdigest()


def get_params(path, seed):
    """make_params.py's generator; write `path` if missing, else check it is the same."""
    shapes, dtypes = make_params.param_shapes(MODEL)
    make_params.check_layout(MODEL, shapes, dtypes)
    params = af2_ref.randomize_flat(shapes, seed)
    if os.path.exists(path):
        with np.load(path) as z:
            assert sorted(z.files) == sorted(params), f"{path}: different keys"
            for k in params:
                assert np.array_equal(z[k], params[k]), f"{path}: {k} differs from seed {seed}"
        print(f"{path}: matches make_params.py --model {MODEL} --seed {seed}")
    else:
        os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
        np.savez(path, **params)
        print(f"wrote {path} ({os.path.getsize(path) / 2**20:.1f} MiB)")
    return params


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(af2_ref.ROOT, "tests", "data", "af2"))
    ap.add_argument("--params", default="/tmp/af2/params_model_1_ptm.npz")
    ap.add_argument("--seed", type=int, default=0, help="parameter seed (make_params.py --seed)")
    ap.add_argument("--features-only", action="store_true",
                    help="build and check the features, print them, run no model")
    args = ap.parse_args()

    cfg = af2_ref.official_model_config(MODEL)
    num_recycle = int(cfg.model.num_recycle)
    assert num_recycle == cfg.data.common.num_recycle == 3 and cfg.model.resample_msa_in_recycling
    evo = cfg.model.embeddings_and_evoformer
    assert evo.template.enabled and evo.template.embed_torsion_angles

    feats, aux, geo = build_features(num_recycle)
    robustness = check_template_torsions(feats, geo)
    if args.features_only:
        for k, v in {**feats, **aux}.items():
            print(f"    feat {k:34s} {str(v.shape):20s} {v.dtype}")
        print(json.dumps({"template": geo, "robustness": robustness}, indent=1))
        print("cluster assignment", aux["aux_extra_cluster_assignment"])
        return
    os.makedirs(args.out, exist_ok=True)
    feat_path = os.path.join(args.out, "model_features.npz")
    save_npz_stable(feat_path, {**feats, **aux})
    L = feats["aatype"].shape[1]

    t0 = time.time()
    flat = get_params(args.params, args.seed)
    params = jax.device_put(af2_ref.unflatten_haiku(flat))
    t_params = time.time() - t0

    def forward(batch):
        model = modules.AlphaFold(cfg.model)
        return model(batch, is_training=False, compute_loss=False,
                     ensemble_representations=False, return_representations=True)

    apply = jax.jit(hk.transform(forward).apply)
    key = jax.random.PRNGKey(0)  # unused numerically: is_training=False, no dropout

    def batch_for(r, prev):
        return {**{k: v[r:r + 1] for k, v in feats.items()}, "prev": prev}

    prev = {
        "prev_pos": np.zeros((L, rc.atom_type_num, 3), F32),
        "prev_msa_first_row": np.zeros((L, evo.msa_channel), F32),
        "prev_pair": np.zeros((L, L, evo.pair_channel), F32),
    }
    c0, w0 = time.process_time(), time.perf_counter()
    compiled = apply.lower(params, key, batch_for(0, prev)).compile()
    compile_cpu, compile_wall = time.process_time() - c0, time.perf_counter() - w0
    print(f"compile: {compile_cpu:.1f} CPU-s ({compile_wall:.1f} s wall)")

    per_recycle = []
    c0, w0 = time.process_time(), time.perf_counter()
    for r in range(num_recycle + 1):
        ret = compiled(params, key, batch_for(r, prev))
        ret = jax.tree_util.tree_map(lambda x: np.asarray(jax.block_until_ready(x)), ret)
        prev = ret["prev"]
        per_recycle.append(prev)
    run_cpu, run_wall = time.process_time() - c0, time.perf_counter() - w0
    print(f"run ({num_recycle + 1} recycling iterations): {run_cpu:.1f} CPU-s ({run_wall:.1f} s wall)")

    reps = ret["representations"]
    pae = confidence.compute_predicted_aligned_error(
        ret["predicted_aligned_error"]["logits"], ret["predicted_aligned_error"]["breaks"])
    ptm = confidence.predicted_tm_score(
        ret["predicted_aligned_error"]["logits"], ret["predicted_aligned_error"]["breaks"])
    out = {
        "final_atom_positions": ret["structure_module"]["final_atom_positions"],
        "final_atom_mask": ret["structure_module"]["final_atom_mask"],
        "plddt": confidence.compute_plddt(ret["predicted_lddt"]["logits"]),
        "predicted_lddt/logits": ret["predicted_lddt"]["logits"],
        "distogram/logits": ret["distogram"]["logits"],
        "masked_msa/logits": ret["masked_msa"]["logits"],
        "experimentally_resolved/logits": ret["experimentally_resolved"]["logits"],
        "predicted_aligned_error/logits": ret["predicted_aligned_error"]["logits"],
        "predicted_aligned_error": pae["predicted_aligned_error"],
        "max_predicted_aligned_error": pae["max_predicted_aligned_error"],
        "ptm": ptm,
        "representations/single": reps["single"],
        "representations/pair": reps["pair"],
        "representations/msa": reps["msa"],
        "representations/msa_first_row": reps["msa_first_row"],
        "representations/structure_module": reps["structure_module"],
    }
    # recycling state: recycle_r/* = prev after iteration r = the prev input of iteration r+1
    for r, p in enumerate(per_recycle[:-1]):
        for k, v in p.items():
            out[f"recycle_{r}/{k}"] = v
    # the last iteration's prev is the final outputs themselves
    last = per_recycle[-1]
    assert np.array_equal(last["prev_pos"], out["final_atom_positions"])
    assert np.array_equal(last["prev_pair"], out["representations/pair"])
    assert np.array_equal(last["prev_msa_first_row"], out["representations/msa_first_row"])
    out = {k: np.array(v, F32, order="C") for k, v in out.items()}  # keeps 0-d (ptm) 0-d
    for k, v in out.items():
        assert np.all(np.isfinite(v)), k

    margins = {f"recycle_{r}": dgram_margin(p["prev_pos"], feats["aatype"][0])
               for r, p in enumerate(per_recycle[:-1])}
    c0 = time.process_time()
    loop_check = official_loop_check(cfg, params, feats, out)
    loop_check_cpu = time.process_time() - c0
    print(f"official in-graph recycling loop vs golden ({loop_check_cpu:.1f} CPU-s incl. compile): "
          f"{loop_check}")
    assert loop_check["final_atom_positions"] < 1e-2, loop_check
    here = os.path.relpath(os.path.abspath(__file__), af2_ref.ROOT)
    py = os.path.relpath(sys.executable, af2_ref.ROOT) if sys.executable.startswith(
        af2_ref.ROOT) else sys.executable
    import importlib.metadata as md
    meta = {
        "model": MODEL,
        "source": "alphafold-colabfold 2.3.1 (fork of DeepMind AlphaFold v2.3.1), "
                  f"af2_ref.official_model_config('{MODEL}'), modules.AlphaFold one recycling "
                  "iteration per call, looped num_recycle+1 times (official AlphaFold semantics)",
        "versions": {p: md.version(p) for p in ("alphafold-colabfold", "jax", "jaxlib",
                                                  "dm-haiku", "numpy", "safetensors")}
                    | {"python": platform.python_version()},
        "commands": {
            "golden": f"{py} {here} --out {os.path.relpath(args.out, af2_ref.ROOT)} "
                      f"--params {args.params} --seed {args.seed}",
            "params": f"{py} tools/reference/af2/make_params.py {args.params} "
                      f"--model {MODEL} --seed {args.seed}",
        },
        "params": {"file": args.params, "seed": args.seed, "arrays": len(flat),
                   "count": int(sum(v.size for v in flat.values())),
                   "content_sha256": content_sha256(flat),
                   "note": "content hash over sorted (key, dtype, shape, bytes); np.savez files "
                           "carry zip timestamps, so hash the arrays, not the file"},
        "features": {"file": "model_features.npz", "content_sha256": content_sha256(feats),
                     "E": num_recycle + 1, "L": L, "S": len(MSA), "X": len(EXTRA), "T": 1,
                     "query": QUERY, "template_seq": TEMPLATE_SEQ, "template": geo,
                     "robustness": robustness},
        "config_deltas": [
            "fuse_projection_weights=False on triangle_multiplication_{outgoing,incoming} "
            "(evoformer and template_pair_stack): the official monomer value",
            "global_config.bfloat16=False, bfloat16_output=False (fork-only keys; pure fp32)",
            "data side (features built here, not by the TF pipeline): no BERT masking "
            "(masked_msa_replace_fraction=0 equivalent), no sample_msa/crop_extra_msa shuffles "
            "(rows split by hand), no fixed-size padding (S=6, X=8, T=1 instead of 508/5120/4)",
            "call: is_training=False, compute_loss=False, ensemble_representations=False "
            "(official RunModel passes True; identical with one feature slice per iteration)",
        ],
        "apply_rng": "jax.random.PRNGKey(0) (no numerical effect)",
        "timing": {"compile_cpu_s": round(compile_cpu, 1), "compile_wall_s": round(compile_wall, 1),
                   "run_cpu_s": round(run_cpu, 1), "run_wall_s": round(run_wall, 1),
                   "recycles_run": num_recycle + 1, "params_gen_s": round(t_params, 1),
                   "official_loop_check_cpu_s_incl_compile": round(loop_check_cpu, 1),
                   "cpus": os.cpu_count(), "xla_flags": os.environ.get("XLA_FLAGS", "")},
        "recycled_dgram_min_margin_A": margins,
        "official_while_loop_max_abs_diff": loop_check,
        "tensors": {k: list(v.shape) for k, v in sorted(out.items())},
    }
    out_path = os.path.join(args.out, f"{MODEL}_outputs.safetensors")
    save_file(out, out_path, metadata={"af2_golden": json.dumps(meta, sort_keys=True)})

    for path in (feat_path, out_path):
        print(f"{os.path.relpath(path, af2_ref.ROOT)}  {os.path.getsize(path) / 1024:.0f} KiB")
    for k, v in {**feats, **aux}.items():
        print(f"    feat {k:34s} {str(v.shape):20s} {v.dtype}")
    for k, v in out.items():
        print(f"    out  {k:34s} {str(v.shape):20s} |max| {np.abs(v).max():.4g}")
    print(f"ptm {float(out['ptm']):.4f}  mean pLDDT {out['plddt'].mean():.2f}  "
          f"recycled dgram margins {margins}  template {robustness}")
    print("regenerate the params with:", meta["commands"]["params"])


if __name__ == "__main__":
    main()
