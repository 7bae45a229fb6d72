#!/usr/bin/env python3
"""MSA search: ferrofold against MMseqs2 and jackhmmer, same queries, database and threads (issue 6).

    bash benches/msa_data.sh      # target/msa-bench/{db.fasta,queries.fasta}, installs the tools
    python3 benches/msa_vs_reference.py [--threads 2] [--tools ours,ours1,ours2,mmseqs2,jackhmmer1,jackhmmer3]
        [--tools ...,mmseqs2_1]
        [--db-fasta target/msa-bench/db.fasta] [--queries target/msa-bench/queries.fasta]
        [--work target/msa-bench] [--ferrofold target/release/ferrofold] [--evalue 1e-3]
        [--max-queries N] [--rerun] [--no-mmseqs-index] [--ours-extra "-s 8"] [--repeat N]

--repeat N runs the timed tools N times in turn (ours, ours1, ours2, MMseqs2, ... then again), so that
each tool meets the machine's slow and fast spells alike, and reports each one's median wall
time with every run's; hits and recall come from the last run. Cached reference results (no
--rerun) run once. Before each timed run the tool's database files are read through once,
untimed, so that every tool is timed with its database in the page cache (this VM trims the
page cache, and the other tools' runs in between evicted ours).

Tools (each a subprocess; wall time with time.perf_counter, peak RSS from os.wait4's ru_maxrss,
which covers the process and every descendant it waited for; where a tool runs several
commands, wall is the sum and peak the maximum):
- ours: `ferrofold db build DB_FASTA DB` (timed as the database build; once per benchmark
  run and shared by our runs, as MMseqs2's database is by its runs; every tool's database
  is built and written out to disk before the first timed search), then one
  `ferrofold search QUERIES DB --out DIR --evalue 0.1 --max-seqs 10000 --threads T`
  (ColabFold's settings; our default of 4 iterations, where a query stops once its included
  hits grow by less than 10 %); hits from DIR/<query>.tsv. Never cached. Skipped with a
  warning when the binary is missing or `db build` fails, so the rest still runs.
- ours1: the same with `--iterations 1`, the single-iteration search to set beside
  jackhmmer -N 1 (its own output folder).
- ours2: the same with `--iterations 3 -s 2`, the fast setting to set beside jackhmmer -N 1:
  profile passes at low sensitivity find more than one sensitive pass, in less time.
- mmseqs2: database build = `createdb` + `createindex -s 8` (ColabFold's servers search
  precomputed indexes; --no-mmseqs-index leaves the index out and MMseqs2 then builds the k-mer
  index in memory on every prefilter). Timed run = `createdb` of the queries, `search
  --num-iterations 3 -s 8 -e 0.1 --max-seqs 10000 -a` (ColabFold passes -a: result2msa needs
  the backtraces), `filterresult --max-seq-id 0.95`, `result2msa --msa-format-mode 6` and
  `unpackdb` to one .a3m per query. Hits are the search result before filtering, through
  `convertalis` (timed separately, not in the wall time).
- mmseqs2_1 (not run by default): the same with `--num-iterations 1`, the single-iteration
  search to set beside jackhmmer -N 1 (its hits are not part of the truth).
- jackhmmer1 / jackhmmer3: AF2's flags, `jackhmmer -N 1|3 --incE 0.0001 -E 0.0001 --F1 0.0005
  --F2 0.00005 --F3 0.0000005 --cpu T --noali -o /dev/null -A Q.sto --tblout Q.tbl`, one
  process per query as AF2 runs it (jackhmmer does accept a file of several queries, but -A then
  keeps only the last query's alignment); wall is the sum over queries. It reads the FASTA
  directly, so there is no build. Note -E 0.0001: it reports nothing above 1e-4, whatever
  --evalue says. tblout holds the final round's hits (HMMER 3.3.2).

Recall, for the real queries (shuffled_* queries have no homologs and are counted as false
positives instead: how many of them get any hit with E <= --evalue). Per query, the truth is
  (jackhmmer -N 3 hits  ∩  MMseqs2 hits, both E <= --evalue)
  ∪ (our hits (of ours, ours1 and ours2) with E <= --evalue that a full Smith-Waterman confirms: ssearch36 -z 3 -s BL62
     -f -11 -g -1 of the query against just those targets with -Z <sequences in the database>,
     so its Altschul-Gish E-values are for the whole database, kept when E <= --evalue),
without the query's own entry. Recall of a tool = |its hits with E <= --evalue ∩ truth| / |truth|,
as a micro average (sums over queries) and a mean over queries with a non-empty truth. When a
reference is not run now its cached output is used for the truth if there is one; without it the
truth is the part that can be made (noted in the output). The hit counts in the table count every
hit with E <= --evalue, self hits included.

--max-queries N keeps the first N real queries and the first shuffled one, for quick runs, e.g.
SUBSET=20000 bash benches/msa_data.sh, then --db-fasta target/msa-bench/db_subset20000.fasta
--max-queries 5 --threads 1 (a few seconds for the three reference tools).

Reference outputs are cached under WORK/cache, keyed by the database's and queries' sha256, the
thread count and the parameters (jackhmmer per query, so --max-queries 5 runs are reused by the
full run); --rerun redoes them. Prints a Markdown table and ratios and writes WORK/results.json.
"""
import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = ("ours", "ours1", "ours2", "mmseqs2", "mmseqs2_1", "jackhmmer1", "jackhmmer3")
DEFAULT_TOOLS = ("ours", "ours1", "ours2", "mmseqs2", "jackhmmer1", "jackhmmer3")
LABELS = {"ours": "ferrofold", "ours1": "ferrofold --iterations 1",
          "ours2": "ferrofold --iterations 3 -s 2", "mmseqs2": "MMseqs2",
          "mmseqs2_1": "MMseqs2 --num-iterations 1", "jackhmmer1": "jackhmmer -N 1",
          "jackhmmer3": "jackhmmer -N 3"}
# Our runs (each also the name of its folder under WORK) and the options each adds to
# --ours-extra: ours1 is the single-iteration search, the like of jackhmmer -N 1; ours2 the
# fast setting set against jackhmmer -N 1 (profile iterations at low sensitivity).
OURS_RUNS = {"ours": [], "ours1": ["--iterations", "1"], "ours2": ["--iterations", "3", "-s", "2"]}
# MMseqs2's search flags per run (ColabFold's, and the same for one iteration).
MMSEQS_RUNS = {tool: ["--num-iterations", n, "-s", "8", "-e", "0.1", "--max-seqs", "10000", "-a"]
               for tool, n in (("mmseqs2", "3"), ("mmseqs2_1", "1"))}
JACKHMMER_FLAGS = ["--incE", "0.0001", "-E", "0.0001", "--F1", "0.0005", "--F2", "0.00005",
                   "--F3", "0.0000005", "--noali"]
OURS_SEARCH = ["--evalue", "0.1", "--max-seqs", "10000"]
SSEARCH = ["-q", "-z", "3", "-s", "BL62", "-f", "-11", "-g", "-1", "-m", "8"]


def log(msg):
    print(f"[msa-bench] {msg}", file=sys.stderr, flush=True)


class RunError(RuntimeError):
    pass


def run(cmd, log_path, cwd=None):
    """Runs cmd with stdout/stderr appended to log_path; (wall seconds, peak RSS MB)."""
    with open(log_path, "ab") as lf:
        lf.write(("\n$ " + " ".join(map(str, cmd)) + "\n").encode())
        lf.flush()
        t0 = time.perf_counter()
        try:
            p = subprocess.Popen([str(c) for c in cmd], stdout=lf, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, cwd=cwd)
        except OSError as e:
            raise RunError(f"{cmd[0]}: {e}")
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        tail = open(log_path, errors="replace").read()[-2000:]
        raise RunError(f"exit {p.returncode}: {' '.join(map(str, cmd))}\n--- {log_path}:\n{tail}")
    return wall, usage.ru_maxrss / 1024


def read_fasta(path):
    records, name, seq = [], None, []
    for line in open(path):
        line = line.strip()
        if line.startswith(">"):
            if name is not None:
                records.append((name, "".join(seq)))
            name, seq = line[1:].split()[0], []
        elif line:
            seq.append(line)
    if name is not None:
        records.append((name, "".join(seq)))
    return records


def write_fasta(path, records):
    with open(path, "w") as f:
        for name, seq in records:
            f.write(f">{name}\n{seq}\n")


def sha256_cached(path, work):
    """sha256 and (sequences, residues) of a FASTA, remembered by (path, size, mtime)."""
    memo_path = os.path.join(work, "cache", "fasta_info.json")
    memo = json.load(open(memo_path)) if os.path.exists(memo_path) else {}
    st = os.stat(path)
    key = f"{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns}"
    if key not in memo:
        h, n, r = hashlib.sha256(), 0, 0
        with open(path, "rb") as f:
            for line in f:
                h.update(line)
                if line.startswith(b">"):
                    n += 1
                else:
                    r += len(line.strip())
        memo[key] = {"sha256": h.hexdigest(), "sequences": n, "residues": r}
        os.makedirs(os.path.dirname(memo_path), exist_ok=True)
        json.dump(memo, open(memo_path + ".tmp", "w"), indent=1)
        os.replace(memo_path + ".tmp", memo_path)
    return memo[key]


def short_hash(*parts):
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()[:16]


def best_hits(rows):
    """{query: {target: smallest E-value}} from (query, target, evalue) rows."""
    out = {}
    for q, t, e in rows:
        d = out.setdefault(q, {})
        if t not in d or e < d[t]:
            d[t] = e
    return out


def save_json(path, obj):
    json.dump(obj, open(path + ".tmp", "w"), indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


# ---------------------------------------------------------------- tools

def flush_writes():
    """Writes a database build left in the page cache out to disk before a timed search, so
    that no tool's search shares the machine with the writeback of its own fresh database."""
    os.sync()


def warm_cache(paths):
    """Reads the files through once, untimed, so that every tool's timed run finds its
    database in the page cache: this VM trims the page cache even with memory free, and a
    search right after the other tools' runs read its evicted database back from disk (our
    fast setting 1.36 s instead of 0.80 s, with 145 major page faults)."""
    for path in paths:
        with open(path, "rb") as f:
            while f.read(16 << 20):
                pass


def database_files(args, tool, dbinfo, work):
    """The files a tool's search reads its database from."""
    if tool in OURS_RUNS:
        return [ours_db(args, work)[0]]
    if tool in MMSEQS_RUNS:
        base = os.path.dirname(mmseqs_db(args, dbinfo, work)[0])
        return sorted(os.path.join(base, f) for f in os.listdir(base)
                      if os.path.isfile(os.path.join(base, f)))
    return [args.db_fasta]


# Our database as built in this process: its path, build seconds and peak MB.
BUILT_OURS_DB = []


def ours_db(args, work):
    """Our database, built once per benchmark run and shared by our runs, as MMseqs2's is by
    its runs: the searches are timed alone, and one 841 MB file, not three, competes for the
    page cache (this VM evicts file pages even with memory free, and an evicted database is
    read back in the timed search). Returns its path, build seconds and peak MB."""
    binary = args.ferrofold
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        raise RunError(f"{binary} not found (cargo build --release, or pass --build)")
    if not BUILT_OURS_DB:
        base = os.path.join(work, "ours_db")
        db = os.path.join(base, "db")
        shutil.rmtree(base, ignore_errors=True)
        os.makedirs(base)
        BUILT_OURS_DB.extend([db, *run([binary, "db", "build", args.db_fasta, db],
                                       os.path.join(base, "log.txt"))])
        flush_writes()
    return tuple(BUILT_OURS_DB)


def run_ours(args, tool, queries_path, names, work):
    binary = args.ferrofold
    db, build_s, build_mb = ours_db(args, work)
    base = os.path.join(work, tool)
    logp = os.path.join(base, "log.txt")
    out = os.path.join(base, "out")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    extra = args.ours_extra.split()
    # An option given in --ours-extra (`--opt v` or `--opt=v`) replaces the run's and the
    # default one (clap refuses repeats); each is an option and its value.
    given = {tok.split("=")[0] for tok in extra}
    fixed = [*OURS_RUNS[tool], "--threads", args.threads, *OURS_SEARCH]
    defaults = [x for i in range(0, len(fixed), 2) if fixed[i] not in given
                for x in fixed[i:i + 2]]
    cmd = [binary, "search", queries_path, db, "--out", out, *defaults, *extra]
    wall, peak = run(cmd, logp)
    rows, missing, depth = [], [], {}
    for q in names:
        tsv = os.path.join(out, f"{q}.tsv")
        if not os.path.exists(tsv):
            missing.append(q)
            continue
        for line in open(tsv):
            f = line.rstrip("\n").split("\t")
            if len(f) < 2 or line.startswith("#"):
                continue
            try:
                rows.append((q, f[0], float(f[1])))
            except ValueError:  # a header line
                continue
        a3m = os.path.join(out, f"{q}.a3m")
        if os.path.exists(a3m):
            depth[q] = sum(1 for line in open(a3m) if line.startswith(">"))
    if missing:
        log(f"ours: no .tsv for {len(missing)} queries: {' '.join(missing[:10])}")
    return {"db_build_s": build_s, "db_build_peak_mb": build_mb, "wall_s": wall,
            "peak_mb": peak, "hits": best_hits(rows), "msa_depth": depth,
            "missing_tsv": missing, "command": " ".join(map(str, cmd)), "cached": False}


# Databases built in this process: --rerun builds each once, however many MMseqs2 runs use it.
BUILT_MMSEQS_DBS = set()


def mmseqs_db(args, dbinfo, work):
    """createdb (+ createindex) of the database, cached by its sha256."""
    key = f"{dbinfo['sha256'][:16]}-{'idx' if args.mmseqs_index else 'noidx'}-t{args.threads}"
    base = os.path.join(work, "cache", "mmseqs_db", key)
    meta = os.path.join(base, "build.json")
    if os.path.exists(meta) and (key in BUILT_MMSEQS_DBS or not args.rerun):
        return os.path.join(base, "db"), json.load(open(meta))
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    logp, db, tmp = os.path.join(base, "log.txt"), os.path.join(base, "db"), os.path.join(base, "tmp")
    s1, m1 = run(["mmseqs", "createdb", args.db_fasta, db], logp)
    s2 = m2 = 0.0
    if args.mmseqs_index:
        s2, m2 = run(["mmseqs", "createindex", db, tmp, "-s", "8", "--threads", args.threads], logp)
    shutil.rmtree(tmp, ignore_errors=True)
    flush_writes()
    info = {"createdb_s": s1, "createindex_s": s2, "db_build_s": s1 + s2,
            "db_build_peak_mb": max(m1, m2), "index": args.mmseqs_index}
    save_json(meta, info)
    BUILT_MMSEQS_DBS.add(key)
    return db, info


def run_mmseqs(args, tool, queries_path, qhash, dbinfo, names, work):
    db, build = mmseqs_db(args, dbinfo, work)
    search = MMSEQS_RUNS[tool]
    key = short_hash(dbinfo["sha256"], qhash, args.threads, args.mmseqs_index, search)
    base = os.path.join(work, "cache", "mmseqs2", key)
    meta = os.path.join(base, "result.json")
    if os.path.exists(meta) and not args.rerun:
        res = json.load(open(meta))
        res["cached"] = True
        return res
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    logp = os.path.join(base, "log.txt")
    p = lambda name: os.path.join(base, name)  # noqa: E731
    t = ["--threads", args.threads]
    steps = [
        ["mmseqs", "createdb", queries_path, p("qdb")],
        ["mmseqs", "search", p("qdb"), db, p("res"), p("tmp"), *search, *t],
        ["mmseqs", "filterresult", p("qdb"), db, p("res"), p("res_filt"), "--max-seq-id", "0.95", *t],
        ["mmseqs", "result2msa", p("qdb"), db, p("res_filt"), p("msa"), "--msa-format-mode", "6", *t],
        ["mmseqs", "unpackdb", p("msa"), p("a3m"), "--unpack-name-mode", "0", "--unpack-suffix",
         ".a3m", *t],
    ]
    wall, peak, step_s = 0.0, 0.0, {}
    for cmd in steps:
        s, m = run(cmd, logp)
        wall, peak = wall + s, max(peak, m)
        step_s[cmd[1]] = step_s.get(cmd[1], 0.0) + s
    conv_s, _ = run(["mmseqs", "convertalis", p("qdb"), db, p("res"), p("hits.tsv"),
                     "--format-output", "query,target,evalue,bits,fident,qstart,qend,tstart,tend",
                     *t], logp)
    shutil.rmtree(p("tmp"), ignore_errors=True)
    rows = []
    for line in open(p("hits.tsv")):
        f = line.rstrip("\n").split("\t")
        rows.append((f[0], f[1], float(f[2])))
    depth = {}
    key_of = {f[1]: f[0] for f in (line.split("\t") for line in open(p("qdb.lookup")))}
    for q in names:  # unpackdb names the files by query key (qdb.lookup: key, name, file)
        a3m = os.path.join(p("a3m"), f"{key_of.get(q)}.a3m")
        if os.path.exists(a3m):
            depth[q] = sum(1 for line in open(a3m) if line.startswith(">"))
    res = {**build, "wall_s": wall, "peak_mb": peak, "steps_s": step_s, "convertalis_s": conv_s,
           "hits": best_hits(rows), "msa_depth": depth,
           "command": " ".join(map(str, steps[1])), "cached": False}
    save_json(meta, res)
    return res


def parse_tblout(path, query):
    """Rows of a jackhmmer --tblout; if a target repeats (several rounds) only the last block."""
    rows, seen = [], set()
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        f = line.split()
        if f[0] in seen:
            rows, seen = [], set()
        seen.add(f[0])
        rows.append((query, f[0], float(f[4])))
    return rows


def run_jackhmmer(args, n_iter, records, dbinfo, work):
    base = os.path.join(work, "cache", f"jackhmmer{n_iter}")
    os.makedirs(base, exist_ok=True)
    wall, peak, rows, per_query, depth, ncached = 0.0, 0.0, [], {}, {}, 0
    for i, (q, seq) in enumerate(records):
        key = short_hash(dbinfo["sha256"], q, seq, args.threads, n_iter, JACKHMMER_FLAGS)
        stem = os.path.join(base, f"{q}-{key}")
        meta = stem + ".json"
        if os.path.exists(meta) and not args.rerun:
            r = json.load(open(meta))
            ncached += 1
        else:
            qf = stem + ".fasta"
            write_fasta(qf, [(q, seq)])
            for ext in (".log", ".tbl", ".sto"):
                if os.path.exists(stem + ext):
                    os.remove(stem + ext)
            cmd = ["jackhmmer", "-N", n_iter, *JACKHMMER_FLAGS, "--cpu", args.threads,
                   "-o", "/dev/null", "-A", stem + ".sto", "--tblout", stem + ".tbl", qf,
                   args.db_fasta]
            s, m = run(cmd, stem + ".log")
            nseq = 0
            if os.path.exists(stem + ".sto"):
                nseq = sum(1 for line in open(stem + ".sto") if line.startswith("#=GS"))
            r = {"wall_s": s, "peak_mb": m, "rows": parse_tblout(stem + ".tbl", q),
                 "msa_depth": nseq}
            save_json(meta, r)
            log(f"jackhmmer -N {n_iter}: {q} ({i + 1}/{len(records)}) {s:.1f} s, "
                f"{len(r['rows'])} hits")
        wall, peak = wall + r["wall_s"], max(peak, r["peak_mb"])
        rows += [tuple(x) for x in r["rows"]]
        per_query[q] = r["wall_s"]
        depth[q] = r["msa_depth"]
    cmd = (f"jackhmmer -N {n_iter} {' '.join(JACKHMMER_FLAGS)} --cpu {args.threads} -o /dev/null "
           f"-A Q.sto --tblout Q.tbl Q.fasta DB.fasta")
    return {"db_build_s": 0.0, "wall_s": wall, "peak_mb": peak, "hits": best_hits(rows),
            "wall_s_per_query": per_query, "msa_depth": depth, "command": cmd,
            "cached": ncached == len(records), "cached_queries": ncached}


def cached_jackhmmer(args, n_iter, records, dbinfo, work):
    """jackhmmer hits from the cache only (None unless every query is there)."""
    rows = []
    for q, seq in records:
        key = short_hash(dbinfo["sha256"], q, seq, args.threads, n_iter, JACKHMMER_FLAGS)
        meta = os.path.join(work, "cache", f"jackhmmer{n_iter}", f"{q}-{key}.json")
        if not os.path.exists(meta):
            return None
        rows += [tuple(x) for x in json.load(open(meta))["rows"]]
    return best_hits(rows)


def cached_mmseqs(args, qhash, dbinfo, work):
    key = short_hash(dbinfo["sha256"], qhash, args.threads, args.mmseqs_index,
                     MMSEQS_RUNS["mmseqs2"])
    meta = os.path.join(work, "cache", "mmseqs2", key, "result.json")
    return json.load(open(meta))["hits"] if os.path.exists(meta) else None


# ---------------------------------------------------------------- truth

def verify_ours(args, ours_hits, records, dbinfo, work):
    """{query: set of our hits (E <= thr, not self) confirmed by ssearch36 E <= thr}."""
    want = {}
    for q, _ in records:
        for t, e in ours_hits.get(q, {}).items():
            if e <= args.evalue and t != q:
                want.setdefault(t, []).append(q)
    if not want:
        return {q: set() for q, _ in records}, 0.0
    seqs, name, buf = {}, None, []
    with open(args.db_fasta) as f:  # one pass over the database for the targets' sequences
        for line in f:
            if line.startswith(">"):
                if name in want:
                    seqs[name] = "".join(buf)
                name, buf = line[1:].split()[0], []
            elif name in want:
                buf.append(line.strip())
        if name in want:
            seqs[name] = "".join(buf)
    base = os.path.join(work, "verify")
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    verified, total_s = {}, 0.0
    for q, seq in records:
        targets = [t for t, e in ours_hits.get(q, {}).items()
                   if e <= args.evalue and t != q and t in seqs]
        verified[q] = set()
        if not targets:
            continue
        qf, lib, out = (os.path.join(base, f"{q}.{x}") for x in ("query.fasta", "lib.fasta", "m8"))
        write_fasta(qf, [(q, seq)])
        write_fasta(lib, [(t, seqs[t]) for t in targets])
        cmd = ["ssearch36", *SSEARCH, "-Z", dbinfo["sequences"], "-E", repr(args.evalue),
               "-T", args.threads, "-b", len(targets), "-d", "0", qf, lib]
        t0 = time.perf_counter()
        with open(out, "w") as f:
            r = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.PIPE, text=True)
        total_s += time.perf_counter() - t0
        if r.returncode != 0:
            raise RunError(f"ssearch36 failed for {q}: {r.stderr[-1000:]}")
        for line in open(out):
            f = line.rstrip("\n").split("\t")
            if len(f) >= 12 and not line.startswith("#") and float(f[10]) <= args.evalue:
                verified[q].add(f[1])
    return verified, total_s


def below(hits, q, thr):
    return {t for t, e in hits.get(q, {}).items() if e <= thr}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db-fasta", default=os.path.join(ROOT, "target/msa-bench/db.fasta"))
    ap.add_argument("--queries", default=os.path.join(ROOT, "target/msa-bench/queries.fasta"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=os.path.join(ROOT, "target/msa-bench"))
    ap.add_argument("--ferrofold", default=os.path.join(ROOT, "target/release/ferrofold"))
    ap.add_argument("--build", action="store_true", help="cargo build --release first")
    ap.add_argument("--tools", default=",".join(DEFAULT_TOOLS))
    ap.add_argument("--evalue", type=float, default=1e-3, help="counting threshold")
    ap.add_argument("--max-queries", type=int, default=0,
                    help="only the first N real queries and the first shuffled one")
    ap.add_argument("--rerun", action="store_true", help="ignore cached reference outputs")
    ap.add_argument("--no-mmseqs-index", dest="mmseqs_index", action="store_false")
    ap.add_argument("--ours-extra", default="", help="extra arguments for ferrofold search")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run the timed tools N times in turn; report median wall times")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    bad = [t for t in tools if t not in TOOLS]
    if bad:
        ap.error(f"unknown tools {bad}; choose from {','.join(TOOLS)}")
    work = os.path.abspath(args.work)
    os.makedirs(work, exist_ok=True)
    args.db_fasta = os.path.abspath(args.db_fasta)
    args.ferrofold = os.path.abspath(args.ferrofold)
    args.threads = str(args.threads)

    need = set()
    if {"mmseqs2", "mmseqs2_1"} & set(tools):
        need.add("mmseqs")
    if {"jackhmmer1", "jackhmmer3"} & set(tools):
        need.add("jackhmmer")
    if set(OURS_RUNS) & set(tools):
        need.add("ssearch36")
    lacking = [e for e in sorted(need) if shutil.which(e) is None]
    if lacking:
        sys.exit(f"missing {' '.join(lacking)}: run bash benches/msa_data.sh (installs them)")

    records = read_fasta(args.queries)
    if args.max_queries:
        real = [r for r in records if not r[0].startswith("shuffled_")][:args.max_queries]
        records = real + [r for r in records if r[0].startswith("shuffled_")][:1]
    names = [q for q, _ in records]
    if len(set(names)) != len(names):
        sys.exit("duplicate query names")
    queries_path = os.path.join(work, "queries_used.fasta")
    write_fasta(queries_path, records)
    qhash = hashlib.sha256(open(queries_path, "rb").read()).hexdigest()
    dbinfo = sha256_cached(args.db_fasta, work)
    shuffled = [q for q in names if q.startswith("shuffled_")]
    real = [q for q in names if not q.startswith("shuffled_")]
    log(f"database {args.db_fasta}: {dbinfo['sequences']} sequences, {dbinfo['residues']} "
        f"residues; {len(real)} queries + {len(shuffled)} shuffled; {args.threads} threads")

    if args.build and set(OURS_RUNS) & set(tools):
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)

    results, notes, walls, skipped = {}, [], {}, set()

    def skip(tool, error):
        """Leaves out a tool that failed, saying why, so that the rest still runs."""
        msg = f"{LABELS[tool]} skipped: {error}"
        log(msg)
        notes.append(msg.splitlines()[0])
        skipped.add(tool)

    # Every database is built before the first timed search, so that no search comes right
    # after a build (which frees gigabytes): our fast setting's first run took 1.1-1.2 s
    # instead of 0.8 s when it followed its own build.
    for tool in tools:
        try:
            if tool in OURS_RUNS:
                ours_db(args, work)
            elif tool in MMSEQS_RUNS:
                mmseqs_db(args, dbinfo, work)
        except RunError as e:
            skip(tool, e)
    for rep in range(args.repeat):
        for tool in tools:
            if tool in skipped or (rep > 0 and results.get(tool, {}).get("cached")):
                continue
            log(f"running {LABELS[tool]}" + (f" (run {rep + 1} of {args.repeat})"
                                              if args.repeat > 1 else ""))
            try:
                # Cached reference results (no --rerun) are not timed now.
                if tool in OURS_RUNS or args.rerun:
                    warm_cache(database_files(args, tool, dbinfo, work))
                if tool in OURS_RUNS:
                    results[tool] = run_ours(args, tool, queries_path, names, work)
                elif tool in MMSEQS_RUNS:
                    results[tool] = run_mmseqs(args, tool, queries_path, qhash, dbinfo, names,
                                               work)
                else:
                    results[tool] = run_jackhmmer(args, int(tool[-1]), records, dbinfo, work)
            except RunError as e:
                skip(tool, e)
                results.pop(tool, None)
            else:
                r = results[tool]
                walls.setdefault(tool, []).append(r["wall_s"])
                log(f"{LABELS[tool]}: {r['wall_s']:.1f} s, peak {r['peak_mb']:.0f} MB"
                    + (" (cached)" if r.get("cached") else ""))
    for tool, r in results.items():
        if r.get("missing_tsv"):
            notes.append(f"{LABELS[tool]} wrote no .tsv for {len(r['missing_tsv'])} of "
                         f"{len(names)} queries (counted as no hits)")
        if len(walls[tool]) > 1:
            r["wall_runs_s"] = walls[tool]
            r["wall_s"] = statistics.median(walls[tool])
            notes.append(f"{LABELS[tool]} wall time: median of "
                         + " / ".join(f"{w:.1f}" for w in walls[tool]) + " s")

    # truth
    j3 = results["jackhmmer3"]["hits"] if "jackhmmer3" in results else \
        cached_jackhmmer(args, 3, records, dbinfo, work)
    mm = results["mmseqs2"]["hits"] if "mmseqs2" in results else \
        cached_mmseqs(args, qhash, dbinfo, work)
    if j3 is not None and "jackhmmer3" not in results:
        notes.append("truth uses cached jackhmmer -N 3 hits (not run now)")
    if mm is not None and "mmseqs2" not in results:
        notes.append("truth uses cached MMseqs2 hits (not run now)")
    if j3 is None or mm is None:
        notes.append("truth INCOMPLETE: " + ("no jackhmmer -N 3 hits; " if j3 is None else "")
                     + ("no MMseqs2 hits; " if mm is None else "")
                     + "using the available reference alone")
    verified, verify_s = ({q: set() for q in names}, 0.0)
    ours_runs = [results[t]["hits"] for t in OURS_RUNS if t in results]
    if ours_runs:
        log("verifying our hits with ssearch36")
        merged = best_hits((q, t, e) for run in ours_runs for q, d in run.items()
                           for t, e in d.items())
        verified, verify_s = verify_ours(args, merged, records, dbinfo, work)
    else:
        notes.append("truth without our verified hits (ours not run)")
    thr = args.evalue
    truth, truth_parts = {}, {}
    for q in names:
        sets = [below(h, q, thr) for h in (j3, mm) if h is not None]
        agreed = set.intersection(*sets) if sets else set()
        agreed.discard(q)
        truth[q] = agreed | verified[q]
        truth_parts[q] = {"agreed": len(agreed), "ours_verified": len(verified[q]),
                          "ours_verified_new": len(verified[q] - agreed), "total": len(truth[q])}

    # scores
    for tool, r in results.items():
        found = tp = 0
        per_q, recalls = {}, []
        for q in names:
            hits = below(r["hits"], q, thr)
            entry = {"hits": len(hits)}
            if q in real:
                mine = hits - {q}
                tp_q = len(mine & truth[q])
                entry.update(true=tp_q, truth=len(truth[q]), not_in_truth=len(mine - truth[q]))
                if truth[q]:
                    entry["recall"] = tp_q / len(truth[q])
                    recalls.append(entry["recall"])
                    tp += tp_q
                    found += len(truth[q])
            per_q[q] = entry
        r["per_query"] = per_q
        r["hits_le_thr"] = sum(e["hits"] for e in per_q.values())
        r["micro_recall"] = tp / found if found else None
        r["mean_recall"] = sum(recalls) / len(recalls) if recalls else None
        r["shuffled_with_hits"] = sum(1 for q in shuffled if per_q[q]["hits"])
        r["shuffled_hits"] = sum(per_q[q]["hits"] for q in shuffled)
        r["threads"] = int(args.threads)
        r.pop("hits")
    # report
    agreed_by = " ∩ ".join(n for n, h in (("jackhmmer -N 3", j3), ("MMseqs2", mm)) if h is not None) \
        or "no reference"
    fmt = lambda x, f: "n/a" if x is None else format(x, f)  # noqa: E731
    thr_s = f"{thr:g}"
    lines = [f"Database {os.path.basename(args.db_fasta)}: {dbinfo['sequences']} sequences, "
             f"{dbinfo['residues']} residues; {len(real)} queries + {len(shuffled)} shuffled; "
             f"truth: {sum(len(truth[q]) for q in real)} homologs over {len(real)} queries "
             f"({sum(truth_parts[q]['agreed'] for q in real)} from {agreed_by},"
             f" {sum(truth_parts[q]['ours_verified_new'] for q in real)} more from ours verified by "
             f"ssearch36)", "",
             f"| tool | threads | db build s | wall s | peak MB | hits E≤{thr_s} | recall (micro) "
             f"| recall (mean per query) | shuffled queries with hits |",
             "|---|---|---|---|---|---|---|---|---|"]
    for tool in TOOLS:
        if tool not in results:
            continue
        r = results[tool]
        lines.append(f"| {LABELS[tool]} | {r['threads']} | {r['db_build_s']:.1f} | "
                     f"{r['wall_s']:.1f} | {r['peak_mb']:.0f} | {r['hits_le_thr']} | "
                     f"{fmt(r['micro_recall'], '.3f')} | {fmt(r['mean_recall'], '.3f')} | "
                     f"{r['shuffled_with_hits']}/{len(shuffled)} |")
    ratios = {}
    if "ours" in results:
        o = results["ours"]
        if "mmseqs2" in results:
            ratios["ours_over_mmseqs2_wall"] = o["wall_s"] / results["mmseqs2"]["wall_s"]
            lines.append(f"\nours / MMseqs2 wall time: {ratios['ours_over_mmseqs2_wall']:.3f} "
                         f"(target ≤ 0.5, at recall ≥ MMseqs2's)")
            paired = list(zip(o.get("wall_runs_s", []), results["mmseqs2"].get("wall_runs_s", [])))
            if len(paired) > 1:
                ratios["ours_over_mmseqs2_wall_runs"] = [a / b for a, b in paired]
                lines.append("ours / MMseqs2 per run: "
                             + " / ".join(f"{a / b:.3f}" for a, b in paired))
    for tool in (*OURS_RUNS, "mmseqs2_1"):
        if tool in results and "jackhmmer1" in results:
            key = f"jackhmmer1_over_{tool}_wall"
            ratios[key] = results["jackhmmer1"]["wall_s"] / results[tool]["wall_s"]
            target = " (target ≥ 50x, at recall ≥ jackhmmer -N 1's)" if tool in OURS_RUNS else ""
            lines.append(f"jackhmmer -N 1 / {LABELS[tool]} wall time: {ratios[key]:.1f}x{target}")
    if ours_runs:
        lines.append(f"ours: {sum(len(v) for v in verified.values())} hits confirmed by "
                     f"ssearch36 ({verify_s:.1f} s, not timed)")
    if "mmseqs2" in results and "jackhmmer1" in results:
        ratios["jackhmmer1_over_mmseqs2_wall"] = (results["jackhmmer1"]["wall_s"]
                                                  / results["mmseqs2"]["wall_s"])
    for n in notes:
        lines.append(f"note: {n}")
    lines.append(f"note: jackhmmer reports only E ≤ 1e-4 (-E 0.0001, AF2's setting)")
    report = "\n".join(lines)
    print(report)

    out = {"database": {"path": args.db_fasta, **dbinfo}, "queries": names,
           "queries_sha256": qhash, "threads": int(args.threads), "evalue_threshold": thr,
           "tools": results, "ratios": ratios, "notes": notes,
           "truth": {q: {**truth_parts[q], "targets": sorted(truth[q])} for q in names},
           "ours_verified": sum(len(v) for v in verified.values()), "verify_ssearch_s": verify_s,
           "date": time.strftime("%Y-%m-%d %H:%M:%S"), "report_markdown": report}
    save_json(os.path.join(work, "results.json"), out)
    log(f"wrote {os.path.join(work, 'results.json')}")


if __name__ == "__main__":
    main()
