#!/usr/bin/env python3
"""Write the IgFold 1.0.1 golden files tests/data/igfold_<name>.safetensors.

Run with the reference venv (tools/reference/setup_venv.sh):

    tools/reference/.venv/bin/python tools/reference/make_goldens.py [--names paired nanobody] [--out-dir tests/data]

The reference pipeline is IgFold's own ``igfold.utils.folding.fold()`` (AntiBERTy 0.1.3 embedding,
the 4 members igfold_1/2/3/5 in sorted file order, forward + gradient_refine each, the 0.9-quantile
prmsd score, argmin choice), with do_refine=False (no OpenMM/PyRosetta), do_renum=False (no ANARCII)
and truncate_sequences=False. Each member is wrapped in a recorder that forwards to the real
``model(...)`` and ``model.gradient_refine(...)`` and clones their outputs; nothing is reimplemented.

Per member k (0..3):
  m{k}.raw_coords [L,5,3]   forward() coords: N, CA, C, CB, O (chain-aware place_o_coords)
  m{k}.raw_prmsd  [L,4]     forward() prmsd (N, CA, C, CB)
  m{k}.raw_trans  [L,3]     structure-module translations fed to gradient_refine
  m{k}.raw_rot    [L,3,3]   structure-module rotations (row-vector convention: x_global = x_local @ R + t)
  m{k}.refined_coords [L,5,3], m{k}.refined_prmsd [L,4]   after the 80 Adam steps and score_coords
  m{k}.refined_trans [L,3], m{k}.refined_rot [L,3,3]      the refined frames (R is a free 3x3 matrix,
                            not orthonormal after refinement) that score_coords feeds to the dev IPA
  m{k}.score [1]            refined prmsd.quantile(0.9), as fold() computes it
plus chosen [1] (member index, float32), final_coords [L,5,3] and final_bfactor [L]
(per-residue sqrt(mean prmsd^2), as process_prediction writes to the PDB B-factor column).
The metadata key "sequences" holds the chains as JSON ({"H": ..., "L": ...}).
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import igfold_ref  # noqa: E402  (patches igfold.runner for antiberty 0.1.3)
import numpy as np  # noqa: E402
import torch  # noqa: E402
from einops import rearrange  # noqa: E402
from igfold.utils.folding import fold  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def per_res_prmsd(prmsd):
    """(1, 4L) or (1, L, 4) -> (L, 4)"""
    if prmsd.dim() == 2:
        prmsd = rearrange(prmsd, "b (l a) -> b l a", a=4)
    return prmsd[0]


class RecordingMember:
    """Stands in for one IgFold member inside fold(); delegates to the real model, records outputs."""

    def __init__(self, model):
        self.model = model
        self.rec = {}

    def __call__(self, model_in):
        out = self.model(model_in)
        # gradient_refine turns output.translations/rotations into Parameters that SHARE their
        # storage and updates them in place, so clone before handing the output on.
        self.rec["raw_coords"] = out.coords[0].detach().clone()
        self.rec["raw_prmsd"] = per_res_prmsd(out.prmsd).detach().clone()
        self.rec["raw_trans"] = out.translations[0].detach().clone()
        self.rec["raw_rot"] = out.rotations[0].detach().clone()
        return out

    def gradient_refine(self, model_in, model_out):
        t0 = time.perf_counter()
        out = self.model.gradient_refine(model_in, model_out)
        self.rec["refine_s"] = time.perf_counter() - t0
        self.rec["refined_coords"] = out.coords[0].detach().clone()
        self.rec["refined_prmsd"] = per_res_prmsd(out.prmsd).detach().clone()
        self.rec["refined_trans"] = out.translations[0].detach().clone()
        self.rec["refined_rot"] = out.rotations[0].detach().clone()
        self.rec["score"] = out.prmsd.quantile(0.9).detach().clone()  # same expression as fold()
        self.rec["out"] = out
        return out


def make_one(name, seq_dict, antiberty, models, out_dir):
    members = [RecordingMember(m) for m in models]
    with tempfile.TemporaryDirectory() as tmp:
        pdb = os.path.join(tmp, f"{name}.pdb")
        t0 = time.perf_counter()
        out = fold(
            antiberty,
            members,
            pdb_file=pdb,
            sequences=dict(seq_dict),
            do_refine=False,
            use_openmm=False,
            do_renum=False,
            truncate_sequences=False,
        )
        wall = time.perf_counter() - t0
        pdb_atoms = read_pdb(pdb)

    scores = [float(m.rec["score"]) for m in members]
    chosen = [i for i, m in enumerate(members) if m.rec["out"] is out]
    assert len(chosen) == 1, "fold() returned an output no member produced"
    chosen = chosen[0]
    assert chosen == scores.index(min(scores)), (chosen, scores)

    L = sum(len(s) for s in seq_dict.values())
    final_coords = out.coords[0].detach()
    final_prmsd = per_res_prmsd(out.prmsd)
    final_bfactor = final_prmsd.square().mean(dim=-1).sqrt()  # process_prediction's res_rmsd
    assert final_coords.shape == (L, 5, 3), final_coords.shape
    assert torch.equal(final_coords, members[chosen].rec["refined_coords"])

    # the PDB IgFold wrote must agree with the stored arrays to its printed precision
    check_pdb(pdb_atoms, seq_dict, final_coords.numpy(), final_bfactor.numpy())

    tensors = {}
    for k, m in enumerate(members):
        r = m.rec
        for key in (
            "raw_coords",
            "raw_prmsd",
            "raw_trans",
            "raw_rot",
            "refined_coords",
            "refined_prmsd",
            "refined_trans",
            "refined_rot",
        ):
            tensors[f"m{k}.{key}"] = f32(r[key])
        tensors[f"m{k}.score"] = np.array([r["score"].item()], dtype=np.float32)
    tensors["chosen"] = np.array([chosen], dtype=np.float32)
    tensors["final_coords"] = f32(final_coords)
    tensors["final_bfactor"] = f32(final_bfactor)

    meta = {
        "sequences": json.dumps(seq_dict),
        "name": name,
        "members": json.dumps([os.path.basename(p) for p in igfold_ref.member_paths()]),
        "versions": json.dumps(igfold_ref.versions()),
        "threads": str(torch.get_num_threads()),
        "note": "IgFold 1.0.1 fold(do_refine=False, do_renum=False, truncate_sequences=False); "
        "rotations are row-vector (x_global = x_local @ R + t); atoms N,CA,C,CB,O; prmsd N,CA,C,CB",
    }
    path = os.path.join(out_dir, f"igfold_{name}.safetensors")
    save_file(tensors, path, metadata=meta)
    os.chmod(path, 0o644)

    return {
        "name": name,
        "L": L,
        "chains": {k: len(v) for k, v in seq_dict.items()},
        "chosen": chosen,
        "scores": [round(s, 5) for s in scores],
        "fold_s": round(wall, 2),
        "refine_s": [round(m.rec["refine_s"], 2) for m in members],
        "refine_max_shift": [
            round(float((m.rec["refined_coords"] - m.rec["raw_coords"]).norm(dim=-1).max()), 3) for m in members
        ],
        "file": os.path.relpath(path, REPO),
        "bytes": os.path.getsize(path),
    }


def read_pdb(path):
    atoms = []
    with open(path) as f:
        for line in f:
            if line.startswith("ATOM"):
                atoms.append(
                    (
                        line[12:16].strip(),
                        line[17:20],
                        line[21],
                        int(line[22:26]),
                        np.array([float(line[30:38]), float(line[38:46]), float(line[46:54])]),
                        float(line[60:66]),
                    )
                )
    return atoms


def check_pdb(atoms, seq_dict, coords, bfactor):
    names = ["N", "CA", "C", "CB", "O"]
    seq = "".join(seq_dict.values())
    chains = [c for c, s in seq_dict.items() for _ in s]
    expected = [(i, a) for i in range(len(seq)) for a in range(5) if not (a == 3 and seq[i] == "G")]
    # IgFold writes atoms in N, CA, C, CB, O or N, CA, C, O, CB order depending on the writer; match by name
    by_key = {}
    res_idx, prev = -1, None
    for name, _resn, chain, resseq, xyz, b in atoms:
        key = (chain, resseq)
        if key != prev:
            res_idx += 1
            prev = key
        by_key[(res_idx, name)] = (chain, xyz, b)
    assert len(atoms) == len(expected), (len(atoms), len(expected))
    for i, a in expected:
        chain, xyz, b = by_key[(i, names[a])]
        assert chain == chains[i], (i, chain, chains[i])
        assert np.abs(xyz - coords[i, a]).max() <= 6e-4, (i, names[a], xyz, coords[i, a])
        assert abs(b - bfactor[i]) <= 6e-3, (i, b, bfactor[i])


def write_fasta(path):
    """tests/data/antibodies.fasta: ColabFold style, chains joined by ':' (heavy first)."""
    with open(path, "w") as f:
        for name, seq_dict in igfold_ref.ANTIBODIES.items():
            f.write(f">{name}\n{':'.join(seq_dict.values())}\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--names", nargs="*", default=list(igfold_ref.ANTIBODIES))
    ap.add_argument("--out-dir", default=os.path.join(REPO, "tests", "data"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    igfold_ref.setup_torch(args.threads)
    os.makedirs(args.out_dir, exist_ok=True)
    write_fasta(os.path.join(args.out_dir, "antibodies.fasta"))
    antiberty, models = igfold_ref.load_reference()
    for name in args.names:
        info = make_one(name, igfold_ref.ANTIBODIES[name], antiberty, models, args.out_dir)
        print(json.dumps(info), flush=True)


if __name__ == "__main__":
    main()
