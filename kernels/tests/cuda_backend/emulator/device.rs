//! [`Device`] on the CPU: buffers in host memory, kernels through the emulation, and the CPU
//! backend's GEMM standing in for cuBLAS.

use std::ffi::c_void;

use ferrofold_kernels::cuda::sources::Program;
use ferrofold_kernels::cuda::{bf16_at, Arg, Device, DeviceError, Gemm, Storage};
use ferrofold_kernels::{Backend, CpuBackend, MatView, Tensor};

use super::{emulated, param};

pub struct EmulatedDevice;

thread_local! {
    /// Most values one buffer may hold on this thread ([`with_room`]).
    static ROOM: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// `f()` with buffers of more than `room` values failing on this thread, as on a GPU out of
/// memory.
#[allow(dead_code)] // the model tests that include this emulator do not use it
pub fn with_room<T>(room: usize, f: impl FnOnce() -> T) -> T {
    let before = ROOM.replace(room);
    let out = f();
    ROOM.set(before);
    out
}

/// A new buffer of `len` values, unless it exceeds this thread's room.
fn allocate(len: usize, value: f32) -> Result<HostBuffer, DeviceError> {
    let room = ROOM.get();
    if len > room {
        return Err(DeviceError::Driver(format!(
            "out of memory ({len} values, room for {room})"
        )));
    }
    Ok(HostBuffer::new(vec![value; len]))
}

/// A host allocation that kernels write through its address.
pub struct HostBuffer {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: the buffer owns its allocation; kernels touch it only inside `launch`, which the
// backend calls from one thread per op.
unsafe impl Send for HostBuffer {}
unsafe impl Sync for HostBuffer {}

impl HostBuffer {
    fn new(data: Vec<f32>) -> HostBuffer {
        let len = data.len();
        HostBuffer {
            ptr: Box::into_raw(data.into_boxed_slice()).cast(),
            len,
        }
    }

    fn values(&self) -> &[f32] {
        // SAFETY: `ptr` holds `len` initialised floats for the buffer's life.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for HostBuffer {
    fn drop(&mut self) {
        // SAFETY: `ptr` and `len` came from `Box::into_raw` of a boxed slice of this length.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
    }
}

impl Device for EmulatedDevice {
    type Buffer = HostBuffer;

    fn upload(&self, data: &[f32]) -> Result<HostBuffer, DeviceError> {
        Ok(HostBuffer::new(data.to_vec()))
    }

    fn zeros(&self, len: usize) -> Result<HostBuffer, DeviceError> {
        allocate(len, 0.0)
    }

    /// NaN-filled (as fp32 words and as each bf16 half of them), so that an output a kernel
    /// or GEMM leaves partly unwritten fails the checks.
    fn uninit(&self, len: usize) -> Result<HostBuffer, DeviceError> {
        allocate(len, f32::from_bits(0x7fc0_7fc0))
    }

    fn download(&self, buffer: &HostBuffer) -> Result<Vec<f32>, DeviceError> {
        Ok(buffer.values().to_vec())
    }

    /// Unknown: the backend keeps the CPU's chunk sizes, so chunking is exercised too.
    fn free_memory(&self) -> Option<usize> {
        None
    }

    fn address(&self, buffer: &HostBuffer) -> u64 {
        buffer.ptr as u64
    }

    unsafe fn launch(
        &self,
        program: &Program,
        kernel: &str,
        grid: [u32; 3],
        block: [u32; 3],
        args: &[Arg],
    ) -> Result<(), DeviceError> {
        let mut values = args.to_vec();
        let mut params: Vec<*mut c_void> = values
            .iter_mut()
            .map(|a| match a {
                Arg::Ptr(p) => param(p),
                Arg::I32(v) => param(v),
                Arg::I64(v) => param(v),
                Arg::F32(v) => param(v),
                Arg::Attention(v) => param(&mut **v),
            })
            .collect();
        // SAFETY: the caller's contract is the kernel's.
        unsafe { emulated(program).launch(kernel, grid, block, &mut params) };
        Ok(())
    }

    fn gemm(
        &self,
        g: &Gemm,
        a: &HostBuffer,
        b: &HostBuffer,
        c: &mut HostBuffer,
    ) -> Result<(), DeviceError> {
        // Each operand as the CPU backend's [batch, rows, cols] (a shared one copied per batch),
        // bf16 values widened to fp32 (exactly), as the tensor cores read them.
        let value = |words: &[f32], i: usize| match g.storage {
            Storage::F32 => words[i],
            Storage::Bf16 => bf16_at(words, i),
        };
        let stack =
            |buffer: &HostBuffer, offset: usize, stride: usize, rows: usize, cols: usize| {
                let words = buffer.values();
                let mut data = Vec::with_capacity(g.batch * rows * cols);
                for i in 0..g.batch {
                    let start = offset + i * stride;
                    data.extend((start..start + rows * cols).map(|j| value(words, j)));
                }
                Tensor::new(&[g.batch, rows, cols], data).expect("sizes from the GEMM")
            };
        let (ra, ca) = if g.trans_a { (g.k, g.m) } else { (g.m, g.k) };
        let (rb, cb) = if g.trans_b { (g.n, g.k) } else { (g.k, g.n) };
        let (at, bt) = (
            stack(a, g.offset_a, g.stride_a, ra, ca),
            stack(b, g.offset_b, g.stride_b, rb, cb),
        );
        let view = |t, trans| MatView { tensor: t, trans };
        let product = CpuBackend.batched_matmul(view(&at, g.trans_a), view(&bt, g.trans_b));
        // SAFETY: as `values`, and no other reference to `c` exists while this one lives.
        let c = unsafe { std::slice::from_raw_parts_mut(c.ptr, c.len) };
        let words = g.storage.pack(product.data());
        c[..words.len()].copy_from_slice(&words);
        Ok(())
    }
}
