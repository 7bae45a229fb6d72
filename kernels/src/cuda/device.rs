//! What the CUDA backend needs of a device: fp32 buffers, copies, kernel launches and
//! row-major batched GEMMs. [`CudaDevice`](super::CudaDevice) is the GPU (cudarc); the
//! tests' emulator implements the same trait on the CPU, running the kernels' own source, so
//! the backend above it is tested on machines with no GPU.

use super::sources::{AttentionArgs, Program};

/// Why a device operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(transparent)]
    NoDevice(#[from] super::NoDevice),
    #[error("CUDA driver: {0}")]
    Driver(String),
    #[error("NVRTC failed to compile {program} for {arch}: {log}")]
    Compile {
        program: &'static str,
        arch: String,
        log: String,
    },
    #[error("cuBLAS: {0}")]
    Blas(String),
}

/// One kernel parameter, in the kernel's exact C type.
#[derive(Clone, Debug)]
pub enum Arg {
    /// A device address ([`Device::address`]), or 0 for a null pointer.
    Ptr(u64),
    I32(i32),
    I64(i64),
    F32(f32),
    /// Boxed: the struct is 30 times the size of the other arguments.
    Attention(Box<AttentionArgs>),
}

/// A row-major GEMM over `batch` contiguous matrix pairs:
/// `c[i] = op(a[i]) op(b[i])`, `op(a)` `[m, k]`, `op(b)` `[k, n]`, `c[i]` `[m, n]`; `a[i]` is
/// stored `[m, k]`, or `[k, m]` when `trans_a` (likewise `b`), from its buffer's `offset`-th
/// value on. A batch stride of 0 shares one matrix across the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gemm {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub stride_a: usize,
    pub stride_b: usize,
    pub offset_a: usize,
    pub offset_b: usize,
}

impl Gemm {
    /// Contiguous batches of both operands.
    pub fn batched(
        batch: usize,
        m: usize,
        n: usize,
        k: usize,
        trans_a: bool,
        trans_b: bool,
    ) -> Gemm {
        Gemm {
            batch,
            m,
            n,
            k,
            trans_a,
            trans_b,
            stride_a: m * k,
            stride_b: k * n,
            offset_a: 0,
            offset_b: 0,
        }
    }
}

pub trait Device: Send + Sync + 'static {
    type Buffer: Send + Sync + 'static;

    fn upload(&self, data: &[f32]) -> Result<Self::Buffer, DeviceError>;
    fn zeros(&self, len: usize) -> Result<Self::Buffer, DeviceError>;
    /// A buffer of `len` values that are undefined until written: for outputs that a kernel
    /// or GEMM writes whole before anything reads them (no zeroing pass over the memory).
    fn uninit(&self, len: usize) -> Result<Self::Buffer, DeviceError>;
    fn download(&self, buffer: &Self::Buffer) -> Result<Vec<f32>, DeviceError>;
    /// A copy of values `range` of `buffer`, on the device.
    fn copy_range(
        &self,
        buffer: &Self::Buffer,
        range: std::ops::Range<usize>,
    ) -> Result<Self::Buffer, DeviceError>;
    /// `dst[offset..offset + n] = src`, `n` the values `src` holds.
    fn write_at(
        &self,
        dst: &mut Self::Buffer,
        offset: usize,
        src: &Self::Buffer,
    ) -> Result<(), DeviceError>;
    /// Free device memory in bytes, where the device knows it.
    fn free_memory(&self) -> Option<usize>;
    /// The buffer's device address, for [`Arg::Ptr`] and [`AttentionArgs`].
    fn address(&self, buffer: &Self::Buffer) -> u64;

    /// Runs `kernel` of `program` over `grid` blocks of `block` threads.
    ///
    /// # Safety
    /// `args` must be the kernel's parameters in order and type, and every buffer it reads or
    /// writes must hold what the arguments say.
    unsafe fn launch(
        &self,
        program: &Program,
        kernel: &str,
        grid: [u32; 3],
        block: [u32; 3],
        args: &[Arg],
    ) -> Result<(), DeviceError>;

    /// `c = gemm(a, b)` ([`Gemm`]); `c` holds `batch * m * n` values and is overwritten.
    fn gemm(
        &self,
        g: &Gemm,
        a: &Self::Buffer,
        b: &Self::Buffer,
        c: &mut Self::Buffer,
    ) -> Result<(), DeviceError>;
}
