//! Element types found in weight files and their little-endian decoding to f32.

use half::{bf16, f16};

/// A storage element type. Everything is converted to f32 on load; integers and
/// booleans become their numeric value (exact up to 2^24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElemType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl ElemType {
    /// Bytes per element.
    pub(crate) fn size(self) -> usize {
        match self {
            Self::F64 | Self::I64 => 8,
            Self::F32 | Self::I32 => 4,
            Self::F16 | Self::BF16 | Self::I16 => 2,
            Self::I8 | Self::U8 | Self::Bool => 1,
        }
    }

    /// Decodes one element from the first `size()` bytes of `b`.
    pub(crate) fn decode_one(self, b: &[u8]) -> f32 {
        fn arr<const N: usize>(b: &[u8]) -> [u8; N] {
            let mut a = [0; N];
            a.copy_from_slice(&b[..N]);
            a
        }
        match self {
            Self::F64 => f64::from_le_bytes(arr(b)) as f32,
            Self::F32 => f32::from_le_bytes(arr(b)),
            Self::F16 => f16::from_le_bytes(arr(b)).to_f32(),
            Self::BF16 => bf16::from_le_bytes(arr(b)).to_f32(),
            Self::I64 => i64::from_le_bytes(arr(b)) as f32,
            Self::I32 => i32::from_le_bytes(arr(b)) as f32,
            Self::I16 => i16::from_le_bytes(arr(b)) as f32,
            Self::I8 => b[0] as i8 as f32,
            Self::U8 => b[0] as f32,
            Self::Bool => f32::from(u8::from(b[0] != 0)),
        }
    }

    /// Decodes a packed little-endian array; trailing bytes short of an element are
    /// ignored (callers check lengths first).
    pub(crate) fn decode(self, bytes: &[u8]) -> Vec<f32> {
        let mut out = vec![0f32; bytes.len() / self.size()];
        self.decode_into(bytes, &mut out);
        out
    }

    /// Decodes `out.len()` packed elements from the start of `bytes` into `out`: the type
    /// is matched once, so the f32 loop (parameter files) is a plain vectorised copy.
    pub(crate) fn decode_into(self, bytes: &[u8], out: &mut [f32]) {
        let elems = bytes.chunks_exact(self.size());
        match self {
            Self::F32 => out.iter_mut().zip(elems).for_each(|(o, c)| {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }),
            _ => out
                .iter_mut()
                .zip(elems)
                .for_each(|(o, c)| *o = self.decode_one(c)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_each_type() {
        let cases: [(ElemType, Vec<u8>, f32); 10] = [
            (ElemType::F64, (-2.5f64).to_le_bytes().to_vec(), -2.5),
            (ElemType::F32, 1.25f32.to_le_bytes().to_vec(), 1.25),
            (
                ElemType::F16,
                f16::from_f32(0.5).to_le_bytes().to_vec(),
                0.5,
            ),
            (
                ElemType::BF16,
                bf16::from_f32(-3.0).to_le_bytes().to_vec(),
                -3.0,
            ),
            (ElemType::I64, (-7i64).to_le_bytes().to_vec(), -7.0),
            (ElemType::I32, 511i32.to_le_bytes().to_vec(), 511.0),
            (ElemType::I16, (-300i16).to_le_bytes().to_vec(), -300.0),
            (ElemType::I8, vec![0xff], -1.0),
            (ElemType::U8, vec![0xff], 255.0),
            (ElemType::Bool, vec![2], 1.0),
        ];
        for (ty, bytes, expected) in cases {
            assert_eq!(bytes.len(), ty.size(), "{ty:?}");
            assert_eq!(ty.decode(&bytes), vec![expected], "{ty:?}");
        }
    }
}
