//! `ferrofold db build` and `ferrofold search` end to end through the binary, on small
//! synthetic databases: a planted homolog comes back in the A3M and the hit table, the A3M
//! drives the AlphaFold2 feature pipeline, and bad queries or database files give a
//! one-line error, a non-zero exit and no new or changed file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use ferrofold_engine::af2::config::ModelConfig;
use ferrofold_engine::af2::pipeline::{build_features, PipelineConfig};
use ferrofold_io::a3m::{parse_a3m, A3m};
use ferrofold_msa::alphabet::{decode, encode};

#[path = "../msa/tests/synthetic/mod.rs"]
mod synthetic;
use synthetic::Rng;

/// A random protein as letters.
fn protein(rng: &mut Rng, len: usize) -> String {
    decode(&rng.protein(len))
}

/// The planted homolog's name in every database below.
const HOMOLOG: &str = "hom1";

/// A synthetic database: `n` random proteins (`s0` …) with a 60%-identity homolog of the
/// query, named [`HOMOLOG`], in the middle.
struct Fixture {
    dir: tempfile::TempDir,
    query: String,
    /// Database sequences by name, as letters.
    targets: HashMap<String, String>,
    fasta: PathBuf,
    db: PathBuf,
}

impl Fixture {
    /// Writes the FASTA (plus `extra` records appended verbatim) without building it.
    fn fasta_only(seed: u64, n: usize, extra: &str) -> Fixture {
        let mut rng = Rng(seed);
        let query = protein(&mut rng, 160);
        let homolog = decode(&rng.mutate(&encode(query.as_bytes()).unwrap(), 0.6, 30));
        let mut targets = HashMap::new();
        let mut fasta = String::new();
        for i in 0..n {
            if i == n / 2 {
                fasta.push_str(&format!(">{HOMOLOG} planted homolog\n{homolog}\n"));
                targets.insert(HOMOLOG.to_string(), homolog.clone());
            }
            let len = 60 + (rng.next() % 340) as usize;
            let s = protein(&mut rng, len);
            // Wrapped lines, as real FASTA files have.
            let wrapped: Vec<&str> = s
                .as_bytes()
                .chunks(60)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            fasta.push_str(&format!(">s{i} random protein\n{}\n", wrapped.join("\n")));
            targets.insert(format!("s{i}"), s);
        }
        fasta.push_str(extra);
        let dir = tempfile::tempdir().unwrap();
        let fasta_path = dir.path().join("db.fasta");
        std::fs::write(&fasta_path, fasta).unwrap();
        let db = dir.path().join("seqs.ffdb");
        Fixture {
            dir,
            query,
            targets,
            fasta: fasta_path,
            db,
        }
    }

    /// Writes and builds the database.
    fn new(seed: u64, n: usize) -> Fixture {
        let f = Fixture::fasta_only(seed, n, "");
        let o = db_build(&f.fasta, &f.db);
        assert!(o.status.success(), "db build failed: {}", stderr(&o));
        f
    }

    /// Writes a queries file in the fixture's folder.
    fn queries(&self, text: &str) -> PathBuf {
        let path = self.dir.path().join("queries.fasta");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `ferrofold search QUERIES DB --out OUT --threads 1` (plus `extra`).
    fn search(&self, queries: &Path, db: &Path, out: &Path, extra: &[&str]) -> Output {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "search".as_ref(),
            queries.as_ref(),
            db.as_ref(),
            "--out".as_ref(),
            out.as_ref(),
            "--threads".as_ref(),
            "1".as_ref(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        ferrofold(&args)
    }
}

fn ferrofold(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferrofold"))
        .args(args)
        .output()
        .unwrap()
}

fn db_build(fasta: &Path, db: &Path) -> Output {
    ferrofold(&["db".as_ref(), "build".as_ref(), fasta.as_ref(), db.as_ref()])
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a failed run with a one-line error holding every needle, and no panic.
fn assert_one_line_error(o: &Output, needles: &[&str]) -> String {
    let err = stderr(o);
    assert!(!o.status.success(), "accepted: {err}");
    assert_eq!(o.status.code(), Some(1), "exit status of {err:?}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "error is one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "error {err:?} lacks {n:?}");
    }
    err
}

/// Names of the files in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// One parsed row of the hit table.
#[derive(Debug)]
struct HitRow {
    target: String,
    evalue: f64,
    query_start: usize,
    query_end: usize,
    target_start: usize,
    target_end: usize,
}

/// Parses and checks a hit table: 8 columns, finite numbers, 1-based inclusive
/// coordinates within the query's and the target's lengths.
fn parse_tsv(text: &str, query_len: usize, targets: &HashMap<String, String>) -> Vec<HitRow> {
    let mut rows = Vec::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 8, "row {line:?}");
        let num = |i: usize| -> usize { cols[i].parse().unwrap_or_else(|_| panic!("{line:?}")) };
        let evalue: f64 = cols[1].parse().unwrap();
        let bits: f64 = cols[2].parse().unwrap();
        let identity: f64 = cols[3].parse().unwrap();
        assert!(evalue.is_finite() && evalue >= 0.0, "{line:?}");
        assert!(bits.is_finite() && bits > 0.0, "{line:?}");
        assert!((0.0..=1.0).contains(&identity), "{line:?}");
        let row = HitRow {
            target: cols[0].to_string(),
            evalue,
            query_start: num(4),
            query_end: num(5),
            target_start: num(6),
            target_end: num(7),
        };
        let target_len = targets
            .get(&row.target)
            .unwrap_or_else(|| panic!("unknown target in {line:?}"))
            .len();
        assert!(
            1 <= row.query_start && row.query_start <= row.query_end && row.query_end <= query_len,
            "{line:?}"
        );
        assert!(
            1 <= row.target_start
                && row.target_start <= row.target_end
                && row.target_end <= target_len,
            "{line:?}"
        );
        rows.push(row);
    }
    rows
}

/// Parses an A3M and checks its shape: the query first (as `query_row`), every row as wide
/// as the query.
fn parse_checked_a3m(text: &str, name: &str, query_row: &str) -> A3m {
    let a3m = parse_a3m(text, name).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a3m.records[0].description, name);
    assert_eq!(a3m.records[0].sequence, query_row);
    assert!(a3m.records[0].deletions.iter().all(|&d| d == 0));
    for r in &a3m.records {
        assert_eq!(r.sequence.len(), query_row.len(), "row {}", r.description);
    }
    a3m
}

/// The A3M row of `target` as written (with insertions), from the raw text.
fn raw_row<'a>(text: &'a str, target: &str) -> &'a str {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.strip_prefix('>') == Some(target) {
            return lines.next().unwrap();
        }
    }
    panic!("{target} is not in the A3M")
}

/// Checks that the planted homolog's A3M row and TSV row agree with the sequences: its
/// residues (match and insertion columns) are the target's aligned region, and its match
/// columns start at the query start.
fn check_homolog(a3m_text: &str, hit: &HitRow, homolog: &str) {
    let row = raw_row(a3m_text, HOMOLOG);
    let residues: String = row
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    assert_eq!(residues, homolog[hit.target_start - 1..hit.target_end]);
    let leading = row.chars().take_while(|&c| c == '-').count();
    assert_eq!(leading, hit.query_start - 1, "row {row}");
}

#[test]
fn round_trip_a3m_tsv_and_af2_features() {
    let f = Fixture::new(11, 300);
    let queries = f.queries(&format!(">q1 the query\n{}\n", f.query));
    let out = f.dir.path().join("out");
    let o = f.search(&queries, &f.db, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(files_in(&out), ["q1.a3m", "q1.tsv"]);

    let tsv = std::fs::read_to_string(out.join("q1.tsv")).unwrap();
    let rows = parse_tsv(&tsv, f.query.len(), &f.targets);
    let hit = rows
        .iter()
        .find(|r| r.target == HOMOLOG)
        .unwrap_or_else(|| panic!("planted homolog not in\n{tsv}"));
    assert!(hit.evalue < 1e-10, "{hit:?}");
    // Covers most of the query (60% identity over 160 residues).
    assert!(hit.query_end - hit.query_start > 100, "{hit:?}");
    assert!(rows.iter().all(|r| r.evalue <= 0.1), "{tsv}");

    let text = std::fs::read_to_string(out.join("q1.a3m")).unwrap();
    let a3m = parse_checked_a3m(&text, "q1", &f.query);
    assert!(a3m.records.iter().any(|r| r.description == HOMOLOG));
    // Every A3M row (after the query) is a hit of the table.
    for r in &a3m.records[1..] {
        assert!(rows.iter().any(|h| h.target == r.description), "{r:?}");
    }
    check_homolog(&text, hit, &f.targets[HOMOLOG]);

    let mut cfg = PipelineConfig::for_model(&ModelConfig::by_name("model_1").unwrap(), 0, true);
    cfg.num_recycle = 0;
    let features = build_features(&f.query, Some(&a3m), &cfg).unwrap();
    assert_eq!(features.len(), 1);
    let depth = features[0].msa_feat.dim(0);
    assert!(depth > 1 && depth <= a3m.len(), "MSA depth {depth}");
    assert_eq!(features[0].msa_feat.dim(1), f.query.len());
}

/// Runs a search of `queries` against a good database and asserts it is refused with a
/// one-line error holding `needles`, and that nothing is left in the output folder.
fn assert_queries_refused(f: &Fixture, queries: &str, needles: &[&str]) {
    let path = f.queries(queries);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("results");
    let o = f.search(&path, &f.db, &target, &[]);
    assert_one_line_error(&o, needles);
    assert_eq!(
        files_in(&target),
        Vec::<String>::new(),
        "files were written"
    );
}

#[test]
fn bad_queries_are_refused_before_anything_is_written() {
    let f = Fixture::new(12, 200);
    let good = format!(">good\n{}\n", f.query);
    let refused = |rest: &str, needles: &[&str]| {
        assert_queries_refused(&f, &format!("{good}{rest}"), needles);
    };
    refused(">empty1 no residues\n>after\nMKV\n", &["empty1", "empty"]);
    refused(">stop1\n*\n", &["stop1", "empty"]);
    refused(
        &format!(">nuc1\n{}\n", "ACGTTGCAAGCTNACGTACGATCGA"),
        &["nuc1", "nucleotide"],
    );
    refused(">dig1\nMKV1LLA\n", &["dig1", "'1'", "position 4"]);
    refused(">star1\nMKV*LLA\n", &["star1", "'*'", "position 4"]);
    refused(">gap1\nMKV-LLA\n", &["gap1", "'-'", "position 4"]);
    refused(
        &format!(">good\n{}\n", f.query),
        &["good", "same output files"],
    );
    refused(">../x\nMKVLLA\n", &["../x", "output file name"]);
    refused(">.hidden\nMKVLLA\n", &[".hidden", "output file name"]);
    // Duplicates are found whatever lies between them.
    refused(
        ">a\nMKV\n>b\nMKV\n>a\nMKV\n",
        &["\"a\"", "same output files"],
    );
    // A file without records.
    assert_queries_refused(&f, "", &["queries.fasta", "no FASTA records"]);
}

#[test]
fn lower_case_and_ambiguity_codes_are_searched() {
    let f = Fixture::new(13, 200);
    // The query in lower case with B, Z, J, X, U and O substituted here and there, and a
    // trailing stop.
    let mut letters: Vec<u8> = f.query.to_ascii_lowercase().into_bytes();
    for (k, &c) in b"bzjxuo".iter().enumerate() {
        letters[10 + 25 * k] = c;
    }
    let given = format!("{}*", String::from_utf8(letters).unwrap());
    let queries = f.queries(&format!(">amb\n{given}\n"));
    let out = f.dir.path().join("out");
    let o = f.search(&queries, &f.db, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(files_in(&out), ["amb.a3m", "amb.tsv"]);

    // The query row is the query as given, in upper case, without the stop.
    let row = given.trim_end_matches('*').to_ascii_uppercase();
    let text = std::fs::read_to_string(out.join("amb.a3m")).unwrap();
    let a3m = parse_checked_a3m(&text, "amb", &row);
    assert!(a3m.records.iter().any(|r| r.description == HOMOLOG));
    let tsv = std::fs::read_to_string(out.join("amb.tsv")).unwrap();
    let rows = parse_tsv(&tsv, row.len(), &f.targets);
    let hit = rows.iter().find(|r| r.target == HOMOLOG).expect("homolog");
    assert!(hit.evalue < 1e-6, "{hit:?}");
    check_homolog(&text, hit, &f.targets[HOMOLOG]);
}

#[test]
fn a_100_000_residue_query() {
    let f = Fixture::new(14, 200);
    // Random residues with the fixture's query (whose homolog is in the database) at
    // 50 000.
    let mut rng = Rng(99);
    let mut long = protein(&mut rng, 100_000);
    long.replace_range(50_000..50_000 + f.query.len(), &f.query);
    let queries = f.queries(&format!(">long\n{long}\n"));
    let out = f.dir.path().join("out");
    let start = Instant::now();
    let o = f.search(&queries, &f.db, &out, &[]);
    let seconds = start.elapsed().as_secs_f64();
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert!(seconds < 60.0, "took {seconds:.1} s");
    if !o.status.success() {
        // A clear refusal is acceptable too, with nothing written.
        assert_one_line_error(&o, &["long"]);
        assert_eq!(files_in(&out), Vec::<String>::new());
        return;
    }
    assert_eq!(files_in(&out), ["long.a3m", "long.tsv"]);
    let text = std::fs::read_to_string(out.join("long.a3m")).unwrap();
    let a3m = parse_checked_a3m(&text, "long", &long);
    let tsv = std::fs::read_to_string(out.join("long.tsv")).unwrap();
    let rows = parse_tsv(&tsv, long.len(), &f.targets);
    for r in &a3m.records[1..] {
        assert!(rows.iter().any(|h| h.target == r.description), "{r:?}");
    }
    let hit = rows
        .iter()
        .find(|r| r.target == HOMOLOG)
        .unwrap_or_else(|| panic!("planted homolog not in\n{tsv}\n{err}"));
    assert!(
        hit.query_start > 50_000 && hit.query_end <= 50_000 + f.query.len(),
        "{hit:?}"
    );
    check_homolog(&text, hit, &f.targets[HOMOLOG]);
}

/// Searches `db` with a query named `q` whose earlier results (sentinels) are in the
/// output folder; asserts a one-line error naming `db` and holding `needles`, and that the
/// sentinels are untouched and nothing else was written.
fn assert_database_refused(f: &Fixture, db: &Path, needles: &[&str]) {
    let queries = f.queries(&format!(">q\n{}\n", f.query));
    let out = tempfile::tempdir().unwrap();
    let a3m = out.path().join("q.a3m");
    let tsv = out.path().join("q.tsv");
    std::fs::write(&a3m, ">q\nEARLIER\n").unwrap();
    std::fs::write(&tsv, "earlier\t1\n").unwrap();
    let o = f.search(&queries, db, out.path(), &[]);
    let db_name = db.display().to_string();
    let mut all = vec![db_name.as_str()];
    all.extend_from_slice(needles);
    assert_one_line_error(&o, &all);
    assert_eq!(std::fs::read_to_string(&a3m).unwrap(), ">q\nEARLIER\n");
    assert_eq!(std::fs::read_to_string(&tsv).unwrap(), "earlier\t1\n");
    assert_eq!(files_in(out.path()), ["q.a3m", "q.tsv"]);
}

#[test]
fn foreign_truncated_corrupt_and_missing_databases() {
    let f = Fixture::new(15, 200);
    let bytes = std::fs::read(&f.db).unwrap();
    let variant = |name: &str, content: &[u8]| {
        let path = f.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };

    // A FASTA file (long and short) instead of a database.
    assert_database_refused(&f, &f.fasta, &["not a ferrofold sequence database"]);
    let short = variant("short.fasta", b">a\nMKV\n");
    assert_database_refused(&f, &short, &["not a ferrofold sequence database"]);
    let empty = variant("empty.ffdb", b"");
    assert_database_refused(&f, &empty, &["empty"]);

    // Truncated: within the sections, and within the fixed header.
    let cut = variant("cut.ffdb", &bytes[..bytes.len() / 2]);
    assert_database_refused(&f, &cut, &["truncated"]);
    let cut_header = variant("cut-header.ffdb", &bytes[..100]);
    assert_database_refused(&f, &cut_header, &["truncated"]);
    // Bytes appended.
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 64]);
    let long = variant("long.ffdb", &long);
    assert_database_refused(&f, &long, &["corrupt"]);

    // Another format version (bytes 8..12): the version is checked before the header
    // checksum (which no longer matches either), so it is named.
    let mut other = bytes.clone();
    other[8..12].copy_from_slice(&1u32.to_le_bytes());
    let other = variant("v1.ffdb", &other);
    assert_database_refused(&f, &other, &["format version 1", "rebuild"]);

    // A flipped bit in the header's counts, and in the residues.
    let mut flipped = bytes.clone();
    flipped[16] ^= 1;
    let flipped = variant("header-bit.ffdb", &flipped);
    assert_database_refused(&f, &flipped, &["checksum"]);
    let mut flipped = bytes.clone();
    flipped[300] ^= 1;
    let flipped = variant("residue-bit.ffdb", &flipped);
    assert_database_refused(&f, &flipped, &["checksum", "residues"]);

    let missing = f.dir.path().join("missing.ffdb");
    assert_database_refused(&f, &missing, &[]);
    // A folder is not a database (a FIFO, also not a regular file, would block its open).
    assert_database_refused(&f, f.dir.path(), &["not a regular file"]);

    // The intact database still works after all that.
    let out = f.dir.path().join("out");
    let queries = f.queries(&format!(">q\n{}\n", f.query));
    assert!(f.search(&queries, &f.db, &out, &[]).status.success());
}

/// Out-of-range arguments and a build onto its own input: refused, nothing written.
#[test]
fn bad_arguments_are_refused_before_anything_is_written() {
    let f = Fixture::new(21, 50);
    let queries = f.queries(&format!(">q\n{}\n", f.query));
    let out = f.dir.path().join("out");
    for (option, value) in [
        ("--threads", "0"),
        ("--threads", "100000"),
        ("--iterations", "0"),
        ("--max-seqs", "0"),
    ] {
        let o = ferrofold(&[
            "search".as_ref(),
            queries.as_ref(),
            f.db.as_ref(),
            "--out".as_ref(),
            out.as_ref(),
            option.as_ref(),
            value.as_ref(),
        ]);
        let err = stderr(&o);
        assert!(!o.status.success(), "{option} {value} accepted: {err}");
        assert!(err.contains(option) && !err.contains("panicked"), "{err}");
        assert!(!out.exists(), "{option} {value}: output folder made");
    }
    let before = std::fs::read(&f.fasta).unwrap();
    let o = db_build(&f.fasta, &f.fasta);
    assert_one_line_error(&o, &["its own FASTA input"]);
    assert_eq!(std::fs::read(&f.fasta).unwrap(), before);
}

#[test]
fn db_build_skips_bad_records_with_a_warning() {
    let mut rng = Rng(7);
    // An invalid record that is an exact copy of the query apart from one digit: were it
    // in the database it would be the best hit.
    let spoiled = {
        let f = Fixture::fasta_only(16, 0, "");
        let mut q = f.query.clone();
        q.insert(80, '7');
        q
    };
    let extra = format!(
        ">empty1\n\n>nuc1 a gene\n{}\n>bad1\n{spoiled}\n>stop1\n*\n>amb1 accepted\n{}*\n",
        "ACGTGCTAGCTAGCTAGGATCGATCGTAGCTAGN",
        protein(&mut rng, 90).to_ascii_lowercase().replace('a', "b")
    );
    let f = Fixture::fasta_only(16, 200, &extra);
    let o = db_build(&f.fasta, &f.db);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    let warning = err
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap_or_else(|| panic!("no warning in {err}"));
    for needle in [
        "skipped 4 records",
        "2 empty (first: empty1)",
        "1 with invalid characters (first: bad1: character '7' at position 81",
        "1 nucleotide (first: nuc1)",
    ] {
        assert!(warning.contains(needle), "{warning:?} lacks {needle:?}");
    }
    // 200 random proteins, the homolog and amb1.
    assert!(err.contains(": 202 sequences,"), "{err}");

    let queries = f.queries(&format!(">q\n{}\n", f.query));
    let out = f.dir.path().join("out");
    let o = f.search(&queries, &f.db, &out, &[]);
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains(": 202 sequences,"), "{err}");
    let tsv = std::fs::read_to_string(out.join("q.tsv")).unwrap();
    let rows = parse_tsv(&tsv, f.query.len(), &f.targets);
    assert!(rows.iter().any(|r| r.target == HOMOLOG), "{tsv}");
}

#[test]
fn db_build_without_a_usable_record_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fasta = dir.path().join("bad.fasta");
    std::fs::write(
        &fasta,
        ">e1\n\n>n1\nACGTACGTACGTACGTACGTACGT\n>d1\nMKV9\n>s1\n*\n",
    )
    .unwrap();
    let db = dir.path().join("out.ffdb");
    let o = db_build(&fasta, &db);
    assert_one_line_error(
        &o,
        &[
            &fasta.display().to_string(),
            "no protein record",
            "skipped 4 records",
        ],
    );
    assert_eq!(files_in(dir.path()), ["bad.fasta"]);

    // An existing database is not replaced by a failed build.
    std::fs::write(&db, b"previous").unwrap();
    let o = db_build(&fasta, &db);
    assert_one_line_error(&o, &["no protein record"]);
    assert_eq!(std::fs::read(&db).unwrap(), b"previous");
    assert_eq!(files_in(dir.path()), ["bad.fasta", "out.ffdb"]);

    // A missing input file.
    let missing = dir.path().join("missing.fasta");
    let o = db_build(&missing, &db);
    assert_one_line_error(&o, &[&missing.display().to_string()]);
}

#[test]
fn predict_refuses_db_together_with_msa() {
    let dir = tempfile::tempdir().unwrap();
    let fasta = dir.path().join("q.fasta");
    std::fs::write(&fasta, ">q\nMKVLLA\n").unwrap();
    let out = dir.path().join("out");
    let o = Command::new(env!("CARGO_BIN_EXE_ferrofold"))
        .args(["predict", "--model", "model_1", "--params", "X"])
        .arg(&fasta)
        .arg("--out")
        .arg(&out)
        .args(["--db", "some.ffdb", "--msa", "some.a3m"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(err.contains("--db") && err.contains("--msa"), "{err}");
    assert!(!out.exists());
}

#[test]
fn tiny_and_seedless_queries_are_searched_without_panic() {
    let f = Fixture::new(17, 100);
    let queries = [
        ("one", "M"),
        ("two", "MK"),
        ("allx", "XXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"),
        ("ambiguous", "BZJXBZJXBZJX"),
        ("repeat", "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW"),
        // Under 20 letters: too short to be called nucleotide.
        ("short_acgt", "acgtacgtacgtacgtacg"),
    ];
    let text: String = queries
        .iter()
        .map(|(name, seq)| format!(">{name}\n{seq}\n"))
        .collect();
    let path = f.queries(&text);
    let out = f.dir.path().join("out");
    let o = f.search(&path, &f.db, &out, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(files_in(&out).len(), 2 * queries.len());
    for (name, seq) in queries {
        let row = seq.to_ascii_uppercase();
        let a3m = std::fs::read_to_string(out.join(format!("{name}.a3m"))).unwrap();
        parse_checked_a3m(&a3m, name, &row);
        let tsv = std::fs::read_to_string(out.join(format!("{name}.tsv"))).unwrap();
        parse_tsv(&tsv, row.len(), &f.targets);
    }
}

#[test]
fn predict_db_searches_before_loading_weights_and_refuses_bad_databases() {
    let f = Fixture::new(18, 100);
    let fasta = f.queries(&format!(">q\n{}\n", f.query));
    let params = f.dir.path().join("missing_params.npz");
    let predict = |db: &Path, out: &Path| {
        let args: Vec<&std::ffi::OsStr> = vec![
            "predict".as_ref(),
            "--model".as_ref(),
            "model_1".as_ref(),
            "--params".as_ref(),
            params.as_ref(),
            "--db".as_ref(),
            db.as_ref(),
            fasta.as_ref(),
            "--out".as_ref(),
            out.as_ref(),
            "--threads".as_ref(),
            "1".as_ref(),
        ];
        ferrofold(&args)
    };
    // A good database: the MSA search and the features run, then the missing weights stop it.
    let out = f.dir.path().join("out");
    let o = predict(&f.db, &out);
    let err = stderr(&o);
    assert!(!o.status.success() && !err.contains("panicked"), "{err}");
    assert!(
        err.contains("q: ") && err.contains(" MSA hits in "),
        "{err}"
    );
    assert!(
        err.trim()
            .lines()
            .last()
            .unwrap()
            .contains("missing_params.npz"),
        "{err}"
    );
    assert!(files_in(&out).is_empty());

    // A truncated database: a one-line error naming it.
    let bytes = std::fs::read(&f.db).unwrap();
    let cut = f.dir.path().join("cut.ffdb");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let o = predict(&cut, &out);
    assert_one_line_error(&o, &[&cut.display().to_string(), "truncated"]);
    assert!(files_in(&out).is_empty());
}
