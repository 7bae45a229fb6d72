//! Chunking over a leading axis (AF2's `inference_subbatch`, OpenFold's `chunk_layer`): the
//! one utility every module uses to bound its activations by running rows in passes.

use std::ops::Range;

use ferrofold_kernels::{Backend, Tensor};

/// Runs `f` on consecutive ranges of at most `chunk` rows of the leading axis (`rows` in
/// all) and stacks its outputs (each `[range.len(), ..]`) into `[rows, ..]`, where `be` keeps
/// its results (so a device's chunks never cross to the host). `f` must treat rows
/// independently.
pub fn for_row_chunks(
    be: &dyn Backend,
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
            be.zeros(&shape)
        });
        be.write_rows(out, range.start, &part);
    }
    out.expect("rows > chunk > 0: at least one chunk")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrofold_kernels::CpuBackend;

    #[test]
    fn row_chunks_stack_in_order() {
        let t = Tensor::from_fn(&[7, 2, 3], |i| i as f32);
        let be = &CpuBackend;
        for chunk in [1, 3, 7, 100] {
            assert_eq!(
                for_row_chunks(be, 7, chunk, |r| be.slice_rows(&t, r)),
                t,
                "chunk {chunk}"
            );
        }
    }
}
