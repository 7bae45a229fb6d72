//! A restricted pickle virtual machine for PyTorch state dicts and pickled dicts of
//! NumPy arrays.
//!
//! Nothing is executed. For PyTorch state dicts ([`load_state_dict`]) the only
//! callables are `collections.OrderedDict` and the PyTorch tensor-rebuild functions,
//! interpreted here; the only classes are the PyTorch storage types named in persistent
//! ids. For NumPy dicts ([`RawDict::unpickle`], used by [`crate::pickle_arrays`]) the
//! only globals are NumPy's array, dtype and scalar reconstructors, `_codecs.encode`
//! with `latin1` and `bytes()` with no arguments (protocol 2's ways of writing bytes).
//! Any other global is refused. Stack, memo, object, container-item, tensor and array
//! counts, ranks and name lengths are bounded, every length read from the data is
//! checked, and flattening visits each dict at most once, so the work and memory a
//! pickle can ask for stay proportional to its size.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::dtype::ElemType;
use crate::pickle_arrays::{Blob, NpDtype, NpValue, RawArray, RawData, RawDict, RawValue};

/// Why a pickle was refused.
#[derive(Debug, thiserror::Error)]
pub enum PickleError {
    /// The pickle names a global outside the allowlist (e.g. `os.system`).
    #[error("pickle global `{0}` is not allowed (only PyTorch tensor-rebuild globals are)")]
    ForbiddenGlobal(String),
    /// A pickle of NumPy arrays names a global outside its allowlist.
    #[error("pickle global `{0}` is not allowed (only NumPy array-rebuild globals are)")]
    ForbiddenNumpyGlobal(String),
    /// The pickle is corrupt, unsupported or exceeds a limit.
    #[error("pickle byte {offset}: {message}")]
    Malformed { offset: usize, message: String },
}

/// Storage element count and tensor sizes above this are refused outright.
const MAX_ELEMENTS: usize = 1 << 40;
const MAX_STACK: usize = 1 << 20;
const MAX_MEMO: usize = 1 << 22;
const MAX_OBJECTS: usize = 1 << 22;
/// Deepest nesting of dicts accepted around tensors.
const MAX_DICT_DEPTH: usize = 16;
/// Most tensors accepted in one pickle (also the most tensor-rebuild calls).
const MAX_TENSORS: usize = 1 << 20;
/// Most values held in containers (tuples, lists, dicts) over the whole pickle.
const MAX_ITEMS: usize = 1 << 22;
/// Highest tensor rank accepted.
const MAX_RANK: usize = 64;
/// Most dimensions over all tensors built (shape and stride lengths, counted once).
const MAX_TOTAL_DIMS: usize = 1 << 20;
/// Longest dotted tensor or dict name.
const MAX_NAME_BYTES: usize = 1024;
/// Most bytes of dotted names built while flattening.
const MAX_TOTAL_NAME_BYTES: usize = 16 << 20;
/// Most bytes copied out of pickled values (latin1-encoded text, NumPy scalars), the
/// checkpoint size limit.
const MAX_MADE_BYTES: u64 = super::torch_zip::MAX_CHECKPOINT_BYTES;

/// A storage from a persistent id `('storage', torch.XStorage, key, location, numel)`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StorageRef {
    /// Entry name under `<archive>/data/`.
    pub key: String,
    pub elem: ElemType,
    /// Element count.
    pub numel: usize,
}

/// A tensor view of a storage, as `_rebuild_tensor_v2` describes it (units of elements).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

/// Runs `pickle` and returns every tensor of the resulting (possibly nested) dict, with
/// nested keys joined by dots, in pickle order. Other values are skipped. Names are
/// unique: a name reached twice, or a dict reached twice (through the memo), is an error.
pub(crate) fn load_state_dict(pickle: &[u8]) -> Result<Vec<(String, Rc<TensorRef>)>, PickleError> {
    let mut vm = Vm::new(pickle, Mode::Torch);
    let top = vm.run()?;
    match top {
        Value::Obj(id) if matches!(vm.objects[id], Object::Dict(_)) => {
            let mut flat = Flatten {
                visited: vec![false; vm.objects.len()],
                names: HashSet::new(),
                name_bytes: 0,
                out: Vec::new(),
            };
            vm.flatten(id, "", 0, &mut flat)?;
            Ok(flat.out)
        }
        other => Err(vm.error(format!(
            "the pickled object is {}, expected a dict of tensors",
            vm.kind(&other)
        ))),
    }
}

impl RawDict {
    /// Runs `pickle`, which must hold a dict with string keys whose values are NumPy
    /// arrays, NumPy scalars, ints, floats, bools, strings or bytes. Arrays are checked
    /// (shape, dtype and data length agree) but not decoded. Keys are unique.
    pub(crate) fn unpickle(pickle: &[u8]) -> Result<Self, PickleError> {
        let mut vm = Vm::new(pickle, Mode::Numpy);
        let top = vm.run()?;
        let pairs = match &top {
            Value::Obj(id) => match &vm.objects[*id] {
                Object::Dict(pairs) => pairs,
                _ => return Err(vm.not_a_numpy_dict(&top)),
            },
            _ => return Err(vm.not_a_numpy_dict(&top)),
        };
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(pairs.len());
        for (key, value) in pairs {
            let Value::Str(key) = key else {
                return Err(vm.error(format!("dict key is {}, expected a string", vm.kind(key))));
            };
            if key.len() > MAX_NAME_BYTES {
                let head: String = key.chars().take(64).collect();
                return Err(vm.error(format!(
                    "key `{head}...` is {} bytes, longer than {MAX_NAME_BYTES}",
                    key.len()
                )));
            }
            if !seen.insert(key.clone()) {
                return Err(vm.error(format!("key `{key}` appears twice")));
            }
            let value = match value {
                Value::Int(i) => RawValue::Int(*i),
                Value::Bool(b) => RawValue::Int(i64::from(*b)),
                Value::Float(f) => RawValue::Float(*f),
                Value::Str(s) => RawValue::Str(s.clone()),
                Value::Bytes(b) => RawValue::Bytes(b.clone()),
                Value::Obj(id) => match &vm.objects[*id] {
                    Object::Array(Some(array)) => RawValue::Array(array.clone()),
                    Object::Array(None) => {
                        return Err(vm.error(format!("array `{key}` was never given its state")))
                    }
                    _ => {
                        return Err(vm.error(format!(
                            "value of `{key}` is {}, expected a NumPy array, number, \
                             string or bytes",
                            vm.kind(value)
                        )))
                    }
                },
                other => {
                    return Err(vm.error(format!(
                        "value of `{key}` is {}, expected a NumPy array, number, string \
                         or bytes",
                        vm.kind(other)
                    )))
                }
            };
            out.push((key.to_string(), value));
        }
        Ok(RawDict(out))
    }
}

/// Which kind of pickle the VM reads, and so which globals it allows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    /// PyTorch state dicts ([`load_state_dict`]).
    Torch,
    /// Dicts of NumPy arrays ([`RawDict::unpickle`]).
    Numpy,
}

/// Allowed callables and classes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    Storage(ElemType),
    /// `numpy.core.multiarray._reconstruct(ndarray, shape, typecode)`: an empty array
    /// that BUILD then fills.
    NpReconstruct,
    /// `numpy.ndarray`: only as the class argument of `_reconstruct`.
    NpNdarray,
    /// `numpy.dtype(code, align, copy)`, completed by BUILD.
    NpDtype,
    /// `numpy.core.multiarray.scalar(dtype, raw bytes or object)`.
    NpScalar,
    /// `numpy.core.numeric._frombuffer(buffer, dtype, shape, order[, axis_order])`.
    NpFromBuffer,
    /// `_codecs.encode(text, 'latin1')`: protocol 2's form of non-empty bytes.
    CodecsEncode,
    /// `bytes()` with no arguments: protocol 2's form of empty bytes.
    EmptyBytes,
}

impl Global {
    fn lookup(mode: Mode, module: &str, name: &str) -> Result<Self, PickleError> {
        if mode == Mode::Numpy {
            return Ok(match (module, name) {
                ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => {
                    Self::NpReconstruct
                }
                ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Self::NpScalar,
                ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Self::NpFromBuffer,
                ("numpy", "ndarray") => Self::NpNdarray,
                ("numpy", "dtype") => Self::NpDtype,
                ("_codecs", "encode") => Self::CodecsEncode,
                ("__builtin__" | "builtins", "bytes") => Self::EmptyBytes,
                _ => {
                    return Err(PickleError::ForbiddenNumpyGlobal(format!(
                        "{module}.{name}"
                    )))
                }
            });
        }
        Ok(match (module, name) {
            ("collections", "OrderedDict") => Self::OrderedDict,
            ("torch._utils", "_rebuild_tensor_v2") => Self::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Self::RebuildParameter,
            ("torch._utils", "_rebuild_parameter_with_state") => Self::RebuildParameterWithState,
            ("torch", "DoubleStorage") => Self::Storage(ElemType::F64),
            ("torch", "FloatStorage") => Self::Storage(ElemType::F32),
            ("torch", "HalfStorage") => Self::Storage(ElemType::F16),
            ("torch", "BFloat16Storage") => Self::Storage(ElemType::BF16),
            ("torch", "LongStorage") => Self::Storage(ElemType::I64),
            ("torch", "IntStorage") => Self::Storage(ElemType::I32),
            ("torch", "ShortStorage") => Self::Storage(ElemType::I16),
            ("torch", "CharStorage") => Self::Storage(ElemType::I8),
            ("torch", "ByteStorage") => Self::Storage(ElemType::U8),
            ("torch", "BoolStorage") => Self::Storage(ElemType::Bool),
            _ => return Err(PickleError::ForbiddenGlobal(format!("{module}.{name}"))),
        })
    }
}

/// A value on the stack or in the memo. Containers live in the VM's object arena and
/// are referenced by index, so values never nest (no deep recursion on drop, cycles
/// are harmless).
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    /// `bytes` or `bytearray`.
    Bytes(Rc<[u8]>),
    Obj(usize),
    Global(Global),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
}

#[derive(Debug)]
enum Object {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    /// A NumPy dtype (numpy mode only).
    Dtype(NpDtype),
    /// A NumPy array; `None` until BUILD gives it its state (numpy mode only).
    Array(Option<Rc<RawArray>>),
}

struct Vm<'a> {
    mode: Mode,
    data: &'a [u8],
    pos: usize,
    /// Start of the opcode being executed, for error messages.
    op_start: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objects: Vec<Object>,
    /// Values stored in containers so far (bounded by [`MAX_ITEMS`]).
    items: usize,
    /// Tensor-rebuild calls, or NumPy arrays built, so far (bounded by [`MAX_TENSORS`]).
    tensors: usize,
    /// Dimensions of the tensors built so far (bounded by [`MAX_TOTAL_DIMS`]).
    dims: usize,
    /// Bytes copied out of values (latin1 encoding, scalars), bounded by
    /// [`MAX_MADE_BYTES`].
    made: u64,
}

/// State of [`Vm::flatten`].
struct Flatten {
    /// Dicts already entered, by object index.
    visited: Vec<bool>,
    /// Tensor names already produced.
    names: HashSet<String>,
    /// Bytes of names built so far (bounded by [`MAX_TOTAL_NAME_BYTES`]).
    name_bytes: usize,
    out: Vec<(String, Rc<TensorRef>)>,
}

/// A packed array of logical `shape` whose `bytes` are in C order, or in Fortran order
/// when `fortran` (stored as the reversed shape, transposed back on decoding).
fn packed_array(dtype: NpDtype, shape: Vec<usize>, fortran: bool, bytes: Rc<[u8]>) -> RawArray {
    let rank = shape.len();
    let (stored_shape, perm) = if fortran && rank > 1 {
        (shape.into_iter().rev().collect(), (0..rank).rev().collect())
    } else {
        (shape, (0..rank).collect())
    };
    RawArray {
        dtype,
        stored_shape,
        perm,
        data: RawData::Packed(bytes),
    }
}

impl<'a> Vm<'a> {
    fn new(data: &'a [u8], mode: Mode) -> Self {
        Self {
            mode,
            data,
            pos: 0,
            op_start: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            objects: Vec::new(),
            items: 0,
            tensors: 0,
            dims: 0,
            made: 0,
        }
    }

    fn error(&self, message: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            offset: self.op_start,
            message: message.into(),
        }
    }

    /// Executes opcodes up to STOP and returns the top of the stack.
    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            self.op_start = self.pos;
            let op = self.take(1)?[0];
            match op {
                0x80 => {
                    let version = self.take(1)?[0];
                    if !(2..=5).contains(&version) {
                        return Err(self.error(format!("unsupported pickle protocol {version}")));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint only.
                }
                b'.' => return self.pop(),
                b'(' => {
                    self.check_len(self.marks.len(), MAX_STACK, "marks")?;
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.peek()?.clone();
                    self.push(top)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = i32::from_le_bytes(self.array()?);
                    self.push(Value::Int(v.into()))?;
                }
                b'K' => {
                    let v = self.take(1)?[0];
                    self.push(Value::Int(v.into()))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.array()?);
                    self.push(Value::Int(v.into()))?;
                }
                0x8a => {
                    let n = self.take(1)?[0] as usize;
                    let v = self.long(n)?;
                    self.push(Value::Int(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.array()?);
                    self.push(Value::Float(v))?;
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.array()?) as usize;
                    self.string(n)?;
                }
                0x8c => {
                    let n = self.take(1)?[0] as usize;
                    self.string(n)?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.array()?);
                    self.string(usize::try_from(n).unwrap_or(usize::MAX))?;
                }
                // BINBYTES, SHORT_BINBYTES, BINBYTES8, BYTEARRAY8, and Python 2's
                // BINSTRING and SHORT_BINSTRING (read as bytes).
                b'B' | b'T' => {
                    let n = u32::from_le_bytes(self.array()?) as usize;
                    self.bytes(n)?;
                }
                b'C' | b'U' => {
                    let n = self.take(1)?[0] as usize;
                    self.bytes(n)?;
                }
                0x8e | 0x96 => {
                    let n = u64::from_le_bytes(self.array()?);
                    self.bytes(usize::try_from(n).unwrap_or(usize::MAX))?;
                }
                b')' => self.push_object(Object::Tuple(Vec::new()))?,
                b']' => self.push_object(Object::List(Vec::new()))?,
                b'}' => self.push_object(Object::Dict(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push_object(Object::Tuple(items))?;
                }
                0x85..=0x87 => {
                    let mut items = (0..op - 0x84)
                        .map(|_| self.pop())
                        .collect::<Result<Vec<_>, _>>()?;
                    items.reverse();
                    self.push_object(Object::Tuple(items))?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push_object(Object::List(items))?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push_object(Object::Dict(pairs))?;
                }
                b'a' => {
                    let item = self.pop()?;
                    self.charge_items(1)?;
                    self.list_mut()?.push(item);
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    self.charge_items(items.len())?;
                    self.list_mut()?.extend(items);
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.charge_items(2)?;
                    self.dict_mut()?.push((key, value));
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    self.charge_items(items.len())?;
                    let pairs = self.pairs(items)?;
                    self.dict_mut()?.extend(pairs);
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let global = Global::lookup(self.mode, module, name)?;
                    self.push(Value::Global(global))?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let global = match (&module, &name) {
                        (Value::Str(m), Value::Str(n)) => Global::lookup(self.mode, m, n)?,
                        _ => return Err(self.error("STACK_GLOBAL needs two strings")),
                    };
                    self.push(Value::Global(global))?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let result = self.reduce(&callable, &args)?;
                    self.push(result)?;
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.peek()?.clone();
                    self.build(&target, &state)?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = self.persistent_load(&pid)?;
                    self.push(Value::Storage(Rc::new(storage)))?;
                }
                b'q' => {
                    let i = self.take(1)?[0];
                    self.memo_put(i.into())?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.array()?);
                    self.memo_put(i)?;
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| self.error("memo full"))?;
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.take(1)?[0];
                    self.memo_get(i.into())?;
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.array()?);
                    self.memo_get(i)?;
                }
                _ => {
                    return Err(self.error(format!(
                        "unsupported opcode 0x{op:02x} ({:?})",
                        char::from(op)
                    )))
                }
            }
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| self.error("unexpected end of data"))?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// A newline-terminated ASCII line (GLOBAL operands).
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let len = rest
            .iter()
            .take(256)
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.error("GLOBAL name is not newline-terminated"))?;
        let line = self.take(len + 1)?;
        std::str::from_utf8(&line[..len]).map_err(|_| self.error("GLOBAL name is not UTF-8"))
    }

    /// Two's-complement little-endian integer of `n` bytes (LONG1).
    fn long(&mut self, n: usize) -> Result<i64, PickleError> {
        if n > 8 {
            return Err(self.error(format!("{n}-byte integer is too large")));
        }
        let bytes = self.take(n)?;
        let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
        let mut buf = [if negative { 0xff } else { 0 }; 8];
        buf[..n].copy_from_slice(bytes);
        Ok(i64::from_le_bytes(buf))
    }

    fn bytes(&mut self, n: usize) -> Result<(), PickleError> {
        let bytes = self.take(n)?;
        self.push(Value::Bytes(bytes.into()))
    }

    fn string(&mut self, n: usize) -> Result<(), PickleError> {
        let bytes = self.take(n)?;
        let s = std::str::from_utf8(bytes).map_err(|_| self.error("string is not UTF-8"))?;
        self.push(Value::Str(s.into()))
    }

    fn check_len(&self, len: usize, max: usize, what: &str) -> Result<(), PickleError> {
        if len >= max {
            return Err(self.error(format!("more than {max} {what}")));
        }
        Ok(())
    }

    fn underflow(&self) -> PickleError {
        self.error("stack underflow")
    }

    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        self.check_len(self.stack.len(), MAX_STACK, "stack entries")?;
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.error("stack underflow past a MARK"));
        }
        self.stack.pop().ok_or_else(|| self.underflow())
    }

    fn peek(&self) -> Result<&Value, PickleError> {
        self.stack.last().ok_or_else(|| self.underflow())
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let mark = self.marks.pop().ok_or_else(|| self.error("no MARK"))?;
        Ok(self.stack.split_off(mark))
    }

    /// Counts `n` more values held in containers against [`MAX_ITEMS`].
    fn charge_items(&mut self, n: usize) -> Result<(), PickleError> {
        self.items = self.items.saturating_add(n);
        if self.items > MAX_ITEMS {
            return Err(self.error(format!("more than {MAX_ITEMS} container items")));
        }
        Ok(())
    }

    /// Moves `object` into the arena.
    fn new_object(&mut self, object: Object) -> Result<Value, PickleError> {
        self.check_len(self.objects.len(), MAX_OBJECTS, "objects")?;
        let n = match &object {
            Object::Tuple(items) | Object::List(items) => items.len(),
            Object::Dict(pairs) => 2 * pairs.len(),
            Object::Dtype(_) | Object::Array(_) => 0,
        };
        self.charge_items(n)?;
        self.objects.push(object);
        Ok(Value::Obj(self.objects.len() - 1))
    }

    fn push_object(&mut self, object: Object) -> Result<(), PickleError> {
        let v = self.new_object(object)?;
        self.push(v)
    }

    fn memo_put(&mut self, index: u32) -> Result<(), PickleError> {
        if !self.memo.contains_key(&index) {
            self.check_len(self.memo.len(), MAX_MEMO, "memo entries")?;
        }
        let top = self.peek()?.clone();
        self.memo.insert(index, top);
        Ok(())
    }

    fn memo_get(&mut self, index: u32) -> Result<(), PickleError> {
        let v = self
            .memo
            .get(&index)
            .cloned()
            .ok_or_else(|| self.error(format!("memo entry {index} is not set")))?;
        self.push(v)
    }

    /// Pairs up `[k1, v1, k2, v2, ...]`.
    fn pairs(&self, items: Vec<Value>) -> Result<Vec<(Value, Value)>, PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.error("odd number of dict items"));
        }
        let mut it = items.into_iter();
        Ok(std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect())
    }

    fn list_mut(&mut self) -> Result<&mut Vec<Value>, PickleError> {
        let offset = self.op_start;
        if let Some(Value::Obj(id)) = self.stack.last() {
            if let Object::List(items) = &mut self.objects[*id] {
                return Ok(items);
            }
        }
        Err(PickleError::Malformed {
            offset,
            message: "APPEND target is not a list".into(),
        })
    }

    fn dict_mut(&mut self) -> Result<&mut Vec<(Value, Value)>, PickleError> {
        let offset = self.op_start;
        if let Some(Value::Obj(id)) = self.stack.last() {
            if let Object::Dict(pairs) = &mut self.objects[*id] {
                return Ok(pairs);
            }
        }
        Err(PickleError::Malformed {
            offset,
            message: "SETITEM target is not a dict".into(),
        })
    }

    /// A short description of a value's type for messages.
    fn kind(&self, v: &Value) -> &'static str {
        match v {
            Value::None => "None",
            Value::Bool(_) => "a bool",
            Value::Int(_) => "an int",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Bytes(_) => "bytes",
            Value::Obj(id) => match self.objects[*id] {
                Object::Tuple(_) => "a tuple",
                Object::List(_) => "a list",
                Object::Dict(_) => "a dict",
                Object::Dtype(_) => "a NumPy dtype",
                Object::Array(_) => "a NumPy array",
            },
            Value::Global(_) => "a class or function",
            Value::Storage(_) => "a storage",
            Value::Tensor(_) => "a tensor",
        }
    }

    fn tuple<'v>(&'v self, v: &Value, what: &str) -> Result<&'v [Value], PickleError> {
        match v {
            Value::Obj(id) => match &self.objects[*id] {
                Object::Tuple(items) => Ok(items),
                _ => Err(self.error(format!("{what} must be a tuple, got {}", self.kind(v)))),
            },
            _ => Err(self.error(format!("{what} must be a tuple, got {}", self.kind(v)))),
        }
    }

    fn usize_of(&self, v: &Value, what: &str) -> Result<usize, PickleError> {
        match v {
            Value::Int(i) => usize::try_from(*i)
                .ok()
                .filter(|&n| n <= MAX_ELEMENTS)
                .ok_or_else(|| self.error(format!("{what} {i} is out of range"))),
            _ => Err(self.error(format!("{what} must be an int, got {}", self.kind(v)))),
        }
    }

    /// A tensor size or stride: a tuple of at most [`MAX_RANK`] ints.
    fn usizes(&self, v: &Value, what: &str) -> Result<Vec<usize>, PickleError> {
        let items = self.tuple(v, what)?;
        if items.len() > MAX_RANK {
            return Err(self.error(format!(
                "{what} has {} dimensions, more than the {MAX_RANK} accepted",
                items.len()
            )));
        }
        items.iter().map(|x| self.usize_of(x, what)).collect()
    }

    /// Applies an allowed callable.
    fn reduce(&mut self, callable: &Value, args: &Value) -> Result<Value, PickleError> {
        let Value::Global(global) = callable else {
            return Err(self.error(format!("cannot call {}", self.kind(callable))));
        };
        let args = self.tuple(args, "call arguments")?;
        // No allowed callable takes more than 7 arguments: refuse before copying.
        if args.len() > 7 {
            return Err(self.error(format!(
                "unexpected arguments ({} values) for {global:?}",
                args.len()
            )));
        }
        let args = args.to_vec();
        match (global, args.as_slice()) {
            (Global::OrderedDict, []) => self.new_object(Object::Dict(Vec::new())),
            (Global::RebuildTensorV2, [storage, offset, size, stride, _grad, _hooks, ..]) => {
                self.check_len(self.tensors, MAX_TENSORS, "tensors")?;
                self.tensors += 1;
                let Value::Storage(storage) = storage else {
                    return Err(self.error(format!(
                        "tensor storage must be a persistent storage, got {}",
                        self.kind(storage)
                    )));
                };
                let tensor = TensorRef {
                    storage: storage.clone(),
                    offset: self.usize_of(offset, "storage offset")?,
                    shape: self.usizes(size, "tensor size")?,
                    stride: self.usizes(stride, "tensor stride")?,
                };
                if tensor.shape.len() != tensor.stride.len() {
                    return Err(self.error("tensor size and stride differ in length"));
                }
                self.dims += tensor.shape.len();
                if self.dims > MAX_TOTAL_DIMS {
                    return Err(self.error(format!(
                        "tensors have more than {MAX_TOTAL_DIMS} dimensions in all"
                    )));
                }
                Ok(Value::Tensor(Rc::new(tensor)))
            }
            (Global::RebuildParameter, [data @ Value::Tensor(_), _grad, _hooks])
            | (Global::RebuildParameterWithState, [data @ Value::Tensor(_), _grad, _hooks, _]) => {
                Ok(data.clone())
            }
            (Global::Storage(_), _) => Err(self.error("storage classes cannot be called")),
            (Global::NpDtype, [code, ..]) if args.len() <= 3 => {
                let code = match code {
                    Value::Str(s) => s.to_string(),
                    Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
                    other => {
                        return Err(self.error(format!(
                            "dtype code must be a string, got {}",
                            self.kind(other)
                        )))
                    }
                };
                let dtype = NpDtype::from_code(&code).map_err(|m| self.error(m))?;
                self.new_object(Object::Dtype(dtype))
            }
            (Global::NpReconstruct, [Value::Global(Global::NpNdarray), shape, _typecode]) => {
                self.tuple(shape, "_reconstruct shape")?;
                self.count_array()?;
                self.new_object(Object::Array(None))
            }
            (Global::NpReconstruct, [class, ..]) if args.len() == 3 => Err(self.error(format!(
                "_reconstruct builds only numpy.ndarray, got {}",
                self.kind(class)
            ))),
            (Global::NpScalar, [dtype, data]) => {
                let dtype = self.dtype_of(dtype)?;
                if !dtype.is_packed() {
                    return match data {
                        Value::Bytes(_) | Value::Str(_) => Ok(data.clone()),
                        other => Err(self.error(format!(
                            "object scalar is {}, only bytes and str are supported",
                            self.kind(other)
                        ))),
                    };
                }
                let raw = self.raw_bytes(data, "scalar data")?;
                // S and U scalars copy their bytes.
                self.charge_made(raw.len())?;
                Ok(match dtype.scalar(&raw).map_err(|m| self.error(m))? {
                    NpValue::Int(i) => Value::Int(i),
                    NpValue::Float(f) => Value::Float(f),
                    NpValue::Str(s) => Value::Str(s.into()),
                    NpValue::Bytes { mut items, .. } => {
                        Value::Bytes(items.pop().unwrap_or_default().into())
                    }
                    NpValue::Array { .. } => unreachable!("scalars are not arrays"),
                })
            }
            (Global::NpFromBuffer, [buffer, dtype, shape, order, rest @ ..]) if rest.len() <= 1 => {
                let axis_order = rest.first().filter(|v| !matches!(v, Value::None));
                self.frombuffer(buffer, dtype, shape, order, axis_order)
            }
            (Global::CodecsEncode, [Value::Str(text), Value::Str(encoding)]) => {
                if &**encoding != "latin1" {
                    return Err(self.error(format!(
                        "_codecs.encode with encoding `{encoding}`: only latin1 is allowed"
                    )));
                }
                Ok(Value::Bytes(self.latin1(text)?))
            }
            (Global::EmptyBytes, []) => Ok(Value::Bytes(Rc::from(&[][..]))),
            (global, _) => Err(self.error(format!(
                "unexpected arguments ({} values) for {global:?}",
                args.len()
            ))),
        }
    }

    fn not_a_numpy_dict(&self, top: &Value) -> PickleError {
        self.error(format!(
            "the pickled object is {}, expected a dict of NumPy arrays",
            self.kind(top)
        ))
    }

    /// Applies BUILD's `state` to `target`. PyTorch pickles give state only to dicts (an
    /// OrderedDict's attributes such as `_metadata`, which carry no tensors, and are
    /// ignored); NumPy pickles give it to dtypes and arrays.
    fn build(&mut self, target: &Value, state: &Value) -> Result<(), PickleError> {
        let id = match (self.mode, target) {
            (Mode::Torch, Value::Obj(id)) if matches!(self.objects[*id], Object::Dict(_)) => {
                return Ok(())
            }
            (Mode::Numpy, Value::Obj(id))
                if matches!(self.objects[*id], Object::Dtype(_) | Object::Array(_)) =>
            {
                *id
            }
            _ => {
                let kind = self.kind(target);
                return Err(self.error(format!("BUILD on {kind} is not supported")));
            }
        };
        if let Object::Dtype(dtype) = &self.objects[id] {
            let mut dtype = *dtype;
            self.dtype_state(&mut dtype, state)?;
            self.objects[id] = Object::Dtype(dtype);
        } else {
            let array = self.array_state(state)?;
            self.objects[id] = Object::Array(Some(Rc::new(array)));
        }
        Ok(())
    }

    /// Applies a dtype's state `(3, byteorder, subarray, names, fields, elsize,
    /// alignment, flags[, metadata])`; subarray and structured dtypes are refused.
    fn dtype_state(&self, dtype: &mut NpDtype, state: &Value) -> Result<(), PickleError> {
        let items = self.tuple(state, "dtype state")?;
        let (Value::Int(3 | 4), [Value::Str(order), sub, names, fields, Value::Int(elsize), ..]) = (
            items.first().unwrap_or(&Value::None),
            items.get(1..).unwrap_or(&[]),
        ) else {
            return Err(self.error(
                "dtype state is not (version, byteorder, subarray, names, fields, elsize, ...)",
            ));
        };
        if !(8..=9).contains(&items.len()) {
            return Err(self.error(format!("dtype state has {} items", items.len())));
        }
        if [sub, names, fields]
            .iter()
            .any(|v| !matches!(v, Value::None))
        {
            return Err(self.error("structured and subarray dtypes are not supported"));
        }
        dtype.set_state(order, *elsize).map_err(|m| self.error(m))
    }

    /// The dtype object `v`.
    fn dtype_of(&self, v: &Value) -> Result<NpDtype, PickleError> {
        match v {
            Value::Obj(id) => match &self.objects[*id] {
                Object::Dtype(dtype) => Ok(*dtype),
                _ => Err(self.error(format!("expected a NumPy dtype, got {}", self.kind(v)))),
            },
            _ => Err(self.error(format!("expected a NumPy dtype, got {}", self.kind(v)))),
        }
    }

    /// Counts one more array against [`MAX_TENSORS`].
    fn count_array(&mut self) -> Result<(), PickleError> {
        self.check_len(self.tensors, MAX_TENSORS, "arrays")?;
        self.tensors += 1;
        Ok(())
    }

    /// An array shape: at most [`MAX_RANK`] dimensions (charged to [`MAX_TOTAL_DIMS`])
    /// and at most [`MAX_ELEMENTS`] elements; returns it with its element count.
    fn array_shape(&mut self, v: &Value) -> Result<(Vec<usize>, usize), PickleError> {
        let shape = self.usizes(v, "array shape")?;
        self.dims += shape.len();
        if self.dims > MAX_TOTAL_DIMS {
            return Err(self.error(format!(
                "arrays have more than {MAX_TOTAL_DIMS} dimensions in all"
            )));
        }
        let count = shape
            .iter()
            .try_fold(1usize, |n, &d| {
                n.checked_mul(d).filter(|&n| n <= MAX_ELEMENTS)
            })
            .ok_or_else(|| self.error(format!("array shape {shape:?} is too large")))?;
        Ok((shape, count))
    }

    /// Bytes given as `bytes`, or as text to encode as latin1 (Python 2 pickles read
    /// with `encoding='latin1'`, which NumPy accepts).
    fn raw_bytes(&mut self, v: &Value, what: &str) -> Result<Rc<[u8]>, PickleError> {
        match v {
            Value::Bytes(b) => Ok(b.clone()),
            Value::Str(s) => self.latin1(s),
            other => Err(self.error(format!("{what} must be bytes, got {}", self.kind(other)))),
        }
    }

    /// `text.encode('latin1')`: each character must be below U+0100. The copy is
    /// charged to [`MAX_MADE_BYTES`].
    fn latin1(&mut self, text: &str) -> Result<Rc<[u8]>, PickleError> {
        self.charge_made(text.chars().count())?;
        text.chars()
            .map(u8::try_from)
            .collect::<Result<Vec<u8>, _>>()
            .map(Rc::from)
            .map_err(|_| self.error("text to encode as latin1 has characters above U+00FF"))
    }

    /// Counts `n` more bytes copied out of the pickle's values against
    /// [`MAX_MADE_BYTES`], so that re-encoding one memoized string many times cannot
    /// grow memory without bound.
    fn charge_made(&mut self, n: usize) -> Result<(), PickleError> {
        self.made = self.made.saturating_add(n as u64);
        if self.made > MAX_MADE_BYTES {
            return Err(self.error(format!(
                "values copied from the pickle exceed {MAX_MADE_BYTES} bytes"
            )));
        }
        Ok(())
    }

    /// An array's BUILD state `(1, shape, dtype, is_fortran, data)` (or the older form
    /// without the version): `data` is the packed elements, or for object arrays a list
    /// of bytes or str in C order.
    fn array_state(&mut self, state: &Value) -> Result<RawArray, PickleError> {
        let items = self.tuple(state, "array state")?;
        // Check the length before copying: a memoized huge tuple may be given often.
        if !(4..=5).contains(&items.len()) {
            return Err(self.error("array state is not (version, shape, dtype, is_fortran, data)"));
        }
        let items = items.to_vec();
        let (shape, dtype, fortran, data) = match items.as_slice() {
            [Value::Int(1), shape, dtype, fortran, data] | [shape, dtype, fortran, data] => {
                (shape, dtype, fortran, data)
            }
            _ => {
                return Err(
                    self.error("array state is not (version, shape, dtype, is_fortran, data)")
                )
            }
        };
        let (shape, count) = self.array_shape(shape)?;
        let dtype = self.dtype_of(dtype)?;
        let fortran = match fortran {
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            other => {
                return Err(self.error(format!(
                    "array is_fortran must be a bool, got {}",
                    self.kind(other)
                )))
            }
        };
        if !dtype.is_packed() {
            // Object arrays list their items in C order whatever the layout.
            let not_a_list = || {
                self.error(format!(
                    "object array data must be a list, got {}",
                    self.kind(data)
                ))
            };
            let Value::Obj(id) = data else {
                return Err(not_a_list());
            };
            let Object::List(list) = &self.objects[*id] else {
                return Err(not_a_list());
            };
            if list.len() != count {
                return Err(self.error(format!(
                    "object array of shape {shape:?} lists {} items",
                    list.len()
                )));
            }
            // The items are copied (NumPy copies them too), so count them first.
            self.charge_items(count)?;
            let Object::List(list) = &self.objects[*id] else {
                unreachable!("checked above");
            };
            let objects = list
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Bytes(b) => Ok(Blob::Bytes(b.clone())),
                    Value::Str(s) => Ok(Blob::Str(s.clone())),
                    other => Err(self.error(format!(
                        "object array item {i} is {}, only bytes and str are supported",
                        self.kind(other)
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(RawArray {
                dtype,
                perm: (0..shape.len()).collect(),
                stored_shape: shape,
                data: RawData::Objects(objects),
            });
        }
        let bytes = self.raw_bytes(data, "array data")?;
        if Some(bytes.len()) != count.checked_mul(dtype.size) {
            return Err(self.error(format!(
                "array of shape {shape:?} and dtype {} has {} data bytes",
                dtype.str(),
                bytes.len()
            )));
        }
        Ok(packed_array(dtype, shape, fortran, bytes))
    }

    /// `numpy.core.numeric._frombuffer(buffer, dtype, shape, order, axis_order)`:
    /// `buffer` reshaped to `shape` in `order` ('C' or 'F'), or for order 'K' in C
    /// order and then transposed by `axis_order`.
    fn frombuffer(
        &mut self,
        buffer: &Value,
        dtype: &Value,
        shape: &Value,
        order: &Value,
        axis_order: Option<&Value>,
    ) -> Result<Value, PickleError> {
        self.count_array()?;
        let dtype = self.dtype_of(dtype)?;
        if !dtype.is_packed() {
            return Err(self.error("_frombuffer cannot build object arrays"));
        }
        let Value::Bytes(bytes) = buffer else {
            return Err(self.error(format!(
                "_frombuffer buffer must be bytes, got {}",
                self.kind(buffer)
            )));
        };
        let (shape, count) = self.array_shape(shape)?;
        if dtype.size == 0 || Some(bytes.len()) != count.checked_mul(dtype.size) {
            return Err(self.error(format!(
                "array of shape {shape:?} and dtype {} has {} data bytes",
                dtype.str(),
                bytes.len()
            )));
        }
        let order = match order {
            Value::Str(s) => &**s,
            other => {
                return Err(self.error(format!(
                    "_frombuffer order must be a string, got {}",
                    self.kind(other)
                )))
            }
        };
        let array = match (order, axis_order) {
            ("C", None) => packed_array(dtype, shape, false, bytes.clone()),
            ("F", None) => packed_array(dtype, shape, true, bytes.clone()),
            ("K", Some(axes)) => {
                let perm = self.usizes(axes, "_frombuffer axis order")?;
                let mut seen = vec![false; shape.len()];
                let is_permutation = perm.len() == shape.len()
                    && perm
                        .iter()
                        .all(|&a| a < seen.len() && !std::mem::replace(&mut seen[a], true));
                if !is_permutation {
                    return Err(self.error(format!(
                        "_frombuffer axis order {perm:?} is not a permutation of {} axes",
                        shape.len()
                    )));
                }
                RawArray {
                    dtype,
                    stored_shape: shape,
                    perm,
                    data: RawData::Packed(bytes.clone()),
                }
            }
            _ => {
                return Err(self.error(format!(
                    "_frombuffer order `{order}` with axis order {axis_order:?} is not supported"
                )))
            }
        };
        self.new_object(Object::Array(Some(Rc::new(array))))
    }

    /// Resolves `('storage', torch.XStorage, key, location, numel)`.
    fn persistent_load(&self, pid: &Value) -> Result<StorageRef, PickleError> {
        let items = self.tuple(pid, "persistent id")?;
        let [Value::Str(tag), Value::Global(Global::Storage(elem)), Value::Str(key), _location, numel] =
            items
        else {
            return Err(
                self.error("persistent id is not ('storage', storage type, key, location, numel)")
            );
        };
        if &**tag != "storage" {
            return Err(self.error(format!("unknown persistent id tag `{tag}`")));
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(self.error(format!("storage key `{key}` is not a plain name")));
        }
        Ok(StorageRef {
            key: key.to_string(),
            elem: *elem,
            numel: self.usize_of(numel, "storage size")?,
        })
    }

    /// Collects the tensors of dict `id` (recursing into nested dicts) into `flat.out`.
    /// Each dict is entered at most once, so the work is bounded by the number of dict
    /// items; names are checked for length, total size and uniqueness.
    fn flatten(
        &self,
        id: usize,
        prefix: &str,
        depth: usize,
        flat: &mut Flatten,
    ) -> Result<(), PickleError> {
        if depth > MAX_DICT_DEPTH {
            return Err(self.error(format!("dicts nested deeper than {MAX_DICT_DEPTH}")));
        }
        let Object::Dict(pairs) = &self.objects[id] else {
            return Ok(());
        };
        if std::mem::replace(&mut flat.visited[id], true) {
            let at = if prefix.is_empty() { "the top" } else { prefix };
            return Err(self.error(format!(
                "dict at `{at}` is reached more than once (shared through the memo)"
            )));
        }
        for (key, value) in pairs {
            // Only tensors and dicts are named; anything else is skipped unseen.
            match value {
                Value::Tensor(t) => {
                    self.check_len(flat.out.len(), MAX_TENSORS, "tensors")?;
                    let name = self.name(prefix, key, flat)?;
                    if !flat.names.insert(name.clone()) {
                        return Err(self.error(format!("tensor name `{name}` appears twice")));
                    }
                    flat.out.push((name, t.clone()));
                }
                Value::Obj(child) if matches!(self.objects[*child], Object::Dict(_)) => {
                    let name = self.name(prefix, key, flat)?;
                    self.flatten(*child, &name, depth + 1, flat)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `prefix.key`, charged to the name budget.
    fn name(&self, prefix: &str, key: &Value, flat: &mut Flatten) -> Result<String, PickleError> {
        let key: std::borrow::Cow<'_, str> = match key {
            Value::Str(s) => (**s).into(),
            Value::Int(i) => i.to_string().into(),
            other => {
                return Err(self.error(format!("dict key is {}", self.kind(other))));
            }
        };
        let len = if prefix.is_empty() {
            key.len()
        } else {
            prefix.len() + 1 + key.len()
        };
        if len > MAX_NAME_BYTES {
            let head: String = if prefix.is_empty() { &key } else { prefix }
                .chars()
                .take(64)
                .collect();
            return Err(self.error(format!(
                "name `{head}...` is {len} bytes, longer than {MAX_NAME_BYTES}"
            )));
        }
        flat.name_bytes += len;
        if flat.name_bytes > MAX_TOTAL_NAME_BYTES {
            return Err(self.error(format!("names exceed {MAX_TOTAL_NAME_BYTES} bytes in all")));
        }
        Ok(if prefix.is_empty() {
            key.into_owned()
        } else {
            format!("{prefix}.{key}")
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `torch.save`-shaped state dict made by io/tests/make_test_pickles.py.
    pub(crate) const STATE_DICT_P2: &[u8] = include_bytes!("../../tests/data/state_dict_p2.pkl");
    /// The same dict pickled with protocol 4 (FRAME, MEMOIZE, STACK_GLOBAL, ...).
    const STATE_DICT_P4: &[u8] = include_bytes!("../../tests/data/state_dict_p4.pkl");

    fn message(pickle: &[u8]) -> String {
        load_state_dict(pickle).unwrap_err().to_string()
    }

    fn storage(key: &str, elem: ElemType, numel: usize) -> Rc<StorageRef> {
        Rc::new(StorageRef {
            key: key.into(),
            elem,
            numel,
        })
    }

    #[test]
    fn reads_state_dicts_of_both_protocols() {
        let f32s = storage("0", ElemType::F32, 6);
        let view = |offset, shape: &[usize], stride: &[usize], storage: &Rc<StorageRef>| {
            Rc::new(TensorRef {
                storage: storage.clone(),
                offset,
                shape: shape.to_vec(),
                stride: stride.to_vec(),
            })
        };
        let expected = vec![
            ("layer.weight".to_string(), view(0, &[2, 3], &[3, 1], &f32s)),
            ("layer.weight_t".into(), view(0, &[3, 2], &[1, 3], &f32s)),
            ("layer.bias".into(), view(4, &[2], &[1], &f32s)),
            (
                "ids".into(),
                view(0, &[1, 4], &[4, 1], &storage("1", ElemType::I64, 4)),
            ),
            (
                "half".into(),
                view(0, &[2], &[1], &storage("2", ElemType::F16, 2)),
            ),
            ("extra.scale".into(), view(5, &[], &[], &f32s)),
        ];
        assert_eq!(load_state_dict(STATE_DICT_P2).unwrap(), expected);
        assert_eq!(load_state_dict(STATE_DICT_P4).unwrap(), expected);
    }

    #[test]
    fn refuses_code_execution_globals() {
        // os.system("id") via GLOBAL + REDUCE, as in classic pickle exploits.
        let exploit = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.";
        assert_eq!(
            message(exploit),
            "pickle global `os.system` is not allowed (only PyTorch tensor-rebuild globals are)"
        );
        for (module, name) in [
            ("posix", "system"),
            ("builtins", "eval"),
            ("subprocess", "Popen"),
            ("torch", "load"),
            ("collections", "namedtuple"),
        ] {
            let global = format!("c{module}\n{name}\n)R.");
            assert!(matches!(
                load_state_dict(global.as_bytes()),
                Err(PickleError::ForbiddenGlobal(g)) if g == format!("{module}.{name}")
            ));
            // Protocol 4 form: STACK_GLOBAL with the names as strings.
            let mut stack = b"\x80\x04".to_vec();
            for part in [module, name] {
                stack.push(0x8c);
                stack.push(part.len() as u8);
                stack.extend_from_slice(part.as_bytes());
            }
            stack.extend_from_slice(b"\x93)R.");
            assert!(message(&stack).contains(&format!("`{module}.{name}`")));
        }
    }

    #[test]
    fn numpy_globals_stay_out_of_state_dicts() {
        for (module, name) in [
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy", "dtype"),
            ("_codecs", "encode"),
            ("builtins", "bytes"),
        ] {
            let global = format!("c{module}\n{name}\n)R.");
            assert!(matches!(
                load_state_dict(global.as_bytes()),
                Err(PickleError::ForbiddenGlobal(g)) if g == format!("{module}.{name}")
            ));
        }
    }

    #[test]
    fn skips_bytes_floats_and_bools_in_state_dicts() {
        // BINBYTES, SHORT_BINBYTES, BYTEARRAY8, BINFLOAT and bools beside a tensor.
        let p = Pk::new()
            .op(b"}(")
            .str("w")
            .scalar()
            .str("b")
            .op(b"B\x01\x00\x00\x00z")
            .str("c")
            .op(b"C\x02xy")
            .str("d")
            .op(b"\x96\x01\x00\x00\x00\x00\x00\x00\x00z")
            .str("lr")
            .op(b"G?\xe0\x00\x00\x00\x00\x00\x00")
            .str("flag")
            .op(b"\x88")
            .op(b"u")
            .bytes();
        assert_eq!(names(&p), ["w"]);
        let mut vm = Vm::new(b"G?\xe0\x00\x00\x00\x00\x00\x00.", Mode::Torch);
        assert!(matches!(vm.run(), Ok(Value::Float(f)) if f == 0.5));
        // BUILD still applies only to dicts in state dicts.
        let p = Pk::new().op(b"}").str("w").op(b"C\x01xN").op(b"bs").bytes();
        assert!(message(&p).contains("BUILD on bytes is not supported"));
    }

    #[test]
    fn bounds_bytes_copied_by_latin1_encoding() {
        // `_codecs.encode("ab", "latin1")` run with 1 byte of the budget left.
        let p = b"\x80\x02c_codecs\nencode\nX\x02\x00\x00\x00abX\x06\x00\x00\x00latin1\x86R.";
        let mut vm = Vm::new(p, Mode::Numpy);
        assert!(matches!(vm.run(), Ok(Value::Bytes(b)) if &*b == b"ab"));
        assert_eq!(vm.made, 2);
        let mut vm = Vm::new(p, Mode::Numpy);
        vm.made = MAX_MADE_BYTES - 1;
        let msg = vm.run().unwrap_err().to_string();
        assert!(
            msg.contains("values copied from the pickle exceed 1073741824 bytes"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_object_construction_opcodes() {
        // NEWOBJ, INST, OBJ and EXT1 could build arbitrary objects.
        for op in [b"\x81", b"i", b"o", b"\x82"] {
            let mut p = b"\x80\x02".to_vec();
            p.extend_from_slice(op);
            assert!(
                message(&p).contains("unsupported opcode"),
                "{}",
                message(&p)
            );
        }
    }

    #[test]
    fn rejects_malformed_pickles_without_panicking() {
        for (pickle, expected) in [
            (
                &b"K\x01."[..],
                "the pickled object is an int, expected a dict of tensors",
            ),
            (b"X\xff\xff\xff\xffabc", "unexpected end of data"),
            (b"h\x05", "memo entry 5 is not set"),
            (b"(0", "stack underflow past a MARK"),
            (b"K\x01s.", "stack underflow"),
            (b"}K\x01s.", "SETITEM target is not a dict"),
            (b"\x80\x09", "unsupported pickle protocol 9"),
            (
                b"}q\x00X\x01\x00\x00\x00ah\x00s.",
                "dict at `a` is reached more than once",
            ),
            (b"\x8a\x09", "9-byte integer is too large"),
            (b"cos\x00system", "GLOBAL name is not newline-terminated"),
        ] {
            let msg = message(pickle);
            assert!(msg.contains(expected), "{msg}");
        }
        // Every truncation of a valid pickle fails cleanly.
        for end in 0..STATE_DICT_P2.len() {
            assert!(load_state_dict(&STATE_DICT_P2[..end]).is_err());
        }
    }

    #[test]
    fn survives_every_single_byte_corruption() {
        let mut p = STATE_DICT_P2.to_vec();
        for i in 0..p.len() {
            let original = p[i];
            for b in 0..=255u8 {
                p[i] = b;
                // Any result is fine; panics, hangs and huge allocations are not.
                let _ = load_state_dict(&p);
            }
            p[i] = original;
        }
    }

    #[test]
    fn checks_tensor_arguments() {
        let bad_size = STATE_DICT_P2
            .windows(4)
            .position(|w| w == b"K\x02K\x03")
            .unwrap();
        let mut p = STATE_DICT_P2.to_vec();
        // size (2, 3) -> (-1, 3) via BININT 0xffffffff.
        p.splice(bad_size..bad_size + 2, *b"J\xff\xff\xff\xff");
        assert!(
            message(&p).contains("tensor size -1 is out of range"),
            "{}",
            message(&p)
        );
    }

    #[test]
    fn bounds_the_stack() {
        let msg = message(&vec![b'N'; MAX_STACK + 1]);
        assert!(
            msg.contains(&format!("more than {MAX_STACK} stack entries")),
            "{msg}"
        );
    }

    const REBUILD: &[u8] = b"ctorch._utils\n_rebuild_tensor_v2\n";

    /// Builds protocol-2 pickles by hand, one opcode at a time.
    struct Pk(Vec<u8>);

    impl Pk {
        fn new() -> Self {
            Self(b"\x80\x02".to_vec())
        }
        fn op(&mut self, bytes: &[u8]) -> &mut Self {
            self.0.extend_from_slice(bytes);
            self
        }
        /// BINUNICODE.
        fn str(&mut self, s: &str) -> &mut Self {
            self.op(b"X")
                .op(&(s.len() as u32).to_le_bytes())
                .op(s.as_bytes())
        }
        /// BININT.
        fn int(&mut self, i: u32) -> &mut Self {
            self.op(b"J").op(&i.to_le_bytes())
        }
        /// LONG_BINPUT: memoizes the top of the stack.
        fn put(&mut self, i: u32) -> &mut Self {
            self.op(b"r").op(&i.to_le_bytes())
        }
        /// LONG_BINGET.
        fn get(&mut self, i: u32) -> &mut Self {
            self.op(b"j").op(&i.to_le_bytes())
        }
        /// A tuple of `n` ones.
        fn ones(&mut self, n: usize) -> &mut Self {
            self.op(b"(");
            for _ in 0..n {
                self.op(b"K\x01");
            }
            self.op(b"t")
        }
        /// The arguments `(storage, 0, size, stride, False, OrderedDict())` of
        /// `_rebuild_tensor_v2` for a one-element f32 storage; `dims` pushes the size
        /// and stride tuples.
        fn args(&mut self, dims: impl Fn(&mut Self)) -> &mut Self {
            self.op(b"(")
                .op(b"(")
                .str("storage")
                .op(b"ctorch\nFloatStorage\n")
                .str("0")
                .str("cpu")
                .op(b"K\x01tQK\x00");
            dims(self);
            dims(self);
            self.op(b"\x89ccollections\nOrderedDict\n)Rt")
        }
        /// `_rebuild_tensor_v2(*args(dims))`.
        fn tensor(&mut self, dims: impl Fn(&mut Self)) -> &mut Self {
            self.op(REBUILD).args(dims).op(b"R")
        }
        /// Memoizes the rebuild function as 1 and `args(dims)` as 2, then calls it
        /// `n` times, dropping each tensor.
        fn rebuilds(&mut self, n: usize, dims: impl Fn(&mut Self)) -> &mut Self {
            self.op(REBUILD).put(1).op(b"0").args(dims).put(2).op(b"0");
            for _ in 0..n {
                self.get(1).get(2).op(b"R0");
            }
            self
        }
        /// A rank-0 tensor.
        fn scalar(&mut self) -> &mut Self {
            self.tensor(|p| {
                p.op(b")");
            })
        }
        fn bytes(&mut self) -> Vec<u8> {
            let mut out = self.0.clone();
            out.push(b'.');
            out
        }
    }

    /// Runs `f` on another thread and fails if it takes more than `secs` seconds, so
    /// that a regression shows as a failure rather than a hung test run.
    fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(secs))
            .unwrap_or_else(|e| panic!("did not finish within {secs} s: {e}"))
    }

    fn names(pickle: &[u8]) -> Vec<String> {
        let flat = load_state_dict(pickle).unwrap();
        flat.into_iter().map(|(n, _)| n).collect()
    }

    #[test]
    fn hand_built_pickles_load() {
        // {"w": scalar, "sub": {"v": 64-dim tensor}}.
        let p = Pk::new()
            .op(b"}(")
            .str("w")
            .scalar()
            .str("sub")
            .op(b"}")
            .str("v")
            .tensor(|p| {
                p.ones(MAX_RANK);
            })
            .op(b"su")
            .bytes();
        let flat = load_state_dict(&p).unwrap();
        assert_eq!(flat[0].0, "w");
        assert_eq!(flat[1].0, "sub.v");
        assert_eq!(flat[1].1.shape, vec![1; MAX_RANK]);
    }

    #[test]
    fn refuses_memo_fan_out_dict_bomb() {
        // Level 0 is an empty dict; level i holds 16 references to level i - 1. Walked
        // naively that is 16^15 dict visits from about 2 KB of pickle.
        let mut p = Pk::new();
        p.op(b"}").put(0);
        for level in 1..16u32 {
            p.op(b"}(");
            for k in 0..16 {
                p.str(&format!("k{k}")).get(level - 1);
            }
            p.op(b"u").put(level);
        }
        let p = p.bytes();
        assert!(p.len() < 4096, "{}", p.len());
        let msg = within(10, move || message(&p));
        assert!(
            msg.contains(
                "dict at `k0.k0.k0.k0.k0.k0.k0.k0.k0.k0.k0.k0.k0.k0.k1` is reached more than once"
            ),
            "{msg}"
        );

        // The same with the key repeated and a tensor at the bottom.
        let mut p = Pk::new();
        p.op(b"}").str("w").scalar().op(b"s").put(0);
        for level in 1..16u32 {
            p.op(b"}(");
            for _ in 0..16 {
                p.str("k").get(level - 1);
            }
            p.op(b"u").put(level);
        }
        let p = p.bytes();
        let msg = within(10, move || message(&p));
        assert!(msg.contains("is reached more than once"), "{msg}");

        // A dict shared by two keys is refused even when small.
        let p = Pk::new()
            .op(b"}(")
            .str("a")
            .op(b"}")
            .str("w")
            .scalar()
            .op(b"s")
            .put(0)
            .str("b")
            .get(0)
            .op(b"u")
            .bytes();
        assert!(message(&p).contains("dict at `b` is reached more than once"));
    }

    #[test]
    fn refuses_huge_rank_tensors() {
        // One 100 000-dimension size tuple, used by 256 tensors: before the rank cap
        // each flattened tensor copied 1.6 MB of shape and stride.
        let mut p = Pk::new();
        p.ones(100_000).put(0).op(b"}(");
        for k in 0..256 {
            p.str(&format!("t{k}")).tensor(|p| {
                p.get(0);
            });
        }
        let p = p.op(b"u").bytes();
        let msg = within(10, move || message(&p));
        assert!(
            msg.contains("tensor size has 100000 dimensions, more than the 64 accepted"),
            "{msg}"
        );

        let rank = |n: usize| {
            Pk::new()
                .op(b"}")
                .str("t")
                .tensor(|p| {
                    p.ones(n);
                })
                .op(b"s")
                .bytes()
        };
        assert_eq!(names(&rank(MAX_RANK)), ["t"]);
        assert!(message(&rank(MAX_RANK + 1)).contains("65 dimensions, more than the 64"));
    }

    #[test]
    fn bounds_tensor_count_and_total_dimensions() {
        // 16385 rebuilds of one 64-dim tensor: 2^20 + 64 dimensions in all.
        let p = Pk::new()
            .rebuilds(MAX_TOTAL_DIMS / MAX_RANK + 1, |p| {
                p.ones(MAX_RANK);
            })
            .bytes();
        let msg = message(&p);
        assert!(
            msg.contains("tensors have more than 1048576 dimensions in all"),
            "{msg}"
        );

        // 2^20 + 1 rank-0 tensors, each dropped at once.
        let p = Pk::new()
            .rebuilds(MAX_TENSORS + 1, |p| {
                p.op(b")");
            })
            .bytes();
        let msg = message(&p);
        assert!(msg.contains("more than 1048576 tensors"), "{msg}");
        // One fewer is fine (the pickle is then a dict of nothing).
        let p = Pk::new()
            .rebuilds(MAX_TENSORS, |p| {
                p.op(b")");
            })
            .op(b"}")
            .bytes();
        assert!(load_state_dict(&p).unwrap().is_empty());
    }

    #[test]
    fn bounds_container_items() {
        // Five lists of 2^20 - 1 Nones: more than 2^22 items held in all.
        let mut p = Pk::new();
        for _ in 0..5 {
            p.op(b"(");
            p.op(&vec![b'N'; MAX_STACK - 1]);
            p.op(b"l0");
        }
        let msg = message(&p.bytes());
        assert!(msg.contains("more than 4194304 container items"), "{msg}");
    }

    #[test]
    fn refuses_repeated_names() {
        let p = Pk::new()
            .op(b"}(")
            .str("w")
            .scalar()
            .put(0)
            .str("w")
            .get(0)
            .op(b"u")
            .bytes();
        assert!(message(&p).contains("tensor name `w` appears twice"));

        // A dotted key colliding with a nested one.
        let p = Pk::new()
            .op(b"}(")
            .str("a.b")
            .scalar()
            .str("a")
            .op(b"}")
            .str("b")
            .scalar()
            .op(b"su")
            .bytes();
        assert!(message(&p).contains("tensor name `a.b` appears twice"));

        // The int key 0 and the string key "0" name the same tensor.
        let p = Pk::new()
            .op(b"}(")
            .str("0")
            .scalar()
            .int(0)
            .scalar()
            .op(b"u")
            .bytes();
        assert!(message(&p).contains("tensor name `0` appears twice"));
    }

    #[test]
    fn bounds_name_lengths() {
        let named = |key: &str| Pk::new().op(b"}").str(key).scalar().op(b"s").bytes();
        let longest = "n".repeat(MAX_NAME_BYTES);
        assert_eq!(names(&named(&longest)), [longest.as_str()]);
        let msg = message(&named(&format!("{longest}n")));
        assert!(msg.contains("is 1025 bytes, longer than 1024"), "{msg}");
        // The dotted name counts, not the key alone.
        let p = Pk::new()
            .op(b"}")
            .str(&"p".repeat(1000))
            .op(b"}")
            .str(&"k".repeat(24))
            .scalar()
            .op(b"ss")
            .bytes();
        assert!(message(&p).contains("is 1025 bytes, longer than 1024"));

        // 17 000 int keys under a 1000-byte prefix: 17 MB of names from 190 KB.
        let mut p = Pk::new();
        p.scalar().put(0).op(b"}").str(&"p".repeat(1000)).op(b"}(");
        for k in 0..17_000 {
            p.int(k).get(0);
        }
        let p = p.op(b"us").bytes();
        let msg = message(&p);
        assert!(msg.contains("names exceed 16777216 bytes in all"), "{msg}");
    }

    #[test]
    fn bounds_dict_nesting() {
        let nested = |levels: usize| {
            let mut p = Pk::new();
            for _ in 0..levels {
                p.op(b"}").str("d");
            }
            p.op(b"}").str("w").scalar().op(b"s");
            for _ in 0..levels {
                p.op(b"s");
            }
            p.bytes()
        };
        let deepest = names(&nested(MAX_DICT_DEPTH));
        assert_eq!(deepest, [format!("{}w", "d.".repeat(MAX_DICT_DEPTH))]);
        let msg = message(&nested(MAX_DICT_DEPTH + 1));
        assert!(msg.contains("dicts nested deeper than 16"), "{msg}");
    }
}
