//! The CUDA backend inside the whole AlphaFold2 model: model_1_ptm against the official JAX
//! model within the CPU backend's tolerances (af2_golden), on the emulated device (every
//! kernel's own source run on the CPU, kernels/tests/cuda_backend) and on GPU 0 where there is
//! one (`FERROFOLD_REQUIRE_GPU=1` makes its absence a failure, for `benches/gpu_check.sh`).
#![cfg(feature = "cuda")]

#[path = "../kernels/tests/cuda_backend/emulator/mod.rs"]
mod emulator;

mod af2_golden;

use ferrofold_kernels::cuda::{CudaBackend, CudaDevice};

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
