//! The CUDA backend inside the whole AlphaFold2 model, without a GPU: model_1_ptm on the
//! emulated device (every kernel's own source run on the CPU, kernels/tests/cuda_backend)
//! against the official JAX model within the CPU backend's tolerances (af2_golden).
#![cfg(feature = "cuda")]

#[path = "../kernels/tests/cuda_backend/emulator/mod.rs"]
mod emulator;

mod af2_golden;

use ferrofold_kernels::cuda::CudaBackend;

#[test]
#[ignore = "needs the random AF2 parameters: run tools/test.sh (sets FERROFOLD_AF2_PARAMS)"]
fn model_1_ptm_on_the_emulated_cuda_backend_matches_jax() {
    af2_golden::model_1_ptm_matches_jax(&CudaBackend::new(emulator::EmulatedDevice));
}
