#!/usr/bin/env bash
# Benchmark data for the MSA search (issue 6): a protein database and queries, from Debian.
#
#     bash benches/msa_data.sh                 # full database + 33 queries
#     SUBSET=20000 bash benches/msa_data.sh    # also db_subset20000.fasta for quick runs
#     WORK=/data/msa bash benches/msa_data.sh  # another work folder (default target/msa-bench)
#     QUERY_SEED=7 bash benches/msa_data.sh    # a second, held-out query set: queries_seed7.fasta
#
# Steps (each skipped when its output already exists, so reruns are cheap; delete a file to redo
# its step):
#  1. apt-get installs the reference tools if missing (needs root): ncbi-blast+ (blastdbcmd),
#     mmseqs2, hmmer (jackhmmer), fasta3 (ssearch36, full Smith-Waterman used to verify hits).
#  2. `apt-get download metastudent-data` (225 MB, NOT installed) and `dpkg -x` into $WORK/pkg.
#  3. Dumps dataset_201401/{BPO,MFO,CCO}/goasp.fasta (BLAST db version 4, made without
#     -parse_seqids; titles are "ACCESSION|GO:...,GO:...") with
#     `blastdbcmd -entry all -db ... -outfmt %f` to $WORK/dump/<set>.fasta.
#  4. Union of the three, deduplicated by accession and by identical sequence (the first seen
#     wins; order BPO, MFO, CCO), upper-cased, written as ">ACCESSION" + sequence (60 per line)
#     to $WORK/db.fasta. Counts are printed and saved in $WORK/db.stats.
#  5. $WORK/queries.fasta: with python's random.Random(6), 30 database entries of 60-800
#     residues made only of the 20 standard amino acids, then 3 queries without homologs:
#     3 more such entries, each shuffled residue by residue (random.Random(6000 + i)), named
#     shuffled_1..shuffled_3. QUERY_SEED=N draws them with random.Random(N) (shuffles with
#     1000 N + i) into $WORK/queries_seedN.fasta instead: a query set no setting was tuned on.
#  6. With SUBSET=N: $WORK/db_subsetN.fasta = the 30 queries' own entries plus N other entries
#     drawn with random.Random(6), in database order (db_subsetN_seedM.fasta for QUERY_SEED=M).
#
# Then: python3 benches/msa_vs_reference.py --db-fasta $WORK/db.fasta --queries $WORK/queries.fasta
set -euo pipefail

WORK=${WORK:-target/msa-bench}
SUBSET=${SUBSET:-}
QUERY_SEED=${QUERY_SEED:-6}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

log() { echo "[msa_data] $*" >&2; }

# 1. tools
missing=()
command -v blastdbcmd >/dev/null || missing+=(ncbi-blast+)
command -v mmseqs >/dev/null || missing+=(mmseqs2)
command -v jackhmmer >/dev/null || missing+=(hmmer)
command -v ssearch36 >/dev/null || missing+=(fasta3)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" \
        || { apt-get update && apt-get install -y --no-install-recommends "${missing[@]}"; }
else
    log "tools present: blastdbcmd mmseqs jackhmmer ssearch36"
fi

# 2. metastudent-data, extracted but not installed
DATA="$WORK/pkg/usr/share/metastudent-data/dataset_201401"
if [ ! -e "$WORK/pkg/.extracted" ]; then
    mkdir -p "$WORK/deb"
    if ! ls "$WORK"/deb/metastudent-data_*_all.deb >/dev/null 2>&1; then
        log "downloading metastudent-data"
        (cd "$WORK/deb" && apt-get download metastudent-data \
            || { apt-get update && apt-get download metastudent-data; })
    fi
    deb=$(ls "$WORK"/deb/metastudent-data_*_all.deb | head -1)
    log "extracting $deb"
    rm -rf "$WORK/pkg"
    dpkg -x "$deb" "$WORK/pkg"
    touch "$WORK/pkg/.extracted"
fi

# 3. dump the three BLAST databases
mkdir -p "$WORK/dump"
for set in BPO MFO CCO; do
    db="$DATA/$set/goasp.fasta"
    out="$WORK/dump/$set.fasta"
    [ -s "$out" ] && continue
    [ -e "$db.pin" ] || { echo "missing BLAST database $db.pin" >&2; exit 1; }
    blastdbcmd -info -db "$db" | sed -n '1,2p;/BLASTDB Version/p' >&2
    log "dumping $set"
    blastdbcmd -entry all -db "$db" -outfmt '%f' > "$out.tmp"
    mv "$out.tmp" "$out"
done

# 4-6. union, queries, subset
WORK="$WORK" SUBSET="$SUBSET" QUERY_SEED="$QUERY_SEED" python3 - <<'EOF'
import os
import random

work = os.environ["WORK"]
subset = os.environ.get("SUBSET", "").strip()
db_path = os.path.join(work, "db.fasta")
query_seed = int(os.environ["QUERY_SEED"])
queries_path = os.path.join(
    work, "queries.fasta" if query_seed == 6 else f"queries_seed{query_seed}.fasta")
AA20 = set("ACDEFGHIKLMNPQRSTVWY")


def read_fasta(path):
    name, seq = None, []
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith(">"):
                if name is not None:
                    yield name, "".join(seq)
                name, seq = line[1:], []
            elif line:
                seq.append(line.strip())
    if name is not None:
        yield name, "".join(seq)


def write_fasta(path, records):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        for name, seq in records:
            f.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                f.write(seq[i:i + 60] + "\n")
    os.replace(tmp, path)


if not os.path.exists(db_path):
    by_acc, seen_seq = {}, set()
    stats = {}
    for s in ("BPO", "MFO", "CCO"):
        n = dup_acc = dup_seq = conflict = empty = 0
        for title, seq in read_fasta(os.path.join(work, "dump", s + ".fasta")):
            n += 1
            acc = title.split()[0].split("|")[0]
            seq = seq.upper().replace("*", "")
            if not seq:
                empty += 1
                continue
            if acc in by_acc:
                dup_acc += 1
                conflict += by_acc[acc] != seq
                continue
            if seq in seen_seq:
                dup_seq += 1
                continue
            by_acc[acc] = seq
            seen_seq.add(seq)
        stats[s] = n
        print(f"[msa_data] {s}: {n} entries, {n - dup_acc - dup_seq - empty} new, {dup_acc} "
              f"accessions seen before ({conflict} with another sequence, first kept), {dup_seq} "
              f"identical sequences under another accession, {empty} empty")
    write_fasta(db_path, by_acc.items())
    residues = sum(len(s) for s in by_acc.values())
    nonstd = sum(1 for s in by_acc.values() if not set(s) <= AA20)
    with open(os.path.join(work, "db.stats"), "w") as f:
        f.write(f"sequences\t{len(by_acc)}\nresidues\t{residues}\n"
                f"with_nonstandard_letters\t{nonstd}\n"
                + "".join(f"dump_{k}\t{v}\n" for k, v in stats.items()))
    del seen_seq
else:
    by_acc = dict(read_fasta(db_path))
print(f"[msa_data] {db_path}: {len(by_acc)} sequences, {sum(map(len, by_acc.values()))} residues")

if not os.path.exists(queries_path):
    rng = random.Random(query_seed)
    names = list(by_acc)
    picked, used = [], set()
    while len(picked) < 33:
        acc = rng.choice(names)
        seq = by_acc[acc]
        if acc in used or not 60 <= len(seq) <= 800 or not set(seq) <= AA20:
            continue
        used.add(acc)
        picked.append((acc, seq))
    queries = picked[:30]
    for i, (acc, seq) in enumerate(picked[30:], 1):
        residues = list(seq)
        random.Random(1000 * query_seed + i).shuffle(residues)
        queries.append((f"shuffled_{i}", "".join(residues)))
    write_fasta(queries_path, queries)
queries = list(read_fasta(queries_path))
lens = [len(s) for _, s in queries]
print(f"[msa_data] {queries_path}: {len(queries)} queries "
      f"({sum(n.startswith('shuffled_') for n, _ in queries)} shuffled), "
      f"{min(lens)}-{max(lens)} residues, {sum(lens)} in all")

if subset:
    n = int(subset)
    sub_path = os.path.join(
        work, f"db_subset{n}.fasta" if query_seed == 6 else f"db_subset{n}_seed{query_seed}.fasta")
    if not os.path.exists(sub_path):
        own = {name for name, _ in queries if name in by_acc}
        others = [a for a in by_acc if a not in own]
        keep = own | set(random.Random(6).sample(others, min(n, len(others))))
        write_fasta(sub_path, ((a, s) for a, s in by_acc.items() if a in keep))
    m = r = 0
    for _, s in read_fasta(sub_path):
        m += 1
        r += len(s)
    print(f"[msa_data] {sub_path}: {m} sequences, {r} residues")
EOF
