#!/usr/bin/env python3
"""Dump IgFold 1.0.1 intermediates for one antibody, for debugging a port (NOT for tests/data).

    tools/reference/.venv/bin/python tools/reference/dump_intermediates.py --name paired \
        --out /tmp/igfold_debug_paired.safetensors

The run goes through IgFold's own ``fold()`` with a single member (member 0 = igfold_1 unless
--member is given), wrapped so that forward hooks record the submodule outputs during
``model(...)`` only, and so that the step-0 loss terms and gradients are recorded while the real
``model.gradient_refine(...)`` runs. Nothing numerical is reimplemented; values recorded from
inside the pipeline are checked against the pipeline's own outputs.

Keys (batch dim dropped, float32; L = residues over all chains, chains concatenated H then L):
  antiberty.{c}.token_ids [n+2]        token ids of chain c (incl. [CLS]/[SEP])
  antiberty.{c}.hidden    [9,n+2,512]  embedding output + the 8 layer outputs
  antiberty.{c}.attn      [8,8,n+2,n+2] attention probabilities (layer, head, query, key)
  bert_feats [L,512], bert_attn [L,L,64]       what IgFold.forward builds from them
  str_nodes [L,64], str_edges [L,L,64]         after str_node_transform / str_edge_transform
  main.{i}.nodes_attn [L,64]   after the graph-transformer attention + gated residual (layer i)
  main.{i}.nodes [L,64]        after the graph transformer of layer i (attn + FF)
  main.{i}.edges_tri_out [L,L,64]  edges + TriOut(edges)
  main.{i}.edges [L,L,64]      after edges + TriIn(edges)
  gt_embs [L,64]; tmpl.{j}.nodes [L,64] (template IPA block j); structure_embs [L,64]
  str.{i}.nodes [L,64]   IPABlock output of structure layer i (before the Linear(64,6) update)
  str.{i}.update [L,6]   Linear(64,6) output (b, c, d, dt)
  str.{i}.rot_in [L,3,3] rotations fed to structure layer i; str.{i}.trans_in [L,3]
  str.{i}.quat [L,4], str.{i}.trans [L,3]  frames after the update of layer i
  raw_coords [L,5,3], raw_trans [L,3], raw_rot [L,3,3] (quaternion_to_matrix of str.2.quat)
  dev_nodes_in [L,64], dev_edges_in [L,L,64], dev.{j}.nodes [L,64], dev_out [L,64], raw_prmsd [L,4]
  refine.loss0 [1] = refine.rmsd0 + (bond_len0 + bond_angle0 + clash0 + cis0)
  refine.grad_t0 [L,3], refine.grad_R0 [L,3,3]   d(loss.sum())/d(translations, rotations) at step 0
  refine.trans1 [L,3], refine.rot1 [L,3,3]       parameters after the first Adam step
  refine.loss [80], refine.rmsd [80], refine.viol [80]   per step (before that step's update)
  refined_coords [L,5,3], refined_trans [L,3], refined_rot [L,3,3], refined_prmsd [L,4], score [1]
Rotations are row-vector: x_global = x_local @ R + t.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import igfold_ref  # noqa: E402  (patches igfold.runner for antiberty 0.1.3)
import igfold.model.IgFold as igfold_model_mod  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from einops import rearrange  # noqa: E402
from igfold.training import utils as tu  # noqa: E402
from igfold.utils.checkpoint import load_model  # noqa: E402
from igfold.utils.folding import fold, validate_sequences  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402


def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


class Dumper:
    """Stands in for one IgFold member inside fold()."""

    def __init__(self, model):
        self.model = model
        self.d = {}

    def put(self, key, t, batch=True):
        t = t.detach()
        self.d[key] = (t[0] if batch else t).clone()

    # ---------------------------------------------------------------- forward
    def __call__(self, model_in):
        m = self.model
        handles = []

        def out_hook(key, pick=None):
            def hook(_mod, _inp, out):
                self.put(key, out if pick is None else pick(out))

            return hook

        def residual_hook(key):  # caller computes edges + module(edges); reproduce that add
            def hook(_mod, inp, out):
                self.put(key, inp[0] + out)

            return hook

        handles.append(m.str_node_transform.register_forward_hook(out_hook("str_nodes")))
        handles.append(m.str_edge_transform.register_forward_hook(out_hook("str_edges")))
        for i, (gt, tri_out, tri_in) in enumerate(m.main_block.layers):
            attn_residual = gt.layers[0][0][1]
            handles.append(attn_residual.register_forward_hook(out_hook(f"main.{i}.nodes_attn")))
            handles.append(gt.register_forward_hook(out_hook(f"main.{i}.nodes", pick=lambda o: o[0])))
            handles.append(tri_out.register_forward_hook(residual_hook(f"main.{i}.edges_tri_out")))
            handles.append(tri_in.register_forward_hook(residual_hook(f"main.{i}.edges")))
        for j, blk in enumerate(m.template_ipa.layers):
            handles.append(blk.register_forward_hook(out_hook(f"tmpl.{j}.nodes")))

        n_str = len(m.structure_ipa.layers)
        for i, (blk, lin) in enumerate(m.structure_ipa.layers):

            def pre(_mod, _args, kwargs, i=i):
                self.put(f"str.{i}.rot_in", kwargs["rotations"])
                self.put(f"str.{i}.trans_in", kwargs["translations"])
                if i > 0:
                    self.put(f"str.{i - 1}.trans", kwargs["translations"])

            handles.append(blk.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(blk.register_forward_hook(out_hook(f"str.{i}.nodes")))
            handles.append(lin.register_forward_hook(out_hook(f"str.{i}.update")))

        def str_out(_mod, _inp, out):
            _coords, trans, quat = out
            self.put(f"str.{n_str - 1}.trans", trans)
            self.put("str.final_quat", quat)

        handles.append(m.structure_ipa.register_forward_hook(str_out))

        qmul_calls = []
        orig_qmul = m.structure_ipa.quaternion_multiply

        def qmul(a, b):
            r = orig_qmul(a, b)
            qmul_calls.append(r.detach().clone())
            return r

        m.structure_ipa.quaternion_multiply = qmul  # instance attribute used by IPATransformer.forward

        handles.append(m.dev_node_transform.register_forward_hook(out_hook("dev_nodes_in")))
        handles.append(m.dev_edge_transform.register_forward_hook(out_hook("dev_edges_in")))
        for j, blk in enumerate(m.dev_ipa.layers):
            handles.append(blk.register_forward_hook(out_hook(f"dev.{j}.nodes")))
        handles.append(m.dev_ipa.register_forward_hook(out_hook("dev_out")))

        try:
            out = m(model_in)
        finally:
            for h in handles:
                h.remove()
            m.structure_ipa.quaternion_multiply = orig_qmul

        assert len(qmul_calls) == n_str
        for i, q in enumerate(qmul_calls):
            self.d[f"str.{i}.quat"] = q[0]
        assert torch.equal(self.d[f"str.{n_str - 1}.quat"], self.d.pop("str.final_quat"))
        assert torch.equal(self.d[f"str.{n_str - 1}.trans"], out.translations[0])

        self.put("bert_feats", out.bert_embs)
        self.put("bert_attn", out.bert_attn)
        self.put("gt_embs", out.gt_embs)
        self.put("structure_embs", out.structure_embs)
        assert torch.equal(self.d["gt_embs"], self.d[f"main.{len(m.main_block.layers) - 1}.nodes"])
        assert torch.equal(self.d["structure_embs"], self.d[f"tmpl.{len(m.template_ipa.layers) - 1}.nodes"])
        self.put("raw_coords", out.coords)
        self.put("raw_trans", out.translations)  # cloned: gradient_refine updates these in place
        self.put("raw_rot", out.rotations)
        self.put("raw_prmsd", rearrange(out.prmsd, "b (l a) -> b l a", a=4))
        return out

    # ---------------------------------------------------------------- refinement
    def gradient_refine(self, model_in, model_out):
        rec = {"rmsd": [], "viol": [], "terms": None, "grads": None, "after1": None}
        orig_viol, orig_kmse, orig_adam = igfold_model_mod.violation_loss, igfold_model_mod.kabsch_mse, torch.optim.Adam

        def violation_loss(pred, seq_lens, mask, **kw):
            v = orig_viol(pred, seq_lens, mask, **kw)
            rec["viol"].append(v.detach().clone())
            if rec["terms"] is None:
                with torch.no_grad():
                    terms = {
                        "bond_len0": tu.bond_len_loss(pred, seq_lens, mask),
                        "bond_angle0": tu.bond_angle_loss(pred, seq_lens, mask),
                        "clash0": tu.vdw_clash_loss(pred, mask),
                        "cis0": tu.cis_peptide_loss(pred, seq_lens, mask),
                    }
                s = terms["bond_len0"] + terms["bond_angle0"] + terms["clash0"] + terms["cis0"]
                assert torch.equal(s, v.detach()), (s, v)
                rec["terms"] = terms
            return v

        def kabsch_mse(*a, **kw):
            r = orig_kmse(*a, **kw)
            rec["rmsd"].append(r.detach().clone())
            return r

        class RecordingAdam(orig_adam):
            def step(self, closure=None):
                if rec["grads"] is None:
                    rec["grads"] = [p.grad.detach().clone() for p in self.param_groups[0]["params"]]
                r = super().step(closure)
                if rec["after1"] is None:
                    rec["after1"] = [p.detach().clone() for p in self.param_groups[0]["params"]]
                return r

        igfold_model_mod.violation_loss = violation_loss
        igfold_model_mod.kabsch_mse = kabsch_mse
        torch.optim.Adam = RecordingAdam
        try:
            out = self.model.gradient_refine(model_in, model_out)
        finally:
            igfold_model_mod.violation_loss = orig_viol
            igfold_model_mod.kabsch_mse = orig_kmse
            torch.optim.Adam = orig_adam

        rmsd = torch.cat(rec["rmsd"])
        viol = torch.cat(rec["viol"])
        self.d["refine.rmsd"] = rmsd
        self.d["refine.viol"] = viol
        self.d["refine.loss"] = rmsd + viol
        self.d["refine.loss0"] = (rmsd + viol)[:1]
        self.d["refine.rmsd0"] = rmsd[:1]
        for k, v in rec["terms"].items():
            self.d[f"refine.{k}"] = v.reshape(1)
        gt, gR = rec["grads"]  # param order in gradient_refine: [translations, rotations]
        assert gt.shape[-1] == 3 and gR.shape[-2:] == (3, 3)
        self.put("refine.grad_t0", gt)
        self.put("refine.grad_R0", gR)
        self.put("refine.trans1", rec["after1"][0])
        self.put("refine.rot1", rec["after1"][1])

        self.put("refined_coords", out.coords)
        self.put("refined_trans", out.translations)
        self.put("refined_rot", out.rotations)
        self.put("refined_prmsd", rearrange(out.prmsd, "b (l a) -> b l a", a=4))
        self.d["score"] = out.prmsd.quantile(0.9).detach().reshape(1)
        return out


def dump_antiberty(antiberty, seq_dict, d):
    seqs = list(seq_dict.values())
    hidden, attn = antiberty.embed(seqs, hidden_layer=None, return_attention=True)
    for c, s, h, a in zip(seq_dict, seqs, hidden, attn):
        ids = antiberty.tokenizer(" ".join(s))["input_ids"]
        d[f"antiberty.{c}.token_ids"] = torch.tensor(ids, dtype=torch.float32)
        d[f"antiberty.{c}.hidden"] = h
        d[f"antiberty.{c}.attn"] = a


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--name", required=True, choices=list(igfold_ref.ANTIBODIES))
    ap.add_argument("--out", required=True, help="output .safetensors (keep it out of tests/data)")
    ap.add_argument("--member", type=int, default=0, help="ensemble member index 0..3 (sorted file order)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    igfold_ref.setup_torch(args.threads)
    antiberty, _ = igfold_ref.AntiBERTyRunner013(), None
    path = igfold_ref.member_paths()[args.member]
    dumper = Dumper(load_model(path))
    seq_dict = validate_sequences(dict(igfold_ref.ANTIBODIES[args.name]))

    out = fold(
        antiberty,
        [dumper],
        pdb_file=None,
        sequences=dict(seq_dict),
        skip_pdb=True,
        do_refine=False,
        do_renum=False,
        truncate_sequences=False,
    )
    d = dumper.d
    assert torch.equal(out.coords[0], d["refined_coords"])
    L = sum(len(s) for s in seq_dict.values())
    assert d["bert_attn"].shape == (L, L, 64)

    dump_antiberty(antiberty, seq_dict, d)
    # last hidden layer without [CLS]/[SEP], concatenated over chains, is bert_feats
    feats = torch.cat([d[f"antiberty.{c}.hidden"][-1, 1:-1] for c in seq_dict])
    assert torch.allclose(feats, d["bert_feats"], atol=1e-5), (feats - d["bert_feats"]).abs().max()

    tensors = {k: f32(v) for k, v in d.items()}
    meta = {
        "sequences": json.dumps(seq_dict),
        "name": args.name,
        "member": os.path.basename(path),
        "versions": json.dumps(igfold_ref.versions()),
        "threads": str(torch.get_num_threads()),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_file(tensors, args.out, metadata=meta)
    os.chmod(args.out, 0o644)
    summary = {
        "name": args.name,
        "L": L,
        "member": os.path.basename(path),
        "keys": len(tensors),
        "bytes": os.path.getsize(args.out),
        "loss0": float(d["refine.loss0"]),
        "terms0": {k: float(d[f"refine.{k}"]) for k in ("rmsd0", "bond_len0", "bond_angle0", "clash0", "cis0")},
        "loss_last": float(d["refine.loss"][-1]),
        "score": float(d["score"]),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
