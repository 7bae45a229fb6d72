//! Named tensors and a prefix-scoped accessor for building models from them.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

use ferrofold_kernels::Tensor;

use super::dtype::ElemType;
use crate::{IoError, Result};

/// Tensors by dotted name (e.g. `encoder.layers.0.weight`), plus the file's string
/// metadata. Remembers which tensors were fetched so that leftovers can be reported
/// with [`TensorStore::unused`].
///
/// A store opened on a file of uncompressed arrays (an `.npz` parameter file) keeps only
/// their shapes and offsets: [`Scope::get_owned`] reads each array, or one layer of a
/// stacked array, straight from the file into the tensor it returns, so the parameters
/// are never held twice while a model is built from them.
#[derive(Debug, Default)]
pub struct TensorStore {
    origin: String,
    tensors: BTreeMap<String, Entry>,
    metadata: HashMap<String, String>,
    /// The file that [`InFile`] entries are read from.
    file: Option<Mutex<File>>,
}

#[derive(Debug)]
struct Entry {
    /// The decoded tensor: set on insertion, or on the first borrow of an in-file array.
    tensor: OnceLock<Tensor>,
    /// Where the array lies in the store's file, for arrays read on request.
    in_file: Option<InFile>,
    used: AtomicBool,
}

/// An array stored uncompressed in the store's file: `shape` elements of `elem` from
/// byte `offset`, little-endian, C order.
#[derive(Debug, Clone)]
pub(crate) struct InFile {
    pub(crate) shape: Vec<usize>,
    pub(crate) elem: ElemType,
    pub(crate) offset: u64,
}

/// Bytes read from the file per step while decoding an in-file array (a stack buffer).
const READ_CHUNK: usize = 1 << 16;

impl Entry {
    fn shape(&self) -> &[usize] {
        match (&self.in_file, self.tensor.get()) {
            (_, Some(t)) => t.shape(),
            (Some(f), None) => &f.shape,
            (None, None) => unreachable!("an entry holds a tensor or an in-file array"),
        }
    }
}

impl TensorStore {
    /// An empty store; `origin` (usually the file path) appears in error messages.
    pub fn new(origin: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            ..Self::default()
        }
    }

    /// A store whose [`InFile`] entries ([`TensorStore::insert_in_file`]) lie in `file`.
    pub(crate) fn with_file(origin: impl Into<String>, file: File) -> Self {
        Self {
            file: Some(Mutex::new(file)),
            ..Self::new(origin)
        }
    }

    /// Adds or replaces a tensor, returning the replaced one (`None` when the replaced
    /// entry was an array not yet read from the file).
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Option<Tensor> {
        let entry = Entry {
            tensor: OnceLock::from(tensor),
            in_file: None,
            used: AtomicBool::new(false),
        };
        self.tensors
            .insert(name.into(), entry)
            .and_then(|e| e.tensor.into_inner())
    }

    /// Adds an array that is read from the store's file when it is fetched.
    pub(crate) fn insert_in_file(&mut self, name: impl Into<String>, array: InFile) {
        debug_assert!(self.file.is_some(), "in-file arrays need the store's file");
        let entry = Entry {
            tensor: OnceLock::new(),
            in_file: Some(array),
            used: AtomicBool::new(false),
        };
        self.tensors.insert(name.into(), entry);
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Bytes of decoded tensors the store holds in memory (arrays still in its file, as in an
    /// uncompressed npz, hold none until borrowed).
    pub fn resident_bytes(&self) -> u64 {
        self.tensors
            .values()
            .filter_map(|e| e.tensor.get())
            .map(|t| 4 * t.len() as u64)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// All tensors in name order (does not mark them used). Arrays still in the file are
    /// read first (and then kept), which fails only if the file can no longer be read.
    pub fn iter(&self) -> Result<impl Iterator<Item = (&str, &Tensor)>> {
        for (name, entry) in &self.tensors {
            self.tensor(name, entry)?;
        }
        Ok(self.tensors.iter().map(|(k, e)| {
            let tensor = e.tensor.get().expect("every tensor was read above");
            (k.as_str(), tensor)
        }))
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

    /// The entry's tensor, read from the file (and kept) if it is not yet in memory.
    fn tensor<'s>(&'s self, name: &str, entry: &'s Entry) -> Result<&'s Tensor> {
        if let Some(t) = entry.tensor.get() {
            return Ok(t);
        }
        let array = entry
            .in_file
            .as_ref()
            .expect("an entry without a tensor is in the file");
        let mut data = vec![0f32; array.shape.iter().product()];
        self.read_into(name, array, 0..data.len(), &mut data)?;
        let t = Tensor::new(&array.shape, data)
            .map_err(|e| IoError::weights(&self.origin, e.to_string()))?;
        // Another thread may have read it meanwhile: both copies are equal.
        Ok(entry.tensor.get_or_init(|| t))
    }

    /// Elements `range` of the in-file `array` (named `name` in errors), decoded into `out`
    /// (`range.len()` long) through a small stack buffer.
    fn read_into(
        &self,
        name: &str,
        array: &InFile,
        range: Range<usize>,
        out: &mut [f32],
    ) -> Result<()> {
        let fail = |e: std::io::Error| {
            IoError::weights(&self.origin, format!("array `{name}`: cannot read it: {e}"))
        };
        let size = array.elem.size();
        let mut file = self
            .file
            .as_ref()
            .expect("in-file arrays come with their file")
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        file.seek(SeekFrom::Start(array.offset + (range.start * size) as u64))
            .map_err(fail)?;
        let mut buf = [0u8; READ_CHUNK];
        let step = READ_CHUNK / size;
        for dst in out[..range.len()].chunks_mut(step) {
            let chunk = &mut buf[..dst.len() * size];
            file.read_exact(chunk).map_err(fail)?;
            array.elem.decode_into(chunk, dst);
        }
        Ok(())
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

    /// The tensor `name` with `shape`, copied (arrays still in the file are read straight
    /// into it); in a [`Scope::layer`] scope the stored tensor is `[layers, ..shape]` and
    /// the scope's slice is returned.
    pub fn get_owned(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let (full, entry, range) = self.slice(name, shape)?;
        let flat = self.flat(&full, entry, range)?;
        Tensor::new(shape, flat).map_err(|e| IoError::weights(&self.store.origin, e.to_string()))
    }

    /// Elements `range` of `entry` (named `full`), decoded.
    fn flat(&self, full: &str, entry: &Entry, range: Range<usize>) -> Result<Vec<f32>> {
        match (entry.tensor.get(), &entry.in_file) {
            (Some(t), _) => Ok(t.data()[range].to_vec()),
            (None, Some(array)) => {
                let mut data = vec![0f32; range.len()];
                self.store.read_into(full, array, range, &mut data)?;
                Ok(data)
            }
            (None, None) => unreachable!("an entry holds a tensor or an in-file array"),
        }
    }

    /// Like [`Scope::get_owned`], but the tensor, seen as the matrix
    /// `[shape[..split].product(), shape[split..].product()]`, comes transposed (a Haiku
    /// `[in, out]` weight as `[out, in]`): read flat, then transposed.
    pub fn get_owned_transposed(
        &self,
        name: &str,
        shape: &[usize],
        split: usize,
    ) -> Result<Tensor> {
        let (full, entry, range) = self.slice(name, shape)?;
        let rows: usize = shape[..split].iter().product();
        let cols: usize = shape[split..].iter().product();
        let flat = self.flat(&full, entry, range)?; // [rows, cols]
        let mut out = vec![0f32; rows * cols]; // [cols, rows]
        for (r, row) in flat.chunks_exact(cols.max(1)).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                out[c * rows + r] = v;
            }
        }
        Tensor::new(&[cols, rows], out)
            .map_err(|e| IoError::weights(&self.store.origin, e.to_string()))
    }

    /// The entry `name` (marked used) with its full name and the range of its elements
    /// that [`Scope::get_owned`] returns, after checking `shape`.
    fn slice(&self, name: &str, shape: &[usize]) -> Result<(String, &'a Entry, Range<usize>)> {
        let (full, entry) = self.entry(name)?;
        let found = entry.shape();
        let size: usize = shape.iter().product();
        let range = match self.layer {
            None if found == shape => 0..size,
            None => {
                return Err(IoError::ShapeMismatch {
                    name: full,
                    origin: self.store.origin.clone(),
                    expected: shape.to_vec(),
                    found: found.to_vec(),
                })
            }
            Some(index) => {
                if found.len() != shape.len() + 1 || found[1..] != *shape || index >= found[0] {
                    return Err(IoError::ShapeMismatch {
                        name: format!("{full} (layer {index})"),
                        origin: self.store.origin.clone(),
                        expected: [&[index + 1][..], shape].concat(),
                        found: found.to_vec(),
                    });
                }
                index * size..(index + 1) * size
            }
        };
        Ok((full, entry, range))
    }

    /// The entry `name` under this scope (marked used) and its full name.
    fn entry(&self, name: &str) -> Result<(String, &'a Entry)> {
        let full = self.full_name(name);
        let entry = self
            .store
            .tensors
            .get(&full)
            .ok_or_else(|| IoError::MissingTensor {
                name: full.clone(),
                origin: self.store.origin.clone(),
            })?;
        entry.used.store(true, Ordering::Relaxed);
        Ok((full, entry))
    }

    /// The tensor `name` under this scope, whatever its shape (an array still in the file
    /// is read and kept in the store).
    pub fn get_any(&self, name: &str) -> Result<&'a Tensor> {
        let (full, entry) = self.entry(name)?;
        self.store.tensor(&full, entry)
    }

    /// The tensor `name` under this scope, which must have exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<&'a Tensor> {
        let (full, entry) = self.entry(name)?;
        if entry.shape() != shape {
            return Err(IoError::ShapeMismatch {
                name: full,
                origin: self.store.origin.clone(),
                expected: shape.to_vec(),
                found: entry.shape().to_vec(),
            });
        }
        self.store.tensor(&full, entry)
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
        let names: Vec<_> = s.iter().unwrap().map(|(n, _)| n).collect();
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
