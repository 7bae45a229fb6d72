//! Chunking over a leading axis (AF2's `inference_subbatch`, OpenFold's `chunk_layer`): the
//! one utility every module uses to bound its activations by running rows in passes.

use std::ops::Range;

use ferrofold_kernels::{Tensor, PAR_BLOCK};
use rayon::prelude::*;

/// `dst = src`, blocks in parallel (chunk copies move whole activations).
fn par_copy(dst: &mut [f32], src: &[f32]) {
    dst.par_chunks_mut(PAR_BLOCK)
        .zip(src.par_chunks(PAR_BLOCK))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

/// Runs `f` on consecutive ranges of at most `chunk` rows of the leading axis (`rows` in
/// all) and stacks its outputs (each `[range.len(), ..]`) into `[rows, ..]`. `f` must treat
/// rows independently.
pub fn for_row_chunks(
    rows: usize,
    chunk: usize,
    mut f: impl FnMut(Range<usize>) -> Tensor,
) -> Tensor {
    assert!(chunk > 0, "for_row_chunks: empty chunks");
    if rows <= chunk {
        return f(0..rows);
    }
    let mut out: Option<Tensor> = None;
    for start in (0..rows).step_by(chunk) {
        let range = start..(start + chunk).min(rows);
        let part = f(range.clone());
        assert_eq!(part.dim(0), range.len(), "for_row_chunks: chunk rows");
        let out = out.get_or_insert_with(|| {
            let mut shape = part.shape().to_vec();
            shape[0] = rows;
            Tensor::zeros(&shape)
        });
        assert_eq!(
            part.shape()[1..],
            out.shape()[1..],
            "for_row_chunks: chunk shapes"
        );
        let per = part.len() / range.len();
        par_copy(
            &mut out.data_mut()[range.start * per..range.end * per],
            part.data(),
        );
    }
    out.expect("rows > chunk > 0: at least one chunk")
}

/// Rows `range` of the leading axis of `t`, copied.
pub fn slice_rows(t: &Tensor, range: Range<usize>) -> Tensor {
    if range.start == 0 && range.end == t.dim(0) {
        return t.clone();
    }
    let per = t.len() / t.dim(0).max(1);
    let mut shape = t.shape().to_vec();
    shape[0] = range.len();
    Tensor::par_copy_of(&shape, &t.data()[range.start * per..range.end * per])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_chunks_stack_in_order() {
        let t = Tensor::from_fn(&[7, 2, 3], |i| i as f32);
        for chunk in [1, 3, 7, 100] {
            assert_eq!(
                for_row_chunks(7, chunk, |r| slice_rows(&t, r)),
                t,
                "chunk {chunk}"
            );
        }
    }
}
