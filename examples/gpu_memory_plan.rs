//! The CUDA backend's device memory for AlphaFold2 on long single sequences, without a GPU:
//! the whole model runs on a dry-run device that counts every buffer the backend allocates
//! (weights, activations, chunks) and runs no kernel, so the peak is what a GPU would need
//! with the backend's chunk sizes for `--free-gib` of free memory (issue 5: 4096 residues on
//! one H200). The values themselves are zeros and meaningless.
//!
//!     cargo run --release --features cuda --example gpu_memory_plan -- \
//!         --params params_model_1_ptm.npz [--free-gib 139] [--recycles 0] 1024 2048 4096

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ferrofold_engine::af2::config::ModelConfig;
use ferrofold_engine::af2::model::AlphaFold;
use ferrofold_engine::af2::pipeline::{build_features, PipelineConfig};
use ferrofold_io::weights::load_npz;
use ferrofold_kernels::cuda::{CudaBackend, DryRunDevice};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut params, mut free_gib, mut recycles, mut lengths) = (None, 139.0f64, 0, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--params" => params = args.next(),
            "--free-gib" => free_gib = args.next().context("--free-gib N")?.parse()?,
            "--recycles" => recycles = args.next().context("--recycles N")?.parse()?,
            length => lengths.push(length.parse::<usize>().context("lengths are residues")?),
        }
    }
    let Some(params) = params else {
        bail!("usage: gpu_memory_plan --params PARAMS.npz [--free-gib N] [--recycles N] L...")
    };
    let config = ModelConfig::by_name("model_1_ptm").map_err(anyhow::Error::msg)?;
    let model = AlphaFold::load(Arc::new(load_npz(&params)?), config.clone())?;
    let free = (free_gib * (1u64 << 30) as f64) as usize;
    println!("| L | device peak GiB | of {free_gib} GiB free | host s |");
    println!("| --- | --- | --- | --- |");
    for l in lengths {
        // A fixed, varied sequence: the memory does not depend on the residues.
        let sequence: String = (0..l)
            .map(|i| b"ACDEFGHIKLMNPQRSTVWY"[(i * 7 + i / 3) % 20] as char)
            .collect();
        let mut cfg = PipelineConfig::for_model(&config, 0, true);
        cfg.num_recycle = recycles;
        let features = build_features(&sequence, None, &cfg)?;
        let backend = CudaBackend::new(DryRunDevice::new(free));
        let start = Instant::now();
        model.predict(&backend, &features, recycles)?;
        let peak = backend.device().peak_bytes() as f64 / (1u64 << 30) as f64;
        println!(
            "| {l} | {peak:.1} | {:.0} % | {:.0} |",
            100.0 * peak / free_gib,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
