//! Template features of one hit, equal to AF2's `templates._extract_template_features` followed
//! by the deterministic template steps of the model's data pipeline (`fix_templates_aatype`,
//! `make_template_mask`, `make_pseudo_beta('template_')`).
//!
//! A hit is a library entry plus an alignment: pairs (query index, template index). With
//! [`featurize`] the template indices are positions in the entry's own sequence (what a search
//! against our library produces: no realignment is ever needed). [`featurize_hit`] takes a hit
//! whose template sequence is a separate string (an hhsearch-style hit) and locates it in the
//! chain as `_find_template_in_pdb` does (exact substring, then X-wildcard match); a hit
//! sequence found neither way is refused, since AF2's fallback realigns with the external
//! kalign binary, which we do not run.

use super::TemplateBatch;
use crate::af2::templates::library::TemplateEntry;
use ferrofold_kernels::Tensor;

/// Features of one template over the `L` query residues.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateFeatures {
    /// `template_domain_names`: `<pdb id>_<chain>`.
    pub domain_name: String,
    /// `template_sequence`: the template letter aligned to each query residue, `-` elsewhere.
    pub sequence: String,
    /// `template_aatype` [L] after `fix_templates_aatype`: AF order, 20 = X, 21 = gap.
    pub aatype: Vec<usize>,
    /// `template_all_atom_positions` [L, 37, 3].
    pub all_atom_positions: Vec<f32>,
    /// `template_all_atom_masks` [L, 37].
    pub all_atom_masks: Vec<f32>,
    /// `template_pseudo_beta` [L, 3].
    pub pseudo_beta: Vec<f32>,
    /// `template_pseudo_beta_mask` [L].
    pub pseudo_beta_mask: Vec<f32>,
    /// `template_sum_probs` (hhsearch's sum of aligned probabilities; the model does not read
    /// it; a search that has no such score may pass any value, e.g. the aligned length).
    pub sum_probs: f32,
}

/// Why a hit cannot be featurized (AF2's `templates` errors of the same names).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TemplateError {
    #[error("{0}: the hit sequence is not in the chain's sequence (AF2 would realign it with kalign; we do not)")]
    SequenceNotInTemplate(String),
    #[error("{id}: alignment pair ({query}, {template}) is outside the query ({query_len}) or template ({template_len})")]
    BadAlignment {
        id: String,
        query: usize,
        template: usize,
        query_len: usize,
        template_len: usize,
    },
    #[error("{0}: CA-CA distance between consecutive modelled residues above 150 Å")]
    CaDistance(String),
    #[error("{0}: the aligned residues have fewer than 5 atoms")]
    AtomMaskAllZeros(String),
}

/// AF residue index of a one-letter code, through HHblits ids as AF2 does
/// (`HHBLITS_AA_TO_ID` then `MAP_HHBLITS_AATYPE_TO_OUR_AATYPE`): B → D, Z → E, U → C,
/// J, O, X and any other letter → 20, `-` → 21.
pub fn af_aatype(letter: u8) -> usize {
    const AF: &[u8; 20] = b"ARNDCQEGHILKMFPSTWYV";
    match letter {
        b'-' => 21,
        b'B' => 3,
        b'Z' => 6,
        b'U' => 4,
        l => AF.iter().position(|&a| a == l).unwrap_or(20),
    }
}

/// `_check_residue_distances` with AF2's limit of 150 Å (in f64 like numpy's norm of the
/// float64 position array).
fn check_ca_distances(entry: &TemplateEntry) -> Result<(), TemplateError> {
    let mut prev: Option<[f64; 3]> = None;
    for r in 0..entry.len() {
        if entry.masks[r * 37 + 1] > 0.0 {
            let ca = [0, 1, 2].map(|k| entry.positions[(r * 37 + 1) * 3 + k] as f64);
            if let Some(p) = prev {
                let d = ((ca[0] - p[0]).powi(2) + (ca[1] - p[1]).powi(2) + (ca[2] - p[2]).powi(2))
                    .sqrt();
                if d > 150.0 {
                    return Err(TemplateError::CaDistance(entry.info.id.clone()));
                }
            }
            prev = Some(ca);
        } else {
            prev = None;
        }
    }
    Ok(())
}

/// Features of `entry` aligned to a query of `query_len` residues by `mapping` (query index,
/// index in `entry`'s sequence). `sum_probs` is stored as is.
pub fn featurize(
    entry: &TemplateEntry,
    query_len: usize,
    mapping: &[(usize, usize)],
    sum_probs: f32,
) -> Result<TemplateFeatures, TemplateError> {
    featurize_at(
        entry,
        query_len,
        mapping,
        entry.info.sequence.as_bytes(),
        0,
        sum_probs,
    )
}

/// Features for a hit whose template sequence `hit_sequence` (gaps removed) is a stretch of the
/// entry's chain: `mapping` pairs query indices with indices into `hit_sequence`. The stretch is
/// located as `_find_template_in_pdb` does; aatype letters come from `hit_sequence`, as in AF2.
pub fn featurize_hit(
    entry: &TemplateEntry,
    query_len: usize,
    hit_sequence: &str,
    mapping: &[(usize, usize)],
    sum_probs: f32,
) -> Result<TemplateFeatures, TemplateError> {
    let hit: Vec<u8> = hit_sequence.bytes().filter(|&b| b != b'-').collect();
    let chain = entry.info.sequence.as_bytes();
    let offset = find_subsequence(chain, &hit)
        .or_else(|| find_fuzzy(chain, &hit))
        .ok_or_else(|| TemplateError::SequenceNotInTemplate(entry.info.id.clone()))?;
    featurize_at(entry, query_len, mapping, &hit, offset, sum_probs)
}

fn find_subsequence(chain: &[u8], hit: &[u8]) -> Option<usize> {
    if hit.is_empty() {
        return Some(0);
    }
    chain.windows(hit.len()).position(|w| w == hit)
}

/// The first start where every hit letter equals the chain letter, or either is `X` (AF2's
/// regex `'.' if aa == 'X' else '(?:aa|X)'`).
fn find_fuzzy(chain: &[u8], hit: &[u8]) -> Option<usize> {
    if hit.len() > chain.len() {
        return None;
    }
    (0..=chain.len() - hit.len()).find(|&s| {
        hit.iter()
            .zip(&chain[s..])
            .all(|(&h, &c)| h == b'X' || h == c || c == b'X')
    })
}

fn featurize_at(
    entry: &TemplateEntry,
    query_len: usize,
    mapping: &[(usize, usize)],
    template_sequence: &[u8],
    offset: usize,
    sum_probs: f32,
) -> Result<TemplateFeatures, TemplateError> {
    check_ca_distances(entry)?;
    let mut seq = vec![b'-'; query_len];
    let mut pos = vec![0f32; query_len * 111];
    let mut mask = vec![0f32; query_len * 37];
    for &(q, t) in mapping {
        let tc = t + offset;
        if q >= query_len || t >= template_sequence.len() || tc >= entry.len() {
            return Err(TemplateError::BadAlignment {
                id: entry.info.id.clone(),
                query: q,
                template: t,
                query_len,
                template_len: template_sequence.len(),
            });
        }
        pos[q * 111..(q + 1) * 111].copy_from_slice(&entry.positions[tc * 111..(tc + 1) * 111]);
        mask[q * 37..(q + 1) * 37].copy_from_slice(&entry.masks[tc * 37..(tc + 1) * 37]);
        seq[q] = template_sequence[t];
    }
    if mask.iter().map(|&m| m as f64).sum::<f64>() < 5.0 {
        return Err(TemplateError::AtomMaskAllZeros(entry.info.id.clone()));
    }
    let aatype: Vec<usize> = seq.iter().map(|&b| af_aatype(b)).collect();
    let (pseudo_beta, pseudo_beta_mask) = super::pseudo_beta(&aatype, &pos, &mask);
    Ok(TemplateFeatures {
        domain_name: entry.info.id.clone(),
        sequence: String::from_utf8_lossy(&seq).into_owned(),
        aatype,
        all_atom_positions: pos,
        all_atom_masks: mask,
        pseudo_beta,
        pseudo_beta_mask,
        sum_probs,
    })
}

/// The model's template batch from up to `max_templates` featurized hits (AF2's
/// `max_templates` = 4), padded when `pad` is set with empty slots as AF2's `make_fixed_size`
/// pads them (template_mask 0, aatype 0, zeros elsewhere). All templates must have
/// `query_len` residues.
pub fn template_batch(
    templates: &[TemplateFeatures],
    query_len: usize,
    max_templates: usize,
    pad: bool,
) -> TemplateBatch {
    let used = templates.len().min(max_templates);
    let t = if pad { max_templates } else { used };
    let mut aatype = vec![0usize; t * query_len];
    let mut pos = vec![0f32; t * query_len * 111];
    let mut mask = vec![0f32; t * query_len * 37];
    let mut template_mask = vec![0f32; t];
    for (i, f) in templates.iter().take(used).enumerate() {
        assert_eq!(
            f.aatype.len(),
            query_len,
            "template {i}: length differs from the query"
        );
        aatype[i * query_len..(i + 1) * query_len].copy_from_slice(&f.aatype);
        pos[i * query_len * 111..(i + 1) * query_len * 111].copy_from_slice(&f.all_atom_positions);
        mask[i * query_len * 37..(i + 1) * query_len * 37].copy_from_slice(&f.all_atom_masks);
        template_mask[i] = 1.0;
    }
    TemplateBatch::new(
        aatype,
        Tensor::new(&[t, query_len, 37, 3], pos).expect("positions [T, L, 37, 3]"),
        Tensor::new(&[t, query_len, 37], mask).expect("masks [T, L, 37]"),
        template_mask,
    )
}
