use std::collections::HashSet;

use ferrofold_io::a3m::{parse_a3m, A3m, A3mRecord};
use ferrofold_io::weights::load_npz;
use ferrofold_kernels::Tensor;

use super::alphabet::{AF_RESTYPES_WITH_X_AND_GAP, GAP, MASK_TOKEN, MSA_CLASSES};
use super::feats::MSA_FEAT_CHANNELS;
use super::msa::RawMsa;
use super::rng::Rng;
use super::sample::sample;
use super::*;

fn cfg(s: usize, x: usize, deterministic: bool) -> PipelineConfig {
    PipelineConfig {
        max_msa_clusters: s,
        max_extra_msa: x,
        num_recycle: 3,
        seed: 11,
        deterministic,
        masked_msa: MaskedMsaConfig::default(),
    }
}

fn max_diff(name: &str, a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape(), "{name}: shapes");
    a.max_abs_diff(b)
}

/// A3M text of rows given in AF classes with deletion counts (as lower-case insertions).
fn a3m_text(rows: &[(Vec<u8>, Vec<f32>)]) -> String {
    let mut text = String::new();
    for (i, (seq, dels)) in rows.iter().enumerate() {
        text += &format!(">row{i} golden\n");
        for (&c, &d) in seq.iter().zip(dels) {
            text += &"a".repeat(d as usize);
            text.push(AF_RESTYPES_WITH_X_AND_GAP[c as usize] as char);
        }
        text.push('\n');
    }
    text
}

/// tests/data/af2/model_features.npz (make_model_golden.py): the official formulas with
/// the random parts off, from the raw MSA in its aux_* keys.
#[test]
fn deterministic_mode_equals_the_golden_features() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/data/af2/model_features.npz"
    );
    let store = load_npz(path).unwrap();
    let get = |n: &str| store.root().get_any(n).unwrap().clone();
    let (centres, dels, extra, extra_dels) = (
        get("aux_msa"),
        get("aux_deletion_matrix"),
        get("extra_msa"),
        get("aux_extra_deletion_matrix"),
    );
    let (s, l, x) = (centres.dim(0), centres.dim(1), extra.dim(1));
    let rows_of = |t: &[f32], d: &[f32], n: usize| -> Vec<(Vec<u8>, Vec<f32>)> {
        (0..n)
            .map(|i| {
                let r = i * l..(i + 1) * l;
                (
                    t[r.clone()].iter().map(|&v| v as u8).collect(),
                    d[r].to_vec(),
                )
            })
            .collect()
    };
    let mut rows = rows_of(centres.data(), dels.data(), s);
    rows.extend(rows_of(&extra.data()[..x * l], extra_dels.data(), x));
    let text = a3m_text(&rows);
    let a3m = parse_a3m(&text, "golden.a3m").unwrap();
    let query: String = a3m.records[0].sequence.clone();

    // The golden's rows are distinct (nothing deduplicated), so first-rows selection with
    // S = 6 gives its hand split into 6 centres and 8 extra rows.
    let raw = RawMsa::from_a3m(&query, &a3m).unwrap();
    assert_eq!(raw.rows, s + x);
    let smp = sample(&raw, &raw.profile(), &cfg(s, x, true), None);
    let assign: Vec<f32> = smp.assignment.iter().map(|&(_, c)| c as f32).collect();
    assert_eq!(assign, get("aux_extra_cluster_assignment").data());

    let names = [
        "target_feat",
        "seq_mask",
        "msa_feat",
        "msa_mask",
        "extra_msa",
        "extra_has_deletion",
        "extra_deletion_value",
        "extra_msa_mask",
    ];
    // X = 8 (the golden's) and X = 5120 (model_1's: nothing to crop) give the same.
    for max_extra in [x, 5120] {
        let feats = build_features(&query, Some(&a3m), &cfg(s, max_extra, true)).unwrap();
        assert_eq!(feats.len(), 4);
        let mut worst = vec![0f32; names.len()];
        for (r, f) in feats.iter().enumerate() {
            let golden = |n: &str| {
                let t = get(n);
                let shape = &t.shape()[1..];
                let k: usize = shape.iter().product();
                Tensor::new(shape, t.data()[r * k..(r + 1) * k].to_vec()).unwrap()
            };
            let ours = [
                &f.target_feat,
                &f.seq_mask,
                &f.msa_feat,
                &f.msa_mask,
                &f.extra_msa,
                &f.extra_has_deletion,
                &f.extra_deletion_value,
                &f.extra_msa_mask,
            ];
            for (i, (n, t)) in names.iter().zip(ours).enumerate() {
                worst[i] = worst[i].max(max_diff(n, t, &golden(n)));
            }
            let aatype: Vec<usize> = golden("aatype")
                .data()
                .iter()
                .map(|&v| v as usize)
                .collect();
            assert_eq!(f.aatype, aatype);
            let ri: Vec<i64> = golden("residue_index")
                .data()
                .iter()
                .map(|&v| v as i64)
                .collect();
            assert_eq!(f.residue_index, ri);
            assert!(f.templates.is_none());
        }
        eprintln!("golden max |diff| (X = {max_extra}):");
        for (n, w) in names.iter().zip(&worst) {
            eprintln!("  {n:22} {w:.3e}");
            assert!(*w <= 1e-6, "{n}: {w}");
        }
    }
}

#[test]
fn single_sequence_features() {
    let feats = build_features("MKVlx", None, &cfg(508, 5120, false)).unwrap();
    assert_eq!(feats.len(), 4);
    for f in &feats {
        assert_eq!(f.aatype, [12, 11, 19, 10, 20]);
        assert_eq!(f.residue_index, [0, 1, 2, 3, 4]);
        assert_eq!(f.msa_feat.shape(), [1, 5, MSA_FEAT_CHANNELS]);
        assert_eq!(f.target_feat.shape(), [5, 22]);
        assert_eq!(f.target_feat.data()[22 + 1 + 11], 1.0);
        // no real extra row: one padding row with mask 0, as AF2's padding gives
        assert_eq!(f.extra_msa.shape(), [1, 5]);
        assert!(f.extra_msa_mask.data().iter().all(|&m| m == 0.0));
        // cluster profile of a lone centre: its (possibly masked) one-hot / (1 + 1e-6)
        for j in 0..5 {
            let v = &f.msa_feat.data()[j * MSA_FEAT_CHANNELS..(j + 1) * MSA_FEAT_CHANNELS];
            let prof = &v[MSA_CLASSES + 2..2 * MSA_CLASSES + 2];
            assert_eq!(
                &v[..MSA_CLASSES],
                prof.iter().map(|p| p.round()).collect::<Vec<_>>()
            );
            assert!((prof.iter().sum::<f32>() - 1.0).abs() < 2e-6);
        }
    }
    let det = build_features("MKVLX", None, &cfg(508, 5120, true)).unwrap();
    let onehot: Vec<usize> = (0..5)
        .map(|j| {
            det[0].msa_feat.data()[j * MSA_FEAT_CHANNELS..j * MSA_FEAT_CHANNELS + MSA_CLASSES]
                .iter()
                .position(|&v| v == 1.0)
                .unwrap()
        })
        .collect();
    assert_eq!(onehot, [12, 11, 19, 10, 20]);
}

#[test]
fn identical_rows_are_deduplicated_keeping_the_first() {
    let a3m = parse_a3m(
        ">q\nMKVLE\n>a\nMK-LE\n>b same row, other insertions\nMKaa-LE\n>c\nMKVLE\n>d\nMRVLE\n",
        "x.a3m",
    )
    .unwrap();
    let raw = RawMsa::from_a3m("MKVLE", &a3m).unwrap();
    assert_eq!(raw.rows, 3);
    assert_eq!(
        (0..3).map(|i| raw.row_letters(i)).collect::<Vec<_>>(),
        ["MKVLE", "MK-LE", "MRVLE"]
    );
    assert!(raw.deletion_row(1).iter().all(|&d| d == 0.0));
    // HHblits letters map to AF classes: B -> D, U -> C, O -> X
    let a3m = parse_a3m(">q\nMKV\n>h\nBUO\n", "x").unwrap();
    let raw = RawMsa::from_a3m("MKV", &a3m).unwrap();
    assert_eq!(raw.row(1), [3, 4, 20]);
}

/// A random MSA in letters, with random insertions and gaps.
fn random_msa(rows: usize, width: usize, seed: u64) -> (String, A3m) {
    let mut rng = Rng::new(seed, 99);
    let letters = b"ACDEFGHIKLMNPQRSTVWYX";
    let query: String = (0..width).map(|_| letters[rng.below(20)] as char).collect();
    let mut text = format!(">query\n{query}\n");
    for i in 1..rows {
        text += &format!(">hit{i}\n");
        for q in query.chars() {
            if rng.uniform() < 0.1 {
                text += &"k".repeat(1 + rng.below(4));
            }
            let u = rng.uniform();
            text.push(if u < 0.6 {
                q
            } else if u < 0.75 {
                '-'
            } else {
                letters[rng.below(21)] as char
            });
        }
        text.push('\n');
    }
    let a3m = parse_a3m(&text, "random.a3m").unwrap();
    (query, a3m)
}

#[test]
fn stochastic_samples_keep_the_af2_invariants() {
    let (query, a3m) = random_msa(60, 40, 1);
    let raw = RawMsa::from_a3m(&query, &a3m).unwrap();
    assert_eq!(raw.rows, 60);
    let profile = raw.profile();
    let c = cfg(16, 20, false);
    let (mut masked, mut positions, mut mask_tokens, mut same, mut row0_masked) =
        (0usize, 0usize, 0usize, 0usize, 0usize);
    let mut first_centres = HashSet::new();
    for draw in 0..300 {
        let mut rng = Rng::new(draw, 0);
        let s = sample(&raw, &profile, &c, Some(&mut rng));
        let l = raw.width;
        // query row first; centres and the non-centre rows partition all rows
        assert_eq!(s.centres[0], 0);
        assert_eq!(s.centres.len(), 16);
        first_centres.insert(s.centres[1]);
        let mut all: Vec<usize> = s.centres.clone();
        all.extend(s.assignment.iter().map(|&(e, _)| e));
        all.sort_unstable();
        assert_eq!(all, (0..60).collect::<Vec<_>>());
        // crop: 20 distinct non-centre rows
        assert_eq!(s.extra.len(), 20);
        let extra: HashSet<_> = s.extra.iter().collect();
        assert_eq!(extra.len(), 20);
        assert!(s.extra.iter().all(|e| !s.centres.contains(e)));
        // unmasked positions are the true residues
        for (k, &row) in s.centres.iter().enumerate() {
            for j in 0..l {
                let at = k * l + j;
                if s.bert_mask[at] {
                    masked += 1;
                    row0_masked += usize::from(k == 0);
                    mask_tokens += usize::from(s.msa[at] == MASK_TOKEN);
                    same += usize::from(s.msa[at] == raw.row(row)[j]);
                } else {
                    assert_eq!(s.msa[at], raw.row(row)[j]);
                }
                positions += 1;
            }
        }
        // nearest centre = first maximum of agreements (20 aa and X count, gap and mask not)
        for &(e, assigned) in &s.assignment {
            let agree = |k: usize| {
                (0..l)
                    .filter(|&j| s.msa[k * l + j] < GAP && s.msa[k * l + j] == raw.row(e)[j])
                    .count()
            };
            let best = (0..16).map(agree).max().unwrap();
            assert_eq!(assigned, (0..16).find(|&k| agree(k) == best).unwrap());
        }
        // cluster profiles are distributions (up to the 1e-6 of the count)
        for p in s.cluster_profile.chunks(MSA_CLASSES) {
            assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
    let frac = masked as f64 / positions as f64;
    eprintln!(
        "masked {frac:.4} of {positions}; of those: mask token {:.3}, unchanged {:.3}; \
         query-row share {:.4}",
        mask_tokens as f64 / masked as f64,
        same as f64 / masked as f64,
        row0_masked as f64 / masked as f64,
    );
    assert!((frac - 0.15).abs() < 0.005, "{frac}");
    assert!((mask_tokens as f64 / masked as f64 - 0.7).abs() < 0.015);
    // same = 0.1 + 0.1·profile(own class) + 0.005·(aa); profile of the own class is ~0.5
    let same = same as f64 / masked as f64;
    assert!((0.12..0.2).contains(&same), "{same}");
    assert!((row0_masked as f64 / masked as f64 - 1.0 / 16.0).abs() < 0.01);
    assert!(first_centres.len() > 30, "row 1 of the sample is random");
}

#[test]
fn stochastic_features_are_reproducible_per_seed_and_differ_per_recycle() {
    let (query, a3m) = random_msa(40, 30, 2);
    let c = cfg(8, 12, false);
    let a = build_features(&query, Some(&a3m), &c).unwrap();
    let b = build_features(&query, Some(&a3m), &c).unwrap();
    assert_eq!(a.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.msa_feat, y.msa_feat);
        assert_eq!(x.extra_msa, y.extra_msa);
    }
    for r in 1..4 {
        assert_ne!(a[0].msa_feat, a[r].msa_feat, "recycle {r}");
        assert_ne!(a[0].extra_msa, a[r].extra_msa, "recycle {r}");
    }
    let other = build_features(&query, Some(&a3m), &PipelineConfig { seed: 12, ..c }).unwrap();
    assert_ne!(a[0].msa_feat, other[0].msa_feat);
    for f in &a {
        assert_eq!(f.msa_feat.shape(), [8, 30, MSA_FEAT_CHANNELS]);
        assert_eq!(f.extra_msa.shape(), [12, 30]);
        assert!(f.extra_msa_mask.data().iter().all(|&m| m == 1.0));
    }
    // deterministic: every slice the same, rows in order, no masking
    let det = build_features(&query, Some(&a3m), &cfg(8, 12, true)).unwrap();
    let raw = RawMsa::from_a3m(&query, &a3m).unwrap();
    for f in &det {
        assert_eq!(f.msa_feat, det[0].msa_feat);
        for k in 0..8 {
            for j in 0..30 {
                let v = &f.msa_feat.data()[(k * 30 + j) * MSA_FEAT_CHANNELS..];
                assert_eq!(v[raw.row(k)[j] as usize], 1.0);
            }
        }
        let first_extra: Vec<f32> = raw.row(8).iter().map(|&c| c as f32).collect();
        assert_eq!(&f.extra_msa.data()[..30], first_extra);
    }
}

fn err(query: &str, msa: Option<&A3m>) -> String {
    build_features(query, msa, &cfg(508, 5120, false))
        .unwrap_err()
        .to_string()
}

#[test]
fn bad_inputs_give_clear_errors() {
    assert_eq!(err("", None), "the query sequence is empty");
    assert_eq!(
        err("MKBV", None),
        "query residue 3 is 'B': expected one of the 20 amino acids ARNDCQEGHILKMFPSTWYV or X"
    );
    assert!(err("MK V", None).starts_with("query residue 3 is ' '"));

    let a3m = parse_a3m(">q first\nMKVLE\n>h\nMKV-E\n", "msa.a3m").unwrap();
    assert_eq!(
        err("MKVL", Some(&a3m)),
        "msa.a3m: record `q first` (line 1) has 5 aligned columns, but the query has 4 residues"
    );
    assert_eq!(
        err("MKVLD", Some(&a3m)),
        "msa.a3m: the first record `q first` (line 1) must be the query, but its column 5 is \
         'E' where the query has 'D'"
    );
    assert!(build_features("mkvle", Some(&a3m), &cfg(4, 4, false)).is_ok());

    let empty = A3m {
        origin: "empty.a3m".into(),
        records: vec![],
    };
    assert_eq!(
        err("MKV", Some(&empty)),
        "empty.a3m: the MSA has no sequences"
    );
    let record = |d: &str, s: &str| A3mRecord {
        description: d.into(),
        line: 3,
        sequence: s.into(),
        deletions: vec![0; s.chars().count()],
    };
    let bad = A3m {
        origin: "built".into(),
        records: vec![record("q", "MKV"), record("h2", "M*V")],
    };
    assert_eq!(
        err("MKV", Some(&bad)),
        "built: record `h2` (line 3), column 2: '*' is not an MSA residue (an upper-case \
         letter or '-')"
    );
    let short = A3m {
        origin: "built".into(),
        records: vec![record("q", "MKV"), record("h2", "MK")],
    };
    assert!(err("MKV", Some(&short)).contains("record `h2` (line 3) has 2 aligned columns"));

    let mut c = cfg(0, 10, false);
    assert!(build_features("MKV", None, &c)
        .unwrap_err()
        .to_string()
        .contains("max_msa_clusters"));
    c.max_msa_clusters = 4;
    c.masked_msa.same_prob = 0.9;
    assert!(build_features("MKV", None, &c)
        .unwrap_err()
        .to_string()
        .contains("exceed 1"));
}

/// Cluster profiles summarise every non-centre row; the extra-MSA crop comes after.
#[test]
fn cluster_profiles_use_all_rows_before_the_extra_crop() {
    let (query, a3m) = random_msa(30, 20, 3);
    let one = build_features(&query, Some(&a3m), &cfg(4, 1, true)).unwrap();
    let all = build_features(&query, Some(&a3m), &cfg(4, 100, true)).unwrap();
    assert_eq!(one[0].msa_feat, all[0].msa_feat);
    assert_eq!(one[0].extra_msa.shape(), [1, 20]);
    assert_eq!(all[0].extra_msa.shape(), [26, 20]);
    assert_eq!(one[0].extra_msa.data(), &all[0].extra_msa.data()[..20]);
    // and they differ from profiles without the cropped rows
    let (_, fewer) = {
        let mut a = a3m.clone();
        a.records.truncate(5);
        (
            0,
            build_features(&query, Some(&a), &cfg(4, 100, true)).unwrap(),
        )
    };
    assert_ne!(fewer[0].msa_feat, all[0].msa_feat);
}

#[test]
#[ignore = "timing only"]
fn pipeline_timing_at_model_size() {
    let (query, a3m) = random_msa(8000, 300, 4);
    let t = std::time::Instant::now();
    let f = build_features(&query, Some(&a3m), &cfg(508, 5120, false)).unwrap();
    eprintln!(
        "8000 rows x 300 columns, S 508, X 5120, 4 slices: {:.2} s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(f[0].msa_feat.shape(), [508, 300, MSA_FEAT_CHANNELS]);
}
