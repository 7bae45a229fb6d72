#!/usr/bin/env bash
# Template search benchmark (issue 4): how often `ferrofold search-templates` finds a homologous
# template for a chain with its own PDB entry left out, and how good that template is.
#
#   bash benches/templates_benchmark.sh [WORKDIR]        # default /tmp/ferrofold-templates-bench
#
# Library: every chain of Debian's `theseus-examples` (lactate/malate dehydrogenases, trypsins,
# cytochromes c: ~430 full-atom PDB files), downloaded with `apt-get download` and unpacked with
# `dpkg -x` (no root needed). TM-scores: `TMscore` from Debian's `tm-align`, unpacked the same
# way unless TMscore is already on PATH.
#
# Queries: N (default 24) chains drawn with a fixed seed, half dehydrogenases, half trypsins
# (the cytochrome files are ASTRAL domains whose PDB header id is the placeholder `0000`, so the
# library keeps only the first of them and they are not drawn as queries). Each is searched with its own sequence (single-sequence profile), every library
# entry of its PDB id excluded (`--exclude-templates`); the best template's backbone, placed on
# the query's residue numbering by the alignment (`--write-pdb`), is scored against the native
# chain (`ferrofold db export-template`, same numbering) with TMscore (residue-number
# correspondence, normalised by the native's length), i.e. the TM-score of the template as
# AF2 would receive it, with no refolding.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-/tmp/ferrofold-templates-bench}"
N="${N:-24}"
SEED="${SEED:-7}"
BIN="${FERROFOLD:-$ROOT/target/release/ferrofold}"
mkdir -p "$WORK"
cd "$WORK"

if [[ ! -x "$BIN" ]]; then
    (cd "$ROOT" && cargo build --release)
fi

if [[ ! -d pkg/usr/share/doc/theseus/examples ]]; then
    apt-get download theseus-examples >/dev/null
    dpkg -x theseus-examples_*.deb pkg
fi
TMSCORE="$(command -v TMscore || true)"
if [[ -z "$TMSCORE" ]]; then
    if [[ ! -x pkg/usr/bin/TMscore ]]; then
        apt-get download tm-align >/dev/null
        dpkg -x tm-align_*.deb pkg
    fi
    TMSCORE="$WORK/pkg/usr/bin/TMscore"
fi
# Debian's TMscore is Fortran: fetch libgfortran5 the same way when the system lacks it.
if ldd "$TMSCORE" 2>/dev/null | grep -q "libgfortran.*not found"; then
    if ! ls pkg/usr/lib/x86_64-linux-gnu/libgfortran.so.5* >/dev/null 2>&1; then
        apt-get download libgfortran5 >/dev/null
        dpkg -x libgfortran5_*.deb pkg
    fi
    export LD_LIBRARY_PATH="$WORK/pkg/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

EX=pkg/usr/share/doc/theseus/examples
rm -rf structures && mkdir structures
for fam in ldh trypsins cytochromes; do
    for f in "$EX/$fam"/*.pdb.gz; do
        cp "$f" "structures/$(basename "$f")"
        echo "$(basename "$f" .pdb.gz) $fam" >> structures.family.tmp
    done
done
mv structures.family.tmp families.txt

start=$(date +%s.%N)
"$BIN" db build-templates structures templates.db 2> build.log || { cat build.log; exit 1; }
build_s=$(echo "$(date +%s.%N) - $start" | bc)
tail -1 build.log

python3 - "$BIN" "$TMSCORE" "$N" "$SEED" "$build_s" <<'PY'
import json, random, re, statistics, struct, subprocess, sys, time

binary, tmscore, n, seed, build_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])

raw = open("templates.db", "rb").read()
index_len = struct.unpack_from("<Q", raw, 16)[0]
entries = json.loads(raw[32:32 + index_len])
family = dict(line.split() for line in open("families.txt"))

def code(pdb_id):
    """The 4-character PDB code inside a file-derived id (1bdm_a, d1cih__)."""
    m = re.search(r"\d[a-z0-9]{3}", pdb_id.lower())
    return m.group(0) if m else pdb_id.lower()

by_code = {}
for e in entries:
    e["family"] = family.get(e["source"].split(".")[0], "?")
    by_code.setdefault(code(e["pdb_id"]), []).append(e["id"])

quota = {"ldh": 12, "trypsins": 12}
scale = n / sum(quota.values())
rng = random.Random(seed)
queries = []
for fam, k in quota.items():
    pool = sorted((e for e in entries if e["family"] == fam and len(e["sequence"]) >= 30),
                  key=lambda e: e["id"])
    queries += rng.sample(pool, min(len(pool), max(1, round(k * scale))))

def search(name, excluded, out):
    subprocess.run([binary, "search-templates", f"natives/{name}.fasta", "templates.db",
                    "--out", out, "--write-pdb", "--exclude-templates", ",".join(sorted(excluded))],
                   check=True, stderr=subprocess.DEVNULL)
    return json.load(open(f"{out}/{name}.templates.json"))

def tm_score(model, native):
    out = subprocess.run([tmscore, model, native], capture_output=True, text=True).stdout
    m = re.search(r"TM-score\s*=\s*([0-9.]+)", out)
    return float(m.group(1)) if m else float("nan")

rows = []
search_s = 0.0
subprocess.run(["rm", "-rf", "out", "out_remote", "natives"], check=True)
subprocess.run(["mkdir", "-p", "natives"], check=True)
for q in queries:
    name = q["id"]
    with open(f"natives/{name}.fasta", "w") as f:
        f.write(f">{name}\n{q['sequence']}\n")
    excluded = set(by_code[code(q["pdb_id"])]) | {q["id"]}
    t = time.time()
    found = search(name, excluded, "out")
    search_s += time.time() - t
    subprocess.run([binary, "db", "export-template", "templates.db", name,
                    f"natives/{name}.pdb"], check=True)
    row = {"query": name, "family": q["family"], "length": len(q["sequence"]),
           "hits": found["significant_hits"], "template": None, "remote": None}
    if found["templates"]:
        best = found["templates"][0]
        tfam = next(e["family"] for e in entries if e["id"] == best["id"])
        row.update(template=best["id"], same_family=tfam == q["family"],
                   identity=best["identity"], coverage=best["coverage"],
                   evalue=best["evalue"],
                   tm=tm_score(f"out/{name}.template_1.pdb", f"natives/{name}.pdb"))
    # Harder: also leave out every template of 90 % identity or more (re-searching until the
    # best one is below), as when no close homologue has a structure.
    remote = found
    for _ in range(30):
        close = {h["id"] for h in remote["templates"] if h["identity"] >= 0.9}
        if not close:
            break
        excluded |= close
        remote = search(name, excluded, "out_remote")
    if remote["templates"] and remote["templates"][0]["identity"] < 0.9:
        r = remote["templates"][0]
        pdb = "out" if remote is found else "out_remote"
        row["remote"] = (r["id"], r["identity"],
                         tm_score(f"{pdb}/{name}.template_1.pdb", f"natives/{name}.pdb"))
    rows.append(row)

print(f"\nlibrary: {len(entries)} chains from theseus-examples, built in {build_s:.1f} s")
print(f"{len(rows)} queries, own PDB id excluded; search {search_s:.1f} s in all "
      f"({search_s / len(rows):.2f} s per query, process start and library load included)\n")
print("| query | family | length | hits (E<=1e-3) | best template | identity | coverage | E-value "
      "| TM-score | best < 90 % id | identity | TM-score |")
print("|---|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|")
for r in rows:
    rem = (f"{r['remote'][0]} | {r['remote'][1]:.2f} | {r['remote'][2]:.3f}" if r["remote"]
           else "none | |")
    if r["template"]:
        print(f"| {r['query']} | {r['family']} | {r['length']} | {r['hits']} | {r['template']} | "
              f"{r['identity']:.2f} | {r['coverage']:.2f} | {r['evalue']:.1e} | {r['tm']:.3f} | {rem} |")
    else:
        print(f"| {r['query']} | {r['family']} | {r['length']} | {r['hits']} | none | | | | | {rem} |")
with_t = [r for r in rows if r["template"]]
homolog = [r for r in with_t if r["same_family"]]
tms = sorted(r["tm"] for r in with_t)
print(f"\nfound a template: {len(with_t)}/{len(rows)}; of the same family (homologous): "
      f"{len(homolog)}/{len(rows)}")
if tms:
    q = statistics.quantiles(tms, n=4) if len(tms) > 1 else [tms[0]] * 3
    print(f"TM-score of the best template to the native: min {tms[0]:.3f}, Q1 {q[0]:.3f}, "
          f"median {q[1]:.3f}, Q3 {q[2]:.3f}, max {tms[-1]:.3f}, mean {statistics.mean(tms):.3f}; "
          f"> 0.5: {sum(t > 0.5 for t in tms)}/{len(rows)}, > 0.8: {sum(t > 0.8 for t in tms)}/{len(rows)}")
rtms = sorted(r["remote"][2] for r in rows if r["remote"])
if rtms:
    print(f"with templates of >= 90 % identity also left out: a template for {len(rtms)}/{len(rows)}; "
          f"TM-score min {rtms[0]:.3f}, median {statistics.median(rtms):.3f}, "
          f"mean {statistics.mean(rtms):.3f}, max {rtms[-1]:.3f}, "
          f"> 0.5: {sum(t > 0.5 for t in rtms)}/{len(rows)}")
PY
