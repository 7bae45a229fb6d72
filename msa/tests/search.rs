//! The search end to end on synthetic databases: planted homologs are found with
//! significant E-values, chance hits follow the Karlin–Altschul expectation, and profile
//! iterations reach homologs a single sequence misses.

use ferrofold_msa::align::{QueryProfile, Scratch};
use ferrofold_msa::alphabet::{decode, X};
use ferrofold_msa::db::{build_database, Database};
use ferrofold_msa::matrix::{Pssm, BLOSUM62_GAPS};
use ferrofold_msa::search::{
    search, PassSummary, Query, QueryResult, SearchParams, SearchProgress,
    FIRST_PASS_THRESHOLD_RAISE,
};
use ferrofold_msa::stats::BLOSUM62_11_1;

mod synthetic;
use synthetic::Rng;

struct Quiet;

impl SearchProgress for Quiet {
    fn pass(&self, _: usize, _: usize, _: usize) {}
    fn scanned(&self, _: usize) {}
    fn finished(&self, _: &PassSummary) {}
}

/// Writes `seqs` (named `s0`, `s1`, …) as FASTA and builds a database from it.
fn database(dir: &std::path::Path, seqs: &[Vec<u8>]) -> Database {
    let fasta: String = seqs
        .iter()
        .enumerate()
        .map(|(i, s)| format!(">s{i} synthetic\n{}\n", decode(s)))
        .collect();
    let fasta_path = dir.join("db.fasta");
    std::fs::write(&fasta_path, fasta).unwrap();
    let db_path = dir.join("db.ffdb");
    build_database(&fasta_path, &db_path, &mut |_| {}).unwrap();
    Database::open(&db_path).unwrap()
}

/// The search's result for one query named `q`.
fn search_one(db: &Database, codes: &[u8], params: &SearchParams) -> QueryResult {
    let queries = [Query {
        name: "q".into(),
        codes: codes.to_vec(),
    }];
    search(db, &queries, params, &Quiet).remove(0)
}

/// The targets of one query's hits, in E-value order.
fn found_targets(db: &Database, codes: &[u8], params: &SearchParams) -> Vec<u32> {
    let result = search_one(db, codes, params);
    result.hits.iter().map(|h| h.target).collect()
}

#[test]
fn planted_homologs_are_found_and_background_is_not() {
    let mut rng = Rng(42);
    let query = rng.protein(250);
    let mut seqs: Vec<Vec<u8>> = (0..3000)
        .map(|i| rng.protein(100 + (i * 37) % 400))
        .collect();
    // Homologs at 90 %, 60 % and 45 % identity with indels, placed inside longer targets.
    let planted = [(10usize, 0.9), (1500, 0.6), (2999, 0.45)];
    for &(at, identity) in &planted {
        let mut target = rng.protein(30);
        target.extend(rng.mutate(&query, identity, 40));
        target.extend(rng.protein(50));
        seqs[at] = target;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &seqs);
    let params = SearchParams {
        iterations: 1,
        evalue: 1e-3,
        ..SearchParams::default()
    };
    let result = &search_one(&db, &query, &params);
    let found: Vec<u32> = result.hits.iter().map(|h| h.target).collect();
    for &(at, identity) in &planted {
        assert!(
            found.contains(&(at as u32)),
            "{identity} identity homolog missed: {found:?}"
        );
    }
    assert_eq!(
        found.len(),
        planted.len(),
        "chance hits at E <= 1e-3: {found:?}"
    );
    // The alignment covers the planted region, and identities are ordered as planted.
    let hit = |at: usize| result.hits.iter().find(|h| h.target == at as u32).unwrap();
    let close = hit(10);
    assert!(close.alignment.target_start >= 25 && close.alignment.target_start <= 35);
    assert!(close.alignment.query_end - close.alignment.query_start > 230);
    assert!(hit(10).identity > hit(1500).identity && hit(1500).identity > hit(2999).identity);
    assert!(result.hits.windows(2).all(|w| w[0].evalue <= w[1].evalue));
}

#[test]
fn chance_hits_match_the_expected_number() {
    // Full Smith–Waterman of random queries against a random database: hits with E <= 1
    // should number about one per query.
    let mut rng = Rng(7);
    let seqs: Vec<Vec<u8>> = (0..2000)
        .map(|i| rng.protein(80 + (i * 53) % 500))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &seqs);
    let ka = BLOSUM62_11_1;
    let queries = 60;
    let mut chance = 0usize;
    for q in 0..queries {
        let query = rng.protein(120 + q * 7);
        let profile = QueryProfile::new(&Pssm::from_sequence(&query), BLOSUM62_GAPS);
        let space = ka.search_space(query.len(), db.total_residues(), db.len());
        let mut scratch = Scratch::new();
        chance += (0..db.len())
            .filter_map(|t| profile.score(db.sequence(t), &mut scratch))
            .filter(|s| ka.evalue(s.score, space) <= 1.0)
            .count();
    }
    let per_query = chance as f64 / queries as f64;
    assert!(
        (0.4..=2.5).contains(&per_query),
        "{per_query} chance hits per query at E <= 1"
    );
}

#[test]
fn profile_iterations_reach_remote_homologs() {
    // A family: members at ~50 % identity to the query and each other's ancestor, and
    // remote members at ~30 % that a single-sequence search ranks below the threshold.
    let mut rng = Rng(1234);
    let ancestor = rng.protein(200);
    let mut seqs: Vec<Vec<u8>> = (0..2000)
        .map(|i| rng.protein(150 + (i * 31) % 300))
        .collect();
    let query = rng.mutate(&ancestor, 0.55, 60);
    for i in 0..40 {
        seqs[i * 50] = rng.mutate(&ancestor, 0.55, 60);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &seqs);
    let count = |iterations| {
        let params = SearchParams {
            iterations,
            evalue: 1e-3,
            ..SearchParams::default()
        };
        let result = &search_one(&db, &query, &params);
        let members = result.hits.iter().filter(|h| h.target % 50 == 0).count();
        (members, result.hits.len() - members)
    };
    let (one, false_one) = count(1);
    let (three, false_three) = count(3);
    assert!(
        three > one,
        "profiles found {three} members vs {one} with one iteration"
    );
    assert!(
        three >= 36,
        "profile search found only {three} of 40 members"
    );
    assert_eq!(false_one + false_three, 0, "false hits");
}

#[test]
fn a_query_stops_iterating_once_its_hits_stop_growing() {
    // One family of 20 close members: the second iteration finds nothing new.
    let mut rng = Rng(77);
    let ancestor = rng.protein(180);
    let mut seqs: Vec<Vec<u8>> = (0..1000).map(|_| rng.protein(200)).collect();
    for i in 0..20 {
        seqs[i * 50] = rng.mutate(&ancestor, 0.8, 80);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &seqs);
    let query = rng.mutate(&ancestor, 0.8, 80);
    let params = SearchParams {
        iterations: 10,
        ..SearchParams::default()
    };
    let result = &search_one(&db, &query, &params);
    let members = result.hits.iter().filter(|h| h.target % 50 == 0).count();
    assert_eq!(members, 20);
    assert!(result.iterations <= 3, "{} iterations", result.iterations);
}

#[test]
fn ambiguous_residues_never_seed_but_align() {
    let mut rng = Rng(99);
    let query = rng.protein(150);
    let mut with_x = query.clone();
    for i in (0..with_x.len()).step_by(10) {
        with_x[i] = X;
    }
    let mut seqs: Vec<Vec<u8>> = (0..500).map(|_| rng.protein(200)).collect();
    seqs[3] = query.clone();
    seqs[7] = with_x;
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &seqs);
    let params = SearchParams {
        iterations: 1,
        ..SearchParams::default()
    };
    let hits = &search_one(&db, &query, &params).hits;
    assert_eq!(hits[0].target, 3);
    assert!(
        hits.iter().any(|h| h.target == 7),
        "the X-masked copy was missed"
    );
}

/// Skipped targets take no candidate place: with a cap of 2 and the two strongest homologs
/// skipped, the next two come through (the later iterations' settled hits rely on this).
#[test]
fn skipped_targets_free_their_candidate_places() {
    use ferrofold_msa::prefilter::{prefilter, PrefilterParams};
    let mut rng = Rng(7);
    let query = rng.protein(200);
    let mut seqs: Vec<Vec<u8>> = (0..500).map(|_| rng.protein(200)).collect();
    // Homologs in decreasing identity at targets 0..4.
    for (at, identity) in [0.95, 0.9, 0.85, 0.8].into_iter().enumerate() {
        seqs[at] = rng.mutate(&query, identity, 0);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &seqs);
    let pssm = Pssm::from_sequence(&query);
    let base = SearchParams::default().prefilter();
    let params = PrefilterParams {
        max_candidates: 2,
        ..base
    };
    let run = |skip: Vec<u32>| -> Vec<u32> {
        let found = prefilter(
            &db,
            &[&pssm],
            &[base.kmer_threshold],
            &[skip],
            &params,
            &|_| {},
            &mut Default::default(),
        );
        let mut targets: Vec<u32> = found[0].iter().map(|c| c.target).collect();
        targets.sort_unstable();
        targets
    };
    assert_eq!(run(Vec::new()), vec![0, 1]);
    assert_eq!(run(vec![0, 1]), vec![2, 3]);
}

#[test]
fn a_database_opening_with_peptides_is_searched() {
    // The scan's first group of targets has no 5-residue window at all.
    let mut rng = Rng(9);
    let query = rng.protein(150);
    let mut seqs: Vec<Vec<u8>> = (0..40).map(|i| rng.protein(1 + i % 4)).collect();
    seqs.extend((0..200).map(|_| rng.protein(180)));
    seqs.push(rng.mutate(&query, 0.8, 10));
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), &seqs);
    let params = SearchParams {
        iterations: 1,
        evalue: 1e-3,
        ..SearchParams::default()
    };
    let found = found_targets(&db, &query, &params);
    assert_eq!(found, [seqs.len() as u32 - 1]);
}

/// Records every pass's summary.
#[derive(Default)]
struct Passes(std::sync::Mutex<Vec<PassSummary>>);

impl SearchProgress for Passes {
    fn pass(&self, _: usize, _: usize, _: usize) {}
    fn scanned(&self, _: usize) {}
    fn finished(&self, summary: &PassSummary) {
        self.0.lock().unwrap().push(summary.clone());
    }
}

/// An iterative search's first pass seeds at a raised k-mer threshold; a query it includes
/// nothing for is searched again at the full one rather than dropped. The homolog here is
/// found by a single pass at the search's threshold, while a single pass at the raised
/// threshold (as many sensitivity steps lower: each step is one of the threshold) finds
/// nothing at all.
#[test]
fn a_query_the_raised_first_pass_misses_is_searched_again() {
    let mut rng = Rng(2024);
    let query = rng.protein(160);
    let mut seqs: Vec<Vec<u8>> = (0..600).map(|_| rng.protein(200)).collect();
    let dir = tempfile::tempdir().unwrap();
    let base = SearchParams::default();
    let single = |sensitivity: f64| SearchParams {
        iterations: 1,
        sensitivity,
        ..base
    };
    let coarse = single(base.sensitivity - FIRST_PASS_THRESHOLD_RAISE as f64);
    // A remote homolog that only the full threshold seeds, drawn until one is.
    let db = (0..200)
        .find_map(|_| {
            seqs[0] = rng.mutate(&query, 0.32, 60);
            let db = database(dir.path(), &seqs);
            let found = found_targets(&db, &query, &single(base.sensitivity)).contains(&0);
            (found && found_targets(&db, &query, &coarse).is_empty()).then_some(db)
        })
        .expect("a homolog only the full threshold finds");
    for iterations in [2, 4] {
        let params = SearchParams { iterations, ..base };
        let queries = [Query {
            name: "q".into(),
            codes: query.clone(),
        }];
        let passes = Passes::default();
        let result = search(&db, &queries, &params, &passes).remove(0);
        assert!(
            result.hits.iter().any(|h| h.target == 0),
            "{iterations} iterations"
        );
        // The raised first pass found nothing; the second found the homolog.
        let passes = passes.0.into_inner().unwrap();
        assert_eq!(passes[0].hits, 0, "{passes:?}");
        assert!(passes[1].hits > 0, "{passes:?}");
    }
}
