//! The CUDA backend (issue 5), behind the `cuda` cargo feature: [`CudaBackend`], the op
//! interface on a [`Device`] — [`CudaDevice`] on a GPU (cudarc: driver, cuBLAS, NVRTC), or the
//! tests' CPU emulation — a device probe that never panics, the CUDA C sources of the
//! hand-written kernels (`kernels/cuda/`) and their run-time compilation with NVRTC. Every CUDA
//! library is loaded at run time (cudarc's `dynamic-loading`), so this builds on machines with
//! no CUDA toolkit and no driver.
//!
//! The kernels' CPU twins (the exact maths they must reproduce) are the CPU backend's ops: the
//! streaming path of its `gated_attention` is the attention kernel's tiled online softmax.
//! Without a GPU, `kernels/tests/cuda_backend` runs the kernels' own source on the CPU (each
//! block's threads as fibers, `kernels/tests/cuda_backend/emulator`) against those twins, and
//! the root crate's `af2_cuda` and `igfold_cuda_emulated` tests run whole models so (af2_cuda on GPU 0 too).

mod backend;
pub mod device;
mod dry_run;
mod gpu;
pub mod nvrtc;
pub mod probe;
pub mod sources;

pub use backend::{AttentionPath, CudaBackend};
pub use device::{bf16_at, Arg, Device, DeviceError, Gemm, Storage};
pub use dry_run::{DryRunBuffer, DryRunDevice, Traffic};
pub use gpu::{CudaDevice, GemmPrecision, GpuBuffer};
pub use probe::{cuda_available, cuda_device, driver_library_present, DeviceInfo, NoDevice};
