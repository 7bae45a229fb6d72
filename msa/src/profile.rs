//! The query profile of an iterative search (PSI-BLAST's recipe): position-based sequence
//! weights, BLOSUM62 pseudocounts mixed by the alignment's diversity, capped by HMMER's
//! entropy weighting, log-odds scores with BLOSUM62's λ, less part of each neighbourhood's
//! residue preference (MMseqs2's profile composition correction), and gap openings made
//! cheaper where the MSA has gaps ([`gap_discount`]). The prefilter and the last iteration's
//! alignments take the same profile without the cap ([`Profiles`]).

use crate::alphabet::{ALPHABET_SIZE, X};
use crate::matrix::{
    blosum62_target_frequencies, GapDiscount, Pssm, BACKGROUND, BLOSUM62_GAPS,
    BLOSUM62_LAMBDA_UNGAPPED,
};

/// Marks a query column the row does not cover.
pub const GAP: u8 = 255;

/// Weight of the pseudocounts (PSI-BLAST's β).
const PSEUDOCOUNT_WEIGHT: f64 = 10.0;
/// Most mean relative entropy per profile column, in bits (HMMER's `--ere`, whose protein
/// default is 0.59). Chosen on the MSA benchmark's three query sets (seeds 6, 7 and 8) with
/// the composition correction and four iterations, among 0.45, 0.5, 0.55 and 0.65: 0.5 gave
/// the best recall over the three (BENCHMARKS.md); 0.4 lost remote homologs sharply before.
const ENTROPY_TARGET: f64 = 0.5;
/// Scores are ln(odds)/λ with BLOSUM62's ungapped λ, so before the composition correction
/// every column's scores have exactly BLOSUM62's λ (Σ_a p_a e^{λ s} = Σ_a Q_a = 1) and one
/// set of E-value parameters serves both (PSI-BLAST rescales its PSSMs to the same end).
/// Half-bit units would give λ = 0.347 and a profile ~9 % weaker than the matrix it starts
/// from.
const SCORE_SCALE: f64 = 1.0 / BLOSUM62_LAMBDA_UNGAPPED;

/// A PSSM for `query` from the rows of an MSA in query coordinates (`rows[k][i]` is the
/// residue aligned to query position `i`, or [`GAP`]). The query itself is the first row;
/// `rows` holds only the other sequences.
pub fn build_pssm(query: &[u8], rows: &[Vec<u8>]) -> Pssm {
    let msa = Msa::new(query, rows.iter().map(|r| &r[..]));
    let (columns, alpha) = msa.weighted_columns();
    scores(&columns, entropy_weighted(&columns, alpha))
}

/// The first iteration's PSSM of a plain query: its BLOSUM62 rows with the same composition
/// correction as every profile, so a Gly-rich or other biased stretch of the query does not
/// score unrelated sequences of that composition as homologs.
pub fn sequence_pssm(query: &[u8]) -> Pssm {
    let blosum = Pssm::from_sequence(query);
    let scores: Vec<[f64; 20]> = blosum
        .rows
        .iter()
        .map(|row| std::array::from_fn(|a| row[a] as f64))
        .collect();
    let mut pssm = rounded(&local_composition_corrected(&scores));
    // The X column (a target's X) keeps its BLOSUM62 scores.
    for (row, original) in pssm.rows.iter_mut().zip(&blosum.rows) {
        *row = std::array::from_fn(|a| if a < 20 { row[a] } else { original[a] });
    }
    pssm
}

/// The two PSSMs of one search iteration, from the same MSA.
#[derive(Debug, Clone, PartialEq)]
pub struct Profiles {
    /// [`build_pssm`]'s, entropy-weighted: the scores of the alignments whose hits shape the
    /// next profile (the cap keeps each iteration reaching further out).
    pub capped: Pssm,
    /// Without the entropy weighting (PSI-BLAST's data weight alone): the prefilter's seeds
    /// and ranking, and the last iteration's alignments, whose hits shape nothing after them.
    /// A sharper profile ranks a family's remote members above chance candidates under the
    /// prefilter's cap, and scores a deep family's members as the whole MSA supports
    /// (BENCHMARKS.md: held-out recall 0.970 → 0.976 for the prefilter, 0.976 → 0.980 for
    /// the last alignments).
    pub full: Pssm,
}

/// One MSA row of a search's hit: its residue at each query column ([`GAP`] where it has none),
/// and the query columns after which it has inserted residues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HitRow {
    pub columns: Vec<u8>,
    pub inserted_after: Vec<usize>,
}

/// Both PSSMs of [`Profiles`] for `query` and `rows` (as [`build_pssm`]), each with the gap
/// discounts of [`gap_discount`] at its data weight.
pub fn build_profiles(query: &[u8], rows: &[HitRow]) -> Profiles {
    let msa = Msa::new(query, rows.iter().map(|r| &r.columns[..]));
    let (columns, alpha) = msa.weighted_columns();
    let evidence = GapEvidence::new(&msa, rows.iter().map(|r| &r.inserted_after[..]));
    let profile = |alpha: f64| Pssm {
        gap_discounts: evidence.discounts(alpha),
        ..scores(&columns, alpha)
    };
    Profiles {
        capped: profile(entropy_weighted(&columns, alpha)),
        full: profile(alpha),
    }
}

/// An MSA in query columns: the query first, then the other rows, with their Henikoff
/// weights.
struct Msa<'a> {
    rows: Vec<&'a [u8]>,
    weights: Vec<f64>,
}

impl<'a> Msa<'a> {
    fn new(query: &'a [u8], others: impl Iterator<Item = &'a [u8]>) -> Msa<'a> {
        let rows: Vec<&[u8]> = std::iter::once(query).chain(others).collect();
        let weights = henikoff_weights(&rows, query.len());
        Msa { rows, weights }
    }

    /// The columns with their pseudocounts, and the data weight.
    fn weighted_columns(&self) -> (Vec<Column>, f64) {
        let m = self.rows[0].len();
        // PSI-BLAST's data weight α = N_c − 1, N_c the mean number of residue types per
        // column: one number for the whole profile, so a family's conserved and variable
        // columns are weighted alike (a per-column α sharpens conserved columns and loses
        // remote members).
        let alpha = (mean_residue_types(&self.rows, m) - 1.0).max(0.0);
        let target = blosum62_target_frequencies();
        let columns: Vec<Column> = (0..m)
            .map(|i| Column::new(&self.rows, &self.weights, i, &target))
            .collect();
        (columns, alpha)
    }
}

/// Log-odds scores of the columns mixed with data weight `alpha`, corrected for the local
/// composition ([`local_composition_corrected`]), rounded.
fn scores(columns: &[Column], alpha: f64) -> Pssm {
    // [L][20]
    let log_odds: Vec<[f64; 20]> = columns
        .iter()
        .map(|column| {
            std::array::from_fn(|a| SCORE_SCALE * (column.mixed(alpha, a) / BACKGROUND[a]).ln())
        })
        .collect();
    let mut pssm = rounded(&local_composition_corrected(&log_odds));
    for row in &mut pssm.rows {
        row[X as usize] = -1;
    }
    pssm
}

/// Scores rounded to a PSSM (`X` scored 0).
fn rounded(scores: &[[f64; 20]]) -> Pssm {
    let rows = scores
        .iter()
        .map(|scores| {
            let mut row = [0i8; ALPHABET_SIZE];
            for (out, &score) in row.iter_mut().zip(scores) {
                *out = score.round().clamp(-127.0, 127.0) as i8;
            }
            row
        })
        .collect();
    Pssm::new(rows)
}

/// How often the MSA's rows open a gap at each query position, by Henikoff weight (the query
/// a row of its own, without gaps): for a deletion starting at `i`, the rows with a residue
/// at `i − 1` that reach `i`; for an insertion after `i`, the rows with a residue at `i` that
/// reach `i + 1`. Rows do not count beyond their aligned ends (a local hit says nothing there).
struct GapEvidence {
    /// `[L]` (weight of the rows that open one, weight of the rows that could).
    deletion: Vec<(f64, f64)>,
    insertion: Vec<(f64, f64)>,
}

impl GapEvidence {
    /// `inserted_after` for the rows after the query.
    fn new<'a>(msa: &Msa, inserted_after: impl Iterator<Item = &'a [usize]>) -> GapEvidence {
        let m = msa.rows[0].len();
        let mut deletion = vec![(0.0, 0.0); m];
        let mut insertion = vec![(0.0, 0.0); m];
        let inserted = std::iter::once(&[][..]).chain(inserted_after);
        for ((row, &w), inserted_after) in msa.rows.iter().zip(&msa.weights).zip(inserted) {
            let Some(last) = row.iter().rposition(|&c| c != GAP) else {
                continue;
            };
            for i in 0..last {
                if row[i] == GAP {
                    continue;
                }
                insertion[i].1 += w;
                deletion[i + 1].1 += w;
                if row[i + 1] == GAP {
                    deletion[i + 1].0 += w;
                }
            }
            // An insertion right after a deleted column (rare: two openings where a mismatch
            // would do) has no residue to follow, like the rows that could not insert there.
            for &i in inserted_after
                .iter()
                .filter(|&&i| i < last && row[i] != GAP)
            {
                insertion[i].0 += w;
            }
        }
        GapEvidence {
            deletion,
            insertion,
        }
    }

    /// The discounts of [`gap_discount`] at data weight `alpha`.
    fn discounts(&self, alpha: f64) -> Vec<GapDiscount> {
        self.deletion
            .iter()
            .zip(&self.insertion)
            .map(
                |(&(deletions, could_delete), &(insertions, could_insert))| GapDiscount {
                    deletion: gap_discount(deletions, could_delete, alpha),
                    insertion: gap_discount(insertions, could_insert, alpha),
                },
            )
            .collect()
    }
}

/// Weight of the prior in a gap's probability ([`gap_discount`]). Measured on the MSA
/// benchmark's three query sets (BENCHMARKS.md), micro recall seeds 6 / 7 / 8 and decoy hits:
/// the residues' 10 gave 0.982 / 0.994 / 0.978 with 71 / 1 / 19 decoys, 5 gave seed 8 0.980,
/// and 2 gave 0.984 / 0.994 / 0.986 with 85 / 1 / 21 (MMseqs2: 91 / 6 / 15).
const GAP_PSEUDOCOUNT_WEIGHT: f64 = 2.0;

/// The discount on BLAST's gap opening (11, plus 1 for the first residue) where rows of total
/// weight `opened` out of `could` open a gap: the gap's probability estimated as the residues'
/// are, `p = (α·opened + β·π) / (α·could + β)` with its own prior weight β
/// ([`GAP_PSEUDOCOUNT_WEIGHT`]) and the prior π = e^{−λ·12} that BLAST's cost itself stands
/// for, scored `−ln(p)/λ` as the residues are.
/// Never dearer than BLAST's, and at least 1 plus the extension (HMMER's and MMseqs2's
/// profiles likewise make gaps cheap where their MSAs have them). A row that never gaps adds
/// evidence against a gap, but the cost stays at BLAST's: the E-values keep its statistics.
fn gap_discount(opened: f64, could: f64, alpha: f64) -> u8 {
    let blast = f64::from(BLOSUM62_GAPS.open + BLOSUM62_GAPS.extend);
    let prior = (-BLOSUM62_LAMBDA_UNGAPPED * blast).exp();
    let p = (alpha * opened + GAP_PSEUDOCOUNT_WEIGHT * prior)
        / (alpha * could + GAP_PSEUDOCOUNT_WEIGHT);
    let cost = -p.ln() * SCORE_SCALE;
    (blast - cost)
        .round()
        .clamp(0.0, f64::from(BLOSUM62_GAPS.open - 1)) as u8
}

/// Window of [`local_composition_corrected`]: column `i` looks at columns `i − 20 .. i + 20`
/// (40 columns with itself, as MMseqs2's profile bias correction does).
const COMPOSITION_WINDOW: usize = 20;
/// Share of the neighbourhood's residue preference taken off each column. MMseqs2 takes all of
/// it. On the MSA benchmark's shuffled-database decoys (`benches/msa_decoys.py`, query set
/// seed 7, three iterations, profiles corrected but not yet the plain query), one half left
/// one decoy hit at E ≤ 1e-3 (E 2e-4; 754 reaching 1e-46 without it) at recall 0.968, all of
/// it 0.946; 0.3 let a decoy through at 1e-33 (BENCHMARKS.md).
const COMPOSITION_CORRECTION: f64 = 0.5;

/// Each column's scores less part of its neighbourhood's preference for each residue: the
/// mean over the other columns within [`COMPOSITION_WINDOW`] of `s(j, a) − E_p[s(j, ·)]`
/// (MMseqs2's `calcGlobalAaBiasCorrection`), times [`COMPOSITION_CORRECTION`]. A profile of a
/// transmembrane, Ser/Thr-rich or other biased stretch favours its residues in every column;
/// uncorrected, it scores any unrelated sequence of that composition as a homolog, and the
/// next iteration's profile drifts further towards the composition.
fn local_composition_corrected(scores: &[[f64; 20]]) -> Vec<[f64; 20]> {
    let m = scores.len();
    // [L] expected score of each column against a background residue
    let null: Vec<f64> = scores
        .iter()
        .map(|row| row.iter().zip(&BACKGROUND).map(|(s, p)| s * p).sum())
        .collect();
    // [L + 1][20] prefix sums of the columns' preferences
    let mut prefix = vec![[0.0f64; 20]; m + 1];
    for j in 0..m {
        for a in 0..20 {
            prefix[j + 1][a] = prefix[j][a] + scores[j][a] - null[j];
        }
    }
    (0..m)
        .map(|i| {
            let (lo, hi) = (
                i.saturating_sub(COMPOSITION_WINDOW),
                (i + COMPOSITION_WINDOW).min(m),
            );
            let width = (hi - lo) as f64;
            std::array::from_fn(|a| {
                let neighbours = prefix[hi][a] - prefix[lo][a] - (scores[i][a] - null[i]);
                scores[i][a] - COMPOSITION_CORRECTION * neighbours / width
            })
        })
        .collect()
}

/// One query column of the MSA: weighted residue frequencies `f` and their substitution
/// pseudocounts `g` (`g_a = Σ_b f_b q(a|b)`, `q(a|b) = q(a,b) / p_b` from BLOSUM62).
struct Column {
    f: [f64; 20],
    g: [f64; 20],
}

impl Column {
    fn new(rows: &[&[u8]], weights: &[f64], i: usize, target: &[[f64; 20]; 20]) -> Column {
        let mut f = [0.0f64; 20];
        for (row, &w) in rows.iter().zip(weights) {
            if row[i] < 20 {
                f[row[i] as usize] += w;
            }
        }
        let total: f64 = f.iter().sum();
        if total > 0.0 {
            f.iter_mut().for_each(|v| *v /= total);
        } else {
            f = BACKGROUND; // only gaps and X
        }
        let mut g = [0.0f64; 20];
        for (a, g) in g.iter_mut().enumerate() {
            *g = (0..20).map(|b| f[b] * target[a][b] / BACKGROUND[b]).sum();
        }
        Column { f, g }
    }

    /// The column's residue distribution with data weight `alpha` against the pseudocounts'
    /// [`PSEUDOCOUNT_WEIGHT`].
    fn mixed(&self, alpha: f64, a: usize) -> f64 {
        (alpha * self.f[a] + PSEUDOCOUNT_WEIGHT * self.g[a]) / (alpha + PSEUDOCOUNT_WEIGHT)
    }

    /// Relative entropy of [`Column::mixed`] to the background, in bits.
    fn relative_entropy(&self, alpha: f64) -> f64 {
        (0..20)
            .map(|a| {
                let q = self.mixed(alpha, a);
                if q > 0.0 {
                    q * (q / BACKGROUND[a]).log2()
                } else {
                    0.0
                }
            })
            .sum()
    }
}

/// HMMER's entropy weighting: the data weight `alpha`, lowered (at most to 0) until the
/// profile's mean relative entropy per column is at most [`ENTROPY_TARGET`]. Deep
/// families of close homologs give sharp profiles that score their own subfamily well and
/// remote members poorly; capping the information per column keeps each iteration reaching
/// further out.
fn entropy_weighted(columns: &[Column], alpha: f64) -> f64 {
    let excess = |alpha: f64| {
        columns
            .iter()
            .map(|c| c.relative_entropy(alpha))
            .sum::<f64>()
            / columns.len().max(1) as f64
            - ENTROPY_TARGET
    };
    let mut excess_hi = excess(alpha);
    if excess_hi <= 0.0 {
        return alpha;
    }
    // Unlike HMMER's prior, the pseudocounts alone can hold more than the target: BLOSUM62's
    // substitutions from one residue carry 0.2 (M) to 1.8 (W) bits, 0.58 on average over
    // the background. A shallow or conserved alignment then keeps no data weight.
    let mut excess_lo = excess(0.0);
    if excess_lo >= 0.0 {
        return 0.0;
    }
    // The entropy grows with the data weight: at 0 the profile is the pseudocounts alone. The
    // largest weight at most at the target, to 1e-9 of `alpha`: the Illinois variant of
    // regula falsi keeps the root bracketed as bisection does, in 6-10 evaluations of the
    // entropy where bisection took 30.
    let (mut lo, mut hi) = (0.0, alpha);
    // Which end the last step moved: -1 the lower, 1 the upper.
    let mut moved = 0;
    for _ in 0..100 {
        let mid = (lo * excess_hi - hi * excess_lo) / (excess_hi - excess_lo);
        if hi - lo <= 1e-9 * alpha || !(lo < mid && mid < hi) {
            break;
        }
        let at_mid = excess(mid);
        if at_mid > 0.0 {
            (hi, excess_hi) = (mid, at_mid);
            if moved == 1 {
                excess_lo *= 0.5;
            }
            moved = 1;
        } else {
            (lo, excess_lo) = (mid, at_mid);
            if moved == -1 {
                excess_hi *= 0.5;
            }
            moved = -1;
        }
    }
    lo
}

/// Mean number of distinct residue types over the columns that hold any residue (columns of
/// only gaps or `X` say nothing of the family's diversity).
fn mean_residue_types(rows: &[&[u8]], m: usize) -> f64 {
    let (mut total, mut columns) = (0usize, 0usize);
    for i in 0..m {
        let mut seen = [false; 20];
        for row in rows {
            if row[i] < 20 {
                seen[row[i] as usize] = true;
            }
        }
        let types = seen.iter().filter(|&&s| s).count();
        if types > 0 {
            total += types;
            columns += 1;
        }
    }
    if columns == 0 {
        1.0
    } else {
        total as f64 / columns as f64
    }
}

/// Henikoff position-based weights: each column shares one unit among its residue types,
/// and each type's share among the rows holding it. Rows then count by how unusual they are.
fn henikoff_weights(rows: &[&[u8]], m: usize) -> Vec<f64> {
    let mut weights = vec![0.0; rows.len()];
    for i in 0..m {
        let mut counts = [0u32; 20];
        for row in rows {
            if row[i] < 20 {
                counts[row[i] as usize] += 1;
            }
        }
        let types = counts.iter().filter(|&&c| c > 0).count() as f64;
        if types == 0.0 {
            continue;
        }
        for (row, w) in rows.iter().zip(&mut weights) {
            if row[i] < 20 {
                *w += 1.0 / (types * counts[row[i] as usize] as f64);
            }
        }
    }
    let total: f64 = weights.iter().sum();
    if total > 0.0 {
        weights.iter_mut().for_each(|w| *w /= total);
    } else {
        weights.iter_mut().for_each(|w| *w = 1.0);
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alphabet::encode;
    use crate::matrix::BLOSUM62;

    #[test]
    fn a_lone_query_gives_about_blosum62() {
        let query = encode(b"MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQW").unwrap();
        let pssm = build_pssm(&query, &[]);
        for (i, &c) in query.iter().enumerate() {
            for (a, &ours) in pssm.rows[i][..20].iter().enumerate() {
                let ours = ours as i32;
                let blosum = BLOSUM62[c as usize][a] as i32;
                assert!(
                    (ours - blosum).abs() <= 2,
                    "pos {i} {a}: {ours} vs {blosum}"
                );
            }
        }
    }

    #[test]
    fn conserved_columns_score_higher_than_variable_ones() {
        let query = encode(b"WAAAW").unwrap();
        // Column 0 and 4: W everywhere; column 1..3 varied.
        let rows: Vec<Vec<u8>> = ["WLKEW", "WDRGW", "WSTPW", "WNIVW", "WHQYW"]
            .iter()
            .map(|s| encode(s.as_bytes()).unwrap())
            .collect();
        let pssm = build_pssm(&query, &rows);
        let w = crate::alphabet::encode_letter(b'W').unwrap() as usize;
        let a = crate::alphabet::encode_letter(b'A').unwrap() as usize;
        assert!(pssm.rows[0][w] > pssm.rows[1][a], "{:?}", pssm.rows);
        // A gapped row does not count at its gaps.
        let gapped = vec![vec![GAP, GAP, GAP, GAP, w as u8]];
        let with_gaps = build_pssm(&query, &gapped);
        assert_eq!(with_gaps.rows[1], build_pssm(&query, &[]).rows[1]);
    }

    #[test]
    fn entropy_weighting_caps_the_information_per_column() {
        let target = blosum62_target_frequencies();
        let query = encode(b"ASIEQKTV").unwrap();
        let columns: Vec<Column> = (0..query.len())
            .map(|i| Column::new(&[&query[..]], &[1.0], i, &target))
            .collect();
        // Fully conserved columns with a large data weight are far above the target: the
        // weight is lowered until the mean is at it.
        let mean = |alpha: f64| {
            columns
                .iter()
                .map(|c| c.relative_entropy(alpha))
                .sum::<f64>()
                / 8.0
        };
        assert!(mean(40.0) > ENTROPY_TARGET);
        let capped = entropy_weighted(&columns, 40.0);
        assert!(capped < 40.0 && (mean(capped) - ENTROPY_TARGET).abs() < 1e-6);
        // Pseudocounts alone are below it for these residues; the weight 0 stays.
        assert!(mean(0.0) < ENTROPY_TARGET);
        assert_eq!(entropy_weighted(&columns, 0.0), 0.0);
        // Conserved W, P, G and C columns are above it on pseudocounts alone: weight 0.
        let rare = encode(b"WPGCWPGC").unwrap();
        let columns: Vec<Column> = (0..rare.len())
            .map(|i| Column::new(&[&rare[..]], &[1.0], i, &target))
            .collect();
        assert_eq!(entropy_weighted(&columns, 40.0), 0.0);
    }

    #[test]
    fn the_full_profile_is_the_uncapped_one() {
        // Conserved W and C columns (far above the entropy target) and varied ones (a data
        // weight well above 0): the cap binds, and only the capped profile has it.
        let query = encode(b"WCWCWCWCAKLDESTR").unwrap();
        let varied = ["ARNDQEGH", "ILKMFPST", "VYWRNDCQ", "EGHILKMF", "PSTVYANR"];
        let rows: Vec<Vec<u8>> = varied
            .iter()
            .map(|v| encode(format!("WCWCWCWC{v}").as_bytes()).unwrap())
            .collect();
        let hit_rows: Vec<HitRow> = rows
            .iter()
            .map(|columns| HitRow {
                columns: columns.clone(),
                inserted_after: Vec::new(),
            })
            .collect();
        let both = build_profiles(&query, &hit_rows);
        assert_eq!(both.capped.rows, build_pssm(&query, &rows).rows);
        // Rows without gaps: BLAST's gap costs everywhere.
        assert!(both
            .full
            .gap_discounts
            .iter()
            .all(|d| *d == GapDiscount::default()));
        let conserved =
            |pssm: &Pssm| -> i32 { (0..8).map(|i| pssm.rows[i][query[i] as usize] as i32).sum() };
        assert!(
            conserved(&both.full) > conserved(&both.capped),
            "{:?}",
            (&both.full.rows[0], &both.capped.rows[0])
        );
        // A lone query: no data weight to cap, one profile.
        let lone = build_profiles(&query, &[]);
        assert_eq!(
            lone.full.gap_discounts,
            vec![GapDiscount::default(); query.len()]
        );
        assert_eq!(lone.full, lone.capped);
    }

    #[test]
    fn the_composition_correction_takes_off_part_of_the_neighbours_preference() {
        // Neutral columns around one that favours W: the column keeps its own scores, its
        // neighbours within the window lose part of its preference, the others nothing.
        let w = crate::alphabet::encode_letter(b'W').unwrap() as usize;
        let mut favoured = [-1.0f64; 20];
        favoured[w] = 10.0;
        let mut scores = vec![[0.0f64; 20]; 60];
        scores[30] = favoured;
        let corrected = local_composition_corrected(&scores);
        assert_eq!(corrected[30], favoured);
        let null: f64 = favoured.iter().zip(&BACKGROUND).map(|(s, p)| s * p).sum();
        // Column 45's window is 25..60: 35 columns, column 30 among them.
        for a in 0..20 {
            let expected = -COMPOSITION_CORRECTION * (favoured[a] - null) / 35.0;
            assert!((corrected[45][a] - expected).abs() < 1e-12, "{a}");
        }
        assert!(corrected[45][w] < 0.0);
        // Column 55's window is 35..60.
        assert_eq!(corrected[55], [0.0; 20]);
        // A stretch that favours W throughout: column 30 (window 10..50) loses the share of
        // its 39 neighbours' preference, about half of its own.
        let corrected = local_composition_corrected(&vec![favoured; 60]);
        for a in 0..20 {
            let expected =
                favoured[a] - COMPOSITION_CORRECTION * 39.0 / 40.0 * (favoured[a] - null);
            assert!((corrected[30][a] - expected).abs() < 1e-9, "{a}");
        }
    }

    #[test]
    fn a_plain_query_loses_only_its_biased_stretches_advantage() {
        let diverse =
            encode(b"MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQWDNPCTMAHLWGYKREDSIVFPNGCATQ").unwrap();
        let pssm = sequence_pssm(&diverse);
        let blosum = Pssm::from_sequence(&diverse);
        for (i, (ours, plain)) in pssm.rows.iter().zip(&blosum.rows).enumerate() {
            for a in 0..ALPHABET_SIZE {
                assert!((ours[a] as i32 - plain[a] as i32).abs() <= 1, "{i} {a}");
            }
        }
        // A Gly-rich tail (hnRNP-like): G keeps only part of its BLOSUM62 score of 6 there.
        let gly = encode(b"MKTAYIAKQRQISFVKSHFSRQLEERGGYGGGSGGGGRGGYGGSGGGGGYGGRGGSGGGG").unwrap();
        let g = crate::alphabet::encode_letter(b'G').unwrap() as usize;
        let pssm = sequence_pssm(&gly);
        assert!(pssm.rows[45][g] <= 4, "{:?}", pssm.rows[45]);
        assert_eq!(pssm.rows[45][X as usize], BLOSUM62[g][X as usize]);
    }

    #[test]
    fn gaps_cost_less_where_the_msa_has_them() {
        let query = encode(b"MKTAYIAKQRQISFVKSHFSRQLEERLGLIEVQW").unwrap();
        let deleted = 12; // half the rows lack query positions 12..=14
        let inserted = 20; // a quarter have residues after position 20
        let rows: Vec<HitRow> = (0..16)
            .map(|k| {
                // A diverse family: each row differs from the query at a third of its columns.
                let mut columns = query.clone();
                for (i, c) in columns.iter_mut().enumerate() {
                    if (i * 7 + k * 5) % 3 == 0 {
                        *c = ((i * 3 + k * 11) % 20) as u8;
                    }
                }
                if k % 2 == 0 {
                    columns[deleted..deleted + 3].fill(GAP);
                }
                // A row that ends early says nothing of the columns after it.
                if k == 1 {
                    columns[30..].fill(GAP);
                }
                // Row 2 also has an insertion after a deleted column: it does not count.
                HitRow {
                    columns,
                    inserted_after: match k {
                        2 => vec![deleted + 1],
                        k if k % 4 == 0 => vec![inserted],
                        _ => vec![],
                    },
                }
            })
            .collect();
        let profiles = build_profiles(&query, &rows);
        let discounts = &profiles.full.gap_discounts;
        assert_eq!(discounts.len(), query.len());
        assert!(discounts[deleted].deletion >= 4, "{:?}", discounts[deleted]);
        assert!(
            discounts[inserted].insertion >= 2,
            "{:?}",
            discounts[inserted]
        );
        assert!(discounts[deleted].deletion > discounts[inserted].insertion);
        for (i, d) in discounts.iter().enumerate() {
            if i != deleted {
                assert_eq!(d.deletion, 0, "{i}");
            }
            if i != inserted {
                assert_eq!(d.insertion, 0, "{i}");
            }
        }
        // Evidence counts as the residues' does: less data weight, smaller discounts.
        assert!(gap_discount(0.5, 1.0, 2.0) < gap_discount(0.5, 1.0, 10.0));
        assert_eq!(gap_discount(0.0, 1.0, 10.0), 0);
        assert!(gap_discount(1.0, 1.0, 1e6) < BLOSUM62_GAPS.open as u8);
    }

    #[test]
    fn weights_favour_the_unusual_row() {
        let a = encode(b"AAAA").unwrap();
        let b = encode(b"WWWW").unwrap();
        let w = henikoff_weights(&[&a, &a, &b], 4);
        assert!((w[2] - 0.5).abs() < 1e-12 && (w[0] - 0.25).abs() < 1e-12);
    }
}
