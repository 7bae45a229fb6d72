#!/usr/bin/env python3
"""Time the reference IgFold 1.0.1 pipeline on a FASTA file; print ONE JSON line on stdout.

    tools/reference/.venv/bin/python tools/reference/bench_reference.py tests/data/antibodies.fasta --threads 1

FASTA records are ColabFold style: ``>name`` then the chains joined by ':' (heavy first), so
``HEAVY:LIGHT`` is a paired Fv (chains H, L) and a single sequence is a nanobody / single chain (H).

Each record is folded with ``IgFoldRunner.fold`` (AntiBERTy 0.1.3 + the 4 members, each forward +
80-step gradient_refine, choice by 0.9-quantile prmsd, PDB written to a temp dir) with
do_refine=False (no OpenMM/PyRosetta relaxation), do_renum=False and truncate_sequences=False.

Output: {"threads", "model_load_s", "records": [{"name", "L", "chains", "seconds", "cpu_seconds"}, ...],
"total_s", "peak_rss_mb", "versions", ...}. Progress goes to stderr.
"""

import argparse
import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

CHAIN_IDS = "HLABCDEFGIJKMNOPQRSTUVWXYZ"


def read_fasta(path):
    records, name, buf = [], None, []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith(";"):
                continue
            if line.startswith(">"):
                if name is not None:
                    records.append((name, "".join(buf)))
                name, buf = line[1:].split()[0] if line[1:].split() else f"record{len(records)}", []
            else:
                buf.append(line)
    if name is not None:
        records.append((name, "".join(buf)))
    out = []
    for name, seq in records:
        chains = [c for c in seq.split(":") if c]
        out.append((name, {CHAIN_IDS[i]: c for i, c in enumerate(chains)}))
    return out


def peak_rss_mb():
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fasta")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--warmup", type=int, default=0, help="untimed folds of the first record before timing")
    ap.add_argument("--repeat", type=int, default=1, help="timed folds per record; the minimum is reported")
    args = ap.parse_args()

    t_import = time.perf_counter()
    import igfold_ref  # noqa: E402  (imports torch/transformers/igfold, patches igfold.runner)
    import torch

    igfold_ref.setup_torch(args.threads)
    import_s = time.perf_counter() - t_import

    records = read_fasta(args.fasta)
    if not records:
        sys.exit(f"no records in {args.fasta}")

    t0 = time.perf_counter()
    runner = igfold_ref.make_runner(device="cpu")
    load_s = time.perf_counter() - t0
    print(f"loaded models in {load_s:.2f} s", file=sys.stderr)

    results = []
    with tempfile.TemporaryDirectory() as tmp:

        def fold_once(name, seqs):
            pdb = os.path.join(tmp, f"{name}.pdb")
            t, c = time.perf_counter(), time.process_time()
            runner.fold(pdb, sequences=dict(seqs), do_refine=False, do_renum=False, truncate_sequences=False)
            return time.perf_counter() - t, time.process_time() - c

        for _ in range(args.warmup):
            fold_once(*records[0])
        for name, seqs in records:
            runs = [fold_once(name, seqs) for _ in range(max(1, args.repeat))]
            times = [w for w, _ in runs]
            secs = min(times)
            cpu = min(c for _, c in runs)
            L = sum(len(s) for s in seqs.values())
            print(f"{name}: L={L} {secs:.2f} s wall, {cpu:.2f} s cpu", file=sys.stderr)
            results.append(
                {
                    "name": name,
                    "L": L,
                    "chains": {k: len(v) for k, v in seqs.items()},
                    "seconds": round(secs, 4),
                    "cpu_seconds": round(cpu, 4),
                    "all_seconds": [round(t, 4) for t in times],
                }
            )

    print(
        json.dumps(
            {
                "tool": "igfold-reference",
                "threads": torch.get_num_threads(),
                "import_s": round(import_s, 3),
                "model_load_s": round(load_s, 3),
                "records": results,
                "total_s": round(sum(r["seconds"] for r in results), 4),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "versions": igfold_ref.versions(),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
