//! Model weights: safetensors files, PyTorch zip checkpoints and NumPy npz archives,
//! loaded as f32 into a [`TensorStore`].

mod dtype;
pub mod npz;
pub mod safetensors;
pub mod store;
pub mod torch_zip;
mod unpickle;

pub use self::safetensors::{load_safetensors, save_safetensors};
pub use npz::{load_npz, npz_bytes, save_npz};
pub use store::{Scope, TensorStore};
pub use torch_zip::{load_torch_checkpoint, read_zip_entry};
pub use unpickle::PickleError;
