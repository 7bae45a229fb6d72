//! `ferrofold predict --model model_N[_ptm]`: AlphaFold2 from an official parameter file and
//! processed features; writes the structure, the confidence JSON and optionally every output.

use crate::PredictArgs;
use anyhow::{bail, Context, Result};
use ferrofold_engine::af2::config::ModelConfig;
use ferrofold_engine::af2::features::{load_processed_features, Features};
use ferrofold_engine::af2::model::{estimate_peak_bytes, AlphaFold, Prediction};
use ferrofold_engine::af2::output::{plddt_categories, to_structure};
use ferrofold_engine::af2::pipeline::raw::from_raw_features;
use ferrofold_engine::af2::pipeline::{build_features, PipelineConfig};
use ferrofold_io::a3m::{parse_a3m, read_a3m};
use ferrofold_io::atomic::{safe_output_path, write_atomic_all};
use ferrofold_io::fasta::read_fasta;
use ferrofold_io::mmcif::write_mmcif_with;
use ferrofold_io::pdb::write_pdb;
use ferrofold_io::pickle_arrays::load_numpy_pickle;
use ferrofold_io::weights::{load_npz, npz_bytes};
use ferrofold_kernels::Tensor;
use serde::Serialize;
use std::time::Instant;

#[derive(Serialize)]
struct ResultJson<'a> {
    name: &'a str,
    model: &'a str,
    mean_plddt: f32,
    plddt: &'a [f32],
    #[serde(skip_serializing_if = "Option::is_none")]
    ptm: Option<f32>,
    /// Expected position error (Å) of residue j when aligned on residue i.
    #[serde(skip_serializing_if = "Option::is_none")]
    predicted_aligned_error: Option<Vec<Vec<f32>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_predicted_aligned_error: Option<f32>,
    /// With --templates: the templates the model read (id, chain, identity, coverage, E-value).
    #[serde(skip_serializing_if = "Option::is_none")]
    templates: Option<Vec<crate::templates_cmd::TemplateInfo>>,
    timings: Timings,
}

#[derive(Serialize)]
struct Timings {
    load_params_s: f64,
    load_model_s: f64,
    iterations_s: Vec<f64>,
    total_s: f64,
}

pub fn run(args: &PredictArgs, config: ModelConfig) -> Result<()> {
    let params = args
        .params
        .as_ref()
        .context("AlphaFold2 needs --params (the official params_model_N.npz)")?;
    let recycles = args.recycles.unwrap_or(config.num_recycle);
    let backend = crate::device::backend(args.device, args.precision)?;
    let inputs = [
        args.features.is_some(),
        args.features_pkl.is_some(),
        args.input.is_some(),
    ];
    if inputs.iter().filter(|x| **x).count() > 1 {
        bail!("give one of a FASTA file, --features or --features-pkl");
    }
    if args.templates.is_some() && args.input.is_none() {
        bail!("--templates needs a FASTA input (--features and --features-pkl carry their own templates)");
    }
    let mut templates_used = None;
    let (name, features) = match (&args.features, &args.input) {
        (None, None) if args.features_pkl.is_some() => {
            let path = args.features_pkl.as_ref().expect("checked");
            features_from_pickle(args, &config, path, recycles)?
        }
        (Some(path), None) => {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .context("the features file needs a name")?
                .trim_end_matches(".features")
                .to_string();
            safe_output_path(&args.out, &name, "pdb")?;
            let features = load_processed_features(path)?;
            if features.is_empty() || features[0].is_empty() {
                bail!("{}: no residues", path.display());
            }
            (name, features)
        }
        (None, Some(fasta)) => {
            let (name, features, used) = features_from_fasta(args, &config, fasta, recycles)?;
            templates_used = used;
            (name, features)
        }
        (Some(_), Some(_)) => unreachable!("checked above"),
        (None, None) => {
            bail!("AlphaFold2 needs a FASTA file, --features FILE.npz or --features-pkl FILE.pkl")
        }
    };
    if config.templates && features[0].templates.is_none() {
        eprintln!(
            "{name}: no template features; {} runs without templates",
            config.name
        );
    }

    check_memory(&name, &features[0], 0)?; // up front, before the parameter file is read
    let start = Instant::now();
    let store = load_npz(params)?;
    if store.resident_bytes() > 0 {
        // a compressed parameter file is decoded whole on opening
        check_memory(&name, &features[0], store.resident_bytes())?;
    }
    let load_params_s = start.elapsed().as_secs_f64();
    let t = Instant::now();
    let model = AlphaFold::load(std::sync::Arc::new(store), config)?;
    let load_model_s = t.elapsed().as_secs_f64();
    eprintln!(
        "{} loaded in {:.1} s",
        model.config.name,
        start.elapsed().as_secs_f64()
    );
    crate::prepare_output_dir(&args.out)?;

    let pred = crate::device::on_device(|| model.predict(backend.as_ref(), &features, recycles))
        .with_context(|| format!("record `{name}`"))??;
    let f = &features[0];
    let structure = to_structure(
        &f.aatype,
        &f.residue_index,
        &pred.final_atom_positions,
        &pred.final_atom_mask,
        &pred.plddt,
    );
    let pdb = write_pdb(&structure)?;
    let cif = write_mmcif_with(
        &structure,
        &name,
        &plddt_categories(&structure, &pred.plddt),
    )?;
    let mean_plddt = pred.plddt.iter().sum::<f32>() / pred.plddt.len() as f32;
    let json = serde_json::to_string_pretty(&ResultJson {
        name: &name,
        model: &model.config.name,
        mean_plddt,
        plddt: &pred.plddt,
        ptm: pred.aligned_error.as_ref().map(|a| a.ptm),
        predicted_aligned_error: pred.aligned_error.as_ref().map(|a| {
            let pae = &a.predicted_aligned_error;
            let l = pae.dim(0);
            pae.data().chunks(l).map(<[f32]>::to_vec).collect()
        }),
        max_predicted_aligned_error: pred
            .aligned_error
            .as_ref()
            .map(|a| a.max_predicted_aligned_error),
        templates: templates_used,
        timings: Timings {
            load_params_s,
            load_model_s,
            iterations_s: pred.iteration_s.clone(),
            total_s: start.elapsed().as_secs_f64(),
        },
    })?;
    let paths =
        ["pdb", "cif", "json", "outputs.npz"].map(|ext| safe_output_path(&args.out, &name, ext));
    let [p, c, j, o] = paths;
    let (p, c, j, o) = (p?, c?, j?, o?);
    let npz_tmp;
    let mut files = vec![
        (p.as_path(), pdb.as_bytes()),
        (c.as_path(), cif.as_bytes()),
        (j.as_path(), json.as_bytes()),
    ];
    if args.save_outputs {
        npz_tmp = outputs_npz(&pred)?;
        files.push((o.as_path(), npz_tmp.as_slice()));
    }
    write_atomic_all(&files)?;
    eprintln!(
        "{name}: mean pLDDT {mean_plddt:.1}{} in {:.1} s; results in {}",
        pred.aligned_error
            .as_ref()
            .map_or(String::new(), |a| format!(", pTM {:.3}", a.ptm)),
        start.elapsed().as_secs_f64(),
        args.out.display()
    );
    Ok(())
}

/// The chosen templates of a FASTA input, for the JSON (`None` without `--templates`).
type TemplatesUsed = Option<Vec<crate::templates_cmd::TemplateInfo>>;

/// Features from the single record of `fasta`, the optional `--msa` A3M (or `--db` search)
/// and the optional `--templates` search, through our pipeline (AF2's sampling and masking,
/// seeded; or `--deterministic`).
fn features_from_fasta(
    args: &PredictArgs,
    config: &ModelConfig,
    fasta: &std::path::Path,
    recycles: usize,
) -> Result<(String, Vec<Features>, TemplatesUsed)> {
    let records = read_fasta(fasta)?;
    let [record] = records.as_slice() else {
        bail!(
            "{}: {} records; AlphaFold2 folds one sequence per run",
            fasta.display(),
            records.len()
        );
    };
    safe_output_path(&args.out, &record.name, "pdb")?;
    // Checked before a database search that would otherwise run first.
    ferrofold_engine::af2::pipeline::encode_query(&record.sequence)
        .with_context(|| format!("record `{}`", record.name))?;
    // Template arguments and the library, also checked before any search.
    let templates = crate::templates_cmd::setup(
        args.templates.as_deref(),
        args.max_template_date.as_deref(),
        args.exclude_templates.as_deref(),
    )?;
    let templates = match templates {
        Some(_) if !config.templates => {
            eprintln!(
                "{}: {} reads no templates; --templates is not searched",
                record.name, config.name
            );
            None
        }
        t => t,
    };
    let msa = match (&args.msa, &args.db) {
        (Some(path), _) => Some(read_a3m(path)?),
        (None, Some(db)) => {
            let text = crate::search_cmd::msa_for(&record.name, &record.sequence, db)?;
            Some(parse_a3m(&text, &format!("search of {}", db.display()))?)
        }
        (None, None) => None,
    };
    let mut cfg = PipelineConfig::for_model(config, args.seed, args.deterministic);
    cfg.num_recycle = recycles;
    let mut features = build_features(&record.sequence, msa.as_ref(), &cfg)
        .with_context(|| format!("record `{}`", record.name))?;
    let mut used = None;
    if let Some(setup) = &templates {
        let found = crate::templates_cmd::find_templates(
            setup,
            &record.name,
            &record.sequence,
            msa.as_ref(),
        )?;
        let max = setup.params.max_templates;
        let model = crate::templates_cmd::model_features(&found, features[0].len(), max);
        for f in &mut features {
            f.templates = model.clone();
        }
        used = Some(
            found
                .used(max)
                .iter()
                .map(crate::templates_cmd::TemplateInfo::of)
                .collect(),
        );
    }
    Ok((record.name.clone(), features, used))
}

/// Features from AF2's raw `features.pkl` (query, MSA, templates) through our pipeline.
fn features_from_pickle(
    args: &PredictArgs,
    config: &ModelConfig,
    path: &std::path::Path,
    recycles: usize,
) -> Result<(String, Vec<Features>)> {
    let name = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|s| s.to_str())
        .filter(|_| path.file_stem().is_some_and(|s| s == "features"))
        .or_else(|| path.file_stem().and_then(|s| s.to_str()))
        .context("the features file needs a name")?
        .to_string();
    safe_output_path(&args.out, &name, "pdb")?;
    let origin = path.display().to_string();
    let raw = from_raw_features(&load_numpy_pickle(path)?, &origin).map_err(anyhow::Error::msg)?;
    let mut cfg = PipelineConfig::for_model(config, args.seed, args.deterministic);
    cfg.num_recycle = recycles;
    let mut features = build_features(&raw.query, Some(&raw.msa), &cfg)?;
    for f in &mut features {
        f.templates = raw.templates.clone();
    }
    Ok((name, features))
}

/// Refuses up front an input whose estimated peak memory exceeds what the machine has
/// available (`MemAvailable`, or `FERROFOLD_MEMORY_LIMIT` bytes when set).
/// Refuses an input whose estimated peak memory exceeds what is available; `resident` is
/// what the parameter store already holds decoded (a compressed npz: all of it).
fn check_memory(name: &str, f: &Features, resident: u64) -> Result<()> {
    let rows = f.msa_feat.dim(0) + f.templates.as_ref().map_or(0, |t| t.mask.len());
    let need = estimate_peak_bytes(f.len(), rows, f.extra_msa.dim(0)) + PARAMS_BYTES + resident;
    let limit = match std::env::var("FERROFOLD_MEMORY_LIMIT") {
        Ok(v) => Some(
            v.parse::<u64>()
                .context("FERROFOLD_MEMORY_LIMIT must be bytes")?,
        ),
        Err(_) => available_memory(),
    };
    if let Some(limit) = limit.filter(|&limit| need > limit) {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        bail!(
            "{name}: {} residues with {rows} MSA and {} extra-MSA rows need about {:.1} GiB, \
             but {:.1} GiB are available; use fewer MSA rows or a machine with more memory",
            f.len(),
            f.extra_msa.dim(0),
            gib(need),
            gib(limit)
        );
    }
    Ok(())
}

/// The parameters held while predicting: 21 MiB outside the Evoformer stack and two of
/// its 48 blocks (7 MiB each; the stack is read from the file as it runs).
const PARAMS_BYTES: u64 = 48 << 20;

/// `MemAvailable` from /proc/meminfo, where there is one.
fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The `--save-outputs` arrays, as npz bytes.
fn outputs_npz(pred: &Prediction) -> Result<Vec<u8>> {
    let plddt = Tensor::new(&[pred.plddt.len()], pred.plddt.clone())?;
    let mut arrays: Vec<(&str, &Tensor)> = vec![
        ("final_atom_positions", &pred.final_atom_positions),
        ("final_atom_mask", &pred.final_atom_mask),
        ("plddt", &plddt),
        ("predicted_lddt_logits", &pred.predicted_lddt_logits),
        ("distogram_logits", &pred.distogram_logits),
        ("masked_msa_logits", &pred.masked_msa_logits),
        (
            "experimentally_resolved_logits",
            &pred.experimentally_resolved_logits,
        ),
        ("single", &pred.single),
        ("pair", &pred.pair),
    ];
    let ptm;
    if let (Some(a), Some(logits)) = (&pred.aligned_error, &pred.pae_logits) {
        ptm = Tensor::new(&[], vec![a.ptm])?;
        arrays.push(("predicted_aligned_error", &a.predicted_aligned_error));
        arrays.push(("predicted_aligned_error_logits", logits));
        arrays.push(("ptm", &ptm));
    }
    Ok(npz_bytes(&arrays)?)
}
