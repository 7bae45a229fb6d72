//! What the CUDA backend needs of a device: buffers of 32-bit words, copies, kernel launches
//! and row-major batched GEMMs over fp32 or bf16 values. [`CudaDevice`](super::CudaDevice) is the GPU (cudarc); the
//! tests' emulator implements the same trait on the CPU, running the kernels' own source, so
//! the backend above it is tested on machines with no GPU.

use std::borrow::Cow;

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

/// How a tensor's values are stored on the device: fp32, or bf16 (the upper half of the fp32
/// value after rounding to nearest even, as PyTorch's and JAX's casts round), two values to a
/// 32-bit word, the first in the low half (the layout of a `bf16[]` on a little-endian device).
/// Buffers are allocated and copied in words.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    #[default]
    F32,
    Bf16,
}

impl Storage {
    /// Bytes per value.
    pub fn bytes(self) -> usize {
        match self {
            Storage::F32 => 4,
            Storage::Bf16 => 2,
        }
    }

    /// Words of a buffer of `len` values.
    pub fn words(self, len: usize) -> usize {
        match self {
            Storage::F32 => len,
            Storage::Bf16 => len.div_ceil(2),
        }
    }

    /// The suffix of the kernels that take this storage (`add_f32`, `add_bf16`).
    pub fn suffix(self) -> &'static str {
        match self {
            Storage::F32 => "f32",
            Storage::Bf16 => "bf16",
        }
    }

    /// Host values as the words of a buffer (fp32 values as they are, not copied).
    pub fn pack(self, values: &[f32]) -> Cow<'_, [f32]> {
        match self {
            Storage::F32 => Cow::Borrowed(values),
            Storage::Bf16 => values
                .chunks(2)
                .map(|pair| {
                    let half = |x: f32| crate::round_to_bf16(x).to_bits() >> 16;
                    let high = pair.get(1).map_or(0, |&x| half(x));
                    f32::from_bits(half(pair[0]) | (high << 16))
                })
                .collect::<Vec<_>>()
                .into(),
        }
    }

    /// The first `len` values of a buffer's words, as fp32.
    pub fn unpack(self, words: Vec<f32>, len: usize) -> Vec<f32> {
        match self {
            Storage::F32 => words,
            Storage::Bf16 => (0..len).map(|i| bf16_at(&words, i)).collect(),
        }
    }
}

/// Value `i` of bf16 words, as fp32.
pub fn bf16_at(words: &[f32], i: usize) -> f32 {
    let bits = words[i / 2].to_bits() >> (16 * (i % 2));
    f32::from_bits((bits & 0xffff) << 16)
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
/// value on. A batch stride of 0 shares one matrix across the batch. All three operands are
/// in `storage` (sizes, strides and offsets count values); products are summed in fp32.
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
    pub storage: Storage,
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
            storage: Storage::F32,
        }
    }

    /// The same GEMM over operands in `storage`.
    pub fn in_storage(self, storage: Storage) -> Gemm {
        Gemm { storage, ..self }
    }
}

pub trait Device: Send + Sync + 'static {
    type Buffer: Send + Sync + 'static;

    /// A buffer holding `data`'s words (values packed by [`Storage::pack`]).
    fn upload(&self, data: &[f32]) -> Result<Self::Buffer, DeviceError>;
    fn zeros(&self, len: usize) -> Result<Self::Buffer, DeviceError>;
    /// A buffer of `len` words that are undefined until written: for outputs that a kernel
    /// or GEMM writes whole before anything reads them (no zeroing pass over the memory).
    fn uninit(&self, len: usize) -> Result<Self::Buffer, DeviceError>;
    /// The buffer's words.
    fn download(&self, buffer: &Self::Buffer) -> Result<Vec<f32>, DeviceError>;
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

    /// `c = gemm(a, b)` ([`Gemm`]); `c` holds `batch * m * n` values in the GEMM's storage and
    /// is overwritten.
    fn gemm(
        &self,
        g: &Gemm,
        a: &Self::Buffer,
        b: &Self::Buffer,
        c: &mut Self::Buffer,
    ) -> Result<(), DeviceError>;
}
