#!/usr/bin/env python3
"""ferrofold's AlphaFold2 against the official JAX model: same features, same parameters, same
4 iterations; per-case deviations and PASS/FAIL against the acceptance tolerances.

    tools/reference/af2/.venv/bin/python tools/reference/af2/verify_model.py \\
        [--models model_1 model_1_ptm] [--lengths 64 128] [--msa 32] [--extra 64] \\
        [--recycles 3] [--params-dir /tmp/af2] [--workdir DIR] [--threads N] [--json OUT.json]

For every length L one processed-features file is written with
make_model_golden.make_features(L, --msa, --extra, num_recycle=--recycles): a deterministic synthetic
MSA (row 0 = the query), extra rows and one template, E = recycles + 1 identical slices, unpadded.
For every model (parameters --params-dir/params_<model>.npz, made with make_params.py --seed 0 if
missing) both sides run on that file, one after the other:
  * JAX: bench_reference.py --runs 1 --save-outputs (official model code, one jitted iteration
    looped recycles + 1 times, official AlphaFold semantics);
  * ferrofold: target/release/ferrofold predict --model M --params P --features F --save-outputs
    (the binary is not built here: run `cargo build --release` first).

Printed per case (reference = JAX):
  atoms      max over final_atom_mask of |x_ff - x_jax| (Euclidean, A)    tolerance 0.01 A
  pLDDT      max |delta pLDDT|                                             tolerance 0.1
  PAE        max |delta PAE| (A), _ptm models only                         tolerance 0.05 A
  dgram, msa, exp_res, lddt
             max |delta logits| / max |logits_jax| for the distogram, masked-MSA,
             experimentally-resolved and pLDDT heads                       tolerance 1e-3
  pTM        |delta pTM| (_ptm models; reported, no tolerance)
  pae_lg     the same relative figure for the PAE logits (reported, no tolerance)
The final_atom_mask of both sides must be identical and every compared shape must match, otherwise
the case FAILs. Exit status 1 if any case FAILs, 0 otherwise.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, HERE)

TOL = {"atoms": 0.01, "plddt": 0.1, "pae": 0.05, "logits": 1e-3}
LOGITS = [("dgram", "distogram_logits"), ("msa", "masked_msa_logits"),
          ("exp_res", "experimentally_resolved_logits"), ("lddt", "predicted_lddt_logits")]


def run(cmd, log):
    t = time.perf_counter()
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        tail = open(log).read()[-3000:]
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{tail}")
    return time.perf_counter() - t


def features_file(workdir, L, n_msa, n_extra, num_recycle):
    import make_model_golden as g  # imports alphafold (venv)
    path = os.path.join(workdir, f"L{L}_S{n_msa}_X{n_extra}_T1.npz")
    feats, _, _ = g.make_features(L, n_msa, n_extra, num_recycle=num_recycle, template=True)
    g.save_npz_stable(path, feats)
    return path


def params_file(params_dir, model):
    path = os.path.join(params_dir, f"params_{model}.npz")
    if not os.path.exists(path):
        os.makedirs(params_dir, exist_ok=True)
        print(f"making {path} (make_params.py --model {model} --seed 0)", flush=True)
        run([sys.executable, os.path.join(HERE, "make_params.py"), path, "--model", model,
             "--seed", "0"], path + ".log")
    return path


def compare(ref, got, ptm):
    """Deviations of ferrofold (got) from JAX (ref); (metrics, problems)."""
    import numpy as np
    problems = []
    keys = ["final_atom_positions", "final_atom_mask", "plddt"] + [k for _, k in LOGITS]
    if ptm:
        keys += ["predicted_aligned_error", "predicted_aligned_error_logits", "ptm"]
    for k in keys:
        if k not in got:
            problems.append(f"ferrofold has no {k}")
        elif k not in ref:
            problems.append(f"reference has no {k}")
        elif ref[k].shape != got[k].shape:
            problems.append(f"{k}: shape {got[k].shape} != reference {ref[k].shape}")
        elif not np.all(np.isfinite(got[k])):
            problems.append(f"{k}: non-finite values")
    if problems:
        return {}, problems
    ref = {k: ref[k].astype(np.float64) for k in keys}
    got = {k: got[k].astype(np.float64) for k in keys}
    m = {}
    mask = ref["final_atom_mask"] > 0
    if not np.array_equal(mask, got["final_atom_mask"] > 0):
        problems.append(f"final_atom_mask differs at "
                        f"{int((mask != (got['final_atom_mask'] > 0)).sum())} atoms")
    d = np.linalg.norm(got["final_atom_positions"] - ref["final_atom_positions"], axis=-1)
    m["atoms"] = float(d[mask].max())
    m["plddt"] = float(np.abs(got["plddt"] - ref["plddt"]).max())
    rel = lambda k: float(np.abs(got[k] - ref[k]).max() / np.abs(ref[k]).max())  # noqa: E731
    for name, k in LOGITS:
        m[name] = rel(k)
    if ptm:
        m["pae"] = float(np.abs(got["predicted_aligned_error"]
                                - ref["predicted_aligned_error"]).max())
        m["pae_lg"] = rel("predicted_aligned_error_logits")
        m["ptm"] = float(abs(got["ptm"] - ref["ptm"]))
        m["ptm_ref"] = float(ref["ptm"])
    m["mean_plddt_ref"] = float(ref["plddt"].mean())
    m["atoms_compared"] = int(mask.sum())
    return m, problems


def verdict(m, ptm):
    """Failed criteria of one case."""
    fails = []
    if m["atoms"] > TOL["atoms"]:
        fails.append("atoms")
    if m["plddt"] > TOL["plddt"]:
        fails.append("pLDDT")
    if ptm and m["pae"] > TOL["pae"]:
        fails.append("PAE")
    fails += [n for n, _ in LOGITS if m[n] > TOL["logits"]]
    return fails


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["model_1", "model_1_ptm"])
    ap.add_argument("--lengths", nargs="+", type=int, default=[64, 128])
    ap.add_argument("--msa", type=int, default=32, help="MSA rows (cluster centres), query included")
    ap.add_argument("--extra", type=int, default=64, help="extra-MSA rows")
    ap.add_argument("--recycles", type=int, default=3)
    ap.add_argument("--params-dir", default="/tmp/af2")
    ap.add_argument("--workdir", default="/tmp/af2/verify")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/ferrofold"))
    ap.add_argument("--threads", type=int, default=None, help="ferrofold --threads (default all)")
    ap.add_argument("--json", default=None, help="also write all figures to this file")
    args = ap.parse_args()

    import numpy as np
    if not os.path.exists(args.binary):
        sys.exit(f"{args.binary} missing: cargo build --release")
    os.makedirs(args.workdir, exist_ok=True)
    params = {mdl: params_file(args.params_dir, mdl) for mdl in args.models}
    print(f"features: {args.msa} MSA rows, {args.extra} extra rows, 1 template, "
          f"{args.recycles + 1} iterations; workdir {args.workdir}", flush=True)

    results = []
    for L in args.lengths:
        feats = features_file(args.workdir, L, args.msa, args.extra, args.recycles)
        stem = os.path.basename(feats)[:-len(".npz")]
        for mdl in args.models:
            ptm = mdl.endswith("_ptm")
            case = f"{mdl} L={L}"
            base = os.path.join(args.workdir, f"{stem}_{mdl}")
            ref_npz = base + "_jax.npz"
            t_jax = run([sys.executable, os.path.join(HERE, "bench_reference.py"),
                         "--features", feats, "--params", params[mdl], "--model", mdl,
                         "--recycles", str(args.recycles), "--runs", "1",
                         "--save-outputs", ref_npz], base + "_jax.log")
            ff_dir = base + "_ferrofold"
            cmd = [args.binary, "predict", "--model", mdl, "--params", params[mdl],
                   "--features", feats, "--out", ff_dir, "--recycles", str(args.recycles),
                   "--save-outputs"]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            t_ff = run(cmd, base + "_ferrofold.log")
            with np.load(ref_npz) as z:
                ref = {k: z[k] for k in z.files}
            with np.load(os.path.join(ff_dir, stem + ".outputs.npz")) as z:
                got = {k: z[k] for k in z.files}
            m, problems = compare(ref, got, ptm)
            fails = problems + (verdict(m, ptm) if m else [])
            results.append({"case": case, "model": mdl, "L": L, "has_pae": ptm, **m,
                            "problems": problems, "fails": fails,
                            "pass": not fails, "jax_s": round(t_jax, 1),
                            "ferrofold_s": round(t_ff, 1)})
            print(f"{case}: {'PASS' if not fails else 'FAIL ' + ', '.join(fails)} "
                  f"(JAX {t_jax:.0f} s, ferrofold {t_ff:.0f} s)", flush=True)

    cols = [("atoms", "atoms A"), ("plddt", "pLDDT"), ("pae", "PAE A"), ("dgram", "dgram"),
            ("msa", "msa"), ("exp_res", "exp_res"), ("lddt", "lddt"), ("pae_lg", "pae_lg"),
            ("ptm", "pTM")]
    print()
    print(f"{'case':<20}" + "".join(f"{h:>10}" for _, h in cols) + "  result")
    for r in results:
        cells = "".join(f"{r[k]:>10.2e}" if k in r else f"{'-':>10}" for k, _ in cols)
        print(f"{r['case']:<20}{cells}  {'PASS' if r['pass'] else 'FAIL'}")
    print(f"{'tolerance':<20}{TOL['atoms']:>10.2e}{TOL['plddt']:>10.2e}{TOL['pae']:>10.2e}"
          + f"{TOL['logits']:>10.2e}" * 4 + f"{'-':>10}{'-':>10}")
    print("logit columns: max |delta| / max |reference logits|; pae_lg and pTM are not gated")
    for r in results:
        for p in r["problems"]:
            print(f"{r['case']}: {p}")
    if args.json:
        json.dump({"tolerances": TOL, "msa": args.msa, "extra": args.extra,
                   "iterations": args.recycles + 1, "results": results},
                  open(args.json, "w"), indent=1)
    ok = all(r["pass"] for r in results)
    print("ALL PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
