//! A device that fails inside an op (out of memory, a failed launch): the op interface returns
//! tensors, not results, so a device backend's op panics with a [`DeviceFailure`], and
//! [`catch_device_failure`] around a model's run turns it back into an error for the user.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

/// What a device backend's op panics with when its device fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{backend}, {op}: {message}")]
pub struct DeviceFailure {
    pub backend: &'static str,
    pub op: String,
    pub message: String,
}

/// Runs inside [`catch_device_failure`] now, on any thread.
static CATCHING: AtomicUsize = AtomicUsize::new(0);

impl DeviceFailure {
    /// Panics with the failure. The panic message says what failed, or nothing where
    /// [`catch_device_failure`] is about to report it.
    pub fn raise(self) -> ! {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                match info.payload().downcast_ref::<DeviceFailure>() {
                    Some(_) if CATCHING.load(Ordering::SeqCst) > 0 => {}
                    Some(failure) => eprintln!("{failure}"),
                    None => previous(info),
                }
            }));
        });
        std::panic::panic_any(self)
    }
}

/// `f()`, or the [`DeviceFailure`] that stopped it (on this thread or on a rayon worker it
/// waited for); any other panic unwinds on.
pub fn catch_device_failure<T>(f: impl FnOnce() -> T) -> Result<T, DeviceFailure> {
    CATCHING.fetch_add(1, Ordering::SeqCst);
    let result = catch_unwind(AssertUnwindSafe(f));
    CATCHING.fetch_sub(1, Ordering::SeqCst);
    result.map_err(|payload| match payload.downcast::<DeviceFailure>() {
        Ok(failure) => *failure,
        Err(other) => resume_unwind(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_become_errors_and_other_panics_unwind() {
        let failure = DeviceFailure {
            backend: "test backend",
            op: "linear".into(),
            message: "out of memory".into(),
        };
        let caught = catch_device_failure(|| -> u32 { failure.clone().raise() });
        assert_eq!(caught, Err(failure.clone()));
        assert_eq!(
            caught.unwrap_err().to_string(),
            "test backend, linear: out of memory"
        );
        // From a rayon worker too.
        let caught = catch_device_failure(|| {
            rayon::join(|| (), || -> () { failure.clone().raise() });
        });
        assert_eq!(caught, Err(failure));
        assert_eq!(catch_device_failure(|| 7), Ok(7));
        let other = catch_unwind(|| catch_device_failure(|| panic!("a bug, not the device")));
        assert!(other.is_err(), "other panics unwind through");
    }
}
