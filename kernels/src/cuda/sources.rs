//! The CUDA C programs of the CUDA backend, compiled at run time with NVRTC. Each program is
//! `kernels/cuda/common.cuh` followed by one `.cu` file (NVRTC is given no include paths, so
//! the sources include no headers).

/// One NVRTC program and the `extern "C"` kernels it defines.
#[derive(Clone, Copy, Debug)]
pub struct Program {
    /// Program name (the `.cu` file's stem), used in NVRTC logs and reports.
    pub name: &'static str,
    /// Full source: the common prelude and the kernel file.
    pub source: &'static str,
    /// Kernel entry points (unmangled).
    pub kernels: &'static [&'static str],
}

macro_rules! program {
    ($name:literal, [$($kernel:literal),+ $(,)?]) => {
        Program {
            name: $name,
            source: concat!(
                include_str!("../../cuda/common.cuh"),
                "\n#line 1 \"",
                $name,
                ".cu\"\n",
                include_str!(concat!("../../cuda/", $name, ".cu"))
            ),
            kernels: &[$($kernel),+],
        }
    };
}

/// Row-wise layer norm (fp32 accumulation; fp32 or bf16 storage).
pub const LAYER_NORM: Program = program!("layer_norm", ["layer_norm_f32", "layer_norm_bf16"]);

/// Row softmax with AF2's key mask and a pair bias broadcast over the batch, and expectations
/// under a row's softmax (the confidence heads' metrics).
pub const MASKED_SOFTMAX: Program = program!(
    "softmax",
    [
        "masked_softmax_f32",
        "masked_softmax_bf16",
        "softmax_expectations_f32",
        "softmax_expectations_bf16",
    ]
);

/// Fused gated attention with pair bias and key mask (online softmax, key tiles of 32).
pub const GATED_ATTENTION: Program = program!(
    "attention",
    [
        "gated_attention_f32_d16",
        "gated_attention_f32_d32",
        "gated_attention_f32_d64",
        "gated_attention_bf16_d16",
        "gated_attention_bf16_d32",
        "gated_attention_bf16_d64",
        "gated_attention_tc_f32_d16",
        "gated_attention_tc_f32_d32",
        "gated_attention_tc_f32_d64",
        "gated_attention_tc_bf16_f32_d16",
        "gated_attention_tc_bf16_f32_d32",
        "gated_attention_tc_bf16_f32_d64",
        "gated_attention_tc_bf16_bf16_d16",
        "gated_attention_tc_bf16_bf16_d32",
        "gated_attention_tc_bf16_bf16_d64",
    ]
);

/// Invariant point attention's weights: point, pair and mask terms and the softmax over the
/// scalar logits, one warp per row.
pub const POINT_ATTENTION: Program = program!("point_attention", ["point_attention_f32"]);

/// A program whose `.cu` file is written once over the storage type `FF_T` and compiled for
/// both: `FF_T = float` with kernels named `k_f32` (`FF_NAME(k)`), then `FF_T = bf16_t` with
/// `k_bf16`. `$kernel` lists the stems.
macro_rules! storage_program {
    ($name:literal, [$($kernel:literal),+ $(,)?]) => {
        Program {
            name: $name,
            source: concat!(
                include_str!("../../cuda/common.cuh"),
                "\n#define FF_CAT_(a, b) a##_##b\n#define FF_CAT(a, b) FF_CAT_(a, b)\n",
                "#define FF_NAME(k) FF_CAT(k, FF_SUFFIX)\n",
                "#define FF_T float\n#define FF_SUFFIX f32\n#line 1 \"",
                $name,
                ".cu\"\n",
                include_str!(concat!("../../cuda/", $name, ".cu")),
                "\n#undef FF_T\n#undef FF_SUFFIX\n#define FF_T bf16_t\n#define FF_SUFFIX bf16\n",
                "#line 1 \"",
                $name,
                ".cu\"\n",
                include_str!(concat!("../../cuda/", $name, ".cu"))
            ),
            kernels: &[$(concat!($kernel, "_f32"), concat!($kernel, "_bf16")),+],
        }
    };
}

/// Element-wise kernels over fp32 or bf16 storage: residual add, linear bias, activations,
/// global attention's gate, the triangle update's gating and channel layouts, the outer product
/// mean's masking, axis swap and normalisation, the pair embeddings' outer sum and one-hot
/// lookup, and conversions and copies between storages.
pub const ELEMENTWISE: Program = storage_program!(
    "elementwise",
    [
        "add",
        "bias_add",
        "activate",
        "gate_channel_first",
        "channel_last",
        "sigmoid_gate",
        "broadcast_sigmoid_gate",
        "scale_rows",
        "swap_axes",
        "divide_rows",
        "outer_sum",
        "one_hot_linear",
        "from_f32",
        "to_f32",
        "copy",
    ]
);

/// Every program of the backend (what the NVRTC compile test covers).
pub const PROGRAMS: &[Program] = &[
    LAYER_NORM,
    MASKED_SOFTMAX,
    GATED_ATTENTION,
    POINT_ATTENTION,
    ELEMENTWISE,
];

/// Queries per block and keys per tile of the gated attention kernels (`FF_ATT_BQ`,
/// `FF_ATT_BK` in `attention.cu`), and its threads per block.
pub const ATTENTION_BLOCK_QUERIES: usize = 16;
pub const ATTENTION_KEY_TILE: usize = 32;
pub const ATTENTION_THREADS: usize = 128;

/// Queries per block and threads per block of the tensor-core attention kernels (`FF_TC_BQ`
/// and `FF_TC_WARPS` in `attention.cu`).
pub const TC_ATTENTION_BLOCK_QUERIES: usize = 64;
pub const TC_ATTENTION_THREADS: usize = 128;

/// Which gated attention kernel: fp32 or bf16 storage with fp32 arithmetic, or q.k and p.v on
/// tensor cores (sm_80+): in TF32 or bf16 on fp32 storage, or in bf16 on bf16 storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionKernel {
    F32,
    Bf16,
    TensorCoresTf32,
    TensorCoresBf16,
    TensorCoresBf16Storage,
}

impl AttentionKernel {
    /// The entry point for a head dimension, or `None` when `head_dim` exceeds 64.
    pub fn entry(self, head_dim: usize) -> Option<&'static str> {
        let d = match head_dim {
            0..=16 => 16,
            17..=32 => 32,
            33..=64 => 64,
            _ => return None,
        };
        Some(match (self, d) {
            (AttentionKernel::F32, 16) => "gated_attention_f32_d16",
            (AttentionKernel::F32, 32) => "gated_attention_f32_d32",
            (AttentionKernel::F32, _) => "gated_attention_f32_d64",
            (AttentionKernel::Bf16, 16) => "gated_attention_bf16_d16",
            (AttentionKernel::Bf16, 32) => "gated_attention_bf16_d32",
            (AttentionKernel::Bf16, _) => "gated_attention_bf16_d64",
            (AttentionKernel::TensorCoresTf32, 16) => "gated_attention_tc_f32_d16",
            (AttentionKernel::TensorCoresTf32, 32) => "gated_attention_tc_f32_d32",
            (AttentionKernel::TensorCoresTf32, _) => "gated_attention_tc_f32_d64",
            (AttentionKernel::TensorCoresBf16, 16) => "gated_attention_tc_bf16_f32_d16",
            (AttentionKernel::TensorCoresBf16, 32) => "gated_attention_tc_bf16_f32_d32",
            (AttentionKernel::TensorCoresBf16, _) => "gated_attention_tc_bf16_f32_d64",
            (AttentionKernel::TensorCoresBf16Storage, 16) => "gated_attention_tc_bf16_bf16_d16",
            (AttentionKernel::TensorCoresBf16Storage, 32) => "gated_attention_tc_bf16_bf16_d32",
            (AttentionKernel::TensorCoresBf16Storage, _) => "gated_attention_tc_bf16_bf16_d64",
        })
    }

    /// Queries per block and threads per block.
    pub fn block(self) -> (usize, usize) {
        match self {
            AttentionKernel::F32 | AttentionKernel::Bf16 => {
                (ATTENTION_BLOCK_QUERIES, ATTENTION_THREADS)
            }
            AttentionKernel::TensorCoresTf32
            | AttentionKernel::TensorCoresBf16
            | AttentionKernel::TensorCoresBf16Storage => {
                (TC_ATTENTION_BLOCK_QUERIES, TC_ATTENTION_THREADS)
            }
        }
    }
}

/// Kernel argument of the gated attention kernels: the `AttentionArgs` struct of
/// `attention.cu`, field for field (pointers are device addresses; strides count elements).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct AttentionArgs {
    pub q: u64,
    pub k: u64,
    pub v: u64,
    /// Gate logits (sigmoid applied in the kernel); 0 for none.
    pub gate: u64,
    /// Pair bias; 0 for none.
    pub bias: u64,
    /// Key mask `[batch, keys]`, fp32 0/1; 0 for none.
    pub mask: u64,
    pub out: u64,
    /// Strides of q over (batch, head, query).
    pub q_s: [i64; 3],
    /// Strides of k over (batch, head, key).
    pub k_s: [i64; 3],
    /// Strides of v over (batch, head, key).
    pub v_s: [i64; 3],
    /// Strides of the gate over (batch, head, query).
    pub g_s: [i64; 3],
    /// Strides of the output over (batch, head, query).
    pub o_s: [i64; 3],
    /// Strides of the bias over (batch, head, query); batch stride 0 broadcasts.
    pub bias_s: [i64; 3],
    /// Batch stride of the mask.
    pub mask_sb: i64,
    pub batch: i32,
    pub heads: i32,
    pub nq: i32,
    pub nk: i32,
    pub d: i32,
    pub scale: f32,
}

// 7 pointers, 19 strides, 5 ints and a float, padded to 8 bytes: the layout nvcc gives the
// CUDA struct.
const _: () = assert!(std::mem::size_of::<AttentionArgs>() == 7 * 8 + 19 * 8 + 5 * 4 + 4);
const _: () = assert!(std::mem::align_of::<AttentionArgs>() == 8);

impl AttentionArgs {
    /// Arguments for q, k, v, gate and output in the projections' own layout `[B, N, H, D]`
    /// (batch stride N*H*D, head stride D, row stride H*D), a pair bias `[H, Q, K]` shared by
    /// the batch and a key mask `[B, K]`. Every address is left 0 (null) for the caller.
    /// Panics if a size exceeds the kernel's 32-bit ints.
    pub fn projection_layout(
        batch: usize,
        heads: usize,
        nq: usize,
        nk: usize,
        d: usize,
        scale: f32,
    ) -> AttentionArgs {
        let int = |n: usize| {
            i32::try_from(n).unwrap_or_else(|_| panic!("gated attention: size {n} exceeds 32 bits"))
        };
        let rows = |n: usize| [(n * heads * d) as i64, d as i64, (heads * d) as i64];
        AttentionArgs {
            q_s: rows(nq),
            k_s: rows(nk),
            v_s: rows(nk),
            g_s: rows(nq),
            o_s: rows(nq),
            bias_s: [0, (nq * nk) as i64, nk as i64],
            mask_sb: nk as i64,
            batch: int(batch),
            heads: int(heads),
            nq: int(nq),
            nk: int(nk),
            d: int(d),
            scale,
            ..AttentionArgs::default()
        }
    }

    /// Launch grid `(batch * heads, ceil(nq / block_queries), 1)`.
    pub fn grid(&self, block_queries: usize) -> (u32, u32, u32) {
        let bh = (self.batch as u32) * (self.heads as u32);
        let tiles = (self.nq as u32).div_ceil(block_queries as u32);
        (bh, tiles, 1)
    }
}

// SAFETY: plain-old-data with the C layout of the kernel's parameter.
unsafe impl cudarc::driver::DeviceRepr for AttentionArgs {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_kernel_is_defined_in_its_source() {
        for p in PROGRAMS {
            for k in p.kernels {
                // A storage program's kernels are named through FF_NAME(stem).
                let stem = k
                    .strip_suffix("_f32")
                    .or(k.strip_suffix("_bf16"))
                    .unwrap_or(k);
                assert!(
                    p.source.contains(&format!("({k},"))
                        || p.source.contains(&format!(" {k}("))
                        || p.source.contains(&format!("FF_NAME({stem})(")),
                    "{k} not found in {}.cu",
                    p.name
                );
            }
        }
        let kinds = [
            AttentionKernel::F32,
            AttentionKernel::Bf16,
            AttentionKernel::TensorCoresTf32,
            AttentionKernel::TensorCoresBf16,
            AttentionKernel::TensorCoresBf16Storage,
        ];
        for d in [1, 8, 16, 17, 32, 33, 64] {
            for kind in kinds {
                let k = kind.entry(d).unwrap();
                assert!(GATED_ATTENTION.kernels.contains(&k));
            }
        }
        assert_eq!(AttentionKernel::F32.entry(65), None);
    }
}
