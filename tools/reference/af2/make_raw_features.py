#!/usr/bin/env python3
"""Write tests/data/af2/features_raw.pkl: AF2's RAW features (as its data pipeline pickles
them: sequence, one-hot aatype, MSA as HHblits ids, deletion matrix, template hits) for the
same protein, MSA and template as tests/data/af2/model_features.npz (read from its aux_*
arrays), so `ferrofold predict --features-pkl` can be tested on a realistic file.

    tools/reference/af2/.venv/bin/python tools/reference/af2/make_raw_features.py
"""
import os
import pickle

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
AF = "ARNDCQEGHILKMFPSTWYVX"
HHBLITS = "ACDEFGHIKLMNPQRSTVWYX-"
# AF order index -> HHblits id (residue_constants.MAP_HHBLITS_AATYPE_TO_OUR_AATYPE inverted)
AF_TO_HH = [HHBLITS.index(c) for c in AF] + [21]

f = np.load(os.path.join(ROOT, "tests/data/af2/model_features.npz"))
aatype = f["aatype"][0]
seq = "".join(AF[a] for a in aatype)
msa_af = np.concatenate([f["aux_msa"], f["aux_extra_msa"]]) if "aux_extra_msa" in f else f["aux_msa"]
print({k: f[k].shape for k in f.files if k.startswith("aux_")})
msa_af = np.concatenate([f["aux_msa"], f["extra_msa"][0]]).astype(np.int64)  # AF order, 21 = gap
assert (msa_af[0] == aatype).all(), "row 0 is the query"
deletions = np.concatenate([f["aux_deletion_matrix"], f["aux_extra_deletion_matrix"]])
t_aatype_af = f["template_aatype"][0]  # [T, L] AF order, 21 = gap
raw = {
    "aatype": np.eye(21, dtype=np.int32)[aatype],
    "between_segment_residues": np.zeros(len(seq), dtype=np.int32),
    "domain_name": np.array([b"helix24"], dtype=np.object_),
    "residue_index": np.arange(len(seq), dtype=np.int32),
    "seq_length": np.full(len(seq), len(seq), dtype=np.int32),
    "sequence": np.array([seq.encode()], dtype=np.object_),
    "msa": np.array([[AF_TO_HH[a] for a in row] for row in msa_af], dtype=np.int32),
    "deletion_matrix_int": deletions.astype(np.int32),
    "num_alignments": np.full(len(seq), len(msa_af), dtype=np.int32),
    "msa_species_identifiers": np.array([b""] * len(msa_af), dtype=np.object_),
    "template_aatype": np.eye(22, dtype=np.float32)[[[AF_TO_HH[a] for a in row] for row in t_aatype_af]],
    "template_all_atom_masks": f["template_all_atom_masks"][0].astype(np.float32),
    "template_all_atom_positions": f["template_all_atom_positions"][0].astype(np.float32),
    "template_domain_names": np.array([b"helix_A"], dtype=np.object_),
    "template_sequence": np.array([b"".join(HHBLITS[AF_TO_HH[a]].encode() for a in t_aatype_af[0])], dtype=np.object_),
    "template_sum_probs": np.array([[100.0]], dtype=np.float32),
}
out = os.path.join(ROOT, "tests/data/af2/features_raw.pkl")
with open(out, "wb") as fh:
    pickle.dump(raw, fh, protocol=4)
print(f"wrote {out}: {os.path.getsize(out)} bytes, {len(msa_af)} MSA rows, L={len(seq)}")
