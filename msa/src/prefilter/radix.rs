//! Stable counting passes over `u64` items: the prefilter groups seeds by k-mer code and
//! seed hits by residue offset with them.

/// `parts`' items (one after the other) sorted by `key(item)`, below `1 << bits`, stably:
/// passes of `digit_bits`, the first reading the parts in place and every pass's digits
/// counted in one read of them. The result lies in one of `buffers`, which grow as needed and
/// are never cleared (each pass writes every item before the next reads it).
pub fn sort_by_key<'b>(
    parts: &[&[u64]],
    buffers: &'b mut [Vec<u64>; 2],
    bits: u32,
    digit_bits: u32,
    key: impl Fn(u64) -> u32,
) -> &'b [u64] {
    let n: usize = parts.iter().map(|p| p.len()).sum();
    for buffer in buffers.iter_mut() {
        if buffer.len() < n {
            buffer.resize(n, 0);
        }
    }
    let passes = bits.div_ceil(digit_bits).max(1) as usize;
    let width = (1 << digit_bits) + 1;
    let mask = (1u32 << digit_bits) - 1;
    let digit = |h: u64, pass: usize| ((key(h) >> (pass as u32 * digit_bits)) & mask) as usize;
    // Pass `p`'s count of each digit `d` at `p * width + d + 1`.
    let mut counts = vec![0usize; passes * width];
    for &h in parts.iter().flat_map(|p| p.iter()) {
        for pass in 0..passes {
            counts[pass * width + digit(h, pass) + 1] += 1;
        }
    }
    let [even, odd] = buffers;
    let (even, odd) = (&mut even[..n], &mut odd[..n]);
    for (pass, counts) in counts.chunks_mut(width).enumerate() {
        for d in 1..width {
            counts[d] += counts[d - 1];
        }
        let digit = |h: u64| digit(h, pass);
        match pass {
            0 => scatter(parts.iter().flat_map(|p| p.iter()), even, counts, digit),
            _ if pass % 2 == 1 => scatter(even.iter(), odd, counts, digit),
            _ => scatter(odd.iter(), even, counts, digit),
        }
    }
    if passes % 2 == 1 {
        even
    } else {
        odd
    }
}

/// One stable counting pass of `items` into `to` by `digit`, `counts[d]` the first slot of
/// digit `d`.
fn scatter<'a>(
    items: impl Iterator<Item = &'a u64>,
    to: &mut [u64],
    counts: &mut [usize],
    digit: impl Fn(u64) -> usize,
) {
    for &h in items {
        let slot = &mut counts[digit(h)];
        to[*slot] = h;
        *slot += 1;
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
        let mut buffers = [Vec::new(), Vec::new()];
        // One, two, three and four passes, in buffers a longer sort left.
        for (n, digit_bits) in [(1500, 13), (1000, 10), (1500, 5), (1200, 4)] {
            let slices: Vec<&[u64]> = slices.iter().map(|p| &p[..n / 3]).collect();
            let mut expected: Vec<u64> = slices.concat();
            // Stable: equal keys keep the parts' order.
            expected.sort_by_key(|&h| h >> 32);
            let sorted = sort_by_key(&slices, &mut buffers, 13, digit_bits, |h| (h >> 32) as u32);
            assert_eq!(sorted, expected, "digits of {digit_bits} bits");
        }
    }
}
