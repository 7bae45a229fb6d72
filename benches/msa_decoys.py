#!/usr/bin/env python3
"""MSA search false positives: ours and MMseqs2 on the benchmark database plus a shuffled copy.

    bash benches/msa_data.sh      # target/msa-bench/{db.fasta,queries*.fasta}, installs the tools
    python3 benches/msa_decoys.py [--threads 2] [--tools ours,mmseqs2]
        [--queries target/msa-bench/queries.fasta] [--db-fasta target/msa-bench/db.fasta]
        [--work target/msa-bench] [--ferrofold target/release/ferrofold] [--evalue 1e-3]
        [--rerun] [--ours-extra "--iterations 3"]

Recall (benches/msa_vs_reference.py) cannot see a hit that is wrong: its truth only holds hits
that another tool or a full Smith-Waterman confirms. Here every database protein gets a decoy,
its own residues shuffled (fixed seed, `decoy_<id>`), which keeps the composition and removes
any homology; a hit on a decoy is a false positive, and a decoy hit at E <= --evalue means that
E-value was wrong. The doubled database makes every E-value twice what it is on the real one,
for every tool alike. The shuffled queries of msa_data.sh are left out (they have no homologs
to drift with). Tools run with the same settings as in msa_vs_reference.py (ours: `ferrofold
search` defaults; MMseqs2: ColabFold's search on a `createindex -s 8` index); MMseqs2's output
and database are cached under WORK/cache like the other benchmark's. Prints a Markdown table;
writes WORK/decoys/results.json.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import msa_vs_reference as bench  # noqa: E402

TOOLS = ("ours", "mmseqs2")
DECOY_SEED = 11


def write_decoy_db(db_fasta, path):
    """db_fasta with a shuffled copy after every record, written once (then reused)."""
    if os.path.exists(path):
        return
    rng = random.Random(DECOY_SEED)
    with open(path + ".tmp", "w") as out:
        for name, seq in bench.read_fasta(db_fasta):
            residues = list(seq)
            rng.shuffle(residues)
            out.write(f">{name}\n{seq}\n>decoy_{name}\n{''.join(residues)}\n")
    os.replace(path + ".tmp", path)


def summarise(hits, names, thr):
    """Real and decoy hits at E <= thr (self hits left out), per query and strongest decoy."""
    real = decoy = 0
    per_query, strongest = {}, None
    for q in names:
        for target, e in hits.get(q, {}).items():
            if e > thr or target == q:
                continue
            if target.startswith("decoy_"):
                decoy += 1
                per_query[q] = per_query.get(q, 0) + 1
                strongest = e if strongest is None else min(strongest, e)
            else:
                real += 1
    return {"real": real, "decoy": decoy, "decoy_per_query": per_query,
            "strongest_decoy_evalue": strongest}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db-fasta", default=os.path.join(bench.ROOT, "target/msa-bench/db.fasta"))
    ap.add_argument("--queries",
                    default=os.path.join(bench.ROOT, "target/msa-bench/queries.fasta"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=os.path.join(bench.ROOT, "target/msa-bench"))
    ap.add_argument("--ferrofold",
                    default=os.path.join(bench.ROOT, "target/release/ferrofold"))
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--evalue", type=float, default=1e-3, help="counting threshold")
    ap.add_argument("--rerun", action="store_true", help="ignore cached MMseqs2 outputs")
    ap.add_argument("--ours-extra", default="", help="extra arguments for ferrofold search")
    args = ap.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if any(t not in TOOLS for t in tools):
        ap.error(f"choose tools from {','.join(TOOLS)}")
    if "mmseqs2" in tools and shutil.which("mmseqs") is None:
        sys.exit("missing mmseqs: run bash benches/msa_data.sh (installs it)")
    work = os.path.abspath(args.work)
    base = os.path.join(work, "decoys")
    os.makedirs(base, exist_ok=True)
    source_hash = bench.sha256_cached(os.path.abspath(args.db_fasta), work)["sha256"][:16]
    decoy_fasta = os.path.join(base, f"db_{source_hash}_decoys{DECOY_SEED}.fasta")
    write_decoy_db(args.db_fasta, decoy_fasta)
    # The benchmark's runners, pointed at the doubled database and their own folder.
    args.db_fasta = decoy_fasta
    args.ferrofold = os.path.abspath(args.ferrofold)
    args.threads = str(args.threads)
    args.mmseqs_index = True
    dbinfo = bench.sha256_cached(decoy_fasta, work)
    records = [r for r in bench.read_fasta(args.queries) if not r[0].startswith("shuffled_")]
    names = [q for q, _ in records]
    queries_path = os.path.join(base, "queries_used.fasta")
    bench.write_fasta(queries_path, records)
    qhash = hashlib.sha256(open(queries_path, "rb").read()).hexdigest()
    bench.log(f"decoy database {decoy_fasta}: {dbinfo['sequences']} sequences; "
              f"{len(names)} queries; {args.threads} threads")

    results = {}
    for tool in tools:
        bench.log(f"running {bench.LABELS[tool]}")
        try:
            if tool == "ours":
                run = bench.run_ours(args, "ours", queries_path, names, base)
            else:
                run = bench.run_mmseqs(args, "mmseqs2", queries_path, qhash, dbinfo, names,
                                       work)
        except bench.RunError as e:
            bench.log(f"{bench.LABELS[tool]} skipped: {e}")
            continue
        results[tool] = {"wall_s": run["wall_s"], "cached": run["cached"],
                         **summarise(run["hits"], names, args.evalue)}

    lines = [f"| tool | wall s | real hits E≤{args.evalue:g} | decoy hits E≤{args.evalue:g} "
             "| queries with decoy hits | strongest decoy E | most decoy hits |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for tool, r in results.items():
        top = sorted(r["decoy_per_query"].items(), key=lambda kv: -kv[1])[:3]
        strongest = r["strongest_decoy_evalue"]
        lines.append(
            f"| {bench.LABELS[tool]} | {r['wall_s']:.1f}{' (cached)' if r['cached'] else ''} "
            f"| {r['real']} | {r['decoy']} | {len(r['decoy_per_query'])}/{len(names)} "
            f"| {'–' if strongest is None else f'{strongest:.1e}'} "
            f"| {', '.join(f'{q} {n}' for q, n in top) or '–'} |")
    print("\n".join(lines))
    bench.save_json(os.path.join(base, "results.json"),
                    {"queries": args.queries, "database": decoy_fasta, "evalue": args.evalue,
                     "decoy_seed": DECOY_SEED, "tools": results, "table": "\n".join(lines)})


if __name__ == "__main__":
    main()
