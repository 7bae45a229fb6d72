//! `ferrofold db build-templates DIR TEMPLATE_DB`: the template library from a folder of
//! mmCIF/PDB files (gzipped or not); the template search behind `predict --templates` and
//! `ferrofold search-templates`; `ferrofold db export-template`.

use anyhow::{bail, Context, Result};
use clap::Args;
use ferrofold_engine::af2::features::TemplateFeatures as ModelTemplateFeatures;
use ferrofold_engine::af2::output::to_structure;
use ferrofold_engine::af2::templates::featurize::{af_aatype, template_batch, TemplateFeatures};
use ferrofold_engine::af2::templates::library::{build_from_dir, write_library, TemplateLibrary};
use ferrofold_engine::af2::templates::search::{
    parse_date, search_templates, Exclusions, Skip, TemplateHit, TemplateSearch,
    TemplateSearchParams,
};
use ferrofold_io::a3m::{read_a3m, A3m};
use ferrofold_io::atomic::{safe_output_path, write_atomic_all};
use ferrofold_io::fasta::read_fasta;
use ferrofold_io::pdb::write_pdb;
use ferrofold_kernels::Tensor;
use ferrofold_msa::alphabet::query_letters;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Builds the library; skipped files and chains go to stderr with their reason.
pub fn db_build_templates(dir: &Path, db: &Path) -> Result<()> {
    let report = build_from_dir(dir)?;
    for (what, why) in &report.skipped {
        eprintln!("skipped {what}: {why}");
    }
    for (what, why) in &report.notes {
        eprintln!("note {what}: {why}");
    }
    if report.entries.is_empty() {
        bail!(
            "no protein chain found in {} ({} structure files read, {} skipped)",
            dir.display(),
            report.files_seen,
            report.skipped.len()
        );
    }
    write_library(db, &report.entries)?;
    let residues: usize = report.entries.iter().map(|e| e.len()).sum();
    eprintln!(
        "template library {}: {} chains ({residues} residues) from {} structure files; {} files or chains skipped; {} chains kept with a note",
        db.display(),
        report.entries.len(),
        report.files_seen,
        report.skipped.len(),
        report.notes.len()
    );
    Ok(())
}

/// AlphaFold2's template search from the command line: the library, the date cutoff and the
/// exclusion list, checked before anything slow runs.
pub struct TemplateSetup {
    pub library: TemplateLibrary,
    pub path: PathBuf,
    pub params: TemplateSearchParams,
}

/// Checks `--max-template-date` and `--exclude-templates` and opens the library; `None`
/// when no library is given (then the other two must be absent too).
pub fn setup(
    library: Option<&Path>,
    max_template_date: Option<&str>,
    exclude: Option<&str>,
) -> Result<Option<TemplateSetup>> {
    let Some(path) = library else {
        if max_template_date.is_some() || exclude.is_some() {
            bail!("--max-template-date and --exclude-templates need --templates TEMPLATE_DB");
        }
        return Ok(None);
    };
    let mut params = TemplateSearchParams::default();
    if let Some(date) = max_template_date {
        params.max_template_date = Some(parse_date(date).context("--max-template-date")?);
    }
    if let Some(spec) = exclude {
        params.exclude = Exclusions::from_arg(spec).context("--exclude-templates")?;
    }
    let library = TemplateLibrary::open(path)
        .with_context(|| format!("template library {}", path.display()))?;
    if library.is_empty() {
        bail!("template library {} has no entries", path.display());
    }
    Ok(Some(TemplateSetup {
        library,
        path: path.to_path_buf(),
        params,
    }))
}

/// One chosen template as the output JSON lists it.
#[derive(Serialize, Clone, Debug)]
pub struct TemplateInfo {
    /// `1abc_A`.
    pub id: String,
    pub pdb_id: String,
    pub chain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub release_date: Option<String>,
    /// Identical residues over alignment columns (gaps included).
    pub identity: f64,
    /// Query residues aligned to a template residue, over the query length.
    pub coverage: f64,
    pub evalue: f64,
    pub bits: f64,
    /// Aligned ranges, 1-based inclusive.
    pub query_start: usize,
    pub query_end: usize,
    pub template_start: usize,
    pub template_end: usize,
}

impl TemplateInfo {
    pub fn of(hit: &TemplateHit) -> Self {
        Self {
            id: hit.id.clone(),
            pdb_id: hit.pdb_id.clone(),
            chain: hit.chain_id.clone(),
            release_date: hit.release_date.clone(),
            identity: hit.identity,
            coverage: hit.coverage,
            evalue: hit.evalue,
            bits: hit.bits,
            query_start: hit.alignment.query_start + 1,
            query_end: hit.alignment.query_end + 1,
            template_start: hit.alignment.target_start + 1,
            template_end: hit.alignment.target_end + 1,
        }
    }
}

/// Runs the search for one query and logs what it chose and passed over.
pub fn find_templates(
    setup: &TemplateSetup,
    name: &str,
    sequence: &str,
    msa: Option<&A3m>,
) -> Result<TemplateSearch> {
    let start = Instant::now();
    let found = search_templates(&setup.library, sequence, msa, &setup.params)
        .with_context(|| format!("template search for {name:?}"))?;
    let used = found.used(setup.params.max_templates);
    eprintln!(
        "{name}: {} template hits within E {} in {} ({} chains) in {:.1} s; using {}",
        found.significant,
        setup.params.evalue,
        setup.path.display(),
        setup.library.len(),
        start.elapsed().as_secs_f64(),
        if used.is_empty() {
            "none".to_string()
        } else {
            used.iter()
                .map(|h| {
                    format!(
                        "{} ({:.0} % id, E {:.1e})",
                        h.id,
                        h.identity * 100.0,
                        h.evalue
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    let skipped_reasons: Vec<String> = found
        .skipped
        .iter()
        .filter(|(_, why)| !matches!(why, Skip::Excluded))
        .take(5)
        .map(|(id, why)| format!("{id}: {why}"))
        .collect();
    if !skipped_reasons.is_empty() {
        eprintln!(
            "{name}: templates passed over: {}",
            skipped_reasons.join("; ")
        );
    }
    if found.undated_kept > 0 {
        eprintln!(
            "{name}: note: {} library entries have no release date; --max-template-date cannot check them and keeps them",
            found.undated_kept
        );
    }
    Ok(found)
}

/// The model's template features (first `max_templates` hits, unpadded as AF2's
/// features.pkl path in `predict` gives them); `None` without hits.
pub fn model_features(
    found: &TemplateSearch,
    query_len: usize,
    max_templates: usize,
) -> Option<ModelTemplateFeatures> {
    let used = found.used(max_templates);
    if used.is_empty() {
        return None;
    }
    let feats: Vec<_> = used.iter().map(|h| h.features.clone()).collect();
    let b = template_batch(&feats, query_len, max_templates, false);
    let t = b.num_templates();
    Some(ModelTemplateFeatures {
        aatype: Tensor::new(
            &[t, query_len],
            b.aatype.iter().map(|&a| a as f32).collect(),
        )
        .expect("[T, L]"),
        all_atom_positions: b.all_atom_positions,
        all_atom_masks: b.all_atom_masks,
        mask: Tensor::new(&[t], b.template_mask).expect("[T]"),
        pseudo_beta: b.pseudo_beta,
        pseudo_beta_mask: b.pseudo_beta_mask,
    })
}

/// PDB text of a template's backbone (N, CA, C, O) placed on the query's residue numbering
/// (residue `i` of the query is residue `i + 1`), with the query's residue names.
pub fn template_backbone_pdb(query: &str, f: &TemplateFeatures) -> Result<String> {
    let l = f.aatype.len();
    let aatype: Vec<usize> = query.bytes().map(af_aatype).collect();
    let mut mask = f.all_atom_masks.clone();
    for r in 0..l {
        for a in 0..37 {
            if ![0, 1, 2, 4].contains(&a) {
                mask[r * 37 + a] = 0.0;
            }
        }
    }
    atoms_pdb(&aatype, &f.all_atom_positions, &mask)
}

fn atoms_pdb(aatype: &[usize], positions: &[f32], masks: &[f32]) -> Result<String> {
    let l = aatype.len();
    let index: Vec<i64> = (0..l as i64).collect();
    let s = to_structure(
        aatype,
        &index,
        &Tensor::new(&[l, 37, 3], positions.to_vec())?,
        &Tensor::new(&[l, 37], masks.to_vec())?,
        &vec![0.0; l],
    );
    Ok(write_pdb(&s)?)
}

/// `ferrofold db export-template TEMPLATE_DB ID OUT.pdb`: one library chain as PDB, residues
/// numbered 1..N along the entry's sequence (what a template search aligns to).
pub fn export_template(db: &Path, id: &str, out: &Path) -> Result<()> {
    let library = TemplateLibrary::open(db)?;
    let i = library
        .find(id)
        .with_context(|| format!("{}: no entry {id:?}", db.display()))?;
    let e = library.get(i)?;
    let aatype: Vec<usize> = e.info.sequence.bytes().map(af_aatype).collect();
    let pdb = atoms_pdb(&aatype, &e.positions, &e.masks)?;
    write_atomic_all(&[(out, pdb.as_bytes())])?;
    Ok(())
}

#[derive(Args)]
pub struct SearchTemplatesArgs {
    /// FASTA file of queries (one template search per record).
    queries: PathBuf,
    /// Template library from `ferrofold db build-templates`.
    templates: PathBuf,
    /// Output folder: <query>.templates.json per query.
    #[arg(long)]
    out: PathBuf,
    /// A3M MSA of the query (single-record FASTA only) for the search profile.
    #[arg(long)]
    msa: Option<PathBuf>,
    /// Leave out entries released after this date (YYYY-MM-DD).
    #[arg(long)]
    max_template_date: Option<String>,
    /// PDB ids (1abc) or chains (1abc_A) to leave out: a comma-separated list or a file.
    #[arg(long)]
    exclude_templates: Option<String>,
    /// Also write <query>.template_<k>.pdb: each used template's backbone on the query's
    /// residue numbering.
    #[arg(long)]
    write_pdb: bool,
    /// Worker threads (default: all cores; at most four per core).
    #[arg(long)]
    pub threads: Option<usize>,
}

#[derive(Serialize)]
struct SearchJson<'a> {
    name: &'a str,
    length: usize,
    significant_hits: usize,
    /// Featurized hits in rank order (AF2 keeps up to 20); the model reads the first 4.
    templates: Vec<TemplateInfo>,
    skipped: Vec<(String, String)>,
}

/// `ferrofold search-templates QUERIES.fasta TEMPLATE_DB --out DIR`.
pub fn run_search(args: &SearchTemplatesArgs) -> Result<()> {
    let setup = setup(
        Some(&args.templates),
        args.max_template_date.as_deref(),
        args.exclude_templates.as_deref(),
    )?
    .expect("a library was given");
    let records = read_fasta(&args.queries)?;
    if args.msa.is_some() && records.len() != 1 {
        bail!("--msa needs a FASTA file with one record");
    }
    let msa = args.msa.as_ref().map(read_a3m).transpose()?;
    crate::check_record_names(
        &args.queries,
        &args.out,
        records.iter().map(|r| r.name.as_str()),
        &["templates.json"],
    )?;
    crate::prepare_output_dir(&args.out)?;
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    for r in &records {
        let query = query_letters(&r.sequence);
        let found = find_templates(&setup, &r.name, &query, msa.as_ref())?;
        let json = SearchJson {
            name: &r.name,
            length: query.len(),
            significant_hits: found.significant,
            templates: found.hits.iter().map(TemplateInfo::of).collect(),
            skipped: found
                .skipped
                .iter()
                .map(|(id, why)| (id.clone(), why.to_string()))
                .collect(),
        };
        files.push((
            safe_output_path(&args.out, &r.name, "templates.json")?,
            serde_json::to_string_pretty(&json)?,
        ));
        if args.write_pdb {
            for (k, h) in found.used(setup.params.max_templates).iter().enumerate() {
                files.push((
                    safe_output_path(&args.out, &r.name, &format!("template_{}.pdb", k + 1))?,
                    template_backbone_pdb(&query, &h.features)?,
                ));
            }
        }
    }
    let borrowed: Vec<(&Path, &[u8])> = files
        .iter()
        .map(|(p, s)| (p.as_path(), s.as_bytes()))
        .collect();
    write_atomic_all(&borrowed)?;
    Ok(())
}
