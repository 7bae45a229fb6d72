//! A dense, row-major f32 tensor: its values in host memory, in a device's memory, or both.
//! A backend with a device returns its results on the device; host code that reads them
//! fetches them once ([`Tensor::data`]), and the device copy lasts until the values change.

use rayon::prelude::*;
use std::any::Any;
use std::fmt;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// `chunk` as the floats it holds.
///
/// # Safety
/// Every element of `chunk` must be initialised.
unsafe fn assume_init(chunk: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: `MaybeUninit<f32>` has `f32`'s layout and the caller vouches for the values.
    unsafe { std::slice::from_raw_parts_mut(chunk.as_mut_ptr().cast::<f32>(), chunk.len()) }
}

/// Elements per parallel task in element-wise loops, copies and zeroing.
pub const PAR_BLOCK: usize = 1 << 14;

/// Errors raised when tensor shapes do not fit an operation.
#[derive(Debug, thiserror::Error)]
pub enum ShapeError {
    #[error("shape mismatch: {0}")]
    Mismatch(String),
}

/// A tensor's values in a device's memory, put there by a backend.
pub trait DeviceValues: Send + Sync {
    /// How many values.
    fn len(&self) -> usize;
    /// The values, copied to the host.
    fn download(&self) -> Vec<f32>;
    /// For the backend that made them, to find its own buffer.
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// Row-major f32 tensor. The last axis is contiguous.
#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    /// The values on the host: given at construction, or fetched from `device` on first read.
    host: OnceLock<Vec<f32>>,
    /// The same values on a device, kept until the host values are changed.
    device: OnceLock<Arc<dyn DeviceValues>>,
}

impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        self.shape == other.shape && self.data() == other.data()
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor{:?}", self.shape)
    }
}

impl Tensor {
    fn on_host(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self {
            shape,
            host: OnceLock::from(data),
            device: OnceLock::new(),
        }
    }

    /// Values that live on a device; the host reads them on demand.
    pub fn on_device(shape: &[usize], values: Arc<dyn DeviceValues>) -> Self {
        let n: usize = shape.iter().product();
        assert_eq!(
            n,
            values.len(),
            "on_device: {shape:?} from {} values",
            values.len()
        );
        Self {
            shape: shape.to_vec(),
            host: OnceLock::new(),
            device: OnceLock::from(values),
        }
    }

    /// The device copy of the values, if there is one.
    pub fn device_values(&self) -> Option<&Arc<dyn DeviceValues>> {
        self.device.get()
    }

    /// Keeps `values`, which must equal the host values (or their rounding to a backend's
    /// storage type, such as bf16), as their device copy (unless the tensor already has one): a
    /// backend caches an upload so.
    pub fn keep_device_values(&self, values: Arc<dyn DeviceValues>) {
        assert_eq!(values.len(), self.len(), "keep_device_values: length");
        let _ = self.device.set(values);
    }

    /// Wraps `data` with `shape`; fails when the element counts differ.
    pub fn new(shape: &[usize], data: Vec<f32>) -> Result<Self, ShapeError> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(ShapeError::Mismatch(format!(
                "shape {shape:?} holds {n} elements but {} were given",
                data.len()
            )));
        }
        Ok(Self::on_host(shape.to_vec(), data))
    }

    /// A zero tensor; one of more than [`PAR_BLOCK`] elements is zeroed in parallel blocks
    /// (see [`Tensor::par_blocks`]).
    pub fn zeros(shape: &[usize]) -> Self {
        let n = shape.iter().product();
        if n > PAR_BLOCK {
            return Self::par_blocks(shape, PAR_BLOCK, |_, _| {});
        }
        Self::on_host(shape.to_vec(), vec![0.0; n])
    }

    /// A tensor of `shape` holding a copy of `src`, copied in parallel blocks.
    pub fn par_copy_of(shape: &[usize], src: &[f32]) -> Self {
        let n: usize = shape.iter().product();
        assert_eq!(
            n,
            src.len(),
            "par_copy_of: {shape:?} from {} values",
            src.len()
        );
        // SAFETY: each block is written whole from `src`, which has exactly `n` values.
        unsafe {
            Self::par_blocks_uninit(shape, PAR_BLOCK, |i, d| {
                for (d, s) in d.iter_mut().zip(&src[i * PAR_BLOCK..]) {
                    d.write(*s);
                }
            })
        }
    }

    /// A tensor of `shape` built in parallel blocks of `block` elements: each block is
    /// zeroed by its own task, then handed to `f(block_index, block)` to fill. A zeroed
    /// allocation (`zeros`) is one serial memset whenever the allocator reuses freed memory,
    /// as it does for every activation after the first block.
    pub fn par_blocks(
        shape: &[usize],
        block: usize,
        f: impl Fn(usize, &mut [f32]) + Sync + Send,
    ) -> Self {
        // SAFETY: each block is zeroed whole before `f` sees it.
        unsafe {
            Self::par_blocks_uninit(shape, block, |i, chunk| {
                chunk.iter_mut().for_each(|x| {
                    x.write(0.0);
                });
                f(i, assume_init(chunk));
            })
        }
    }

    /// [`Tensor::par_blocks`] without the zeroing, for outputs a kernel writes whole (a GEMM
    /// that overwrites its destination, bias rows): `f(block_index, block)` gets the block
    /// uninitialised.
    ///
    /// # Safety
    /// `f` must initialise every element of its block.
    pub unsafe fn par_blocks_uninit(
        shape: &[usize],
        block: usize,
        f: impl Fn(usize, &mut [MaybeUninit<f32>]) + Sync + Send,
    ) -> Self {
        let n: usize = shape.iter().product();
        let mut data = Vec::<f32>::with_capacity(n);
        data.spare_capacity_mut()[..n]
            .par_chunks_mut(block.max(1))
            .enumerate()
            .for_each(|(i, chunk)| f(i, chunk));
        // SAFETY: the blocks cover all `n` elements and the caller's `f` initialised each.
        unsafe { data.set_len(n) };
        Self::on_host(shape.to_vec(), data)
    }

    pub fn full(shape: &[usize], value: f32) -> Self {
        Self::on_host(shape.to_vec(), vec![value; shape.iter().product()])
    }

    pub fn from_fn(shape: &[usize], f: impl FnMut(usize) -> f32) -> Self {
        let n = shape.iter().product();
        Self::on_host(shape.to_vec(), (0..n).map(f).collect())
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Size of axis `i`; negative indices count from the end.
    pub fn dim(&self, i: isize) -> usize {
        let r = self.shape.len() as isize;
        self.shape[if i < 0 { (r + i) as usize } else { i as usize }]
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values on the host (fetched from the device on first use).
    pub fn data(&self) -> &[f32] {
        self.host.get_or_init(|| {
            let values = self
                .device
                .get()
                .expect("a tensor holds its values somewhere");
            values.download()
        })
    }

    /// The host values, to change: the device copy, if any, is dropped.
    pub fn data_mut(&mut self) -> &mut [f32] {
        self.data();
        self.device.take();
        self.host.get_mut().expect("fetched above")
    }

    /// `self += other` on the host (same shapes), in parallel blocks.
    pub fn add_assign(&mut self, other: &Tensor) {
        assert_eq!(self.shape, other.shape, "add_assign shapes");
        self.data_mut()
            .par_chunks_mut(PAR_BLOCK)
            .zip(other.data().par_chunks(PAR_BLOCK))
            .for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(x, y)| *x += y));
    }

    /// Same data, new shape with the same element count.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Self, ShapeError> {
        let n: usize = shape.iter().product();
        if n != self.len() {
            return Err(ShapeError::Mismatch(format!(
                "cannot reshape {:?} to {shape:?}",
                self.shape
            )));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// `[R, C]` → `[C, R]` (a copy).
    pub fn transposed(&self) -> Tensor {
        let (r, c) = (self.shape[0], self.shape[1]);
        assert_eq!(self.shape.len(), 2, "transposed() takes a matrix");
        let mut data = vec![0f32; r * c];
        let src = self.data();
        for i in 0..r {
            for j in 0..c {
                data[j * r + i] = src[i * c + j];
            }
        }
        Tensor::on_host(vec![c, r], data)
    }

    /// `[A, B, C]` → `[B, A, C]` (a copy, rows of the result in parallel).
    pub fn swap_leading_axes(&self) -> Tensor {
        let (a, b, c) = (self.shape[0], self.shape[1], self.shape[2]);
        let mut out = vec![0f32; self.len()];
        let src = self.data();
        if c > 0 && a > 0 {
            out.par_chunks_mut(a * c).enumerate().for_each(|(j, dst)| {
                for (i, d) in dst.chunks_mut(c).enumerate() {
                    d.copy_from_slice(&src[(i * b + j) * c..(i * b + j + 1) * c]);
                }
            });
        }
        Tensor::on_host(vec![b, a, c], out)
    }

    /// Rows `range` of the leading axis, copied (the tensor itself, cloned, for all of them).
    pub fn slice_rows(&self, range: Range<usize>) -> Tensor {
        if range.start == 0 && range.end == self.dim(0) {
            return self.clone();
        }
        let per = self.len() / self.dim(0).max(1);
        let mut shape = self.shape.clone();
        shape[0] = range.len();
        Tensor::par_copy_of(&shape, &self.data()[range.start * per..range.end * per])
    }

    /// The rows of the leading axis from `start` on set to `part`'s (same trailing shape),
    /// copied in parallel blocks.
    pub fn write_rows(&mut self, start: usize, part: &Tensor) {
        let rows = self.rows_for(start, part);
        self.data_mut()[rows]
            .par_chunks_mut(PAR_BLOCK)
            .zip(part.data().par_chunks(PAR_BLOCK))
            .for_each(|(d, s)| d.copy_from_slice(s));
    }

    /// The values that `part` replaces when written at row `start` ([`Tensor::write_rows`]);
    /// panics unless its trailing shape is this tensor's and its rows fit.
    pub fn rows_for(&self, start: usize, part: &Tensor) -> Range<usize> {
        assert!(
            part.shape()[1..] == self.shape[1..] && start + part.dim(0) <= self.dim(0),
            "write_rows: {:?} at row {start} of {:?}",
            part.shape(),
            self.shape
        );
        let per = self.len() / self.dim(0).max(1);
        start * per..(start + part.dim(0)) * per
    }

    /// Splits the last axis at `at`: `[.., n]` → (`[.., at]`, `[.., n - at]`).
    pub fn split_last(&self, at: usize) -> (Tensor, Tensor) {
        let n = *self.shape.last().expect("rank >= 1");
        let mut left = Vec::with_capacity(self.rows() * at);
        let mut right = Vec::with_capacity(self.rows() * (n - at));
        for row in self.data().chunks(n) {
            left.extend_from_slice(&row[..at]);
            right.extend_from_slice(&row[at..]);
        }
        let mut shape = self.shape.clone();
        *shape.last_mut().unwrap() = at;
        let l = Tensor::on_host(shape.clone(), left);
        *shape.last_mut().unwrap() = n - at;
        (l, Tensor::on_host(shape, right))
    }

    /// Number of rows when the last axis is seen as the row: the product of the leading axes
    /// (so also right when the last axis is empty).
    pub fn rows(&self) -> usize {
        self.shape[..self.shape.len().saturating_sub(1)]
            .iter()
            .product()
    }

    /// Largest absolute element-wise difference to `other` (same shape required).
    pub fn max_abs_diff(&self, other: &Tensor) -> f32 {
        assert_eq!(self.shape, other.shape, "max_abs_diff on different shapes");
        self.data()
            .iter()
            .zip(other.data())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swap_and_split() {
        let t = Tensor::from_fn(&[2, 3, 2], |i| i as f32);
        let s = t.swap_leading_axes();
        assert_eq!(s.shape(), &[3, 2, 2]);
        assert_eq!(&s.data()[..4], &[0.0, 1.0, 6.0, 7.0]);
        let m = Tensor::from_fn(&[2, 3], |i| i as f32).transposed();
        assert_eq!(
            (m.shape(), m.data()),
            (&[3, 2][..], &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0][..])
        );
        let (a, b) = t.split_last(1);
        assert_eq!(a.shape(), &[2, 3, 1]);
        assert_eq!(b.data()[..2], [1.0, 3.0]);
    }
}
