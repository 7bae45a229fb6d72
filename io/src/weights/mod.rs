//! Model weights: safetensors files and PyTorch zip checkpoints, loaded as f32 into a
//! [`TensorStore`].

mod dtype;
pub mod safetensors;
pub mod store;
pub mod torch_zip;
mod unpickle;

use std::fs::File;
use std::io::Read;
use std::path::Path;

pub use self::safetensors::{load_safetensors, save_safetensors};
pub use store::{Scope, TensorStore};
pub use torch_zip::load_torch_checkpoint;
pub use unpickle::PickleError;

use crate::{IoError, Result};

/// Loads a weights file, choosing the reader from its first bytes: a zip archive is a
/// PyTorch checkpoint, anything else is read as safetensors.
pub fn load_weights(path: impl AsRef<Path>) -> Result<TensorStore> {
    let path = path.as_ref();
    let mut magic = Vec::with_capacity(4);
    File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut magic))
        .map_err(|e| IoError::file(path, e))?;
    match magic.as_slice() {
        b"PK\x03\x04" => load_torch_checkpoint(path),
        [0x80, ..] => Err(IoError::weights(
            path.display().to_string(),
            "legacy (pre-1.6) PyTorch checkpoint format is not supported; re-save it with \
             a current torch.save",
        )),
        _ => load_safetensors(path),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ferrofold_kernels::Tensor;

    use super::*;

    #[test]
    fn load_weights_dispatches_on_content() {
        let dir = tempfile::tempdir().unwrap();
        let st = dir.path().join("w.bin");
        let t = Tensor::zeros(&[2]);
        save_safetensors(&st, &[("t", &t)], &HashMap::new()).unwrap();
        assert_eq!(load_weights(&st).unwrap().len(), 1);

        let zip = dir.path().join("z.pt");
        std::fs::write(&zip, b"PK\x03\x04 truncated").unwrap();
        let msg = load_weights(&zip).unwrap_err().to_string();
        assert!(msg.contains("not a readable zip archive"), "{msg}");

        let legacy = dir.path().join("old.pt");
        std::fs::write(&legacy, b"\x80\x02\x8a\x0a").unwrap();
        let msg = load_weights(&legacy).unwrap_err().to_string();
        assert!(msg.contains("legacy (pre-1.6) PyTorch checkpoint"), "{msg}");

        let missing = dir.path().join("missing.safetensors");
        let msg = load_weights(&missing).unwrap_err().to_string();
        assert!(msg.starts_with(&missing.display().to_string()), "{msg}");
    }
}
