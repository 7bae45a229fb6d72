#!/usr/bin/env python3
"""AlphaFold2 model_1_ptm on CPU: ferrofold against the official JAX model, same features, same
parameters, same iterations, same cores.

    python3 benches/af2_vs_jax.py [--lengths 64 128] [--threads 1 2] [--msa 32] [--extra 64]
    python3 benches/af2_vs_jax.py --single-sequence --lengths 64 128 256 --threads 2
    python3 benches/af2_vs_jax.py --memory-check 1000 [--threads 2]

Speed (default). Builds ferrofold (cargo build --release --quiet; --no-build skips it), makes the
JAX venv if missing (tools/reference/af2/setup_venv.sh) and the random model_1_ptm parameters if
missing (make_params.py, seed 0). For every length L it writes ONE processed-features file with
make_model_golden.make_features(L, --msa, --extra): a deterministic synthetic MSA (row 0 = the
query), extra rows and 1 template, built exactly as the golden's features, E = recycles + 1
identical slices, no fixed-size padding. Both programs read that same file and the same params
file and run recycles + 1 = 4 iterations; for each thread count N both run pinned to the same N
cores (taskset -c 0..N-1):
  * ferrofold: `ferrofold predict --model model_1_ptm --threads N --recycles R`, one process; run
    time = sum of timings.iterations_s (the network, heads included), load = load_params_s +
    load_model_s, reported apart.
  * JAX: tools/reference/af2/bench_reference.py --threads N (official model code, jit, one
    compiled iteration graph reused for all iterations; N = 1 also sets
    --xla_cpu_multi_thread_eigen=false; oneDNN matmul rewrite disabled). Compile is timed on its
    own; the iteration loop then runs twice and the SECOND run is reported.
  * peak RSS of each process from /usr/bin/time (the JAX figure includes compilation).
  * both final pLDDT vectors are compared (max |difference|): the two did the same computation.

--reuse-jax JSON takes JAX's figures from an earlier run's --json (same inputs and machine: the
reference does not change when ferrofold does) and runs ferrofold alone.

--device cuda (a GPU machine; benches/gpu_check.sh runs it): ferrofold runs `--device cuda`, JAX
`--platform gpu` (XLA_PYTHON_CLIENT_PREALLOCATE=false, so that it takes memory as it needs it),
and each process's peak GPU memory is read by polling nvidia-smi (memory.used above the idle
baseline, every 50 ms). --binary takes a ferrofold built elsewhere (no cargo there), --python the
interpreter that runs the reference (default: the venv's), --no-jax leaves JAX out, and features
files already in --workdir are reused (make them where the reference venv is).

--single-sequence gives both the query alone: one MSA row, one padding extra row and one
all-zero padding template (model_1 reads templates; AF2 pads them so), E = recycles + 1 slices. --jax-runs N times JAX's loop N times (default 2,
the last reported); 1 halves a long run's cost.

Equal work is on the features as given: S MSA rows, X extra rows, 1 template, unpadded. The
official pipeline would pad to 508 MSA / 5120 extra rows / 4 templates; this bench does not, so
its JAX figures are the official model on small unpadded inputs, not what AlphaFold does by
default.

Memory check (--memory-check L [L ...]). ferrofold alone on a single-sequence features file of
length L: 1 MSA row (the query), 1 extra-MSA row that is padding (mask 0; the official code needs
>= 1), one padding template, E = 1, --recycles 0. Reports peak RSS and time; with two or more lengths it
also fits peak RSS = a + b*L^2 and extrapolates to --memory-target (default 1000).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF = os.path.join(ROOT, "tools/reference/af2")
VENV_PY = os.path.join(os.environ.get("FERROFOLD_AF2_VENV", os.path.join(REF, ".venv")),
                       "bin/python")
BINARY = os.path.join(ROOT, "target/release/ferrofold")
MODEL = "model_1_ptm"


# ------------------------------------------------------------------------------------------------
# Feature files (run inside the JAX venv: make_model_golden imports alphafold's residue constants)

def write_features(path, L, n_msa, n_extra, template, num_recycle, single_sequence):
    sys.path.insert(0, REF)
    import numpy as np
    import make_model_golden as g
    if single_sequence:
        # model_1 reads templates: one all-zero padding template (mask 0), as AF2 pads
        feats, _, _ = g.make_features(L, 1, 0, num_recycle=num_recycle, template=True)
        for k in [k for k in feats if k.startswith("template_")]:
            feats[k] = np.zeros_like(feats[k])
        E = feats["aatype"].shape[0]
        # one padding extra row, as make_fixed_size pads: zeros, mask 0
        feats["extra_msa"] = np.zeros((E, 1, L), np.int32)
        for k in ("extra_has_deletion", "extra_deletion_value", "extra_msa_mask"):
            feats[k] = np.zeros((E, 1, L), np.float32)
    else:
        feats, _, _ = g.make_features(L, n_msa, n_extra, num_recycle=num_recycle,
                                      template=template)
    g.save_npz_stable(path, feats)
    print(json.dumps({k: list(v.shape) for k, v in feats.items()}))


def npz_shapes(path, keys):
    """{key: shape} read from the .npy headers of an npz (no numpy needed)."""
    import ast
    import zipfile
    out = {}
    with zipfile.ZipFile(path) as z:
        for k in keys:
            with z.open(k + ".npy") as f:
                head = f.read(10)
                n = int.from_bytes(head[8:10], "little") if head[6] == 1 else \
                    int.from_bytes(head[8:10] + f.read(2), "little")
                out[k] = list(ast.literal_eval(f.read(n).decode("latin1"))["shape"])
    return out


def make_features_file(workdir, L, n_msa, n_extra, template, num_recycle, single_sequence=False):
    name = (f"ss{L}" if single_sequence else f"L{L}_S{n_msa}_X{n_extra}_T{int(template)}") \
        + f"_E{num_recycle + 1}"
    path = os.path.join(workdir, name + ".npz")
    if os.path.exists(path):
        return path, npz_shapes(path, ("msa_feat", "extra_msa"))
    cmd = [VENV_PY, os.path.abspath(__file__), "--_write-features", path, str(L), str(n_msa),
           str(n_extra), str(int(template)), str(num_recycle), str(int(single_sequence))]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"feature build failed: {' '.join(cmd)}\n{r.stderr[-4000:]}")
    shapes = json.loads(r.stdout.strip().splitlines()[-1])
    return path, shapes


# ------------------------------------------------------------------------------------------------

class GpuMemory:
    """Peak memory.used of GPU 0 above its level at the start, polled from nvidia-smi."""

    def __enter__(self):
        self.proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits",
             "-lms", "50"], stdout=subprocess.PIPE, text=True)
        self.base = int(self.proc.stdout.readline())
        return self

    def __exit__(self, *exc):
        self.proc.terminate()
        rest = self.proc.communicate()[0].split()
        self.peak_mb = max([self.base] + [int(x) for x in rest]) - self.base


def timed(cmd, cores, gpu=False):
    """Run cmd pinned to `cores` under /usr/bin/time: (stdout, stderr, rusage dict); with `gpu`
    also the peak GPU memory."""
    pin = ["taskset", "-c", ",".join(str(c) for c in cores)] if cores else []
    full = ["/usr/bin/time", "-f", "FFBENCH_RUSAGE %M %U %S %e"] + pin + cmd
    if gpu:
        with GpuMemory() as mem:
            r = subprocess.run(full, capture_output=True, text=True)
    else:
        r = subprocess.run(full, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(full)}\n{r.stderr[-4000:]}")
    line = [ln for ln in r.stderr.splitlines() if ln.startswith("FFBENCH_RUSAGE")][-1].split()
    usage = {"peak_rss_mb": int(line[1]) / 1024, "user_s": float(line[2]),
             "sys_s": float(line[3]), "wall_s": float(line[4])}
    if gpu:
        usage["peak_gpu_mb"] = mem.peak_mb
    return r.stdout, r.stderr, usage


def run_ferrofold(features, params, threads, recycles, cores, outdir, device="cpu",
                  precision="fp32"):
    cmd = [BINARY, "predict", "--model", MODEL, "--params", params, "--features", features,
           "--out", outdir, "--recycles", str(recycles), "--device", device,
           "--precision", precision]
    if threads:
        cmd += ["--threads", str(threads)]
    _, _, usage = timed(cmd, cores, gpu=device != "cpu")
    stem = os.path.basename(features)[:-len(".npz")]
    res = json.load(open(os.path.join(outdir, stem + ".json")))
    t = res["timings"]
    return {"run_s": sum(t["iterations_s"]), "iterations_s": t["iterations_s"],
            "load_s": t["load_params_s"] + t["load_model_s"],
            "load_params_s": t["load_params_s"], "load_model_s": t["load_model_s"],
            "total_s": t["total_s"], "plddt": res["plddt"], "ptm": res.get("ptm"), **usage}


def run_jax(features, params, threads, recycles, cores, runs, device="cpu"):
    cmd = [VENV_PY, os.path.join(REF, "bench_reference.py"), "--features", features,
           "--params", params, "--model", MODEL, "--recycles", str(recycles),
           "--threads", str(threads), "--runs", str(runs)]
    if device != "cpu":
        cmd += ["--platform", "gpu"]
        os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    out, _, usage = timed(cmd, cores, gpu=device != "cpu")
    res = json.loads(out.strip().splitlines()[-1])
    res.update({"process_" + k: v for k, v in usage.items()})
    return res


def prepare(args):
    if args.binary:
        return
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    if not os.path.exists(VENV_PY):
        subprocess.run(["bash", os.path.join(REF, "setup_venv.sh")], check=True)
    if not os.path.exists(args.params):
        os.makedirs(os.path.dirname(os.path.abspath(args.params)), exist_ok=True)
        subprocess.run([VENV_PY, os.path.join(REF, "make_params.py"), args.params,
                        "--model", MODEL, "--seed", "0"], check=True)


def cores_for(threads):
    avail = sorted(os.sched_getaffinity(0))
    if threads > len(avail):
        sys.exit(f"--threads {threads}: only {len(avail)} cores available")
    return avail[:threads]


def speed(args, workdir):
    inputs = ("single sequence (1 MSA row, 1 padding extra row, 1 padding template)"
              if args.single_sequence else
              f"MSA {args.msa} rows, extra {args.extra} rows, {1 if args.template else 0} template")
    gpu = args.device != "cpu"
    print(f"machine: {os.cpu_count()} cores, device {args.device}, ferrofold --precision "
          f"{args.precision}; model {MODEL}, "
          f"{args.recycles + 1} iterations; {inputs}, unpadded; params {args.params}")
    rows = []
    reused = {}
    if args.reuse_jax:
        reused = {(r["L"], r["threads"]): r["jax"] for r in json.load(open(args.reuse_jax))}
        print(f"JAX figures reused from {args.reuse_jax} (same inputs, same machine): "
              f"{sorted(reused)}")
    for L in args.lengths:
        feats, shapes = make_features_file(workdir, L, args.msa, args.extra, args.template,
                                           args.recycles, args.single_sequence)
        print(f"\nL={L}: {os.path.basename(feats)} msa_feat {shapes['msa_feat']}, "
              f"extra_msa {shapes['extra_msa']}", flush=True)
        for n in args.threads:
            cores = cores_for(n)
            load = os.getloadavg()[0]
            ff = run_ferrofold(feats, args.params, n, args.recycles, cores,
                               os.path.join(workdir, f"ff_L{L}_t{n}"), args.device,
                               args.precision)
            print(f"  threads {n}: ferrofold {ff['run_s']:.2f} s "
                  f"(iterations {', '.join(f'{x:.2f}' for x in ff['iterations_s'])}), "
                  f"load {ff['load_s']:.2f} s, peak {ff['peak_rss_mb']:.0f} MB"
                  + (f", GPU {ff['peak_gpu_mb']} MB" if gpu else ""), flush=True)
            jx = None
            if (L, n) in reused:
                jx = reused[(L, n)]
            elif not args.no_jax:
                try:
                    jx = run_jax(feats, args.params, n, args.recycles, cores, args.jax_runs,
                                 args.device)
                except SystemExit as e:  # ferrofold's figures still count; JAX stops here
                    print(f"  JAX failed, left out from here on: {str(e)[-3000:]}", flush=True)
                    args.no_jax = True
            row = {"L": L, "threads": n, "cores": cores, "device": args.device,
                   "ferrofold": ff, "jax": jx, "loadavg_1min_before": load}
            if jx:
                print(f"  threads {n}: JAX compile {jx['compile_s']:.1f} s, runs "
                      f"{', '.join('%.2f' % r['wall_s'] for r in jx['runs'])} s, peak "
                      f"{jx['process_peak_rss_mb']:.0f} MB"
                      + (f", GPU {jx['process_peak_gpu_mb']} MB" if gpu else ""), flush=True)
                row["max_abs_dplddt"] = max(abs(a - b) for a, b in zip(ff["plddt"], jx["plddt"]))
                row["dptm"] = (abs(ff["ptm"] - jx["ptm"]) if ff.get("ptm") is not None
                               and jx.get("ptm") is not None else None)
            rows.append(row)

    def fmt(x, spec):
        return "-" if x is None else format(x, spec)

    mem = "GPU peak MB" if gpu else "peak RSS MB"
    print(f"\n| L | threads | JAX compile s | JAX run s | ferrofold run s | ferrofold load s "
          f"| speed-up | JAX {mem} | ferrofold {mem} | max abs dpLDDT | load avg |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ff, jx = r["ferrofold"], r["jax"] or {}
        mem_key = "peak_gpu_mb" if gpu else "peak_rss_mb"
        print(f"| {r['L']} | {r['threads']} | {fmt(jx.get('compile_s'), '.1f')} | "
              f"{fmt(jx.get('run_s'), '.2f')} | {ff['run_s']:.2f} | {ff['load_s']:.2f} | "
              f"{fmt(jx['run_s'] / ff['run_s'] if jx else None, '.2f')}x | "
              f"{fmt(jx.get('process_' + mem_key), '.0f')} | {ff[mem_key]:.0f} | "
              f"{fmt(r.get('max_abs_dplddt'), '.2g')} | {r['loadavg_1min_before']:.1f} |")
    print(f"\n{inputs}.")
    print(f"run s = the {args.recycles + 1} iterations (network + heads), without loading or compiling. "
          "speed-up = JAX run / ferrofold run. load avg = 1-min load average before the pair "
          f"of runs (other work on this {os.cpu_count()}-core machine inflates both).")
    for r in rows:
        ff, jx = r["ferrofold"], r["jax"]
        if not jx:
            continue
        print(f"L={r['L']} threads={r['threads']} cores={r['cores']}: JAX compile "
              f"{jx['compile_cpu_s']:.0f} CPU-s, run {jx['run_cpu_s']:.1f} CPU-s "
              f"(first run {jx['runs'][0]['wall_s']:.2f} s), params load {jx['load_params_s']:.2f}"
              f" s + imports {jx['import_s']:.1f} s, peak after compile "
              f"{jx['peak_rss_mb_after_compile']:.0f} MB; ferrofold process {ff['user_s'] + ff['sys_s']:.1f} "
              f"CPU-s / {ff['wall_s']:.1f} s wall; pTM {ff['ptm']:.4f} vs {jx['ptm']:.4f}; "
              f"load avg before {r['loadavg_1min_before']:.2f}")
    if any(r["jax"] for r in rows):
        jrows = [r for r in rows if r["jax"]]
        print(f"JAX versions {jrows[0]['jax']['versions']}; XLA_FLAGS per thread count: "
              + "; ".join(sorted({f"{r['threads']}: {r['jax']['xla_flags']}" for r in jrows})))
    if args.json:
        json.dump(rows, open(args.json, "w"), indent=1)


def memory(args, workdir):
    n = max(args.threads)
    cores = cores_for(n)
    pts = []
    for L in args.memory_check:
        feats, shapes = make_features_file(workdir, L, 1, 0, False, 0, single_sequence=True)
        load = os.getloadavg()[0]
        ff = run_ferrofold(feats, args.params, n, 0, cores, os.path.join(workdir, f"ss{L}"),
                           args.device, args.precision)
        pts.append((L, ff))
        print(f"single sequence L={L} (msa_feat {shapes['msa_feat']}, extra_msa "
              f"{shapes['extra_msa']}, 1 padding template, --recycles 0, {n} threads): peak RSS "
              f"{ff['peak_rss_mb']:.0f} MB ({ff['peak_rss_mb'] / 1024:.2f} GiB), iteration "
              f"{ff['run_s']:.1f} s, load {ff['load_s']:.2f} s, process {ff['wall_s']:.1f} s wall, "
              f"{ff['user_s'] + ff['sys_s']:.1f} CPU-s (load avg before {load:.2f})"
              + (f"; peak GPU memory {ff['peak_gpu_mb']} MB" if "peak_gpu_mb" in ff else ""),
              flush=True)
    t = args.memory_target
    if len(pts) >= 2:
        (l1, f1), (l2, f2) = pts[-2], pts[-1]
        b = (f2["peak_rss_mb"] - f1["peak_rss_mb"]) / (l2 ** 2 - l1 ** 2)
        a = f1["peak_rss_mb"] - b * l1 ** 2
        print(f"fit peak RSS = {a:.0f} MB + {b * 1e3:.3f} KB * L^2 through L={l1},{l2}: "
              f"L={t} -> {(a + b * t * t) / 1024:.2f} GiB (O(L^2) extrapolation)")
        print(f"time O(L^3) from L={l2}: iteration at L={t} ~ {f2['run_s'] * (t / l2) ** 3:.0f} s "
              f"(O(L^2) would be {f2['run_s'] * (t / l2) ** 2:.0f} s)")
    if len(pts) >= 3:  # exact a + b L^2 + c L^3 through the three largest: is there an L^3 term?
        ls = [L for L, _ in pts[-3:]]
        ys = [ff["peak_rss_mb"] for _, ff in pts[-3:]]
        m = [[1.0, L ** 2, L ** 3] for L in ls]

        def det(x):
            return (x[0][0] * (x[1][1] * x[2][2] - x[1][2] * x[2][1])
                    - x[0][1] * (x[1][0] * x[2][2] - x[1][2] * x[2][0])
                    + x[0][2] * (x[1][0] * x[2][1] - x[1][1] * x[2][0]))
        d = det(m)
        a, b, c = (det([[ys[i] if j == k else m[i][j] for j in range(3)] for i in range(3)]) / d
                   for k in range(3))
        print(f"fit peak RSS = {a:.0f} MB + {b * 1e3:.3f} KB * L^2 + {c * 1e6:.4f} B * L^3 "
              f"through L={ls}: L={t} -> {(a + b * t * t + c * t ** 3) / 1024:.2f} GiB")
    if args.json:
        json.dump([{"L": L, **ff} for L, ff in pts], open(args.json, "w"), indent=1)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--_write-features":
        path, L, s, x, t, r, ss = sys.argv[2:9]
        return write_features(path, int(L), int(s), int(x), bool(int(t)), int(r), bool(int(ss)))
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--msa", type=int, default=32, help="MSA rows (cluster centres, row 0 = query)")
    ap.add_argument("--extra", type=int, default=64, help="extra-MSA rows")
    ap.add_argument("--no-template", dest="template", action="store_false",
                    help="no template features (default: 1 template)")
    ap.add_argument("--single-sequence", action="store_true",
                    help="the query alone (--msa, --extra and the template are ignored)")
    ap.add_argument("--recycles", type=int, default=3, help="iterations - 1 (model_1: 3)")
    ap.add_argument("--jax-runs", type=int, default=2, help="timed JAX loops; the last counts")
    ap.add_argument("--reuse-jax", metavar="JSON",
                    help="take JAX's figures for matching (L, threads) from an earlier --json "
                         "of the same inputs instead of running it again")
    ap.add_argument("--params", default="/tmp/af2/params_model_1_ptm.npz")
    ap.add_argument("--memory-check", type=int, nargs="+", metavar="L",
                    help="ferrofold alone on a single-sequence input of length L (no JAX)")
    ap.add_argument("--memory-target", type=int, default=1000,
                    help="length to extrapolate the memory fit to (with >= 2 --memory-check L)")
    ap.add_argument("--no-build", action="store_true", help="use the existing release binary")
    ap.add_argument("--binary", help="this ferrofold binary (no build)")
    ap.add_argument("--python", help="the reference's interpreter (default: the venv's)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                    help="cuda: both on GPU 0, with peak GPU memory")
    ap.add_argument("--no-jax", action="store_true", help="ferrofold alone")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"],
                    help="ferrofold's --precision (tf32 / bf16: the CUDA backend's GEMMs on "
                         "tensor cores; tf32 is JAX's default on NVIDIA GPUs)")
    ap.add_argument("--workdir", help="keep features and outputs here (default: a temp dir)")
    ap.add_argument("--json", help="also write the raw measurements here")
    args = ap.parse_args()

    global BINARY, VENV_PY
    BINARY = args.binary or BINARY
    VENV_PY = args.python or VENV_PY
    prepare(args)
    with tempfile.TemporaryDirectory(prefix="af2_vs_jax_") as tmp:
        workdir = args.workdir or tmp
        os.makedirs(workdir, exist_ok=True)
        # every run uses this snapshot, even if target/release is rebuilt meanwhile
        snap = os.path.join(workdir, "ferrofold")
        shutil.copy2(BINARY, snap)
        BINARY = snap
        print(f"ferrofold binary: {BINARY} (copy of target/release/ferrofold, built "
              f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(os.path.getmtime(snap)))})")
        if args.memory_check:
            memory(args, workdir)
        else:
            speed(args, workdir)


if __name__ == "__main__":
    main()
