//! `ferrofold predict --model igfold`: validate every record, make sure the weights are
//! there, load the model once, fold each record and write its files atomically.

use crate::device::{DeviceSpec, Precision};
use anyhow::{Context, Result};
use ferrofold_engine::igfold::antibody::{parse_antibody, Antibody};
use ferrofold_engine::igfold::ensemble::{IgFold, Prediction};
use ferrofold_engine::igfold::output::{to_json, to_structure};
use ferrofold_engine::igfold::weights::{
    ferrofold_home, fetch_igfold, igfold_dir, igfold_weights_present,
};
use ferrofold_io::atomic::{safe_output_path, write_atomic_all};
use ferrofold_io::fasta::read_fasta;
use ferrofold_io::{mmcif::write_mmcif, pdb::write_pdb};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct Options {
    pub input: PathBuf,
    pub out: PathBuf,
    pub weights: Option<PathBuf>,
    pub device: DeviceSpec,
    pub precision: Option<Precision>,
}

/// The files written per antibody.
const OUTPUTS: [&str; 3] = ["pdb", "cif", "json"];

pub fn run(opts: &Options) -> Result<()> {
    // Everything that can be checked is checked before any file is written.
    let records = read_fasta(&opts.input)?;
    let antibodies = records
        .iter()
        .map(parse_antibody)
        .collect::<Result<Vec<Antibody>, String>>()
        .map_err(anyhow::Error::msg)?;
    crate::check_record_names(
        &opts.input,
        &opts.out,
        antibodies.iter().map(|ab| ab.name.as_str()),
        &OUTPUTS,
    )?;
    let backend = crate::device::backend(opts.device, opts.precision)?;
    let dir = match &opts.weights {
        Some(d) => d.clone(),
        None => {
            let dir = igfold_dir(&ferrofold_home()?);
            if !igfold_weights_present(&dir) {
                eprintln!(
                    "IgFold weights not found in {}: fetching them now",
                    dir.display()
                );
                fetch_igfold(&dir, None)?;
            }
            dir
        }
    };
    let t = Instant::now();
    let model = IgFold::load(&dir)?;
    eprintln!("model loaded in {:.2} s", t.elapsed().as_secs_f64());
    crate::prepare_output_dir(&opts.out)?;

    let bar = ProgressBar::new(antibodies.len() as u64).with_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .expect("valid progress template"),
    );
    let start = Instant::now();
    for ab in &antibodies {
        bar.set_message(ab.name.clone());
        let prediction = crate::device::on_device(|| model.fold(backend.as_ref(), ab))
            .with_context(|| format!("record `{}`", ab.name))?;
        write_outputs(&prediction, ab, &opts.out)
            .with_context(|| format!("record `{}`", ab.name))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!(
        "folded {} antibod{} in {:.1} s; results in {}",
        antibodies.len(),
        if antibodies.len() == 1 { "y" } else { "ies" },
        start.elapsed().as_secs_f64(),
        opts.out.display()
    );
    Ok(())
}

/// Writes `<record>.pdb`, `.cif` and `.json` together: all three or none.
fn write_outputs(pred: &Prediction, ab: &Antibody, out: &Path) -> Result<()> {
    let structure = to_structure(ab, pred);
    let pdb = write_pdb(&structure)?;
    let cif = write_mmcif(&structure, &ab.name)?;
    let json = serde_json::to_string_pretty(&to_json(ab, pred))?;
    let paths = OUTPUTS.map(|ext| safe_output_path(out, &ab.name, ext));
    let [p, c, j] = paths;
    let (p, c, j) = (p?, c?, j?);
    write_atomic_all(&[
        (p.as_path(), pdb.as_bytes()),
        (c.as_path(), cif.as_bytes()),
        (j.as_path(), json.as_bytes()),
    ])?;
    Ok(())
}
