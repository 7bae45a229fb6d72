//! [`Device`] that runs nothing and counts what is allocated: the CUDA backend's memory plan
//! for a model run, measured without a GPU. Kernels and GEMMs are no-ops and downloads are
//! zeros, so a model's results are meaningless, but every buffer the backend asks for (weights,
//! activations, chunks, scratch) is counted for as long as it lives, and so is every transfer
//! between host and device, kernel launch and GEMM.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::device::{Arg, Device, DeviceError, Gemm};
use super::sources::Program;

/// Bytes held now and at most, over the device's life.
#[derive(Default)]
struct Count {
    now: AtomicUsize,
    peak: AtomicUsize,
}

/// What a run asked of the device: transfers each way (calls and bytes), kernel launches
/// and GEMMs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub uploads: u64,
    pub upload_bytes: u64,
    pub downloads: u64,
    pub download_bytes: u64,
    /// The largest single download.
    pub largest_download_bytes: u64,
    pub launches: u64,
    pub gemms: u64,
}

#[derive(Default)]
struct TrafficCount {
    uploads: AtomicU64,
    upload_bytes: AtomicU64,
    downloads: AtomicU64,
    download_bytes: AtomicU64,
    largest_download_bytes: AtomicU64,
    launches: AtomicU64,
    gemms: AtomicU64,
}

impl TrafficCount {
    fn transfer(calls: &AtomicU64, bytes: &AtomicU64, len: usize) {
        calls.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(len as u64 * 4, Ordering::Relaxed);
    }
}

pub struct DryRunDevice {
    free: usize,
    count: Arc<Count>,
    next_address: AtomicU64,
    traffic: TrafficCount,
}

/// A buffer that holds no values, only its size in the count.
pub struct DryRunBuffer {
    len: usize,
    address: u64,
    count: Arc<Count>,
}

impl Drop for DryRunBuffer {
    fn drop(&mut self) {
        self.count.now.fetch_sub(self.len * 4, Ordering::SeqCst);
    }
}

impl DryRunDevice {
    /// A device that reports `free_bytes` of free memory (the backend sizes its chunks from it).
    pub fn new(free_bytes: usize) -> DryRunDevice {
        DryRunDevice {
            free: free_bytes,
            count: Arc::default(),
            next_address: AtomicU64::new(1 << 20),
            traffic: TrafficCount::default(),
        }
    }

    /// The transfers, launches and GEMMs so far.
    pub fn traffic(&self) -> Traffic {
        let t = &self.traffic;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Traffic {
            uploads: get(&t.uploads),
            upload_bytes: get(&t.upload_bytes),
            downloads: get(&t.downloads),
            download_bytes: get(&t.download_bytes),
            largest_download_bytes: get(&t.largest_download_bytes),
            launches: get(&t.launches),
            gemms: get(&t.gemms),
        }
    }

    /// The most bytes held at once so far.
    pub fn peak_bytes(&self) -> usize {
        self.count.peak.load(Ordering::SeqCst)
    }

    fn allocate(&self, len: usize) -> Result<DryRunBuffer, DeviceError> {
        let now = self.count.now.fetch_add(len * 4, Ordering::SeqCst) + len * 4;
        self.count.peak.fetch_max(now, Ordering::SeqCst);
        let address = self
            .next_address
            .fetch_add((len as u64 * 4).max(4), Ordering::SeqCst);
        Ok(DryRunBuffer {
            len,
            address,
            count: self.count.clone(),
        })
    }
}

impl Device for DryRunDevice {
    type Buffer = DryRunBuffer;

    fn upload(&self, data: &[f32]) -> Result<DryRunBuffer, DeviceError> {
        let t = &self.traffic;
        TrafficCount::transfer(&t.uploads, &t.upload_bytes, data.len());
        self.allocate(data.len())
    }

    fn zeros(&self, len: usize) -> Result<DryRunBuffer, DeviceError> {
        self.allocate(len)
    }

    fn uninit(&self, len: usize) -> Result<DryRunBuffer, DeviceError> {
        self.allocate(len)
    }

    fn download(&self, buffer: &DryRunBuffer) -> Result<Vec<f32>, DeviceError> {
        let t = &self.traffic;
        TrafficCount::transfer(&t.downloads, &t.download_bytes, buffer.len);
        t.largest_download_bytes
            .fetch_max(buffer.len as u64 * 4, Ordering::Relaxed);
        Ok(vec![0.0; buffer.len])
    }

    fn free_memory(&self) -> Option<usize> {
        Some(self.free)
    }

    fn address(&self, buffer: &DryRunBuffer) -> u64 {
        buffer.address
    }

    unsafe fn launch(
        &self,
        _program: &Program,
        _kernel: &str,
        _grid: [u32; 3],
        _block: [u32; 3],
        _args: &[Arg],
    ) -> Result<(), DeviceError> {
        self.traffic.launches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn gemm(
        &self,
        _g: &Gemm,
        _a: &DryRunBuffer,
        _b: &DryRunBuffer,
        _c: &mut DryRunBuffer,
    ) -> Result<(), DeviceError> {
        self.traffic.gemms.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cuda::CudaBackend;
    use crate::{Backend, Tensor};

    #[test]
    fn counts_live_buffers_and_their_peak() {
        let device = DryRunDevice::new(1 << 30);
        let a = device.allocate(100).unwrap();
        let b = device.allocate(50).unwrap();
        drop(a);
        let _c = device.allocate(10).unwrap();
        assert_eq!(device.peak_bytes(), 600);
        assert_eq!(device.count.now.load(Ordering::SeqCst), 240);
        drop(b);
        // Through the backend: x and w uploaded, the output allocated; the result shapes hold.
        let be = CudaBackend::new(DryRunDevice::new(1 << 30));
        let y = be.linear(&Tensor::zeros(&[8, 4]), &Tensor::zeros(&[3, 4]), None);
        assert_eq!(y.shape(), &[8, 3]);
        let _ = y.data();
        let t = be.device().traffic();
        assert_eq!((t.uploads, t.upload_bytes), (2, 4 * (32 + 12)), "{t:?}");
        assert_eq!(
            (t.downloads, t.download_bytes, t.gemms),
            (1, 4 * 24, 1),
            "{t:?}"
        );
        assert_eq!(t.largest_download_bytes, 4 * 24);
    }
}
