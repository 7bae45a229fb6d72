//! Finding a CUDA device without ever panicking. cudarc's safe API (`CudaContext::new`)
//! panics when the driver library cannot be loaded, so the probe first checks that
//! `libcuda` loads and only then calls the driver, through cudarc's result layer, with
//! `cuInit` and device queries (no context is created).

use std::panic::{catch_unwind, AssertUnwindSafe};

use cudarc::driver::{result, sys};

/// What the probe found about one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability (major, minor), e.g. (9, 0) for H100/H200.
    pub compute_capability: (u32, u32),
    pub total_memory: usize,
    /// The driver's CUDA version as `major * 1000 + minor * 10` (12040 for 12.4).
    pub driver_version: i32,
    /// Devices the driver sees.
    pub device_count: usize,
}

impl DeviceInfo {
    /// NVRTC's virtual architecture for this device, e.g. `compute_90`.
    pub fn nvrtc_arch(&self) -> String {
        let (major, minor) = self.compute_capability;
        format!("compute_{major}{minor}")
    }
}

/// Why no CUDA device can be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoDevice {
    #[error(
        "no CUDA driver: the driver library (libcuda.so) could not be loaded (tried {tried}); \
         install the NVIDIA driver or add its folder to LD_LIBRARY_PATH"
    )]
    NoDriverLibrary { tried: String },
    #[error(
        "the CUDA driver failed to initialise (cuInit: {0}); is a GPU visible to this process?"
    )]
    InitFailed(String),
    #[error("the CUDA driver reports no devices")]
    NoDevices,
    #[error("CUDA device {ordinal} does not exist: the driver reports {count} device(s)")]
    BadOrdinal { ordinal: usize, count: usize },
    #[error("querying CUDA device {ordinal} failed: {message}")]
    Query { ordinal: usize, message: String },
}

/// Device 0 if there is one: the check behind "CPU when no GPU is present".
pub fn cuda_available() -> Result<DeviceInfo, NoDevice> {
    cuda_device(0)
}

/// Whether cudarc can load the driver library (`libcuda.so`/`libcuda.so.1`); loads
/// nothing else and never panics.
pub fn driver_library_present() -> bool {
    // SAFETY: only tries to dlopen the candidates and drops them again.
    catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false)
}

/// Device `ordinal`, or why it cannot be used. Never panics.
pub fn cuda_device(ordinal: usize) -> Result<DeviceInfo, NoDevice> {
    if !driver_library_present() {
        return Err(NoDevice::NoDriverLibrary {
            tried: driver_candidates(),
        });
    }
    catch_unwind(AssertUnwindSafe(|| query(ordinal))).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic in the CUDA driver bindings".into());
        Err(NoDevice::Query { ordinal, message })
    })
}

fn driver_candidates() -> String {
    let mut names = cudarc::get_lib_name_candidates("cuda");
    names.truncate(3);
    names.push("...".into());
    names.join(", ")
}

fn query(ordinal: usize) -> Result<DeviceInfo, NoDevice> {
    result::init().map_err(|e| NoDevice::InitFailed(format!("{e:?}")))?;
    let count = result::device::get_count().map_err(|e| NoDevice::InitFailed(format!("{e:?}")))?;
    let count = count.max(0) as usize;
    if count == 0 {
        return Err(NoDevice::NoDevices);
    }
    if ordinal >= count {
        return Err(NoDevice::BadOrdinal { ordinal, count });
    }
    let err = |e: result::DriverError| NoDevice::Query {
        ordinal,
        message: format!("{e:?}"),
    };
    let dev = result::device::get(ordinal as i32).map_err(err)?;
    let name = result::device::get_name(dev).map_err(err)?;
    use sys::CUdevice_attribute::*;
    // SAFETY: `dev` is a valid device handle from cuDeviceGet after cuInit.
    let (major, minor, total_memory) = unsafe {
        (
            result::device::get_attribute(dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
                .map_err(err)?,
            result::device::get_attribute(dev, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
                .map_err(err)?,
            result::device::total_mem(dev).map_err(err)?,
        )
    };
    let mut driver_version = 0;
    // SAFETY: writes one int.
    unsafe { sys::cuDriverGetVersion(&mut driver_version) }
        .result()
        .map_err(err)?;
    Ok(DeviceInfo {
        ordinal,
        name,
        compute_capability: (major as u32, minor as u32),
        total_memory,
        driver_version,
        device_count: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs everywhere: on a machine without a driver the probe must answer with a reason,
    /// not panic; with one, the answer must describe a real device.
    #[test]
    fn probe_never_panics() {
        match cuda_available() {
            Ok(info) => {
                assert!(info.compute_capability.0 >= 3, "{info:?}");
                assert!(info.total_memory > 0);
                eprintln!("CUDA device: {info:?}");
            }
            Err(e) => {
                let msg = e.to_string();
                assert!(!msg.is_empty());
                eprintln!("no CUDA device: {msg}");
            }
        }
        if !driver_library_present() {
            assert!(matches!(
                cuda_device(3),
                Err(NoDevice::NoDriverLibrary { .. })
            ));
        }
    }
}
