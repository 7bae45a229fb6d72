//! The CUDA backend inside the whole AlphaFold2 model: model_1_ptm against the official JAX
//! model within the CPU backend's tolerances (af2_golden), on the emulated device (every
//! kernel's own source run on the CPU, kernels/tests/cuda_backend) and on GPU 0 where there is
//! one (`FERROFOLD_REQUIRE_GPU=1` makes its absence a failure, for `benches/gpu_check.sh`).
#![cfg(feature = "cuda")]

#[path = "../kernels/tests/cuda_backend/emulator/mod.rs"]
mod emulator;

mod af2_golden;

use std::sync::Arc;

use ferrofold_engine::af2::config::ModelConfig;
use ferrofold_engine::af2::model::AlphaFold;
use ferrofold_engine::af2::pipeline::{build_features, PipelineConfig};
use ferrofold_io::a3m::parse_a3m;
use ferrofold_io::weights::load_npz;
use ferrofold_kernels::cuda::{CudaBackend, CudaDevice, DryRunDevice};

#[test]
#[ignore = "needs the random AF2 parameters: run tools/test.sh (sets FERROFOLD_AF2_PARAMS)"]
fn model_1_ptm_on_the_emulated_cuda_backend_matches_jax() {
    // Chunks of 50 000 floats: the 24-residue model's attention then runs in chunks of rows,
    // stacked on the device, and the backend's GEMM attention in chunks of batch rows.
    let backend = CudaBackend::new(emulator::EmulatedDevice).with_chunk_elements(50_000);
    af2_golden::model_1_ptm_matches_jax(&backend);
}

#[test]
#[ignore = "needs the random AF2 parameters: run tools/test.sh (sets FERROFOLD_AF2_PARAMS)"]
fn model_1_ptm_on_gpu_0_matches_jax() {
    match CudaDevice::new(0) {
        Ok(device) => af2_golden::model_1_ptm_matches_jax(&CudaBackend::new(device)),
        Err(e) => {
            let required = std::env::var("FERROFOLD_REQUIRE_GPU").is_ok_and(|v| v == "1");
            assert!(!required, "FERROFOLD_REQUIRE_GPU=1 but no CUDA device: {e}");
            eprintln!("no GPU, nothing checked: {e}");
        }
    }
}

/// What crosses between host and device in a whole prediction, counted on the dry-run device
/// (no kernel runs): nothing pair-sized comes down (the largest download is the aligned
/// error's `[L, L, 2]` or a per-residue tensor), and a further iteration moves less than one
/// pair tensor each way (its features up, the structure module's per-residue tensors down).
/// With a 24-row MSA and model_1's padding template, so the MSA, extra-MSA and template paths
/// all run.
#[test]
#[ignore = "needs the random AF2 parameters: run tools/test.sh (sets FERROFOLD_AF2_PARAMS)"]
fn a_prediction_keeps_its_activations_on_the_device() {
    let params = std::env::var("FERROFOLD_AF2_PARAMS").expect("FERROFOLD_AF2_PARAMS");
    let config = ModelConfig::by_name("model_1_ptm").unwrap();
    let l = 256;
    let query: String = (0..l)
        .map(|i| b"ACDEFGHIKLMNPQRSTVWY"[(i * 7 + i / 3) % 20] as char)
        .collect();
    let mut a3m = format!(">query\n{query}\n");
    for r in 1..24 {
        let row: String = query
            .bytes()
            .enumerate()
            .map(|(i, c)| {
                (if (i + r) % 3 == 0 {
                    b'A' + (r % 20) as u8
                } else {
                    c
                }) as char
            })
            .collect();
        a3m.push_str(&format!(">row{r}\n{row}\n"));
    }
    let msa = parse_a3m(&a3m, "rows").unwrap();
    let traffic = |recycles: usize| {
        let model = AlphaFold::load(Arc::new(load_npz(&params).unwrap()), config.clone()).unwrap();
        let mut cfg = PipelineConfig::for_model(&config, 0, true);
        cfg.num_recycle = recycles;
        let features = build_features(&query, Some(&msa), &cfg).unwrap();
        let backend = CudaBackend::new(DryRunDevice::new(80 << 30));
        model.predict(&backend, &features, recycles).unwrap();
        backend.device().traffic()
    };
    let (one, two) = (traffic(0), traffic(1));
    eprintln!("one iteration: {one:?}\ntwo iterations: {two:?}");
    let floats = |n: usize| (n * 4) as u64;
    let largest = floats((2 * l * l).max(512 * l));
    assert!(one.largest_download_bytes <= largest, "{one:?}");
    let pair = floats(l * l * 128);
    let (up, down) = (
        two.upload_bytes - one.upload_bytes,
        two.download_bytes - one.download_bytes,
    );
    assert!(up < pair, "uploads per iteration: {up} B");
    assert!(down < pair, "downloads per iteration: {down} B");
}
