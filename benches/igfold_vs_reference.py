#!/usr/bin/env python3
"""IgFold on CPU: ferrofold against the PyTorch reference, same antibodies, same threads.

    python3 benches/igfold_vs_reference.py [FASTA] [--threads 1 2] [--repeat 2]

Builds ferrofold (release), makes the reference venv (tools/reference/setup_venv.sh) and, for
each thread count, folds every record with both (`ferrofold predict --threads N`, one process
per record so each time includes nothing else; the reference through
tools/reference/bench_reference.py with torch.set_num_threads(N)). Per record it prints our
wall time, the reference's, and the ratio; then model load and peak memory of each. The best
of --repeat runs is kept for both. Record the table in BENCHMARKS.md.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PY = os.path.join(ROOT, "tools/reference/.venv/bin/python")


def read_fasta(path):
    records, name, seq = [], None, []
    for line in open(path):
        line = line.strip()
        if line.startswith(">"):
            if name:
                records.append((name, "".join(seq)))
            name, seq = line[1:].split()[0], []
        elif line:
            seq.append(line)
    if name:
        records.append((name, "".join(seq)))
    return records


def ours(binary, name, seq, threads, weights):
    """(wall seconds of the fold, model load seconds, peak RSS MB) for one record."""
    with tempfile.TemporaryDirectory() as tmp:
        fasta = os.path.join(tmp, "in.fasta")
        open(fasta, "w").write(f">{name}\n{seq}\n")
        out = os.path.join(tmp, "out")
        cmd = ["/usr/bin/time", "-f", "PEAK_KB %M", binary, "predict", "--model", "igfold",
               fasta, "--out", out, "--threads", str(threads)]
        if weights:
            cmd += ["--weights", weights]
        r = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result = json.load(open(os.path.join(out, f"{name}.json")))
        load = float(r.stderr.split("model loaded in ")[1].split()[0])
        peak = int(r.stderr.split("PEAK_KB ")[1].split()[0]) / 1024
        return result["timings"]["total_s"], load, peak


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("fasta", nargs="?", default=os.path.join(ROOT, "tests/data/antibodies.fasta"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--weights", help="folder of converted weights (default: the cache)")
    args = ap.parse_args()

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    subprocess.run(["bash", os.path.join(ROOT, "tools/reference/setup_venv.sh")], check=True)
    binary = os.path.join(ROOT, "target/release/ferrofold")
    records = read_fasta(args.fasta)
    print(f"machine: {os.cpu_count()} cores; records: {len(records)}; best of {args.repeat}")

    for threads in args.threads:
        runs = [[ours(binary, n, s, threads, args.weights) for n, s in records]
                for _ in range(args.repeat)]
        best = [min(r[i][0] for r in runs) for i in range(len(records))]
        load = min(r[i][1] for r in runs for i in range(len(records)))
        peak = max(r[i][2] for r in runs for i in range(len(records)))
        ref = json.loads(subprocess.run(
            [VENV_PY, os.path.join(ROOT, "tools/reference/bench_reference.py"), args.fasta,
             "--threads", str(threads), "--repeat", str(args.repeat)],
            capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        print(f"\n## {threads} thread{'s' if threads > 1 else ''}")
        print("| record | L | ferrofold s | reference s | speed-up |")
        print("| --- | --- | --- | --- | --- |")
        for (name, seq), t, r in zip(records, best, ref["records"]):
            L = len(seq.replace(":", ""))
            print(f"| {name} | {L} | {t:.2f} | {r['seconds']:.2f} | {r['seconds'] / t:.1f}x |")
        tot, rtot = sum(best), ref["total_s"]
        print(f"| all | | {tot:.2f} | {rtot:.2f} | {rtot / tot:.1f}x |")
        print(f"model load: ferrofold {load:.2f} s, reference {ref['model_load_s']:.2f} s "
              f"(+ {ref['import_s']:.1f} s of Python imports)")
        print(f"peak memory: ferrofold {peak:.0f} MB, reference {ref['peak_rss_mb']:.0f} MB")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
