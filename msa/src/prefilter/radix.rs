//! Stable counting passes over `u64` items: the prefilter groups seeds by k-mer code and
//! seed hits by residue offset with them.

/// One stable counting pass of `from`'s items (its parts one after the other) into `to` by
/// `digit`, below `counts.len() - 1`.
pub fn radix_pass(
    from: &[&[u64]],
    to: &mut [u64],
    counts: &mut [usize],
    digit: impl Fn(u64) -> usize,
) {
    counts.fill(0);
    for &h in from.iter().flat_map(|p| p.iter()) {
        counts[digit(h) + 1] += 1;
    }
    for d in 1..counts.len() {
        counts[d] += counts[d - 1];
    }
    for &h in from.iter().flat_map(|p| p.iter()) {
        let slot = &mut counts[digit(h)];
        to[*slot] = h;
        *slot += 1;
    }
}

/// `parts`' items into `sorted` by `key(item)` (below `1 << bits`), stably: passes of
/// `digit_bits`, the first reading the parts in place; `scratch` is the other buffer.
pub fn sort_by_key(
    parts: &[&[u64]],
    sorted: &mut Vec<u64>,
    scratch: &mut Vec<u64>,
    bits: u32,
    digit_bits: u32,
    key: impl Fn(u64) -> u32,
) {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    sorted.clear();
    sorted.resize(n, 0);
    scratch.clear();
    scratch.resize(n, 0);
    let mut counts = vec![0usize; (1 << digit_bits) + 1];
    let mask = (1u32 << digit_bits) - 1;
    for pass in 0..bits.div_ceil(digit_bits).max(1) {
        let shift = pass * digit_bits;
        let digit = |h: u64| ((key(h) >> shift) & mask) as usize;
        if pass == 0 {
            radix_pass(parts, sorted, &mut counts, digit);
        } else {
            radix_pass(&[&sorted[..]], scratch, &mut counts, digit);
            std::mem::swap(sorted, scratch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng;

    #[test]
    fn items_sort_by_key_across_parts_stably() {
        let mut rng = TestRng(3);
        let parts: Vec<Vec<u64>> = (0..3)
            .map(|_| (0..500).map(|k| (rng.below(5000) << 32) | k).collect())
            .collect();
        let slices: Vec<&[u64]> = parts.iter().map(|p| &p[..]).collect();
        let (mut sorted, mut scratch) = (Vec::new(), Vec::new());
        for digit_bits in [4, 10, 13] {
            sort_by_key(&slices, &mut sorted, &mut scratch, 13, digit_bits, |h| {
                (h >> 32) as u32
            });
            let mut expected: Vec<u64> = parts.concat();
            // Stable: equal keys keep the parts' order.
            expected.sort_by_key(|&h| h >> 32);
            assert_eq!(sorted, expected, "digits of {digit_bits} bits");
        }
    }
}
