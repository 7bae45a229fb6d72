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

    /// The unscoped accessor for dotted names (PyTorch, safetensors).
    pub fn root(&self) -> Scope<'_> {
        Scope {
            store: self,
            prefix: String::new(),
            naming: Naming::Dotted,
            layer: None,
        }
    }

    /// The unscoped accessor for Haiku names (AlphaFold's npz files):
    /// `root_haiku().sub("alphafold").sub("evoformer").get("weights", ..)` fetches
    /// `alphafold/evoformer//weights`.
    pub fn root_haiku(&self) -> Scope<'_> {
        Scope {
            naming: Naming::Haiku,
            ..self.root()
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
}

/// A view of a [`TensorStore`] under a dotted prefix, in the style of candle's
/// `VarBuilder`: `store.root().sub("blocks").sub(0).get("weight", &[64, 64])`
/// fetches `blocks.0.weight` and checks its shape.
///
/// With [`Scope::layer`], every tensor under the scope is one slice of a stack along the
/// leading axis (AlphaFold stacks its 48 Evoformer blocks that way); such tensors are
/// fetched with [`Scope::get_owned`].
#[derive(Debug, Clone)]
pub struct Scope<'a> {
    store: &'a TensorStore,
    prefix: String,
    naming: Naming,
    layer: Option<usize>,
}

/// How scope names join: `a.b.c` (PyTorch) or `a/b//c` (Haiku: modules joined by `/`,
/// the parameter after `//`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Naming {
    Dotted,
    Haiku,
}

impl<'a> Scope<'a> {
    /// The scope one level deeper: `name` is appended to the prefix with a dot.
    pub fn sub(&self, name: impl Display) -> Scope<'a> {
        let name = name.to_string();
        let prefix = match (self.prefix.is_empty(), self.naming) {
            (true, _) => name,
            (false, Naming::Dotted) => format!("{}.{name}", self.prefix),
            (false, Naming::Haiku) => format!("{}/{name}", self.prefix),
        };
        Scope {
            prefix,
            ..self.clone()
        }
    }

    /// The same scope, reading slice `index` of every (stacked) tensor under it.
    pub fn layer(&self, index: usize) -> Scope<'a> {
        Scope {
            layer: Some(index),
            ..self.clone()
        }
    }

    /// `name` with this scope's prefix.
    pub fn full_name(&self, name: &str) -> String {
        match (self.prefix.is_empty(), self.naming) {
            (true, _) => name.to_string(),
            (false, Naming::Dotted) => format!("{}.{name}", self.prefix),
            (false, Naming::Haiku) => format!("{}//{name}", self.prefix),
        }
    }

    /// The tensor `name` with `shape`, copied; in a [`Scope::layer`] scope the stored
    /// tensor is `[layers, ..shape]` and the scope's slice is returned.
    pub fn get_owned(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let Some(index) = self.layer else {
            return self.get(name, shape).cloned();
        };
        let tensor = self.get_any(name)?;
        let found = tensor.shape();
        if found.len() != shape.len() + 1 || found[1..] != *shape || index >= found[0] {
            return Err(IoError::ShapeMismatch {
                name: format!("{} (layer {index})", self.full_name(name)),
                origin: self.store.origin.clone(),
                expected: [&[index + 1][..], shape].concat(),
                found: found.to_vec(),
            });
        }
        let size: usize = shape.iter().product();
        Tensor::new(
            shape,
            tensor.data()[index * size..(index + 1) * size].to_vec(),
        )
        .map_err(|e| IoError::weights(&self.store.origin, e.to_string()))
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
    fn haiku_names_and_stacked_layers() {
        let mut s = TensorStore::new("params.npz");
        s.insert(
            "alphafold/evoformer/iteration/attention//query_w",
            Tensor::from_fn(&[3, 2, 2], |i| i as f32),
        );
        let p = s
            .root_haiku()
            .sub("alphafold")
            .sub("evoformer")
            .sub("iteration");
        let q = p
            .layer(1)
            .sub("attention")
            .get_owned("query_w", &[2, 2])
            .unwrap();
        assert_eq!(q.data(), &[4.0, 5.0, 6.0, 7.0]);
        let err = p
            .layer(3)
            .sub("attention")
            .get_owned("query_w", &[2, 2])
            .unwrap_err();
        assert!(
            err.to_string().contains("attention//query_w (layer 3)"),
            "{err}"
        );
        assert!(p.sub("attention").get_owned("query_w", &[2, 2]).is_err());
    }

    #[test]
    fn scoped_get_checks_shape_and_tracks_use() {
        let s = store();
        let layer = s.root().sub("main_block").sub("layers").sub(0usize);
        assert_eq!(layer.full_name("bias"), "main_block.layers.0.bias");
        assert_eq!(s.root().full_name("head"), "head");
        assert_eq!(layer.get("weight", &[64, 512]).unwrap().shape(), [64, 512]);
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
    fn insert_replaces_and_iter_lists_all_in_name_order() {
        let mut s = store();
        assert!(s.insert("head.weight", Tensor::zeros(&[3])).is_some());
        assert_eq!(s.len(), 3);
        assert_eq!(s.root().get_any("head.weight").unwrap().shape(), [3]);
        let names: Vec<_> = s.iter().map(|(n, _)| n).collect();
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
