//! The CUDA backend's device memory for AlphaFold2 on long single sequences, without a GPU:
//! the whole model runs on a dry-run device that counts every buffer the backend allocates
//! (weights, activations, chunks) and runs no kernel, so the peak is what a GPU would need
//! with the backend's chunk sizes for `--free-gib` of free memory (issue 5: 4096 residues on
//! one H200). The values themselves are zeros and meaningless. It also counts what crosses
//! between host and device, the kernel launches and the GEMMs, and times the host's own work
//! (the device's is none). `--msa-rows N` gives the query an MSA of N mutated copies (the MSA
//! and extra-MSA stacks then run at full depth from N = 5 632 on); `--bf16` stores values in
//! bf16 (`--precision bf16`).
//!
//!     cargo run --release --features cuda --example gpu_memory_plan -- \
//!         --params params_model_1_ptm.npz [--free-gib 139] [--recycles 0] [--msa-rows 0] \
//!         [--bf16] 1024 2048 4096

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ferrofold_engine::af2::config::ModelConfig;
use ferrofold_engine::af2::model::AlphaFold;
use ferrofold_engine::af2::pipeline::{build_features, PipelineConfig};
use ferrofold_io::a3m::{parse_a3m, A3m};
use ferrofold_io::weights::load_npz;
use ferrofold_kernels::cuda::{CudaBackend, DryRunDevice, Storage};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut params, mut free_gib, mut recycles, mut lengths) = (None, 139.0f64, 0, Vec::new());
    let (mut msa_rows, mut storage) = (0usize, Storage::F32);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--params" => params = args.next(),
            "--free-gib" => free_gib = args.next().context("--free-gib N")?.parse()?,
            "--recycles" => recycles = args.next().context("--recycles N")?.parse()?,
            "--msa-rows" => msa_rows = args.next().context("--msa-rows N")?.parse()?,
            "--bf16" => storage = Storage::Bf16,
            length => lengths.push(length.parse::<usize>().context("lengths are residues")?),
        }
    }
    let Some(params) = params else {
        bail!(
            "usage: gpu_memory_plan --params PARAMS.npz [--free-gib N] [--recycles N] \
             [--msa-rows N] [--bf16] L..."
        )
    };
    let config = ModelConfig::by_name("model_1_ptm").map_err(anyhow::Error::msg)?;
    let free = (free_gib * (1u64 << 30) as f64) as usize;
    println!(
        "| L | MSA rows | storage | device peak GiB | of {free_gib} GiB free | host s | uploads \
         (GB) | downloads (GB) | kernels | GEMMs |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for l in lengths {
        // A fixed, varied sequence: the memory does not depend on the residues.
        let sequence: String = (0..l)
            .map(|i| b"ACDEFGHIKLMNPQRSTVWY"[(i * 7 + i / 3) % 20] as char)
            .collect();
        let mut cfg = PipelineConfig::for_model(&config, 0, true);
        cfg.num_recycle = recycles;
        let msa = (msa_rows > 0)
            .then(|| mutated_copies(&sequence, msa_rows))
            .transpose()?;
        let features = build_features(&sequence, msa.as_ref(), &cfg)?;
        // A model per device: the weights keep their uploads to the device they first met.
        let model = AlphaFold::load(Arc::new(load_npz(&params)?), config.clone())?;
        let backend = CudaBackend::new(DryRunDevice::new(free)).with_storage(storage);
        let start = Instant::now();
        model.predict(&backend, &features, recycles)?;
        let host_s = start.elapsed().as_secs_f64();
        let device = backend.device();
        let peak = device.peak_bytes() as f64 / (1u64 << 30) as f64;
        let t = device.traffic();
        let gb = |bytes: u64| bytes as f64 / 1e9;
        println!(
            "| {l} | {msa_rows} | {} | {peak:.1} | {:.0} % | {host_s:.1} | {} ({:.2}) | {} ({:.2}) | {} | {} |",
            storage.suffix(),
            100.0 * peak / free_gib,
            t.uploads,
            gb(t.upload_bytes),
            t.downloads,
            gb(t.download_bytes),
            t.launches,
            t.gemms
        );
    }
    Ok(())
}

/// An MSA of the query and `rows - 1` copies with about a third of their residues changed
/// (a fixed pattern per row).
fn mutated_copies(query: &str, rows: usize) -> Result<A3m> {
    const AMINO: &[u8] = b"ACDEFGHIKLMNPQRSTVWY";
    let mut text = format!(">query\n{query}\n");
    for r in 1..rows {
        let row: String = query
            .bytes()
            .enumerate()
            .map(|(i, c)| {
                let h = (i * 31 + r * 17) % 97;
                (if h % 3 == 0 { AMINO[(h + r) % 20] } else { c }) as char
            })
            .collect();
        text.push_str(&format!(">copy_{r}\n{row}\n"));
    }
    Ok(parse_a3m(&text, "mutated copies")?)
}
