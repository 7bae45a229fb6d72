//! The k-mer code shared by the prefilter's seed table and the database's k-mer index.

use crate::alphabet::X;

/// Seed length. 20^5 codes keep the seed table (25.6 MB of entries) near the L3 cache while
/// random seed hits stay below one per database residue for a batch of dozens of queries.
pub const K: usize = 5;
/// Number of distinct k-mer codes over the 20 amino acids.
pub const CODES: usize = 20usize.pow(K as u32);
/// Marks a window that holds an `X`.
pub const NO_CODE: u32 = u32::MAX;

/// Appends the k-mer code of every window of `target` to `codes` ([`NO_CODE`] where it holds
/// an `X`): the base-20 number of its residues. Each window's code comes from its own K
/// residues, with no state carried from the window before, so the loop runs in SIMD lanes.
pub fn window_codes(target: &[u8], codes: &mut Vec<u32>) {
    codes.extend(target.windows(K).map(|window| {
        let mut code = 0u32;
        let mut has_x = false;
        for &c in window {
            code = code * 20 + c as u32;
            has_x |= c == X;
        }
        if has_x {
            NO_CODE
        } else {
            code
        }
    }));
}

/// Asks the cache for the line at `pointer` (a hint: it never faults, whatever the address).
#[inline(always)]
pub(crate) fn prefetch<T>(pointer: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint that never dereferences in a way that can fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(pointer.cast::<i8>())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = pointer;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_with_an_x_have_no_code() {
        // A, R, N, D, C, X, ...: codes are base-20 numbers of the window's residues.
        let target = [0u8, 1, 2, 3, 4, 5, X, 6, 7, 8, 9, 10, 11];
        let mut codes = vec![7];
        window_codes(&target, &mut codes);
        let code = |w: &[u8]| w.iter().fold(0u32, |c, &r| c * 20 + r as u32);
        let mut expected = vec![7, code(&[0, 1, 2, 3, 4]), code(&[1, 2, 3, 4, 5])];
        expected.extend([NO_CODE; K]);
        expected.extend([code(&[6, 7, 8, 9, 10]), code(&[7, 8, 9, 10, 11])]);
        assert_eq!(codes, expected);
        codes.clear();
        window_codes(&target[..K - 1], &mut codes);
        assert!(codes.is_empty());
    }
}
