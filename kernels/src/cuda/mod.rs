//! The CUDA backend's first slice (issue 5), behind the `cuda` cargo feature: a device
//! probe that never panics, the CUDA C sources of the hand-written kernels and their
//! run-time compilation with NVRTC. Every CUDA library is loaded at run time (cudarc's
//! `dynamic-loading`), so this builds on machines with no CUDA toolkit and no driver.
//!
//! The kernels' CPU twins (the exact maths they must reproduce) are the CPU backend's
//! `layer_norm`, the trait's `masked_softmax` and the streaming path of the CPU
//! `gated_attention` (the kernel's tiled online softmax; the CPU's GEMM path computes the
//! same values another way). Without a GPU, `kernels/tests/cuda_backend` runs the
//! kernels' own source on the CPU (each block's threads as fibers, `kernels/tests/cuda_backend/emulator`)
//! against those twins.

mod backend;
pub mod device;
mod gpu;
pub mod nvrtc;
pub mod probe;
pub mod sources;

pub use backend::CudaBackend;
pub use device::{Arg, Device, DeviceError, Gemm};
pub use gpu::CudaDevice;
pub use probe::{cuda_available, cuda_device, driver_library_present, DeviceInfo, NoDevice};
