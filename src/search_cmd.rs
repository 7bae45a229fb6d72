//! `ferrofold db build` and `ferrofold search`: our own sequence search, and the MSA it
//! gives AlphaFold2's `predict --db`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use ferrofold_io::atomic::{safe_output_path, write_atomic_all};
use ferrofold_io::fasta::read_fasta;
use ferrofold_msa::alphabet::{encode, query_letters, X};
use ferrofold_msa::db::{build_database, Database};
use ferrofold_msa::filter::DiversityFilter;
use ferrofold_msa::output::{a3m, hit_table};
use ferrofold_msa::prefilter::K;
use ferrofold_msa::search::{
    search, PassSummary, Query, QueryResult, SearchParams, SearchProgress,
};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

#[derive(Args)]
pub struct SearchArgs {
    /// FASTA file of query proteins (one MSA per record).
    queries: PathBuf,
    /// Database built by `ferrofold db build`.
    db: PathBuf,
    /// Output folder: <query>.a3m and <query>.tsv per query.
    #[arg(long)]
    out: PathBuf,
    /// Search iterations (profile search after the first, which then seeds two sensitivity
    /// steps lower: it only builds the first profile, and a query it includes nothing for
    /// is searched again at -s; a query stops earlier once its included hits grow by less
    /// than 10 %).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// Report hits up to this E-value.
    #[arg(long, default_value_t = 0.1)]
    evalue: f64,
    /// Include hits up to this E-value in the next iteration's profile (MMseqs2 14's
    /// --e-profile default).
    #[arg(long, default_value_t = 0.1)]
    inclusion_evalue: f64,
    /// Most hits per query.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_seqs: u32,
    /// Sensitivity, 1 (fast) to 8.5 (sensitive), as MMseqs2's -s. `--iterations 3 -s 2` is
    /// the fast search: above jackhmmer -N 1's recall in about a thirtieth of its time.
    #[arg(short = 's', long, default_value_t = 7.5)]
    sensitivity: f64,
    /// A3M diversity filter: highest pairwise identity between kept rows.
    #[arg(long, default_value_t = 0.95)]
    max_seq_id: f64,
    /// Worker threads (default: all cores; at most four per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

impl SearchArgs {
    fn params(&self) -> Result<SearchParams> {
        if !(1.0..=8.5).contains(&self.sensitivity) {
            bail!("-s {} is outside 1 to 8.5", self.sensitivity);
        }
        if !(self.evalue > 0.0 && self.inclusion_evalue > 0.0) {
            bail!("E-value thresholds must be positive");
        }
        if !(0.0..=1.0).contains(&self.max_seq_id) {
            bail!("--max-seq-id {} is outside 0 to 1", self.max_seq_id);
        }
        Ok(SearchParams {
            iterations: self.iterations as usize,
            evalue: self.evalue,
            inclusion_evalue: self.inclusion_evalue,
            max_seqs: self.max_seqs as usize,
            sensitivity: self.sensitivity,
            ..SearchParams::default()
        })
    }
}

/// `ferrofold db build SEQS.fasta DB`.
pub fn db_build(fasta: &Path, out: &Path) -> Result<()> {
    let start = Instant::now();
    let total = std::fs::metadata(fasta)
        .with_context(|| format!("cannot read {}", fasta.display()))?
        .len();
    let bar = bar(
        total,
        "{spinner} reading {bytes}/{total_bytes} [{elapsed_precise}] {wide_bar} {msg}",
    );
    let report = build_database(fasta, out, &mut |bytes| {
        bar.set_position(bytes);
        // The last call: the k-mer index is built next (a few seconds per 100 M residues).
        if bytes >= total {
            bar.set_message("indexing k-mers");
        }
    })?;
    bar.finish_and_clear();
    if let Some(skipped) = report.skip_summary() {
        eprintln!("warning: {skipped}");
    }
    eprintln!(
        "built {}: {} sequences, {} residues (longest {}), {:.1} MB in {:.1} s",
        out.display(),
        report.sequences,
        report.residues,
        report.max_length,
        report.file_bytes as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A query ready to search: its name, the letters as given and the codes.
struct NamedQuery {
    letters: String,
    query: Query,
}

/// Reads and checks every query before anything is searched or written.
fn read_queries(path: &Path, out: &Path) -> Result<Vec<NamedQuery>> {
    let records = read_fasta(path)?;
    crate::check_record_names(
        path,
        out,
        records.iter().map(|r| r.name.as_str()),
        &["a3m", "tsv"],
    )?;
    let mut queries = Vec::with_capacity(records.len());
    for record in records {
        let codes = encode(record.sequence.as_bytes()).map_err(|problem| {
            anyhow::anyhow!("{}: record {:?}: {problem}", path.display(), record.name)
        })?;
        let letters = query_letters(&record.sequence);
        queries.push(NamedQuery {
            letters,
            query: Query {
                name: record.name,
                codes,
            },
        });
    }
    Ok(queries)
}

/// Progress bar of the database passes.
struct PassBar(ProgressBar);

impl SearchProgress for PassBar {
    fn pass(&self, iteration: usize, queries: usize, targets: usize) {
        self.0.set_length(targets as u64);
        self.0.set_position(0);
        let plural = if queries == 1 { "y" } else { "ies" };
        self.0
            .set_message(format!("iteration {iteration}: {queries} quer{plural}"));
    }

    fn scanned(&self, targets: usize) {
        self.0.inc(targets as u64);
    }

    fn finished(&self, s: &PassSummary) {
        // suspend, not println: println is silent when stderr is not a terminal.
        self.0.suspend(|| {
            eprintln!(
                "iteration {}: {} queries, prefilter {:.2} s ({} candidates), alignment {:.2} s ({} hits)",
                s.iteration, s.queries, s.prefilter_seconds, s.candidates, s.align_seconds, s.hits
            )
        });
    }
}

fn bar(len: u64, template: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template(template).expect("a valid progress template"));
    bar
}

/// The A3M of one query's hits after the diversity filter.
fn filtered_a3m(
    name: &str,
    letters: &str,
    codes: &[u8],
    result: &QueryResult,
    db: &Database,
    filter: &DiversityFilter,
) -> String {
    let rows: Vec<Vec<u8>> = result
        .hits
        .par_iter()
        .map(|h| h.query_columns(db.sequence(h.target as usize), codes.len()))
        .collect();
    let kept: Vec<_> = filter
        .keep(codes, &rows)
        .into_iter()
        .map(|i| &result.hits[i])
        .collect();
    a3m(name, letters, &kept, db)
}

/// `ferrofold search QUERIES.fasta DB --out DIR`.
pub fn run(args: &SearchArgs) -> Result<()> {
    // Everything that can fail on the input fails before the output folder is made.
    let params = args.params()?;
    let queries = read_queries(&args.queries, &args.out)?;
    let start = Instant::now();
    let db = Database::open(&args.db)?;
    crate::prepare_output_dir(&args.out)?;
    for q in &queries {
        if !q.query.codes.windows(K).any(|w| !w.contains(&X)) {
            eprintln!(
                "warning: {:?}: no {K} residues in a row without X; nothing can seed a hit",
                q.query.name
            );
        }
    }
    eprintln!(
        "database {}: {} sequences, {} residues",
        args.db.display(),
        db.len(),
        db.total_residues()
    );
    let plain: Vec<Query> = queries.iter().map(|q| q.query.clone()).collect();
    let progress = PassBar(bar(
        db.len() as u64,
        "{spinner} {msg} {pos}/{len} targets [{elapsed_precise}] {wide_bar}",
    ));
    let results = search(&db, &plain, &params, &progress);
    progress.0.finish_and_clear();
    let filter = DiversityFilter {
        max_seq_id: args.max_seq_id,
        ..DiversityFilter::default()
    };
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for (q, result) in queries.iter().zip(&results) {
        let name = &q.query.name;
        eprintln!(
            "{name}: {} hits in {} iteration{}",
            result.hits.len(),
            result.iterations,
            if result.iterations == 1 { "" } else { "s" }
        );
        if result.untraced > 0 {
            eprintln!(
                "warning: {name}: {} significant targets left out: alignments too long to trace back",
                result.untraced
            );
        }
        files.push((safe_output_path(&args.out, name, "a3m")?, String::new()));
        files.push((safe_output_path(&args.out, name, "tsv")?, String::new()));
    }
    // The diversity filter is quadratic in a deep MSA's rows: queries in parallel.
    files
        .par_chunks_mut(2)
        .zip(queries.par_iter().zip(&results))
        .for_each(|(pair, (q, result))| {
            let name = &q.query.name;
            pair[0].1 = filtered_a3m(name, &q.letters, &q.query.codes, result, &db, &filter);
            pair[1].1 = hit_table(&result.hits, &db);
        });
    let borrowed: Vec<(&Path, &[u8])> = files
        .iter()
        .map(|(p, s)| (p.as_path(), s.as_bytes()))
        .collect();
    write_atomic_all(&borrowed)?;
    eprintln!(
        "searched {} quer{} in {:.1} s; results in {}",
        queries.len(),
        if queries.len() == 1 { "y" } else { "ies" },
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

/// The MSA of one sequence from a database with the default search (AlphaFold2's
/// `predict --db`), as A3M text with the query first.
pub fn msa_for(name: &str, sequence: &str, db_path: &Path) -> Result<String> {
    let codes = encode(sequence.as_bytes())
        .map_err(|problem| anyhow::anyhow!("record {name:?}: {problem}"))?;
    let db = Database::open(db_path)?;
    let query = Query {
        name: name.to_string(),
        codes,
    };
    let progress = PassBar(bar(
        db.len() as u64,
        "{spinner} MSA search, {msg} {pos}/{len} targets [{elapsed_precise}] {wide_bar}",
    ));
    let params = SearchParams::default();
    let results = search(&db, std::slice::from_ref(&query), &params, &progress);
    progress.0.finish_and_clear();
    let letters = query_letters(sequence);
    eprintln!(
        "{name}: {} MSA hits in {}",
        results[0].hits.len(),
        db_path.display()
    );
    Ok(filtered_a3m(
        name,
        &letters,
        &query.codes,
        &results[0],
        &db,
        &DiversityFilter::default(),
    ))
}
