#!/usr/bin/env python3
"""Time the official JAX AlphaFold2 monomer model on one processed-features file; print ONE JSON
line on stdout (progress on stderr).

    tools/reference/af2/.venv/bin/python tools/reference/af2/bench_reference.py \\
        --features F.npz --params /tmp/af2/params_model_1_ptm.npz [--model model_1_ptm] \\
        [--recycles 3] [--threads N] [--save-outputs OUT.npz] [--platform cpu|gpu]

The model is the one make_model_golden.py checks against (alphafold-colabfold 2.3.1's
modules.AlphaFold under af2_ref.official_model_config, fp32, is_training=False): ONE recycling
iteration per call, one jitted graph reused for all recycles + 1 iterations, iteration r on
feature slice r (the last slice if there are fewer), prev zero at r = 0 and the previous
iteration's prev afterwards: the official AlphaFold semantics. Keys starting with aux_ are ignored.

Timing:
  compile_s   jit lower + compile of that graph for these shapes (done once, explicitly, before
              any run), wall and CPU seconds reported separately from the runs.
  runs        the full recycles + 1 iteration loop, run --runs times (default 2) on the compiled
              graph, outputs pulled to numpy after every iteration (as ferrofold has them in host
              memory); run_s = the LAST run (the first is the warm-up: allocator, page faults).
  peak_rss_mb ru_maxrss of this process after compile and at the end (compile included).

--save-outputs OUT.npz also writes the last run's final outputs, named as `ferrofold predict
--save-outputs` names them: final_atom_positions, final_atom_mask, plddt, predicted_lddt_logits,
distogram_logits, masked_msa_logits, experimentally_resolved_logits, single, pair and, for _ptm
models, predicted_aligned_error, predicted_aligned_error_logits, ptm (float32). verify_model.py
uses it.

Threads: the driver does not pin itself. Run it under `taskset -c <N cores>` (XLA's CPU thread
pools size themselves from the affinity mask); --threads 1 additionally sets
--xla_cpu_multi_thread_eigen=false (single-threaded Eigen kernels). The XLA_FLAGS always carry
--xla_disable_hlo_passes=onednn-matmul-rewriter (see af2-reference-gotchas.md).

Platform: --platform cpu (default) sets JAX_PLATFORMS=cpu; --platform gpu sets JAX_PLATFORMS=cuda
(jaxlib's CUDA plugin must be installed; no CPU fallback), ignores --threads for XLA (the eigen flag
is CPU-only) and adds device / device_peak_mb (peak_bytes_in_use of device 0) to the JSON. On GPU
jax's default f32 matmul precision may use TF32; --matmul-precision highest forces full f32 (for
numerical comparisons), default leaves jax's default. A new jax (>= 0.5, e.g. 0.11 with haiku
0.0.17) works through jax_compat.py, loaded by af2_ref.
"""
import argparse
import json
import os
import resource
import sys
import time

BASE_XLA_FLAGS = "--xla_disable_hlo_passes=onednn-matmul-rewriter"


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def save_outputs(path, ret, plddt, np, confidence):
    """The final iteration's outputs under the names of ferrofold's <stem>.outputs.npz."""
    reps, sm = ret["representations"], ret["structure_module"]
    out = {
        "final_atom_positions": sm["final_atom_positions"],
        "final_atom_mask": sm["final_atom_mask"],
        "plddt": plddt,
        "predicted_lddt_logits": ret["predicted_lddt"]["logits"],
        "distogram_logits": ret["distogram"]["logits"],
        "masked_msa_logits": ret["masked_msa"]["logits"],
        "experimentally_resolved_logits": ret["experimentally_resolved"]["logits"],
        "single": reps["single"],
        "pair": reps["pair"],
    }
    if "predicted_aligned_error" in ret:
        pae = ret["predicted_aligned_error"]
        out["predicted_aligned_error"] = confidence.compute_predicted_aligned_error(
            pae["logits"], pae["breaks"])["predicted_aligned_error"]
        out["predicted_aligned_error_logits"] = pae["logits"]
        out["ptm"] = confidence.predicted_tm_score(pae["logits"], pae["breaks"])
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **{k: np.asarray(v, np.float32) for k, v in out.items()})
    print(f"outputs: {path}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", required=True, help="processed features .npz (leading axis E)")
    ap.add_argument("--params", default="/tmp/af2/params_model_1_ptm.npz")
    ap.add_argument("--model", default="model_1_ptm")
    ap.add_argument("--recycles", type=int, default=None,
                    help="recycling iterations after the first (default: the model's, 3)")
    ap.add_argument("--threads", type=int, default=None,
                    help="1: single-threaded Eigen (--xla_cpu_multi_thread_eigen=false); "
                         "pin the process with taskset for the core count")
    ap.add_argument("--runs", type=int, default=2, help="timed loops; the last one is reported")
    ap.add_argument("--save-outputs", metavar="OUT.npz", default=None,
                    help="also write the last run's final outputs (ferrofold's names) to OUT.npz")
    ap.add_argument("--platform", choices=("cpu", "gpu"), default="cpu",
                    help="cpu (default): JAX_PLATFORMS=cpu; gpu: JAX_PLATFORMS=cuda")
    ap.add_argument("--matmul-precision", choices=("default", "high", "highest"), default=None,
                    help="jax_default_matmul_precision (unset: jax's default; TF32 on GPU)")
    args = ap.parse_args()

    flags = [BASE_XLA_FLAGS]
    if args.threads == 1 and args.platform == "cpu":
        flags.append("--xla_cpu_multi_thread_eigen=false")
    os.environ["XLA_FLAGS"] = " ".join(flags + [os.environ.get("XLA_FLAGS", "")]).strip()
    os.environ["JAX_PLATFORMS"] = {"cpu": "cpu", "gpu": "cuda"}[args.platform]

    t_import = time.perf_counter()
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import af2_ref  # noqa: E402
    import haiku as hk  # noqa: E402
    import jax  # noqa: E402
    import numpy as np  # noqa: E402
    from alphafold.common import confidence  # noqa: E402
    from alphafold.common import residue_constants as rc  # noqa: E402
    from alphafold.model import modules  # noqa: E402
    import_s = time.perf_counter() - t_import
    if args.matmul_precision:
        jax.config.update("jax_default_matmul_precision", args.matmul_precision)
    device = jax.devices()[0]

    cfg = af2_ref.official_model_config(args.model)
    evo = cfg.model.embeddings_and_evoformer
    num_recycle = int(cfg.model.num_recycle) if args.recycles is None else args.recycles

    with np.load(args.features) as z:
        feats = {k: z[k] for k in z.files if not k.startswith("aux_")}
    E, L = feats["aatype"].shape
    shapes = {"E": E, "L": L, "S": feats["msa_feat"].shape[1], "X": feats["extra_msa"].shape[1],
              "T": feats["template_aatype"].shape[1] if "template_aatype" in feats else 0}
    print(f"features {args.features}: {shapes}", file=sys.stderr)

    t0 = time.perf_counter()
    with np.load(args.params) as z:
        flat = {k: z[k] for k in z.files}
    params = jax.device_put(af2_ref.unflatten_haiku(flat))
    jax.block_until_ready(params)
    load_params_s = time.perf_counter() - t0

    def forward(batch):
        model = modules.AlphaFold(cfg.model)
        return model(batch, is_training=False, compute_loss=False,
                     ensemble_representations=False, return_representations=True)

    apply = jax.jit(hk.transform(forward).apply)
    key = jax.random.PRNGKey(0)  # unused numerically: is_training=False, no dropout

    def zero_prev():
        return {"prev_pos": np.zeros((L, rc.atom_type_num, 3), np.float32),
                "prev_msa_first_row": np.zeros((L, evo.msa_channel), np.float32),
                "prev_pair": np.zeros((L, L, evo.pair_channel), np.float32)}

    def batch_for(r, prev):
        r = min(r, E - 1)
        return {**{k: v[r:r + 1] for k, v in feats.items()}, "prev": prev}

    c0, w0 = time.process_time(), time.perf_counter()
    compiled = apply.lower(params, key, batch_for(0, zero_prev())).compile()
    compile_cpu, compile_wall = time.process_time() - c0, time.perf_counter() - w0
    rss_after_compile = peak_rss_mb()
    print(f"compile: {compile_wall:.1f} s wall, {compile_cpu:.1f} CPU-s", file=sys.stderr)

    runs, ret = [], None
    for i in range(args.runs):
        prev, iters = zero_prev(), []
        c0, w0 = time.process_time(), time.perf_counter()
        for r in range(num_recycle + 1):
            t = time.perf_counter()
            ret = compiled(params, key, batch_for(r, prev))
            ret = jax.tree_util.tree_map(lambda x: np.asarray(jax.block_until_ready(x)), ret)
            prev = ret["prev"]
            iters.append(time.perf_counter() - t)
        run = {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
               "iterations_s": iters}
        runs.append(run)
        print(f"run {i}: {run['wall_s']:.2f} s wall, {run['cpu_s']:.2f} CPU-s "
              f"({num_recycle + 1} iterations)", file=sys.stderr)

    plddt = confidence.compute_plddt(ret["predicted_lddt"]["logits"])
    out = {"plddt": [round(float(x), 4) for x in plddt]}
    if "predicted_aligned_error" in ret:
        pae = ret["predicted_aligned_error"]
        out["ptm"] = float(confidence.predicted_tm_score(pae["logits"], pae["breaks"]))

    if args.save_outputs:
        save_outputs(args.save_outputs, ret, plddt, np, confidence)

    import importlib.metadata as md
    extra = {}
    if args.platform != "cpu":
        stats = device.memory_stats() or {}
        extra = {"device": device.device_kind,
                 "device_peak_mb": round(stats.get("peak_bytes_in_use", 0) / 2**20, 1)}
    print(json.dumps({
        "model": args.model, "features": args.features, "shapes": shapes,
        "recycles": num_recycle, "iterations": num_recycle + 1, "threads": args.threads,
        "affinity_cores": sorted(os.sched_getaffinity(0)),
        "xla_flags": os.environ["XLA_FLAGS"],
        "import_s": round(import_s, 3), "load_params_s": round(load_params_s, 3),
        "compile_s": round(compile_wall, 3), "compile_cpu_s": round(compile_cpu, 3),
        "run_s": round(runs[-1]["wall_s"], 3), "run_cpu_s": round(runs[-1]["cpu_s"], 3),
        "runs": runs,
        "peak_rss_mb_after_compile": round(rss_after_compile, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "platform": args.platform, "matmul_precision": args.matmul_precision, **extra,
        "mean_plddt": float(np.mean(plddt)), **out,
        "versions": {p: md.version(p) for p in ("alphafold-colabfold", "jax", "jaxlib",
                                                  "dm-haiku", "numpy")},
    }))


if __name__ == "__main__":
    main()
