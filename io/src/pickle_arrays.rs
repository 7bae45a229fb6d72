//! NumPy arrays from Python pickles, such as AlphaFold2's `features.pkl` (a pickled
//! dict of NumPy arrays written by its data pipeline with `pickle.dump(..., protocol=4)`).
//!
//! The pickle runs on the same restricted virtual machine as PyTorch checkpoints
//! (`weights::unpickle`): nothing is executed, and the only globals accepted are the
//! ones NumPy's own pickling emits:
//!
//! - `numpy.core.multiarray._reconstruct` / `numpy._core.multiarray._reconstruct`, with
//!   `numpy.ndarray` as its class argument, followed by BUILD with the array state
//!   `(version, shape, dtype, is_fortran, raw bytes or list of objects)`;
//! - `numpy.dtype`, followed by BUILD with its state tuple (byte order, item size);
//! - `numpy.core.multiarray.scalar` / `numpy._core.multiarray.scalar`;
//! - `numpy.core.numeric._frombuffer` / `numpy._core.numeric._frombuffer` (protocol 5,
//!   in-band buffers only);
//! - `_codecs.encode(text, 'latin1')` and `__builtin__.bytes()` / `builtins.bytes()`
//!   (no arguments), which is how protocol 2 writes non-empty and empty `bytes`.
//!
//! Any other global (`os.system`, `builtins.eval`, `numpy.load`, ...) is refused with
//! [`PickleError::ForbiddenNumpyGlobal`](crate::weights::PickleError) naming it.
//! Supported element types are bool, signed and unsigned integers, floats (2, 4 and 8
//! bytes, either byte order), fixed-width bytes (`|S`), fixed-width text (`<U`, `>U`)
//! and objects (`|O`) holding bytes or str. Fortran-ordered arrays are returned in
//! C (row-major) order.
//!
//! Memory is bounded like checkpoints: the file is at most 1 GiB, and the values built
//! from it (f32 data, byte strings and their bookkeeping) at most 1 GiB in all, on top
//! of the VM's own limits on stack, memo, container items, ranks and array counts.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;

use half::f16;

use crate::weights::torch_zip::MAX_CHECKPOINT_BYTES;
use crate::{IoError, Result};

/// One value of a pickled dict.
#[derive(Debug, Clone, PartialEq)]
pub enum NpValue {
    /// A numeric or boolean array converted to f32 (integers are exact up to 2^24;
    /// booleans are 0 and 1), in C (row-major) order. `dtype` is NumPy's `dtype.str`
    /// of the stored array, e.g. `<f4`, `>i4`, `|b1`.
    Array {
        shape: Vec<usize>,
        dtype: String,
        data: Vec<f32>,
    },
    /// An array of byte strings, in C order: object arrays of `bytes` (AlphaFold's
    /// `sequence`, `domain_name`, `msa_species_identifiers`, ...) or `str` (as UTF-8),
    /// and fixed-width `|S` / `<U` arrays (trailing NULs stripped, as NumPy does when
    /// indexing; text as UTF-8). A plain `bytes` value has shape `[]` and one item.
    Bytes {
        shape: Vec<usize>,
        items: Vec<Vec<u8>>,
    },
    /// A Python `int` or `bool`, or a NumPy integer or boolean scalar.
    Int(i64),
    /// A Python `float` or a NumPy floating-point scalar.
    Float(f64),
    /// A Python `str` or a NumPy `str_` scalar.
    Str(String),
}

impl NpValue {
    /// The array shape; `[]` for scalars and strings.
    pub fn shape(&self) -> &[usize] {
        match self {
            Self::Array { shape, .. } | Self::Bytes { shape, .. } => shape,
            _ => &[],
        }
    }

    /// The f32 data of a numeric array.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match self {
            Self::Array { data, .. } => Some(data),
            _ => None,
        }
    }

    /// The items of a byte-string array.
    pub fn as_bytes(&self) -> Option<&[Vec<u8>]> {
        match self {
            Self::Bytes { items, .. } => Some(items),
            _ => None,
        }
    }
}

/// Loads a pickled dict of NumPy arrays (protocols 2 to 5), such as AlphaFold2's
/// `features.pkl`. See the [module docs](self) for what is accepted.
pub fn load_numpy_pickle(path: impl AsRef<Path>) -> Result<BTreeMap<String, NpValue>> {
    let path = path.as_ref();
    let origin = path.display().to_string();
    let file = File::open(path).map_err(|e| IoError::file(path, e))?;
    let mut bytes = Vec::new();
    // One byte past the limit tells a too-large file apart without reading all of it.
    file.take(MAX_CHECKPOINT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| IoError::file(path, e))?;
    if bytes.len() as u64 > MAX_CHECKPOINT_BYTES {
        return Err(IoError::weights(
            &origin,
            format!("pickle is larger than the {MAX_CHECKPOINT_BYTES}-byte limit"),
        ));
    }
    parse_numpy_pickle(&bytes, &origin)
}

/// [`load_numpy_pickle`] on a pickle held in memory; `origin` names it in errors.
pub fn parse_numpy_pickle(pickle: &[u8], origin: &str) -> Result<BTreeMap<String, NpValue>> {
    let raw = RawDict::unpickle(pickle).map_err(|error| IoError::Pickle {
        origin: origin.to_string(),
        error,
    })?;
    let mut budget = MAX_CHECKPOINT_BYTES;
    decode_all(raw, origin, &mut budget)
}

/// Decodes every value of `raw`, charging what is allocated to `budget`.
fn decode_all(raw: RawDict, origin: &str, budget: &mut u64) -> Result<BTreeMap<String, NpValue>> {
    let mut out = BTreeMap::new();
    for (key, value) in raw.0 {
        let value = value
            .decode(budget)
            .map_err(|m| IoError::weights(origin, format!("`{key}`: {m}")))?;
        out.insert(key, value);
    }
    Ok(out)
}

/// What the restricted VM hands back for a pickled dict: its string keys (unique, in
/// pickle order) and values, with arrays still raw. Made by `RawDict::unpickle`, which
/// lives with the VM in `weights/unpickle.rs`.
#[derive(Debug)]
pub(crate) struct RawDict(pub(crate) Vec<(String, RawValue)>);

#[derive(Debug, Clone)]
pub(crate) enum RawValue {
    Array(Rc<RawArray>),
    Bytes(Rc<[u8]>),
    Str(Rc<str>),
    Int(i64),
    Float(f64),
}

/// An array as pickled, checked for consistency but not yet decoded.
#[derive(Debug)]
pub(crate) struct RawArray {
    pub dtype: NpDtype,
    /// Shape of the data in storage (C) order.
    pub stored_shape: Vec<usize>,
    /// Axis `j` of the array is axis `perm[j]` of the stored data (a Fortran-ordered
    /// array is stored with its shape reversed and `perm` = `[rank-1, ..., 0]`).
    pub perm: Vec<usize>,
    pub data: RawData,
}

#[derive(Debug)]
pub(crate) enum RawData {
    /// Packed elements of `dtype.size` bytes each, in storage order.
    Packed(Rc<[u8]>),
    /// The items of an object array, in storage order.
    Objects(Vec<Blob>),
}

/// An item of an object array: bytes, or text (read as its UTF-8 bytes).
#[derive(Debug, Clone)]
pub(crate) enum Blob {
    Bytes(Rc<[u8]>),
    Str(Rc<str>),
}

impl Blob {
    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Bytes(b) => b,
            Self::Str(s) => s.as_bytes(),
        }
    }
}

/// Element kinds that can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NpKind {
    Bool,
    Int,
    UInt,
    Float,
    /// Fixed-width bytes (`S`).
    Bytes,
    /// Fixed-width UTF-32 text (`U`).
    Unicode,
    Object,
}

/// Largest item size accepted for `S` and `U` dtypes.
const MAX_ITEM_SIZE: usize = 1 << 30;

/// A NumPy dtype: kind, item size in bytes and byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NpDtype {
    pub kind: NpKind,
    pub size: usize,
    pub big_endian: bool,
}

impl NpDtype {
    /// Parses the first argument of `numpy.dtype(...)` in a pickle, e.g. `f4`, `O8`,
    /// `S2`, `U3`, `b1`; a byte-order prefix (`<`, `>`, `|`, `=`) is accepted too.
    pub(crate) fn from_code(code: &str) -> std::result::Result<Self, String> {
        let unsupported = || {
            format!(
                "dtype `{code}` is not supported (only bool, int, uint, float, \
                 fixed-width bytes and str, and object)"
            )
        };
        let (big_endian, rest) = match code.as_bytes().first() {
            Some(b'<') | Some(b'|') => (false, &code[1..]),
            Some(b'>') => (true, &code[1..]),
            Some(b'=') => (cfg!(target_endian = "big"), &code[1..]),
            _ => (cfg!(target_endian = "big"), code),
        };
        let mut chars = rest.chars();
        let kind_char = chars.next().ok_or_else(unsupported)?;
        let digits = chars.as_str();
        if !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 10 {
            return Err(unsupported());
        }
        let n: Option<usize> = digits.parse().ok();
        let (kind, size) = match (kind_char, n) {
            ('b', Some(1)) | ('?', None) => (NpKind::Bool, 1),
            ('i', Some(n @ (1 | 2 | 4 | 8))) => (NpKind::Int, n),
            ('u', Some(n @ (1 | 2 | 4 | 8))) => (NpKind::UInt, n),
            ('f', Some(n @ (2 | 4 | 8))) => (NpKind::Float, n),
            ('O', Some(4 | 8) | None) => (NpKind::Object, 8),
            ('S' | 'a', n) => (NpKind::Bytes, n.unwrap_or(0)),
            ('U', n) => (
                NpKind::Unicode,
                n.unwrap_or(0).checked_mul(4).ok_or_else(unsupported)?,
            ),
            _ => return Err(unsupported()),
        };
        if size > MAX_ITEM_SIZE {
            return Err(format!(
                "dtype `{code}` items are larger than {MAX_ITEM_SIZE} bytes"
            ));
        }
        Ok(Self {
            kind,
            size,
            big_endian,
        })
    }

    /// Applies the byte order and item size of a dtype's pickled state.
    pub(crate) fn set_state(
        &mut self,
        byteorder: &str,
        elsize: i64,
    ) -> std::result::Result<(), String> {
        match byteorder {
            "<" => self.big_endian = false,
            ">" => self.big_endian = true,
            "=" => self.big_endian = cfg!(target_endian = "big"),
            "|" => {}
            other => return Err(format!("unknown dtype byte order `{other}`")),
        }
        match self.kind {
            NpKind::Bytes | NpKind::Unicode if elsize >= 0 => {
                let size = usize::try_from(elsize)
                    .ok()
                    .filter(|&s| s <= MAX_ITEM_SIZE)
                    .ok_or_else(|| format!("dtype item size {elsize} is too large"))?;
                if self.kind == NpKind::Unicode && size % 4 != 0 {
                    return Err(format!("str dtype item size {size} is not a multiple of 4"));
                }
                self.size = size;
            }
            _ if elsize == -1 || usize::try_from(elsize) == Ok(self.size) => {}
            _ => return Err(format!("dtype item size {elsize} does not match its type")),
        }
        Ok(())
    }

    /// NumPy's `dtype.str`, e.g. `<f4`, `>i8`, `|b1`, `|S5`, `<U3`, `|O`.
    pub(crate) fn str(&self) -> String {
        let order = match (self.kind, self.size, self.big_endian) {
            (NpKind::Object | NpKind::Bytes | NpKind::Bool, _, _) | (_, 1, _) => '|',
            (_, _, true) => '>',
            (_, _, false) => '<',
        };
        match self.kind {
            NpKind::Object => "|O".into(),
            NpKind::Unicode => format!("{order}U{}", self.size / 4),
            kind => {
                let c = match kind {
                    NpKind::Bool => 'b',
                    NpKind::Int => 'i',
                    NpKind::UInt => 'u',
                    NpKind::Float => 'f',
                    _ => 'S',
                };
                format!("{order}{c}{}", self.size)
            }
        }
    }

    /// Whether items are held as packed bytes (everything but objects).
    pub(crate) fn is_packed(&self) -> bool {
        self.kind != NpKind::Object
    }

    /// The item at `b` (exactly `size` bytes) of a numeric or boolean dtype, in a
    /// little-endian 8-byte buffer.
    fn le_bytes(&self, b: &[u8]) -> [u8; 8] {
        let mut buf = [0u8; 8];
        buf[..b.len()].copy_from_slice(b);
        if self.big_endian {
            buf[..b.len()].reverse();
        }
        buf
    }

    /// Decodes one boolean or integer item exactly; `None` for other kinds.
    fn integer(&self, b: &[u8]) -> Option<i128> {
        let buf = self.le_bytes(b);
        let signed = |bits: u32| {
            let v = u64::from_le_bytes(buf);
            let shift = 64 - bits;
            i128::from(((v << shift) as i64) >> shift)
        };
        let bits = 8 * self.size as u32;
        match self.kind {
            NpKind::Bool => Some(i128::from(buf[0] != 0)),
            NpKind::Int => Some(signed(bits)),
            NpKind::UInt => Some(i128::from(u64::from_le_bytes(buf))),
            _ => None,
        }
    }

    /// Decodes one float item as f64; `None` for other kinds.
    fn float(&self, b: &[u8]) -> Option<f64> {
        let buf = self.le_bytes(b);
        match (self.kind, self.size) {
            (NpKind::Float, 2) => Some(f64::from(f16::from_le_bytes([buf[0], buf[1]]).to_f32())),
            (NpKind::Float, 4) => Some(f64::from(f32::from_le_bytes([
                buf[0], buf[1], buf[2], buf[3],
            ]))),
            (NpKind::Float, 8) => Some(f64::from_le_bytes(buf)),
            _ => None,
        }
    }

    /// Decodes one numeric or boolean item as f32 (integers rounded once, exact up to
    /// 2^24 in magnitude).
    fn f32(&self, b: &[u8]) -> f32 {
        match self.integer(b) {
            Some(i) => i as f32,
            None => self.float(b).map_or(f32::NAN, |f| f as f32),
        }
    }

    /// One `S` or `U` item with trailing NULs stripped (text as UTF-8).
    fn text_item(&self, b: &[u8]) -> std::result::Result<Vec<u8>, String> {
        if self.kind == NpKind::Bytes {
            let end = b.iter().rposition(|&c| c != 0).map_or(0, |i| i + 1);
            return Ok(b[..end].to_vec());
        }
        let mut s = String::new();
        for unit in b.chunks_exact(4) {
            let mut u = [unit[0], unit[1], unit[2], unit[3]];
            if self.big_endian {
                u.reverse();
            }
            let code = u32::from_le_bytes(u);
            let c = char::from_u32(code)
                .ok_or_else(|| format!("invalid code point 0x{code:x} in a str item"))?;
            s.push(c);
        }
        Ok(s.trim_end_matches('\0').as_bytes().to_vec())
    }

    /// A NumPy scalar of this dtype from its raw bytes (`numpy...multiarray.scalar`).
    pub(crate) fn scalar(&self, b: &[u8]) -> std::result::Result<NpValue, String> {
        if !self.is_packed() {
            return Err("object scalars hold their value directly".into());
        }
        if b.len() != self.size {
            return Err(format!(
                "scalar of dtype {} has {} bytes, expected {}",
                self.str(),
                b.len(),
                self.size
            ));
        }
        Ok(match self.kind {
            NpKind::Bool | NpKind::Int | NpKind::UInt => {
                let v = self.integer(b).unwrap_or_default();
                NpValue::Int(
                    i64::try_from(v)
                        .map_err(|_| format!("{} scalar {v} exceeds i64", self.str()))?,
                )
            }
            NpKind::Float => NpValue::Float(self.float(b).unwrap_or(f64::NAN)),
            NpKind::Bytes => NpValue::Bytes {
                shape: Vec::new(),
                items: vec![self.text_item(b)?],
            },
            NpKind::Unicode => NpValue::Str(
                String::from_utf8(self.text_item(b)?).expect("text_item returns UTF-8"),
            ),
            NpKind::Object => unreachable!("checked above"),
        })
    }
}

/// Charges `bytes` to `budget`.
fn charge(budget: &mut u64, bytes: u128, what: &str) -> std::result::Result<(), String> {
    match u64::try_from(bytes).ok().filter(|&b| b <= *budget) {
        Some(b) => {
            *budget -= b;
            Ok(())
        }
        None => Err(format!(
            "{what} would take more than the {MAX_CHECKPOINT_BYTES} bytes allowed for all values"
        )),
    }
}

impl RawValue {
    /// Builds the public value, charging what it allocates to `budget`.
    fn decode(&self, budget: &mut u64) -> std::result::Result<NpValue, String> {
        Ok(match self {
            Self::Int(i) => NpValue::Int(*i),
            Self::Float(f) => NpValue::Float(*f),
            Self::Str(s) => {
                charge(budget, s.len() as u128, "the string")?;
                NpValue::Str(s.to_string())
            }
            Self::Bytes(b) => {
                charge(budget, b.len() as u128, "the bytes")?;
                NpValue::Bytes {
                    shape: Vec::new(),
                    items: vec![b.to_vec()],
                }
            }
            Self::Array(a) => a.decode(budget)?,
        })
    }
}

impl RawArray {
    fn decode(&self, budget: &mut u64) -> std::result::Result<NpValue, String> {
        let shape: Vec<usize> = self.perm.iter().map(|&p| self.stored_shape[p]).collect();
        let n: usize = shape.iter().product();
        let size = self.dtype.size;
        let item_overhead = std::mem::size_of::<Vec<u8>>() as u128;
        match (&self.data, self.dtype.kind) {
            (RawData::Packed(bytes), NpKind::Bool | NpKind::Int | NpKind::UInt | NpKind::Float) => {
                charge(budget, n as u128 * 4, "the f32 data")?;
                let mut data = Vec::with_capacity(n);
                for_each_source(&self.stored_shape, &self.perm, |i| {
                    data.push(self.dtype.f32(&bytes[i * size..(i + 1) * size]));
                });
                Ok(NpValue::Array {
                    shape,
                    dtype: self.dtype.str(),
                    data,
                })
            }
            (RawData::Packed(bytes), NpKind::Bytes | NpKind::Unicode) => {
                charge(
                    budget,
                    n as u128 * (item_overhead + size as u128),
                    "the byte strings",
                )?;
                let mut items = Vec::with_capacity(n);
                let mut error = None;
                for_each_source(&self.stored_shape, &self.perm, |i| {
                    if error.is_none() {
                        match self.dtype.text_item(&bytes[i * size..(i + 1) * size]) {
                            Ok(item) => items.push(item),
                            Err(e) => error = Some(e),
                        }
                    }
                });
                match error {
                    Some(e) => Err(e),
                    None => Ok(NpValue::Bytes { shape, items }),
                }
            }
            (RawData::Objects(objects), NpKind::Object) => {
                let total: u128 = objects
                    .iter()
                    .map(|o| item_overhead + o.as_bytes().len() as u128)
                    .sum();
                charge(budget, total, "the byte strings")?;
                let mut items = Vec::with_capacity(n);
                for_each_source(&self.stored_shape, &self.perm, |i| {
                    items.push(objects[i].as_bytes().to_vec());
                });
                Ok(NpValue::Bytes { shape, items })
            }
            _ => Err(format!(
                "array data does not match dtype {}",
                self.dtype.str()
            )),
        }
    }
}

/// Calls `f` with the storage index of each element of `stored.transpose(perm)`, in C
/// order of the result. `stored` holds at least one element per index visited, and the
/// caller has checked that `perm` is a permutation of `0..stored.len()`.
fn for_each_source(stored: &[usize], perm: &[usize], mut f: impl FnMut(usize)) {
    let n: usize = stored.iter().product();
    if n == 0 {
        return;
    }
    if perm.iter().enumerate().all(|(j, &p)| j == p) {
        (0..n).for_each(f);
        return;
    }
    // Strides of the storage, and of each result axis into the storage.
    let mut stored_strides = vec![1usize; stored.len()];
    for i in (0..stored.len().saturating_sub(1)).rev() {
        stored_strides[i] = stored_strides[i + 1] * stored[i + 1];
    }
    let shape: Vec<usize> = perm.iter().map(|&p| stored[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| stored_strides[p]).collect();
    let mut index = vec![0usize; shape.len()];
    let mut offset = 0usize;
    for _ in 0..n {
        f(offset);
        // Odometer step on the last axis, carrying leftwards.
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            offset += strides[axis];
            if index[axis] < shape[axis] {
                break;
            }
            offset -= strides[axis] * shape[axis];
            index[axis] = 0;
        }
    }
}

/// [`parse_numpy_pickle`] with a fixed origin, for the tests.
#[cfg(test)]
pub(crate) fn parse(pickle: &[u8]) -> Result<BTreeMap<String, NpValue>> {
    parse_numpy_pickle(pickle, "test.pkl")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::PickleError;

    /// Made by io/tests/make_numpy_pickles.py: a tiny AlphaFold2 `features.pkl`.
    const FEATURES_P2: &[u8] = include_bytes!("../tests/data/features_p2.pkl");
    const FEATURES_P4: &[u8] = include_bytes!("../tests/data/features_p4.pkl");
    /// Every supported dtype and layout, with protocols 2, 4 and 5.
    const TYPES_P2: &[u8] = include_bytes!("../tests/data/numpy_types_p2.pkl");
    const TYPES_P4: &[u8] = include_bytes!("../tests/data/numpy_types_p4.pkl");
    const TYPES_P5: &[u8] = include_bytes!("../tests/data/numpy_types_p5.pkl");
    /// `{"aatype": zeros(2), "x": <object reducing to os.system("echo pwned")>}`.
    const EVIL: &[u8] = include_bytes!("../tests/data/evil_os_system.pkl");

    fn array(shape: &[usize], dtype: &str, data: &[f32]) -> NpValue {
        NpValue::Array {
            shape: shape.to_vec(),
            dtype: dtype.into(),
            data: data.to_vec(),
        }
    }

    fn bytes(shape: &[usize], items: &[&[u8]]) -> NpValue {
        NpValue::Bytes {
            shape: shape.to_vec(),
            items: items.iter().map(|i| i.to_vec()).collect(),
        }
    }

    fn message(pickle: &[u8]) -> String {
        parse(pickle).unwrap_err().to_string()
    }

    /// `pickle` with every `from` replaced by `to` (same length or not).
    fn replaced(pickle: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(pickle.len());
        let mut i = 0;
        while i < pickle.len() {
            if pickle[i..].starts_with(from) {
                out.extend_from_slice(to);
                i += from.len();
            } else {
                out.push(pickle[i]);
                i += 1;
            }
        }
        out
    }

    fn check_features(f: &BTreeMap<String, NpValue>) {
        assert_eq!(f.len(), 16, "{:?}", f.keys());
        let mut aatype = vec![0.0; 4 * 21];
        for (i, r) in [0, 4, 3, 6].into_iter().enumerate() {
            aatype[i * 21 + r] = 1.0;
        }
        assert_eq!(f["aatype"], array(&[4, 21], "<f4", &aatype));
        assert_eq!(f["between_segment_residues"], array(&[4], "<i4", &[0.0; 4]));
        assert_eq!(f["domain_name"], bytes(&[1], &[b"test_query"]));
        assert_eq!(
            f["residue_index"],
            array(&[4], "<i4", &[0.0, 1.0, 2.0, 3.0])
        );
        assert_eq!(f["seq_length"], array(&[4], "<i4", &[4.0; 4]));
        assert_eq!(f["sequence"], bytes(&[1], &[b"ACDE"]));
        assert_eq!(
            f["deletion_matrix_int"],
            array(&[2, 4], "<i4", &[0., 0., 0., 0., 0., 2., 0., 1.])
        );
        assert_eq!(
            f["msa"],
            array(&[2, 4], "<i4", &[0., 4., 3., 6., 0., 4., 21., 6.])
        );
        assert_eq!(f["num_alignments"], array(&[4], "<i4", &[2.0; 4]));
        assert_eq!(f["msa_species_identifiers"], bytes(&[2], &[b"", b"HUMAN"]));
        let template_aatype = f["template_aatype"].as_f32().unwrap();
        assert_eq!(f["template_aatype"].shape(), [1, 4, 22]);
        assert_eq!(template_aatype[22 + 4], 1.0);
        assert_eq!(template_aatype.iter().sum::<f32>(), 4.0);
        let masks: Vec<f32> = (0..148).map(|i| (i % 2) as f32).collect();
        assert_eq!(
            f["template_all_atom_masks"],
            array(&[1, 4, 37], "<f4", &masks)
        );
        let positions: Vec<f32> = (0..444).map(|i| i as f32 * 0.5).collect();
        assert_eq!(
            f["template_all_atom_positions"],
            array(&[1, 4, 37, 3], "<f4", &positions)
        );
        assert_eq!(f["template_domain_names"], bytes(&[1], &[b"1abc_A"]));
        assert_eq!(f["template_sequence"], bytes(&[1], &[b"ACDE"]));
        assert_eq!(f["template_sum_probs"], array(&[1, 1], "<f4", &[42.5]));
    }

    #[test]
    fn reads_alphafold_features_of_both_protocols() {
        check_features(&parse(FEATURES_P2).unwrap());
        check_features(&parse(FEATURES_P4).unwrap());
        // NumPy 1.x names the reconstructors `numpy.core...` rather than `numpy._core...`
        // (GLOBAL operands are newline-terminated text, so lengths may change).
        let old = replaced(FEATURES_P2, b"numpy._core.", b"numpy.core.");
        assert_ne!(old, FEATURES_P2);
        check_features(&parse(&old).unwrap());
    }

    #[test]
    fn reads_features_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("features.pkl");
        std::fs::write(&path, FEATURES_P4).unwrap();
        check_features(&load_numpy_pickle(&path).unwrap());
        let missing = load_numpy_pickle(dir.path().join("nope.pkl")).unwrap_err();
        assert!(missing.to_string().contains("nope.pkl"), "{missing}");
    }

    fn check_types(t: &BTreeMap<String, NpValue>, protocol: u8) {
        let range = |n: usize| (0..n).map(|i| i as f32).collect::<Vec<_>>();
        assert_eq!(
            t["f32"],
            array(&[2, 3], "<f4", &[1.5, -2.0, 3.25, 4.0, 5.5, -6.75])
        );
        assert_eq!(t["fortran_f64"], array(&[2, 3], "<f8", &range(6)));
        assert_eq!(t["fortran_i16_3d"], array(&[2, 3, 4], "<i2", &range(24)));
        assert_eq!(t["big_i4"], array(&[3], ">i4", &[1.0, -2.0, 300000.0]));
        assert_eq!(t["big_f8"], array(&[1, 2], ">f8", &[0.5, -1.25]));
        // arange(24).reshape(2, 3, 4).transpose(1, 0, 2).
        let transposed: Vec<f32> = (0..3)
            .flat_map(|i| {
                (0..2).flat_map(move |j| (0..4).map(move |k| (j * 12 + i * 4 + k) as f32))
            })
            .collect();
        assert_eq!(t["transposed_u2"], array(&[3, 2, 4], "<u2", &transposed));
        assert_eq!(t["bool"], array(&[3], "|b1", &[1.0, 0.0, 1.0]));
        assert_eq!(t["u1"], array(&[2], "|u1", &[0.0, 255.0]));
        assert_eq!(t["i8"], array(&[2], "<i8", &[-(2f32.powi(40)), 7.0]));
        assert_eq!(t["f16"], array(&[2], "<f2", &[0.5, -3.0]));
        assert_eq!(t["empty"], array(&[0, 3], "<f4", &[]));
        assert_eq!(t["bytes_S"], bytes(&[3], &[b"ab", b"c", b""]));
        assert_eq!(t["text_U"], bytes(&[2], &["h\u{e9}".as_bytes(), b"x"]));
        assert_eq!(t["big_text_U"], bytes(&[1], &["\u{e9}t\u{e9}".as_bytes()]));
        assert_eq!(
            t["objects_2d_fortran"],
            bytes(
                &[2, 3],
                &[b"a", b"bb", "c\u{e9}".as_bytes(), b"", b"e", b"f"]
            )
        );
        assert_eq!(t["objects_empty"], bytes(&[0], &[]));
        assert_eq!(t["np_int32"], NpValue::Int(-7));
        assert_eq!(t["np_float64"], NpValue::Float(2.5));
        assert_eq!(t["np_bool"], NpValue::Int(1));
        assert_eq!(t["np_bytes"], bytes(&[], &[b"xy"]));
        assert_eq!(t["np_str"], NpValue::Str("z\u{e9}".into()));
        assert_eq!(t["py_int"], NpValue::Int(12));
        assert_eq!(t["py_float"], NpValue::Float(-0.125));
        assert_eq!(t["py_str"], NpValue::Str("hello".into()));
        assert_eq!(t["py_bytes"], bytes(&[], &[b"raw"]));
        assert_eq!(t["py_bool"], NpValue::Int(0));
        assert_eq!(t.len(), 26, "protocol {protocol}: {:?}", t.keys());
    }

    #[test]
    fn reads_every_dtype_and_layout() {
        check_types(&parse(TYPES_P2).unwrap(), 2);
        check_types(&parse(TYPES_P4).unwrap(), 4);
        check_types(&parse(TYPES_P5).unwrap(), 5);
        // Protocol 5 writes contiguous arrays through `_frombuffer` with in-band buffers.
        assert!(TYPES_P5.windows(11).any(|w| w == b"_frombuffer"));
        assert!(TYPES_P5.contains(&0x96));
    }

    #[test]
    fn refuses_the_malicious_pickle() {
        let err = parse(EVIL).unwrap_err();
        assert!(
            matches!(
                &err,
                IoError::Pickle { error: PickleError::ForbiddenNumpyGlobal(g), .. }
                    if g == "posix.system"
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "test.pkl: pickle global `posix.system` is not allowed (only NumPy \
             array-rebuild globals are)"
        );
    }

    /// A protocol-2 pickle calling `module.name` with one string argument, as pickle
    /// exploits do, in both GLOBAL and (protocol 4) STACK_GLOBAL form.
    fn calls(module: &str, name: &str) -> [Vec<u8>; 2] {
        let mut global = b"\x80\x02c".to_vec();
        global.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        global.extend_from_slice(b"X\x02\x00\x00\x00idq\x01\x85R.");
        let mut stack = b"\x80\x04".to_vec();
        for part in [module, name] {
            stack.push(0x8c);
            stack.push(part.len() as u8);
            stack.extend_from_slice(part.as_bytes());
        }
        stack.extend_from_slice(b"\x93\x8c\x02id\x85R.");
        [global, stack]
    }

    #[test]
    fn refuses_every_other_global() {
        for (module, name) in [
            ("os", "system"),
            ("posix", "system"),
            ("builtins", "eval"),
            ("__builtin__", "eval"),
            ("builtins", "getattr"),
            ("builtins", "bytearray"),
            ("subprocess", "Popen"),
            ("numpy", "load"),
            ("numpy", "frombuffer"),
            ("numpy.testing._private.utils", "runstring"),
            ("numpy.core.multiarray", "fromstring"),
            ("numpy._core.multiarray", "_reconstructx"),
            ("numpy.ma.core", "_mareconstruct"),
            ("_codecs", "decode"),
            ("codecs", "encode"),
            ("collections", "OrderedDict"),
            ("torch._utils", "_rebuild_tensor_v2"),
        ] {
            for p in calls(module, name) {
                let err = parse(&p).unwrap_err();
                let expected = format!("{module}.{name}");
                assert!(
                    matches!(
                        &err,
                        IoError::Pickle { error: PickleError::ForbiddenNumpyGlobal(g), .. }
                            if *g == expected
                    ),
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn allowed_globals_accept_only_their_numpy_uses() {
        for (pickle, expected) in [
            // _codecs.encode only with latin1.
            (
                &b"\x80\x02}X\x01\x00\x00\x00ac_codecs\nencode\nX\x01\x00\x00\x00xX\x05\x00\x00\x00utf_8\x86Rs."[..],
                "_codecs.encode with encoding `utf_8`: only latin1 is allowed",
            ),
            (
                b"\x80\x02}X\x01\x00\x00\x00ac_codecs\nencode\nX\x02\x00\x00\x00\xc4\x80X\x06\x00\x00\x00latin1\x86Rs.",
                "characters above U+00FF",
            ),
            // bytes() only without arguments.
            (
                b"\x80\x02}X\x01\x00\x00\x00ac__builtin__\nbytes\nK\x05\x85Rs.",
                "unexpected arguments (1 values) for EmptyBytes",
            ),
            // _reconstruct builds only ndarrays; ndarray itself cannot be called.
            (
                b"\x80\x02cnumpy._core.multiarray\n_reconstruct\ncnumpy\ndtype\n)C\x01b\x87R.",
                "_reconstruct builds only numpy.ndarray, got a class or function",
            ),
            (b"\x80\x02cnumpy\nndarray\n)R.", "for NpNdarray"),
            // dtype codes outside the supported kinds.
            (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00c8\x85R.", "dtype `c8` is not supported"),
            (b"\x80\x02cnumpy\ndtype\nX\x02\x00\x00\x00V8\x85R.", "dtype `V8` is not supported"),
            // BUILD on anything but a dtype or array.
            (b"\x80\x02}}b.", "BUILD on a dict is not supported"),
            // Not a dict at the top, non-string keys, repeated keys, other values.
            (b"\x80\x02K\x01.", "the pickled object is an int, expected a dict of NumPy arrays"),
            (b"\x80\x02}K\x01K\x01s.", "dict key is an int, expected a string"),
            (
                b"\x80\x02}(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00aK\x02u.",
                "key `a` appears twice",
            ),
            (
                b"\x80\x02}X\x01\x00\x00\x00a]s.",
                "value of `a` is a list, expected a NumPy array",
            ),
            // Out-of-band buffers (protocol 5) are not supported.
            (b"\x80\x05\x97.", "unsupported opcode 0x97"),
        ] {
            let msg = message(pickle);
            assert!(msg.contains(expected), "{msg}\nexpected: {expected}");
        }
    }

    #[test]
    fn parses_dtype_codes() {
        let d = |code: &str| NpDtype::from_code(code).unwrap();
        assert_eq!(d("f4").str(), "<f4");
        assert_eq!(d(">i4").str(), ">i4");
        assert_eq!(d("b1").str(), "|b1");
        assert_eq!(d("u1").str(), "|u1");
        assert_eq!(d("O8").str(), "|O");
        assert_eq!(d("S7").str(), "|S7");
        assert_eq!(d("U3").str(), "<U3");
        assert_eq!(d("U3").size, 12);
        for bad in [
            "c8",
            "V8",
            "M8",
            "m8",
            "f16",
            "i3",
            "",
            "S-1",
            "U99999999999",
            "<",
        ] {
            assert!(NpDtype::from_code(bad).is_err(), "{bad}");
        }
        let mut s = d("S0");
        s.set_state("|", 5).unwrap();
        assert_eq!(s.size, 5);
        let mut f = d("f8");
        f.set_state(">", -1).unwrap();
        assert_eq!(f.str(), ">f8");
        assert!(f.set_state("<", 4).is_err());
        assert!(d("U1").set_state("<", 6).is_err());
        assert!(d("f4").set_state("?", -1).is_err());
    }

    #[test]
    fn decodes_scalars() {
        let d = |code: &str| NpDtype::from_code(code).unwrap();
        assert_eq!(d("i4").scalar(&7i32.to_le_bytes()), Ok(NpValue::Int(7)));
        assert_eq!(
            d(">i8").scalar(&(-5i64).to_be_bytes()),
            Ok(NpValue::Int(-5))
        );
        assert_eq!(
            d("i8").scalar(&i64::MAX.to_le_bytes()),
            Ok(NpValue::Int(i64::MAX))
        );
        assert!(d("u8").scalar(&u64::MAX.to_le_bytes()).is_err());
        assert_eq!(
            d("f8").scalar(&1.5f64.to_le_bytes()),
            Ok(NpValue::Float(1.5))
        );
        assert_eq!(d("b1").scalar(&[1]), Ok(NpValue::Int(1)));
        assert_eq!(
            d("U2").scalar(b"h\0\0\0\0\0\0\0"),
            Ok(NpValue::Str("h".into()))
        );
        assert!(d("f4").scalar(&[0; 3]).is_err());
    }

    #[test]
    fn visits_transposed_storage_in_c_order() {
        let visit = |stored: &[usize], perm: &[usize]| {
            let mut v = Vec::new();
            for_each_source(stored, perm, |i| v.push(i));
            v
        };
        // Fortran (2, 3): stored as (3, 2).
        assert_eq!(visit(&[3, 2], &[1, 0]), [0, 2, 4, 1, 3, 5]);
        assert_eq!(visit(&[2, 3], &[0, 1]), [0, 1, 2, 3, 4, 5]);
        // (2, 3, 4).transpose(1, 0, 2).
        let v = visit(&[2, 3, 4], &[1, 0, 2]);
        assert_eq!(&v[..8], &[0, 1, 2, 3, 12, 13, 14, 15]);
        assert_eq!(v.len(), 24);
        assert!(visit(&[0, 5], &[1, 0]).is_empty());
        assert_eq!(visit(&[], &[]), [0]);
    }

    /// A protocol-2 dict `{key: array}` for each `(key, state)`, where each state is
    /// raw opcodes pushing the array's BUILD state; `_reconstruct` is memoized as 0.
    fn arrays(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
        let mut p = b"\x80\x02}(".to_vec();
        for (i, (key, state)) in entries.iter().enumerate() {
            p.push(b'X');
            p.extend_from_slice(&(key.len() as u32).to_le_bytes());
            p.extend_from_slice(key.as_bytes());
            if i == 0 {
                p.extend_from_slice(b"cnumpy._core.multiarray\n_reconstruct\nq\x00");
            } else {
                p.extend_from_slice(b"h\x00");
            }
            p.extend_from_slice(b"cnumpy\nndarray\nK\x00\x85C\x01b\x87R");
            p.extend_from_slice(state);
            p.push(b'b');
        }
        p.extend_from_slice(b"u.");
        p
    }

    /// Opcodes pushing `numpy.dtype(code)` with state `(3, order, None, None, None,
    /// elsize, -1, 0)`.
    fn dtype(code: &str, order: &str, elsize: i32) -> Vec<u8> {
        let mut p = b"cnumpy\ndtype\nX".to_vec();
        p.extend_from_slice(&(code.len() as u32).to_le_bytes());
        p.extend_from_slice(code.as_bytes());
        p.extend_from_slice(b"\x89\x88\x87R(K\x03X\x01\x00\x00\x00");
        p.extend_from_slice(order.as_bytes());
        p.extend_from_slice(b"NNNJ");
        p.extend_from_slice(&elsize.to_le_bytes());
        p.extend_from_slice(b"J\xff\xff\xff\xffK\x00tb");
        p
    }

    /// Opcodes pushing the array state `(1, shape, dtype, fortran, data)`; `shape` and
    /// `data` are raw opcodes.
    fn state(shape: &[u8], dtype: Vec<u8>, fortran: bool, data: &[u8]) -> Vec<u8> {
        let mut p = b"(K\x01".to_vec();
        p.extend_from_slice(shape);
        p.extend_from_slice(&dtype);
        p.push(if fortran { 0x88 } else { 0x89 });
        p.extend_from_slice(data);
        p.push(b't');
        p
    }

    /// SHORT_BINBYTES.
    fn short_bytes(b: &[u8]) -> Vec<u8> {
        let mut p = vec![b'C', b.len() as u8];
        p.extend_from_slice(b);
        p
    }

    #[test]
    fn hand_built_arrays_load() {
        // A Fortran-ordered big-endian (2, 2) int32 array: stored column by column.
        let data: Vec<u8> = [1i32, 3, 2, 4]
            .iter()
            .flat_map(|v| v.to_be_bytes())
            .collect();
        let p = arrays(&[(
            "a",
            state(
                b"K\x02K\x02\x86",
                dtype("i4", ">", -1),
                true,
                &short_bytes(&data),
            ),
        )]);
        let a = parse(&p).unwrap();
        assert_eq!(a["a"], array(&[2, 2], ">i4", &[1.0, 2.0, 3.0, 4.0]));
        // The older state without a version number.
        let old = replaced(&p, b"(K\x01K\x02", b"(K\x02");
        assert_eq!(parse(&old).unwrap(), a);
    }

    #[test]
    fn rejects_inconsistent_arrays() {
        let f4 = || dtype("f4", "<", -1);
        for (state, expected) in [
            (
                state(b"K\x02\x85", f4(), false, &short_bytes(&[0; 7])),
                "array of shape [2] and dtype <f4 has 7 data bytes",
            ),
            (
                state(b"J\xff\xff\xff\xff\x85", f4(), false, &short_bytes(&[])),
                "array shape -1 is out of range",
            ),
            (
                // (2^20, 2^20, 2): more than 2^40 elements.
                state(
                    b"J\x00\x00\x10\x00J\x00\x00\x10\x00K\x02\x87",
                    f4(),
                    false,
                    &short_bytes(&[]),
                ),
                "array shape [1048576, 1048576, 2] is too large",
            ),
            (
                state(b"K\x01\x85", f4(), false, b"K\x05"),
                "array data must be bytes, got an int",
            ),
            (
                state(
                    b"K\x01\x85",
                    b"K\x05".to_vec(),
                    false,
                    &short_bytes(&[0; 4]),
                ),
                "expected a NumPy dtype, got an int",
            ),
            (
                state(b"K\x02\x85", dtype("O8", "|", -1), false, b"]C\x01xa"),
                "object array of shape [2] lists 1 items",
            ),
            (
                state(b"K\x01\x85", dtype("O8", "|", -1), false, b"]K\x07a"),
                "object array item 0 is an int, only bytes and str are supported",
            ),
            (
                state(
                    b"K\x01\x85",
                    dtype("O8", "|", -1),
                    false,
                    &short_bytes(b"x"),
                ),
                "object array data must be a list, got bytes",
            ),
            (
                state(
                    b"K\x01\x85",
                    dtype("U1", "<", 6),
                    false,
                    &short_bytes(&[0; 6]),
                ),
                "str dtype item size 6 is not a multiple of 4",
            ),
            (
                b"(K\x01t".to_vec(),
                "array state is not (version, shape, dtype, is_fortran, data)",
            ),
        ] {
            let msg = message(&arrays(&[("a", state)]));
            assert!(msg.contains(expected), "{msg}\nexpected: {expected}");
        }
        // A dtype state naming fields (a structured dtype).
        let structured = replaced(&dtype("f4", "<", -1), b"NNNJ", b"NX\x01\x00\x00\x00fNJ");
        let msg = message(&arrays(&[(
            "a",
            state(b"K\x01\x85", structured, false, &short_bytes(&[0; 4])),
        )]));
        assert!(
            msg.contains("structured and subarray dtypes are not supported"),
            "{msg}"
        );
        // An array that never got its state.
        let msg = message(b"\x80\x02}X\x01\x00\x00\x00acnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87Rs.");
        assert!(msg.contains("array `a` was never given its state"), "{msg}");
        // Invalid UTF-32 in a str array is reported with its key.
        let msg = message(&arrays(&[(
            "text",
            state(
                b"K\x01\x85",
                dtype("U1", "<", 4),
                false,
                &short_bytes(&[0, 0xd8, 0, 0]),
            ),
        )]));
        assert!(msg.contains("`text`: invalid code point 0xd800"), "{msg}");
    }

    #[test]
    fn bounds_the_memory_of_decoded_values() {
        // 2^40 zero-width byte strings need no data, but 24 bytes of bookkeeping each.
        let p = arrays(&[(
            "huge",
            state(
                b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85",
                dtype("S0", "|", 0),
                false,
                &short_bytes(&[]),
            ),
        )]);
        let msg = message(&p);
        assert!(
            msg.contains("`huge`: the byte strings would take more than the 1073741824 bytes"),
            "{msg}"
        );
        // One array shared (through the memo) by ten more keys is charged once per key.
        let p = {
            let mut p = b"\x80\x02}(X\x01\x00\x00\x00x".to_vec();
            p.extend_from_slice(
                b"cnumpy._core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R",
            );
            let mut data = b"B\x00\x01\x00\x00".to_vec();
            data.extend_from_slice(&[7; 256]);
            p.extend_from_slice(&state(b"M\x00\x01\x85", dtype("u1", "|", -1), false, &data));
            p.extend_from_slice(b"bq\x01");
            for k in 0..10 {
                p.push(b'X');
                let key = format!("k{k}");
                p.extend_from_slice(&(key.len() as u32).to_le_bytes());
                p.extend_from_slice(key.as_bytes());
                p.extend_from_slice(b"h\x01");
            }
            p.extend_from_slice(b"u.");
            p
        };
        let raw = || RawDict::unpickle(&p).unwrap();
        // 11 keys x 256 f32: 11264 bytes.
        let mut budget = 11 * 1024;
        let all = decode_all(raw(), "t", &mut budget).unwrap();
        assert_eq!((all.len(), budget), (11, 0));
        assert_eq!(all["k9"].as_f32().unwrap(), &[7.0; 256][..]);
        let mut budget = 11 * 1024 - 1;
        let msg = decode_all(raw(), "t", &mut budget).unwrap_err().to_string();
        assert!(
            msg.contains("`k9`: the f32 data would take more than"),
            "{msg}"
        );
    }

    #[test]
    fn rejects_truncated_and_corrupted_pickles_without_panicking() {
        for pickle in [FEATURES_P2, FEATURES_P4, TYPES_P2, TYPES_P4, TYPES_P5] {
            for end in 0..pickle.len() {
                assert!(parse(&pickle[..end]).is_err());
            }
        }
        // Each byte replaced by every eighth value and by near misses of the original
        // (the whole 256 at each of the 1789 positions would take too long).
        let mut p = TYPES_P5.to_vec();
        for i in 0..p.len() {
            let original = p[i];
            let near = [1, 0x80, 0xff].map(|x| original ^ x);
            for b in (0..=255u8).step_by(8).chain(near) {
                p[i] = b;
                // Any result is fine; panics, hangs and huge allocations are not.
                let _ = parse(&p);
            }
            p[i] = original;
        }
    }
}
