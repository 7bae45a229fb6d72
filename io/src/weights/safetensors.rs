//! Reading and writing `.safetensors` files.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::Path;

use ::safetensors::tensor::{Dtype, SafeTensors, View};
use ferrofold_kernels::Tensor;
use memmap2::Mmap;

use super::dtype::ElemType;
use super::store::TensorStore;
use crate::atomic::write_atomic;
use crate::{IoError, Result};

/// Loads every tensor of a safetensors file as f32 (F64, F16, BF16, integer and bool
/// tensors are converted), with the file's `__metadata__`.
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<TensorStore> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    let file = File::open(path).map_err(|e| IoError::file(path, e))?;
    // SAFETY: the map is read-only and dropped before returning; like every reader of
    // memory-mapped weights we assume the file is not truncated while we read it.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| IoError::file(path, e))?;
    let bad = |e: ::safetensors::SafeTensorError| {
        IoError::weights(&origin, format!("invalid safetensors file: {e}"))
    };
    let tensors = SafeTensors::deserialize(&map).map_err(bad)?;
    let (_, header) = SafeTensors::read_metadata(&map).map_err(bad)?;

    let mut store = TensorStore::new(&origin);
    if let Some(metadata) = header.metadata() {
        store.metadata_mut().clone_from(metadata);
    }
    for (name, view) in tensors.iter() {
        let elem = elem_type(view.dtype()).ok_or_else(|| {
            IoError::weights(
                &origin,
                format!("tensor `{name}` has unsupported dtype {:?}", view.dtype()),
            )
        })?;
        let tensor = Tensor::new(view.shape(), elem.decode(view.data()))
            .map_err(|e| IoError::weights(&origin, format!("tensor `{name}`: {e}")))?;
        store.insert(name, tensor);
    }
    Ok(store)
}

/// Writes `tensors` as an F32 safetensors file with `metadata`, atomically.
pub fn save_safetensors(
    path: impl AsRef<Path>,
    tensors: &[(&str, &Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let mut seen = HashSet::new();
    if let Some((dup, _)) = tensors.iter().find(|(name, _)| !seen.insert(*name)) {
        return Err(IoError::weights(
            path.display().to_string(),
            format!("tensor name `{dup}` appears twice"),
        ));
    }
    let views = tensors.iter().map(|&(name, t)| (name, F32View(t)));
    let metadata = (!metadata.is_empty()).then(|| metadata.clone());
    let bytes = ::safetensors::serialize(views, metadata).map_err(|e| {
        IoError::weights(path.display().to_string(), format!("cannot serialize: {e}"))
    })?;
    write_atomic(path, &bytes)
}

/// Maps a safetensors dtype to the ones we convert.
fn elem_type(dtype: Dtype) -> Option<ElemType> {
    Some(match dtype {
        Dtype::F64 => ElemType::F64,
        Dtype::F32 => ElemType::F32,
        Dtype::F16 => ElemType::F16,
        Dtype::BF16 => ElemType::BF16,
        Dtype::I64 => ElemType::I64,
        Dtype::I32 => ElemType::I32,
        Dtype::I16 => ElemType::I16,
        Dtype::I8 => ElemType::I8,
        Dtype::U8 => ElemType::U8,
        Dtype::BOOL => ElemType::Bool,
        _ => return None,
    })
}

/// An f32 tensor as safetensors sees it.
struct F32View<'a>(&'a Tensor);

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        self.0.shape()
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.0.data().iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        self.0.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let a = Tensor::from_fn(&[2, 3], |i| i as f32 - 2.5);
        let b = Tensor::new(&[], vec![7.0]).unwrap();
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        save_safetensors(&path, &[("x.a", &a), ("b", &b)], &meta).unwrap();
        let store = load_safetensors(&path).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(store.metadata(), &meta);
        assert_eq!(store.root().sub("x").get("a", &[2, 3]).unwrap(), &a);
        assert_eq!(store.root().get("b", &[]).unwrap(), &b);
    }

    #[test]
    fn converts_half_precision_and_integers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.safetensors");
        let halves: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let ints: Vec<u8> = [3i64, -4].iter().flat_map(|v| v.to_le_bytes()).collect();
        let views = [
            (
                "h",
                ::safetensors::tensor::TensorView::new(Dtype::F16, vec![2], &halves).unwrap(),
            ),
            (
                "i",
                ::safetensors::tensor::TensorView::new(Dtype::I64, vec![2, 1], &ints).unwrap(),
            ),
        ];
        ::safetensors::serialize_to_file(views, None, &path).unwrap();
        let store = load_safetensors(&path).unwrap();
        assert!(store.metadata().is_empty());
        assert_eq!(store.root().get("h", &[2]).unwrap().data(), [1.5, -2.0]);
        assert_eq!(store.root().get("i", &[2, 1]).unwrap().data(), [3.0, -4.0]);
    }

    #[test]
    fn rejects_duplicates_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let t = Tensor::zeros(&[1]);
        let msg = save_safetensors(&path, &[("a", &t), ("a", &t)], &HashMap::new())
            .unwrap_err()
            .to_string();
        assert!(msg.contains("tensor name `a` appears twice"), "{msg}");
        assert!(!path.exists());

        std::fs::write(&path, b"\xff\xff\xff\xff\xff\xff\xff\xffgarbage").unwrap();
        let msg = load_safetensors(&path).unwrap_err().to_string();
        assert!(
            msg.contains("w.safetensors: invalid safetensors file"),
            "{msg}"
        );
    }
}
