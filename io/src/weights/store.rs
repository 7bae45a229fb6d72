//! Named tensors and a prefix-scoped accessor for building models from them.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::sync::atomic::{AtomicBool, Ordering};

use ferrofold_kernels::Tensor;

use crate::{IoError, Result};

/// Tensors by dotted name (e.g. `encoder.layers.0.weight`), plus the file's string
/// metadata. Remembers which tensors were fetched so that leftovers can be reported
/// with [`TensorStore::unused`].
#[derive(Debug, Default)]
pub struct TensorStore {
    origin: String,
    tensors: BTreeMap<String, Entry>,
    metadata: HashMap<String, String>,
}

#[derive(Debug)]
struct Entry {
    tensor: Tensor,
    used: AtomicBool,
}

impl TensorStore {
    /// An empty store; `origin` (usually the file path) appears in error messages.
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            ..Self::default()
        }
    }

    /// Where the tensors came from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Adds or replaces a tensor, returning the replaced one.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Option<Tensor> {
        let entry = Entry {
            tensor,
            used: AtomicBool::new(false),
        };
        self.tensors.insert(name.into(), entry).map(|e| e.tensor)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// All tensors in name order (does not mark them used).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, e)| (k.as_str(), &e.tensor))
    }

    /// String metadata stored with the tensors (safetensors `__metadata__`).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    pub fn metadata_mut(&mut self) -> &mut HashMap<String, String> {
        &mut self.metadata
    }

    /// The unscoped accessor.
    pub fn root(&self) -> Scope<'_> {
        Scope {
            store: self,
            prefix: String::new(),
        }
    }

    /// Names of tensors never fetched through a [`Scope`], in name order.
    pub fn unused(&self) -> Vec<&str> {
        self.tensors
            .iter()
            .filter(|(_, e)| !e.used.load(Ordering::Relaxed))
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// Consumes the store, returning its tensors by name.
    pub fn into_tensors(self) -> BTreeMap<String, Tensor> {
        self.tensors
            .into_iter()
            .map(|(k, e)| (k, e.tensor))
            .collect()
    }
}

/// A view of a [`TensorStore`] under a dotted prefix, in the style of candle's
/// `VarBuilder`: `store.root().sub("blocks").sub(0).get("weight", &[64, 64])`
/// fetches `blocks.0.weight` and checks its shape.
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    store: &'a TensorStore,
    prefix: String,
}

impl<'a> Scope<'a> {
    /// The scope one level deeper: `name` is appended to the prefix with a dot.
    pub fn sub(&self, name: impl Display) -> Scope<'a> {
        Scope {
            store: self.store,
            prefix: self.full_name(&name.to_string()),
        }
    }

    /// The dotted prefix of this scope (empty at the root).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `name` with this scope's prefix.
    pub fn full_name(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    /// Whether the tensor exists (does not mark it used).
    pub fn contains(&self, name: &str) -> bool {
        self.store.tensors.contains_key(&self.full_name(name))
    }

    /// The tensor `name` under this scope, whatever its shape.
    pub fn get_any(&self, name: &str) -> Result<&'a Tensor> {
        let full = self.full_name(name);
        let entry = self
            .store
            .tensors
            .get(&full)
            .ok_or_else(|| IoError::MissingTensor {
                name: full,
                origin: self.store.origin.clone(),
            })?;
        entry.used.store(true, Ordering::Relaxed);
        Ok(&entry.tensor)
    }

    /// The tensor `name` under this scope, which must have exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&'a Tensor> {
        let tensor = self.get_any(name)?;
        if tensor.shape() != shape {
            return Err(IoError::ShapeMismatch {
                name: self.full_name(name),
                origin: self.store.origin.clone(),
                expected: shape.to_vec(),
                found: tensor.shape().to_vec(),
            });
        }
        Ok(tensor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> TensorStore {
        let mut s = TensorStore::new("model.safetensors");
        s.insert("main_block.layers.0.weight", Tensor::zeros(&[64, 512]));
        s.insert("main_block.layers.0.bias", Tensor::zeros(&[64]));
        s.insert("head.weight", Tensor::zeros(&[2]));
        s
    }

    #[test]
    fn scoped_get_checks_shape_and_tracks_use() {
        let s = store();
        let layer = s.root().sub("main_block").sub("layers").sub(0usize);
        assert_eq!(layer.prefix(), "main_block.layers.0");
        assert_eq!(layer.get("weight", &[64, 512]).unwrap().shape(), [64, 512]);
        assert!(layer.contains("bias"));
        assert_eq!(s.unused(), ["head.weight", "main_block.layers.0.bias"]);
        s.root()
            .sub("main_block.layers")
            .sub("0")
            .get_any("bias")
            .unwrap();
        assert_eq!(s.unused(), ["head.weight"]);
    }

    #[test]
    fn errors_name_full_tensor_and_shapes() {
        let s = store();
        let layer = s.root().sub("main_block").sub("layers").sub(0);
        assert_eq!(
            layer.get("weight", &[512, 64]).unwrap_err().to_string(),
            "tensor `main_block.layers.0.weight` in model.safetensors has shape [64, 512], \
             expected [512, 64]"
        );
        assert_eq!(
            layer.sub(1).get_any("weight").unwrap_err().to_string(),
            "tensor `main_block.layers.0.1.weight` not found in model.safetensors"
        );
    }

    #[test]
    fn insert_replaces_and_into_tensors_returns_all() {
        let mut s = store();
        assert!(s.insert("head.weight", Tensor::zeros(&[3])).is_some());
        assert_eq!(s.len(), 3);
        let names: Vec<_> = s.into_tensors().into_keys().collect();
        assert_eq!(
            names,
            [
                "head.weight",
                "main_block.layers.0.bias",
                "main_block.layers.0.weight"
            ]
        );
    }
}
