//! The CUDA backend: the op interface on a [`Device`]. Each op's result stays on the device
//! ([`Tensor::on_device`]) and each input it uploads is kept with its tensor, so consecutive
//! ops, the residual adds between them ([`Backend::add_assign`]) and the weights never cross to
//! the host again; host code that reads a result fetches it once. The module-sized ops (the
//! attention module, the transition, the outer product mean, the triangle multiplicative
//! update) keep their intermediates on the device.
//!
//! Storage ([`CudaBackend::with_storage`]): activations and weights in fp32, or in bf16 (half
//! the memory and traffic; GEMMs on bf16 tensor cores). Arithmetic is fp32 either way. The
//! parameters kernels read beside the tensors (biases, norms, masks, lookup tables) stay fp32,
//! and so do invariant point attention's weights and the confidence heads' expectations,
//! whose inputs are small and whose outputs the structure module and the metrics read.
//!
//! Gated attention with key and value widths that differ or exceed 64 (no AF2 or IgFold
//! module has them) runs on the CPU backend. A device failure (out of memory, a failed
//! launch) panics with a [`DeviceFailure`] naming the op (the op interface returns tensors,
//! not results), which [`catch_device_failure`](crate::catch_device_failure) turns into an
//! error.

use std::any::Any;
use std::ops::Deref;
use std::sync::Arc;

use super::device::{Arg, Device, DeviceError, Gemm, Storage};
use super::sources::{
    AttentionArgs, AttentionKernel, Program, ELEMENTWISE, GATED_ATTENTION, LAYER_NORM,
    MASKED_SOFTMAX, POINT_ATTENTION,
};
use crate::backend::{
    attention_by_ops, attention_scale, masked_softmax_dims, Activation, AttentionParams, Backend,
    GatedAttention, LinearParams, MatView, NormParams, OuterProductMeanParams, TriangleDirection,
    TriangleMultiplicationParams, OUTER_PRODUCT_NORM_EPS,
};
use crate::cpu::check_triangle_shapes;
use crate::gating::broadcast_gate_dims;
use crate::pair_embedding::{one_hot_linear_dims, outer_sum_dims};
use crate::softmax_expectations::softmax_expectations_dims;
use crate::tensor::DeviceValues;
use crate::{CpuBackend, DeviceFailure, PairMasking, PointAttention, Tensor};

/// Threads per block of the row kernels (a warp per row) and of the element-wise ones.
const ROW_THREADS: u32 = 128;
const ELEMENT_THREADS: u32 = 256;
/// Default floats of one chunk's outer products in the outer product mean (`[rows, c, L, c]`,
/// then the same again swapped): 256 MiB each.
const OUTER_PRODUCT_CHUNK_FLOATS: usize = 1 << 26;
/// Most blocks of an element-wise launch (its grid-stride loop covers the rest).
const MAX_ELEMENT_BLOCKS: usize = 1 << 16;

/// Default elements of one chunk of a chunked module when the device's free memory is
/// unknown (the CPU's), and the bounds of one sized from it: a sixteenth of the free memory.
const CHUNK_ELEMENTS: usize = 1 << 22;
const MAX_CHUNK_ELEMENTS: usize = 1 << 31;

pub struct CudaBackend<D: Device> {
    device: Arc<D>,
    /// Most floats in one chunk of the outer product mean's outer products.
    outer_product_chunk: usize,
    /// [`Backend::chunk_elements`], from the free memory at the start.
    chunk_elements: usize,
    attention: AttentionPath,
    /// How ops store their results, and weights their uploads.
    storage: Storage,
}

/// How the CUDA backend runs gated attention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttentionPath {
    /// Two batched GEMMs around the masked softmax kernel wherever one batch row's logits
    /// `[H, Q, K]` fit in [`Backend::chunk_elements`]: cuBLAS runs the products at the GPU's
    /// matrix rate (tensor cores with `--precision tf32` or `bf16`); the storage's fused
    /// kernel takes the rows whose logits do not fit, since it never holds them.
    #[default]
    Gemms,
    /// Always the fused kernel (fp32 arithmetic, in either storage).
    Fused,
    /// Always the fused kernel with q.k and p.v on TF32 tensor cores (sm_80+): its inputs
    /// rounded to TF32 as cuBLAS's TF32 mode rounds them, about 1e-3 from fp32. With bf16
    /// storage, as `TensorCoresBf16`.
    TensorCoresTf32,
    /// The same on bf16 tensor cores (twice TF32's rate; inputs rounded to bf16, about 1e-2
    /// from fp32), the probabilities passed to p.v in registers; with bf16 storage its
    /// variant that reads and writes bf16.
    TensorCoresBf16,
}

/// A tensor's values in a buffer of this backend's device.
struct Resident<D: Device> {
    device: Arc<D>,
    buffer: D::Buffer,
    len: usize,
    storage: Storage,
}

impl<D: Device> Deref for Resident<D> {
    type Target = D::Buffer;

    fn deref(&self) -> &D::Buffer {
        &self.buffer
    }
}

/// The buffer of an optional device copy.
fn buffer<D: Device>(r: &Option<Arc<Resident<D>>>) -> Option<&D::Buffer> {
    r.as_deref().map(|r| &r.buffer)
}

impl<D: Device> DeviceValues for Resident<D> {
    fn len(&self) -> usize {
        self.len
    }

    fn download(&self) -> Vec<f32> {
        let words = ok(self.device.download(&self.buffer), "download");
        self.storage.unpack(words, self.len)
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// The result of a device call, or a [`DeviceFailure`] naming the op.
fn ok<T>(result: Result<T, DeviceError>, op: &str) -> T {
    result.unwrap_or_else(|e| {
        DeviceFailure {
            backend: "CUDA backend",
            op: op.to_string(),
            message: e.to_string(),
        }
        .raise()
    })
}

/// Panics unless `w` is `[out, inp]`: a device GEMM would read past it instead.
fn check_weight(w: &Tensor, out: usize, inp: usize, what: &str) {
    assert_eq!(w.shape(), &[out, inp], "{what} weight");
}

/// `kernel`'s entry for `storage` (`add` → `add_bf16`).
fn kernel_in(kernel: &str, storage: Storage) -> String {
    format!("{kernel}_{}", storage.suffix())
}

fn as_i32(n: usize, what: &str) -> i32 {
    i32::try_from(n)
        .unwrap_or_else(|_| panic!("CUDA backend: {what} {n} exceeds the kernels' 32-bit sizes"))
}

impl<D: Device> CudaBackend<D> {
    pub fn new(device: D) -> Self {
        let chunk_elements = device.free_memory().map_or(CHUNK_ELEMENTS, |bytes| {
            (bytes / 16 / std::mem::size_of::<f32>()).clamp(CHUNK_ELEMENTS, MAX_CHUNK_ELEMENTS)
        });
        CudaBackend {
            device: Arc::new(device),
            outer_product_chunk: OUTER_PRODUCT_CHUNK_FLOATS,
            chunk_elements,
            attention: AttentionPath::default(),
            storage: Storage::F32,
        }
    }

    /// How results and weights are stored ([`Storage::F32`] unless set).
    pub fn with_storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// [`Backend::chunk_elements`] set by hand (else a sixteenth of the free memory at the
    /// start, in floats, within 2^22..2^31).
    pub fn with_chunk_elements(mut self, elements: usize) -> Self {
        self.chunk_elements = elements.max(1);
        self
    }

    /// How gated attention runs ([`AttentionPath::Gemms`] unless set).
    pub fn with_attention(mut self, path: AttentionPath) -> Self {
        self.attention = path;
        self
    }

    /// The most floats one chunk of the outer product mean's `[rows, c, L, c]` outer products
    /// may hold (2^26 by default): less memory for more launches.
    pub fn with_outer_product_chunk(mut self, floats: usize) -> Self {
        self.outer_product_chunk = floats;
        self
    }

    pub fn device(&self) -> &D {
        &self.device
    }

    /// This backend's device copy of `t`, if it has one.
    fn resident(&self, t: &Tensor) -> Option<Arc<Resident<D>>> {
        let values = t
            .device_values()?
            .clone()
            .as_any()
            .downcast::<Resident<D>>();
        values.ok().filter(|r| Arc::ptr_eq(&r.device, &self.device))
    }

    /// `t` on the device in this backend's storage ([`Self::upload_in`]).
    fn upload(&self, t: &Tensor, op: &str) -> Arc<Resident<D>> {
        self.upload_in(t, self.storage, op)
    }

    /// `t` on the device in fp32, for the parameters kernels read as fp32.
    fn upload_f32(&self, t: &Tensor, op: &str) -> Arc<Resident<D>> {
        self.upload_in(t, Storage::F32, op)
    }

    /// `t` on the device in `storage`: its copy there (converted on the device when stored
    /// otherwise, so a host tensor first kept in bf16 and then read in fp32 gets the rounded
    /// values: every such tensor in the models is a 0/1 mask), or an upload that the tensor
    /// keeps for later ops (weights go up once).
    fn upload_in(&self, t: &Tensor, storage: Storage, op: &str) -> Arc<Resident<D>> {
        if let Some(r) = self.resident(t) {
            if r.storage == storage {
                return r;
            }
            let buffer = self.convert(&r, storage, op);
            return Arc::new(self.resident_of(buffer, r.len, storage));
        }
        let r = Arc::new(self.resident_of(
            ok(self.device.upload(&storage.pack(t.data())), op),
            t.len(),
            storage,
        ));
        t.keep_device_values(r.clone());
        r
    }

    fn resident_of(&self, buffer: D::Buffer, len: usize, storage: Storage) -> Resident<D> {
        Resident {
            device: self.device.clone(),
            buffer,
            len,
            storage,
        }
    }

    /// `r`'s values in a new buffer in `storage`.
    fn convert(&self, r: &Resident<D>, storage: Storage, op: &str) -> D::Buffer {
        let y = self.device_buffer_in(r.len, storage, op);
        // The kernels of the storage other than fp32 (or fp32's copy).
        let (kernel, on) = if r.storage == storage {
            ("copy", storage)
        } else if storage == Storage::F32 {
            ("to_f32", r.storage)
        } else {
            ("from_f32", storage)
        };
        let args = [
            self.ptr(Some(&r.buffer)),
            self.ptr(Some(&y)),
            Arg::I64(r.len as i64),
        ];
        self.launch_elements(&kernel_in(kernel, on), r.len, &args);
        y
    }

    /// `t`'s values in a device buffer of the caller's own in `storage`, to overwrite in
    /// place: its device copy itself when nothing else holds it.
    fn upload_owned_in(&self, t: Tensor, storage: Storage, op: &str) -> D::Buffer {
        let r = self.upload_in(&t, storage, op);
        drop(t);
        match Arc::try_unwrap(r) {
            Ok(only) => only.buffer,
            Err(shared) => self.convert(&shared, storage, op),
        }
    }

    /// [`Self::upload_owned_in`] this backend's storage.
    fn upload_owned(&self, t: Tensor, op: &str) -> D::Buffer {
        self.upload_owned_in(t, self.storage, op)
    }

    fn device_zeros(&self, len: usize, op: &str) -> D::Buffer {
        ok(self.device.zeros(self.storage.words(len)), op)
    }

    /// A buffer of `len` values in this backend's storage that the caller's kernel or GEMM
    /// writes whole before it is read.
    fn device_buffer(&self, len: usize, op: &str) -> D::Buffer {
        self.device_buffer_in(len, self.storage, op)
    }

    fn device_buffer_in(&self, len: usize, storage: Storage, op: &str) -> D::Buffer {
        ok(self.device.uninit(storage.words(len)), op)
    }

    /// `kernel`'s entry for this backend's storage (`add` → `add_bf16`).
    fn kernel(&self, kernel: &str) -> String {
        kernel_in(kernel, self.storage)
    }

    /// `y = gemm(a, b)` ([`Gemm`]) over operands in this backend's storage.
    fn gemm(&self, g: Gemm, a: &D::Buffer, b: &D::Buffer, c: &mut D::Buffer, op: &str) {
        ok(self.device.gemm(&g.in_storage(self.storage), a, b, c), op)
    }

    /// `n` values from value `from.1` of buffer `from.0` to value `to.1` on of `to.0`, both in
    /// `storage` (a kernel: a bf16 value may start mid-word).
    fn copy_values(
        &self,
        from: (&D::Buffer, usize),
        to: (&D::Buffer, usize),
        n: usize,
        storage: Storage,
    ) {
        let args = [
            self.address_at(from.0, from.1, storage),
            self.address_at(to.0, to.1, storage),
            Arg::I64(n as i64),
        ];
        self.launch_elements(&kernel_in("copy", storage), n, &args);
    }

    /// The address of value `offset` of a buffer in `storage`.
    fn address_at(&self, buffer: &D::Buffer, offset: usize, storage: Storage) -> Arg {
        Arg::Ptr(self.device.address(buffer) + (offset * storage.bytes()) as u64)
    }

    /// The output of a GEMM summing `k` products: written whole by the GEMM, or zeros when
    /// `k` is 0 (the caller then runs none).
    fn gemm_output(&self, len: usize, k: usize, op: &str) -> D::Buffer {
        if k > 0 {
            self.device_buffer(len, op)
        } else {
            self.device_zeros(len, op)
        }
    }

    /// A result in this backend's storage that stays on the device until host code reads it.
    fn output(&self, buffer: D::Buffer, shape: &[usize]) -> Tensor {
        self.output_in(buffer, shape, self.storage)
    }

    fn output_in(&self, buffer: D::Buffer, shape: &[usize], storage: Storage) -> Tensor {
        let len = shape.iter().product();
        Tensor::on_device(shape, Arc::new(self.resident_of(buffer, len, storage)))
    }

    fn ptr(&self, buffer: Option<&D::Buffer>) -> Arg {
        Arg::Ptr(buffer.map_or(0, |b| self.device.address(b)))
    }

    fn launch(
        &self,
        program: &Program,
        kernel: &str,
        grid: [u32; 3],
        block: [u32; 3],
        args: &[Arg],
    ) {
        // SAFETY: every caller passes the kernel's parameters (kernels/cuda/*.cu) in order,
        // with buffers of the sizes they describe.
        ok(
            unsafe { self.device.launch(program, kernel, grid, block, args) },
            kernel,
        )
    }

    /// An element-wise kernel over `n` elements (nothing for none).
    fn launch_elements(&self, kernel: &str, n: usize, args: &[Arg]) {
        if n > 0 {
            let blocks = n.div_ceil(ELEMENT_THREADS as usize).min(MAX_ELEMENT_BLOCKS) as u32;
            self.launch(
                &ELEMENTWISE,
                kernel,
                [blocks, 1, 1],
                [ELEMENT_THREADS, 1, 1],
                args,
            );
        }
    }

    /// A row kernel (one warp per row) over `rows` rows (nothing for none).
    fn launch_rows(&self, program: &Program, kernel: &str, rows: usize, args: &[Arg]) {
        if rows > 0 {
            let blocks = as_i32(rows.div_ceil(ROW_THREADS as usize / 32), "blocks") as u32;
            self.launch(program, kernel, [blocks, 1, 1], [ROW_THREADS, 1, 1], args);
        }
    }

    /// `x W^T + b` of `rows` rows of `x` on the device → `[rows, out]`.
    fn linear_on(&self, x: &D::Buffer, rows: usize, w: &Tensor, b: Option<&Tensor>) -> D::Buffer {
        let (out, k) = (w.dim(0), w.dim(1));
        let wb = self.upload(w, "linear");
        let mut y = self.gemm_output(rows * out, k, "linear");
        if rows > 0 && out > 0 && k > 0 {
            let g = Gemm::batched(1, rows, out, k, false, true);
            self.gemm(g, x, &wb, &mut y, "linear");
        }
        if let Some(b) = b {
            assert_eq!(
                b.len(),
                out,
                "linear: bias {:?} for {out} outputs",
                b.shape()
            );
            let bb = self.upload_f32(b, "linear");
            let args = [
                self.ptr(Some(&y)),
                self.ptr(Some(&bb)),
                Arg::I64(rows as i64),
                Arg::I32(as_i32(out, "width")),
            ];
            self.launch_elements(&self.kernel("bias_add"), rows * out, &args);
        }
        y
    }

    /// Layer norm of `rows` rows of width `c` on the device.
    fn layer_norm_on(
        &self,
        x: &D::Buffer,
        rows: usize,
        c: usize,
        norm: &NormParams<'_>,
    ) -> D::Buffer {
        assert!(
            norm.gamma.len() == c && norm.beta.len() == c,
            "layer_norm: {:?} vs {c}",
            norm.gamma.shape()
        );
        let (gamma, beta) = (
            self.upload_f32(norm.gamma, "layer_norm"),
            self.upload_f32(norm.beta, "layer_norm"),
        );
        let y = self.device_buffer(rows * c, "layer_norm");
        let args = [
            self.ptr(Some(x)),
            self.ptr(Some(&gamma)),
            self.ptr(Some(&beta)),
            self.ptr(Some(&y)),
            Arg::I64(rows as i64),
            Arg::I32(as_i32(c, "width")),
            Arg::F32(norm.eps),
        ];
        self.launch_rows(&LAYER_NORM, &self.kernel("layer_norm"), rows, &args);
        y
    }

    /// `f` on the first `n` values of a device buffer, in place.
    fn activate_on(&self, x: &D::Buffer, n: usize, f: Activation) {
        let kind = match f {
            Activation::Relu => 0,
            Activation::Gelu => 1,
            Activation::Sigmoid => 2,
        };
        let args = [self.ptr(Some(x)), Arg::I64(n as i64), Arg::I32(kind)];
        self.launch_elements(&self.kernel("activate"), n, &args);
    }

    /// `y[o, j, i, k] = x[o, i, j, k]` for `x` `[outer, d1, d2, inner]` on the device, both in
    /// `storage`.
    fn swap_axes_on(
        &self,
        x: &D::Buffer,
        y: &D::Buffer,
        [outer, d1, d2, inner]: [usize; 4],
        storage: Storage,
    ) {
        let args = [
            self.ptr(Some(x)),
            self.ptr(Some(y)),
            Arg::I64(outer as i64),
            Arg::I64(d1 as i64),
            Arg::I64(d2 as i64),
            Arg::I64(inner as i64),
        ];
        let kernel = kernel_in("swap_axes", storage);
        self.launch_elements(&kernel, outer * d1 * d2 * inner, &args);
    }

    /// The gated side of a triangle update, channel-first `[H, P]`.
    fn gated_side(
        &self,
        zn: &D::Buffer,
        positions: usize,
        proj: &LinearParams<'_>,
        gate: &LinearParams<'_>,
        mask: Option<&D::Buffer>,
    ) -> D::Buffer {
        let h = proj.w.dim(0);
        let p = self.linear_on(zn, positions, proj.w, Some(proj.b));
        let g = self.linear_on(zn, positions, gate.w, Some(gate.b));
        let side = self.device_buffer(h * positions, "triangle_multiplication");
        let args = [
            self.ptr(Some(&p)),
            self.ptr(Some(&g)),
            self.ptr(mask),
            self.ptr(Some(&side)),
            Arg::I64(positions as i64),
            Arg::I32(as_i32(h, "channels")),
        ];
        self.launch_elements(&self.kernel("gate_channel_first"), h * positions, &args);
        side
    }

    /// The gated attention kernel on device tensors in the projections' `[B, N, H, D]` layout
    /// ([`GatedAttention`]'s maths) → `[B, Q, H, D]`; `bias` and `mask` are uploaded here.
    fn gated_attention_on(
        &self,
        sizes: &AttentionSizes,
        [q, k, v]: [&D::Buffer; 3],
        gate: Option<&D::Buffer>,
        bias: Option<&Tensor>,
        mask: Option<&Tensor>,
        scale: f32,
    ) -> D::Buffer {
        let AttentionSizes { b, h, nq, nk, d } = *sizes;
        let op = "gated_attention";
        let bias = bias.map(|t| self.upload(t, op));
        let mask = mask.map(|t| self.upload_f32(t, op));
        if nk == 0 {
            return self.device_zeros(b * nq * h * d, op); // no keys: nothing to average
        }
        let out = self.device_buffer(b * nq * h * d, op);
        if self.attention == AttentionPath::Gemms && h * nq * nk <= self.chunk_elements {
            let extras = [gate, buffer(&bias), buffer(&mask)];
            self.gated_attention_by_gemms(sizes, [q, k, v], extras, &out, scale);
            return out;
        }
        let address = |t: Option<&D::Buffer>| t.map_or(0, |t| self.device.address(t));
        let args = AttentionArgs {
            q: address(Some(q)),
            k: address(Some(k)),
            v: address(Some(v)),
            gate: address(gate),
            bias: address(buffer(&bias)),
            mask: address(buffer(&mask)),
            out: address(Some(&out)),
            ..AttentionArgs::projection_layout(b, h, nq, nk, d, scale)
        };
        // bf16 storage runs either tensor-core path on bf16 tensor cores (its values are bf16).
        let kind = match (self.storage, self.attention) {
            (Storage::Bf16, AttentionPath::TensorCoresTf32 | AttentionPath::TensorCoresBf16) => {
                AttentionKernel::TensorCoresBf16Storage
            }
            (Storage::Bf16, AttentionPath::Gemms | AttentionPath::Fused) => AttentionKernel::Bf16,
            (Storage::F32, AttentionPath::TensorCoresTf32) => AttentionKernel::TensorCoresTf32,
            (Storage::F32, AttentionPath::TensorCoresBf16) => AttentionKernel::TensorCoresBf16,
            (Storage::F32, AttentionPath::Gemms | AttentionPath::Fused) => AttentionKernel::F32,
        };
        let kernel = kind.entry(d).expect("head width checked by AttentionSizes");
        let (block_queries, threads) = kind.block();
        let (gx, gy, gz) = args.grid(block_queries);
        self.launch(
            &GATED_ATTENTION,
            kernel,
            [gx, gy, gz],
            [threads as u32, 1, 1],
            &[Arg::Attention(Box::new(args))],
        );
        out
    }
}

impl<D: Device> CudaBackend<D> {
    /// [`GatedAttention`]'s maths as GEMMs, in chunks of batch rows whose logits fit in
    /// [`Backend::chunk_elements`]: `q k^T` per (row, head), the masked softmax kernel (scale,
    /// mask and bias in AF2's order), `p v`, and the sigmoid gate; q, k, v, gate and `out`
    /// (written whole) in the projections' `[B, N, H, D]` layout.
    fn gated_attention_by_gemms(
        &self,
        sizes: &AttentionSizes,
        [q, k, v]: [&D::Buffer; 3],
        [gate, bias, mask]: [Option<&D::Buffer>; 3],
        out: &D::Buffer,
        scale: f32,
    ) {
        let AttentionSizes {
            b, h, nq, nk, d, ..
        } = *sizes;
        let op = "gated_attention";
        // [B, N, H, D] → [B, H, N, D]: each (row, head) a contiguous [N, D] matrix.
        let heads_first = |x: &D::Buffer, n: usize| {
            let y = self.device_buffer(b * h * n * d, op);
            self.swap_axes_on(x, &y, [b, n, h, d], self.storage);
            y
        };
        let (qt, kt, vt) = (heads_first(q, nq), heads_first(k, nk), heads_first(v, nk));
        let per_row = h * nq * nk;
        let rows = (self.chunk_elements / per_row).clamp(1, b);
        for b0 in (0..b).step_by(rows) {
            let c = rows.min(b - b0);
            let mut logits = self.gemm_output(c * per_row, d, op); // [c, H, Q, K]
            let g = Gemm {
                offset_a: b0 * h * nq * d,
                offset_b: b0 * h * nk * d,
                ..Gemm::batched(c * h, nq, nk, d, false, true)
            };
            self.gemm(g, &qt, &kt, &mut logits, op);
            let mask_rows = mask.map_or(Arg::Ptr(0), |m| self.address_at(m, b0 * nk, Storage::F32));
            let args = [
                self.ptr(Some(&logits)),
                self.ptr(bias),
                mask_rows,
                self.ptr(Some(&logits)),
                Arg::I32(as_i32(c, "batch")),
                Arg::I32(as_i32(h, "heads")),
                Arg::I32(as_i32(nq, "queries")),
                Arg::I32(as_i32(nk, "keys")),
                Arg::F32(scale),
            ];
            self.launch_rows(
                &MASKED_SOFTMAX,
                &self.kernel("masked_softmax"),
                c * h * nq,
                &args,
            );
            let mut heads_out = self.device_buffer(c * h * nq * d, op); // [c, H, Q, D]
            let g = Gemm {
                offset_b: b0 * h * nk * d,
                ..Gemm::batched(c * h, nq, d, nk, false, false)
            };
            self.gemm(g, &logits, &vt, &mut heads_out, op);
            // [c, H, Q, D] → rows b0.. of out [B, Q, H, D]
            let args = [
                self.ptr(Some(&heads_out)),
                self.address_at(out, b0 * nq * h * d, self.storage),
                Arg::I64(c as i64),
                Arg::I64(h as i64),
                Arg::I64(nq as i64),
                Arg::I64(d as i64),
            ];
            self.launch_elements(&self.kernel("swap_axes"), c * h * nq * d, &args);
        }
        if let Some(g) = gate {
            let n = b * nq * h * d;
            let args = [self.ptr(Some(out)), self.ptr(Some(g)), Arg::I64(n as i64)];
            self.launch_elements(&self.kernel("sigmoid_gate"), n, &args);
        }
    }
}

/// Sizes of a gated attention the kernel takes: one head width `d` ≤ 64 for queries, keys and
/// values (every AF2 and IgFold module), at least one query, and batch × heads blocks within
/// the grid's 2^31.
#[derive(Clone, Copy)]
struct AttentionSizes {
    b: usize,
    h: usize,
    nq: usize,
    nk: usize,
    d: usize,
}

impl AttentionSizes {
    fn supported(b: usize, h: usize, nq: usize, nk: usize, dk: usize, dv: usize) -> Option<Self> {
        let width_fits = AttentionKernel::F32.entry(dk).is_some();
        let grid_fits = i32::try_from(b * h).is_ok();
        (width_fits && dk == dv && b * h * nq > 0 && grid_fits).then_some(AttentionSizes {
            b,
            h,
            nq,
            nk,
            d: dk,
        })
    }
}

impl<D: Device> Backend for CudaBackend<D> {
    fn linear(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Tensor {
        let k = w.dim(1);
        assert_eq!(
            x.dim(-1),
            k,
            "linear: input {:?} for weight {:?}",
            x.shape(),
            w.shape()
        );
        let rows = x.rows();
        let y = self.linear_on(&self.upload(x, "linear"), rows, w, b);
        let mut shape = x.shape().to_vec();
        *shape.last_mut().expect("rank ≥ 1") = w.dim(0);
        self.output(y, &shape)
    }

    fn batched_matmul(&self, a: MatView<'_>, b: MatView<'_>) -> Tensor {
        let ((ba, m, k), (bb, k2, n)) = (a.dims(), b.dims());
        assert!(
            ba == bb && k == k2,
            "batched_matmul: {:?} x {:?}",
            a.tensor.shape(),
            b.tensor.shape()
        );
        let (ab, bbuf) = (
            self.upload(a.tensor, "batched_matmul"),
            self.upload(b.tensor, "batched_matmul"),
        );
        let mut c = self.gemm_output(ba * m * n, k, "batched_matmul");
        if ba * m * n * k > 0 {
            let g = Gemm::batched(ba, m, n, k, a.trans, b.trans);
            self.gemm(g, &ab, &bbuf, &mut c, "batched_matmul");
        }
        self.output(c, &[ba, m, n])
    }

    fn layer_norm(&self, x: &Tensor, gamma: &Tensor, beta: &Tensor, eps: f32) -> Tensor {
        let c = x.dim(-1);
        let rows = x.rows();
        let norm = NormParams { gamma, beta, eps };
        let y = self.layer_norm_on(&self.upload(x, "layer_norm"), rows, c, &norm);
        self.output(y, x.shape())
    }

    fn softmax(&self, x: &mut Tensor) {
        let k = x.dim(-1);
        let rows = x.rows();
        let shape = x.shape().to_vec();
        let taken = std::mem::replace(x, Tensor::zeros(&[0]));
        let mut logits = taken.reshape(&[1, 1, rows, k]).expect("same length");
        self.masked_softmax(&mut logits, None, None, 1.0);
        *x = logits.reshape(&shape).expect("same length");
    }

    fn masked_softmax(
        &self,
        x: &mut Tensor,
        bias: Option<&Tensor>,
        mask: Option<&Tensor>,
        scale: f32,
    ) {
        let (b, h, q, k) = masked_softmax_dims(x, bias, mask);
        let s = x.shape().to_vec();
        let op = "masked_softmax";
        let xb = self.upload_owned(std::mem::replace(x, Tensor::zeros(&[0])), op);
        let bias_b = bias.map(|t| self.upload(t, op));
        let mask_b = mask.map(|t| self.upload_f32(t, op));
        let args = [
            self.ptr(Some(&xb)),
            self.ptr(buffer(&bias_b)),
            self.ptr(buffer(&mask_b)),
            self.ptr(Some(&xb)),
            Arg::I32(as_i32(b, "batch")),
            Arg::I32(as_i32(h, "heads")),
            Arg::I32(as_i32(q, "queries")),
            Arg::I32(as_i32(k, "keys")),
            Arg::F32(scale),
        ];
        self.launch_rows(
            &MASKED_SOFTMAX,
            &self.kernel("masked_softmax"),
            b * h * q,
            &args,
        );
        *x = self.output(xb, &s);
    }

    fn outer_sum(&self, a: &Tensor, b: &Tensor) -> Tensor {
        let (l, c) = outer_sum_dims(a, b);
        let op = "outer_sum";
        let (ab, bb) = (self.upload(a, op), self.upload(b, op));
        let out = self.device_buffer(l * l * c, op);
        let args = [
            self.ptr(Some(&ab)),
            self.ptr(Some(&bb)),
            self.ptr(Some(&out)),
            Arg::I64(l as i64),
            Arg::I32(as_i32(c, "channels")),
        ];
        self.launch_elements(&self.kernel("outer_sum"), l * l * c, &args);
        self.output(out, &[l, l, c])
    }

    fn softmax_expectations(&self, logits: &Tensor, values: &Tensor) -> Tensor {
        let (n, v) = softmax_expectations_dims(logits, values);
        let op = "softmax_expectations";
        let rows = logits.rows();
        let (lb, vb) = (self.upload(logits, op), self.upload_f32(values, op));
        let out = self.device_buffer_in(rows * v, Storage::F32, op);
        let args = [
            self.ptr(Some(&lb)),
            self.ptr(Some(&vb)),
            self.ptr(Some(&out)),
            Arg::I64(rows as i64),
            Arg::I32(as_i32(n, "bins")),
            Arg::I32(as_i32(v, "value rows")),
        ];
        let kernel = self.kernel("softmax_expectations");
        self.launch_rows(&MASKED_SOFTMAX, &kernel, rows, &args);
        let mut shape = logits.shape().to_vec();
        *shape.last_mut().expect("logits have a last axis") = v;
        self.output_in(out, &shape, Storage::F32)
    }

    fn broadcast_sigmoid_gate(&self, gate: &mut Tensor, values: &Tensor) {
        let (b, n, c) = broadcast_gate_dims(gate, values);
        let op = "broadcast_sigmoid_gate";
        let shape = gate.shape().to_vec();
        let gb = self.upload_owned(std::mem::replace(gate, Tensor::zeros(&[0])), op);
        let vb = self.upload(values, op);
        let args = [
            self.ptr(Some(&gb)),
            self.ptr(Some(&vb)),
            Arg::I64(b as i64),
            Arg::I64(n as i64),
            Arg::I32(as_i32(c, "channels")),
        ];
        self.launch_elements(&self.kernel("broadcast_sigmoid_gate"), b * n * c, &args);
        *gate = self.output(gb, &shape);
    }

    fn one_hot_linear(&self, classes: &Tensor, w: &Tensor, b: &Tensor) -> Tensor {
        let (_, c) = one_hot_linear_dims(w, b);
        let op = "one_hot_linear";
        let [cb, wb, bb] = [classes, w, b].map(|t| self.upload_f32(t, op));
        let positions = classes.len();
        let out = self.device_buffer(positions * c, op);
        let args = [
            self.ptr(Some(&cb)),
            self.ptr(Some(&wb)),
            self.ptr(Some(&bb)),
            self.ptr(Some(&out)),
            Arg::I64(positions as i64),
            Arg::I32(as_i32(c, "channels")),
        ];
        self.launch_elements(&self.kernel("one_hot_linear"), positions * c, &args);
        let mut shape = classes.shape().to_vec();
        shape.push(c);
        self.output(out, &shape)
    }

    fn point_attention_weights(&self, x: &mut Tensor, a: &PointAttention<'_>) {
        let (h, n, coords) = a.dims(x);
        let op = "point_attention_weights";
        let s = x.shape().to_vec();
        let taken = std::mem::replace(x, Tensor::zeros(&[0]));
        let xb = self.upload_owned_in(taken, Storage::F32, op);
        let [qp, kp, w, bias] =
            [a.q_points, a.k_points, a.point_weights, a.pair_bias].map(|t| self.upload_f32(t, op));
        let mask = a.mask.map(|t| self.upload_f32(t, op));
        let (mask_value, fill) = match a.masking {
            PairMasking::Shift(v) => (v, 0),
            PairMasking::Fill(v) => (v, 1),
        };
        let args = [
            self.ptr(Some(&xb)),
            self.ptr(Some(&qp)),
            self.ptr(Some(&kp)),
            self.ptr(Some(&w)),
            self.ptr(Some(&bias)),
            self.ptr(buffer(&mask)),
            Arg::I32(as_i32(h, "heads")),
            Arg::I32(as_i32(n, "residues")),
            Arg::I32(as_i32(coords, "point coordinates")),
            Arg::F32(a.scalar_scale),
            Arg::F32(a.pair_scale),
            Arg::F32(mask_value),
            Arg::I32(fill),
        ];
        self.launch_rows(&POINT_ATTENTION, "point_attention_f32", h * n, &args);
        *x = self.output_in(xb, &s, Storage::F32);
    }

    fn activate(&self, x: &mut Tensor, f: Activation) {
        let shape = x.shape().to_vec();
        let xb = self.upload_owned(std::mem::replace(x, Tensor::zeros(&[0])), "activate");
        self.activate_on(&xb, shape.iter().product(), f);
        *x = self.output(xb, &shape);
    }

    fn add_assign(&self, x: &mut Tensor, y: &Tensor) {
        assert_eq!(x.shape(), y.shape(), "add_assign shapes");
        if self.resident(x).is_none() && self.resident(y).is_none() {
            return x.add_assign(y); // both on the host: no round trip
        }
        let op = "add_assign";
        let shape = x.shape().to_vec();
        let xb = self.upload_owned(std::mem::replace(x, Tensor::zeros(&[0])), op);
        let yb = self.upload(y, op);
        let n = y.len();
        let args = [self.ptr(Some(&xb)), self.ptr(Some(&yb)), Arg::I64(n as i64)];
        self.launch_elements(&self.kernel("add"), n, &args);
        *x = self.output(xb, &shape);
    }

    fn swap_leading_axes(&self, x: &Tensor) -> Tensor {
        let Some(xb) = self.resident(x) else {
            return x.swap_leading_axes(); // on the host already
        };
        let s = x.shape();
        assert_eq!(s.len(), 3, "swap_leading_axes: {s:?} is not [A, B, C]");
        // In the values' own storage: a mask stays fp32.
        let y = self.device_buffer_in(x.len(), xb.storage, "swap_leading_axes");
        self.swap_axes_on(&xb, &y, [1, s[0], s[1], s[2]], xb.storage);
        self.output_in(y, &[s[1], s[0], s[2]], xb.storage)
    }

    fn zeros(&self, shape: &[usize]) -> Tensor {
        let n = shape.iter().product();
        self.output(self.device_zeros(n, "zeros"), shape)
    }

    fn slice_rows(&self, x: &Tensor, range: std::ops::Range<usize>) -> Tensor {
        let whole = range.start == 0 && range.end == x.dim(0);
        let Some(xb) = self.resident(x).filter(|_| !whole) else {
            return x.slice_rows(range); // on the host, or all of it (a clone, wherever it is)
        };
        let per = x.len() / x.dim(0).max(1);
        let n = range.len() * per;
        let values = self.device_buffer_in(n, xb.storage, "slice_rows");
        self.copy_values((&xb, range.start * per), (&values, 0), n, xb.storage);
        let mut shape = x.shape().to_vec();
        shape[0] = range.len();
        self.output_in(values, &shape, xb.storage)
    }

    fn write_rows(&self, out: &mut Tensor, start: usize, part: &Tensor) {
        if self.resident(out).is_none() && self.resident(part).is_none() {
            return out.write_rows(start, part); // both on the host
        }
        let op = "write_rows";
        let (shape, rows) = (out.shape().to_vec(), out.rows_for(start, part));
        let ob = self.upload_owned(std::mem::replace(out, Tensor::zeros(&[0])), op);
        let pb = self.upload(part, op);
        self.copy_values((&pb, 0), (&ob, rows.start), rows.len(), self.storage);
        *out = self.output(ob, &shape);
    }

    fn chunk_elements(&self) -> usize {
        self.chunk_elements
    }

    fn keeps_layers(&self) -> bool {
        true
    }

    fn gated_attention(&self, a: &GatedAttention<'_>) -> Tensor {
        let (b, h, nq, nk, d, dv) = a.dims();
        let shape = [b, nq, h, dv];
        let Some(sizes) = AttentionSizes::supported(b, h, nq, nk, d, dv) else {
            return CpuBackend.gated_attention(a);
        };
        let op = "gated_attention";
        let (q, k, v) = (
            self.upload(a.q, op),
            self.upload(a.k, op),
            self.upload(a.v, op),
        );
        let gate = a.gate.map(|t| self.upload(t, op));
        let out =
            self.gated_attention_on(&sizes, [&q, &k, &v], buffer(&gate), a.bias, a.mask, a.scale);
        self.output(out, &shape)
    }

    fn attention(
        &self,
        p: &AttentionParams<'_>,
        q_data: &Tensor,
        m_data: &Tensor,
        key_mask: Option<&Tensor>,
        pair_bias: Option<&Tensor>,
    ) -> Tensor {
        let (b, nq, nk, h) = (q_data.dim(0), q_data.dim(1), m_data.dim(1), p.heads);
        assert_eq!(m_data.dim(0), b, "attention: q/m batch");
        let Some(sizes) = AttentionSizes::supported(b, h, nq, nk, p.key_dim, p.value_dim) else {
            return attention_by_ops(self, p, q_data, m_data, key_mask, pair_bias);
        };
        let (q_in, m_in) = (q_data.dim(-1), m_data.dim(-1));
        let (hk, hv) = (h * p.key_dim, h * p.value_dim);
        check_weight(p.query, hk, q_in, "attention: query");
        check_weight(p.key, hk, m_in, "attention: key");
        check_weight(p.value, hv, m_in, "attention: value");
        if let Some(g) = p.gating {
            check_weight(g.w, hv, q_in, "attention: gating");
        }
        check_weight(p.output.w, p.output.w.dim(0), hv, "attention: output");
        // Inputs up once (once for self-attention), projections and averages on the device.
        let op = "attention";
        let qd = self.upload(q_data, op);
        let md = (!std::ptr::eq(q_data, m_data)).then(|| self.upload(m_data, op));
        let md_ref = md.as_ref().unwrap_or(&qd);
        let q = self.linear_on(&qd, b * nq, p.query, None); // [B, Q, H, Dk]
        let k = self.linear_on(md_ref, b * nk, p.key, None); // [B, K, H, Dk]
        let v = self.linear_on(md_ref, b * nk, p.value, None); // [B, K, H, Dv]
        let gate = p
            .gating
            .map(|g| self.linear_on(&qd, b * nq, g.w, Some(g.b))); // [B, Q, H, Dv]
        let scale = attention_scale(p.key_dim);
        let avg = self.gated_attention_on(
            &sizes,
            [&q, &k, &v],
            gate.as_ref(),
            pair_bias,
            key_mask,
            scale,
        );
        let out = self.linear_on(&avg, b * nq, p.output.w, Some(p.output.b)); // [B, Q, out]
        self.output(out, &[b, nq, p.output.w.dim(0)])
    }

    fn transition(
        &self,
        x: &Tensor,
        norm: &NormParams<'_>,
        first: &LinearParams<'_>,
        second: &LinearParams<'_>,
    ) -> Tensor {
        let c = x.dim(-1);
        let rows = x.rows();
        let hidden = first.w.dim(0);
        check_weight(first.w, hidden, c, "transition: first linear");
        check_weight(
            second.w,
            second.w.dim(0),
            hidden,
            "transition: second linear",
        );
        let op = "transition";
        let xn = self.layer_norm_on(&self.upload(x, op), rows, c, norm); // [rows, c]
        let h = self.linear_on(&xn, rows, first.w, Some(first.b)); // [rows, hidden]
        self.activate_on(&h, rows * hidden, Activation::Relu);
        let out = self.linear_on(&h, rows, second.w, Some(second.b)); // [rows, out]
        let mut shape = x.shape().to_vec();
        *shape.last_mut().expect("rank ≥ 1") = second.w.dim(0);
        self.output(out, &shape)
    }

    fn outer_product_mean(
        &self,
        msa: &Tensor,
        mask: &Tensor,
        p: &OuterProductMeanParams<'_>,
    ) -> Option<Tensor> {
        let sh = msa.shape();
        assert_eq!(sh.len(), 3, "outer product mean: msa must be [S, L, c_m]");
        let (s, l, c_m) = (sh[0], sh[1], sh[2]);
        assert_eq!(
            mask.shape(),
            [s, l],
            "outer product mean: mask must be [S, L]"
        );
        let (c, c_z) = (p.left.w.dim(0), p.output.w.dim(0));
        check_weight(p.left.w, c, c_m, "outer product mean: left");
        check_weight(p.right.w, c, c_m, "outer product mean: right");
        check_weight(p.output.w, c_z, c * c, "outer product mean: output");
        if l == 0 {
            return Some(Tensor::zeros(&[0, 0, c_z]));
        }
        let op = "outer_product_mean";
        let rows = s * l;
        let xn = self.layer_norm_on(&self.upload(msa, op), rows, c_m, &p.input_norm);
        let mb = self.upload_f32(mask, op); // [S, L]
        let left = self.linear_on(&xn, rows, p.left.w, Some(p.left.b)); // [S, L, c]
        let right = self.linear_on(&xn, rows, p.right.w, Some(p.right.b)); // [S, L, c]
        for side in [&left, &right] {
            let args = [
                self.ptr(Some(side)),
                self.ptr(Some(&mb)),
                Arg::I64(rows as i64),
                Arg::I32(as_i32(c, "channels")),
            ];
            self.launch_elements(&self.kernel("scale_rows"), rows * c, &args);
        }
        let by_residue = self.device_buffer(rows * c, op); // [L, S, c]
        self.swap_axes_on(&left, &by_residue, [1, s, l, c], self.storage);
        drop(left);
        // norm[i, j] = sum_s mask[s, i] mask[s, j], in fp32 (counts beyond 256 are not
        // bf16 values)
        let mut norm = if s > 0 {
            self.device_buffer_in(l * l, Storage::F32, op)
        } else {
            ok(self.device.zeros(l * l), op)
        }; // [L, L]
        if l * s > 0 {
            let g = Gemm::batched(1, l, l, s, true, false);
            ok(self.device.gemm(&g, &mb, &mb, &mut norm), op);
        }
        // Residue rows in chunks, each one's [rows, c, L, c] outer products at a time.
        let per_chunk = (self.outer_product_chunk / (l * c * c).max(1)).clamp(1, l.max(1));
        // The chunks' rows stacked on the device (one chunk is the output itself).
        let out = (per_chunk < l).then(|| self.device_buffer(l * l * c_z, op)); // [L, L, c_z]
        for i0 in (0..l).step_by(per_chunk) {
            let ci = per_chunk.min(l - i0);
            // outer[i, a, j, b] = sum_s left[s, i, a] right[s, j, b]
            let mut outer = self.gemm_output(ci * c * l * c, s, op); // [ci, c, L, c]
            if s * c > 0 {
                let g = Gemm {
                    stride_a: s * c,
                    stride_b: 0,
                    offset_a: i0 * s * c,
                    ..Gemm::batched(ci, c, l * c, s, true, false)
                };
                self.gemm(g, &by_residue, &right, &mut outer, op);
            }
            let pairs = self.device_buffer(ci * l * c * c, op); // [ci, L, c, c]
            self.swap_axes_on(&outer, &pairs, [ci, c, l, c], self.storage);
            drop(outer);
            let o = self.linear_on(&pairs, ci * l, p.output.w, Some(p.output.b)); // [ci * L, c_z]
            let args = [
                self.ptr(Some(&o)),
                self.address_at(&norm, i0 * l, Storage::F32),
                Arg::I64((ci * l) as i64),
                Arg::I32(as_i32(c_z, "channels")),
                Arg::F32(OUTER_PRODUCT_NORM_EPS),
            ];
            self.launch_elements(&self.kernel("divide_rows"), ci * l * c_z, &args);
            match out.as_ref() {
                Some(out) => {
                    self.copy_values((&o, 0), (out, i0 * l * c_z), ci * l * c_z, self.storage)
                }
                None => return Some(self.output(o, &[l, l, c_z])),
            }
        }
        Some(self.output(out.expect("more than one chunk"), &[l, l, c_z]))
    }

    fn triangle_multiplication(
        &self,
        z: &Tensor,
        p: &TriangleMultiplicationParams<'_>,
        mask: Option<&Tensor>,
        dir: TriangleDirection,
    ) -> Tensor {
        let s = z.shape().to_vec();
        assert!(
            s.len() == 3 && s[0] == s[1],
            "triangle_multiplication: pair {s:?} is not [L, L, C]"
        );
        let (l, c) = (s[0], s[2]);
        let positions = l * l;
        let h = p.left_proj.w.dim(0);
        if let Some(m) = mask {
            assert_eq!(m.shape(), &[l, l], "triangle_multiplication: mask");
        }
        check_triangle_shapes(p, c, h);
        let op = "triangle_multiplication";
        let zn = self.layer_norm_on(&self.upload(z, op), positions, c, &p.input_norm);
        let mask_b = mask.map(|m| self.upload_f32(m, op));
        let left = self.gated_side(&zn, positions, &p.left_proj, &p.left_gate, buffer(&mask_b));
        let right = self.gated_side(
            &zn,
            positions,
            &p.right_proj,
            &p.right_gate,
            buffer(&mask_b),
        );
        // Per hidden channel: outgoing o = A B^T (o_ij = sum_k a_ik b_jk), incoming
        // o = B^T A (o_ij = sum_k a_kj b_ki).
        let mut product = self.device_buffer(h * positions, op); // [H, L, L]
        if positions * h > 0 {
            let (g, first, second) = match dir {
                TriangleDirection::Outgoing => {
                    (Gemm::batched(h, l, l, l, false, true), &left, &right)
                }
                TriangleDirection::Incoming => {
                    (Gemm::batched(h, l, l, l, true, false), &right, &left)
                }
            };
            self.gemm(g, first, second, &mut product, op);
        }
        let channel_last = self.device_buffer(positions * h, op); // [L, L, H]
        let args = [
            self.ptr(Some(&product)),
            self.ptr(Some(&channel_last)),
            Arg::I64(positions as i64),
            Arg::I32(as_i32(h, "channels")),
        ];
        self.launch_elements(&self.kernel("channel_last"), positions * h, &args);
        let centred = self.layer_norm_on(&channel_last, positions, h, &p.center_norm);
        let out = self.linear_on(&centred, positions, p.output_proj.w, Some(p.output_proj.b)); // [L, L, C]
        let gate = self.linear_on(&zn, positions, p.output_gate.w, Some(p.output_gate.b));
        let args = [
            self.ptr(Some(&out)),
            self.ptr(Some(&gate)),
            Arg::I64((positions * c) as i64),
        ];
        self.launch_elements(&self.kernel("sigmoid_gate"), positions * c, &args);
        self.output(out, &s)
    }
}
