use std::path::{Path, PathBuf};

use super::format::{Section, HEADER_LEN};
use super::*;
use crate::alphabet;

const FASTA: &str = "\
>sp|P1|A first protein
ARNDCQEGHI
LKMFPSTWYV
>empty1 nothing here
>dna1
ACGTACGTACGTACGTACGTACGT
>odd1 with X/U/O and a stop
acdbzjxuo*
>bad1
AC1DE
>sp|P1|A duplicate name, kept
MKV
>empty2
";

fn build(dir: &Path, fasta: &str) -> (PathBuf, crate::Result<BuildReport>) {
    let input = dir.join("in.fa");
    std::fs::write(&input, fasta).unwrap();
    let out = dir.join("seqs.ffdb");
    let mut calls = Vec::new();
    let report = build_database(&input, &out, &mut |bytes| calls.push(bytes));
    if report.is_ok() {
        assert_eq!(calls.last(), Some(&(fasta.len() as u64)), "final progress");
    }
    (out, report)
}

fn built(dir: &Path) -> PathBuf {
    let (out, report) = build(dir, FASTA);
    report.unwrap();
    out
}

fn open_err(path: &Path) -> String {
    Database::open(path).unwrap_err().to_string()
}

#[test]
fn round_trip_keeps_headers_and_sequences_and_counts_skips() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = build(dir.path(), FASTA);
    let report = report.unwrap();
    assert_eq!(report.records, 7);
    assert_eq!(report.sequences, 3);
    assert_eq!(report.residues, 20 + 9 + 3);
    assert_eq!(report.max_length, 20);
    assert_eq!(report.file_bytes, std::fs::metadata(&out).unwrap().len());
    assert_eq!(report.skipped_count(), 4);
    assert_eq!(
        report.skip_summary().unwrap(),
        "skipped 4 records: 2 empty (first: empty1), 1 with invalid characters (first: bad1: \
         character '1' at position 3 is not an amino-acid letter), 1 nucleotide (first: dna1)"
    );
    assert_eq!(report.skipped[0].first_records, ["empty1", "empty2"]);

    let db = Database::open(&out).unwrap();
    assert_eq!(db.len(), 3);
    assert!(!db.is_empty());
    assert_eq!(db.total_residues(), 32);
    assert_eq!(db.max_length(), 20);
    assert_eq!(db.path(), out);
    assert_eq!(db.header(0), "sp|P1|A first protein");
    assert_eq!(db.name(0), "sp|P1|A");
    assert_eq!(db.sequence(0), (0..20).collect::<Vec<u8>>());
    assert_eq!(alphabet::decode(db.sequence(0)), "ARNDCQEGHILKMFPSTWYV");
    assert_eq!(db.header(1), "odd1 with X/U/O and a stop");
    assert_eq!(alphabet::decode(db.sequence(1)), "ACDXXXXCK");
    assert_eq!(db.name(2), "sp|P1|A", "duplicate names are kept");
    assert_eq!(alphabet::decode(db.sequence(2)), "MKV");
    assert_eq!(db.residues().len(), 32);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
}

#[test]
fn database_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Database>();
}

#[test]
fn empty_or_unusable_input_is_an_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = build(dir.path(), "");
    let msg = report.unwrap_err().to_string();
    assert!(msg.contains("no FASTA records"), "{msg}");
    assert!(!out.exists());

    let (out, report) = build(dir.path(), ">e\n>n\nACGTACGTACGTACGTACGTAAA\n");
    let msg = report.unwrap_err().to_string();
    assert!(msg.contains("no protein record"), "{msg}");
    assert!(msg.contains("1 empty (first: e)"), "{msg}");
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "only in.fa"
    );
}

#[test]
fn failed_build_keeps_the_existing_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = built(dir.path());
    let before = std::fs::read(&out).unwrap();
    let (_, report) = build(dir.path(), ">a\nAC\n>\nAC\n");
    assert!(report.unwrap_err().to_string().contains("has no name"));
    assert_eq!(std::fs::read(&out).unwrap(), before);
}

#[test]
fn truncated_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = built(dir.path());
    let bytes = std::fs::read(&out).unwrap();
    let cut = dir.path().join("cut.ffdb");
    let mut cuts = vec![1, 5, 8, 100, HEADER_LEN - 1, HEADER_LEN, HEADER_LEN + 10];
    cuts.extend([bytes.len() / 2, bytes.len() - 8, bytes.len() - 1]);
    for len in cuts {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        let msg = open_err(&cut);
        assert!(msg.contains("truncated"), "cut at {len}: {msg}");
    }
}

#[test]
fn empty_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zero.ffdb");
    std::fs::write(&path, b"").unwrap();
    let msg = open_err(&path);
    assert!(msg.contains("empty (0 bytes)"), "{msg}");
    assert!(msg.contains("not a ferrofold sequence database"), "{msg}");
}

#[test]
fn foreign_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("in.fa");
    std::fs::write(&path, FASTA).unwrap();
    assert!(open_err(&path).contains("not a ferrofold sequence database"));
    std::fs::write(&path, b">x\n").unwrap();
    assert!(open_err(&path).contains("not a ferrofold sequence database"));
    assert!(open_err(&dir.path().join("missing")).contains("missing"));
}

#[test]
fn other_version_is_refused_with_rebuild_hint() {
    let dir = tempfile::tempdir().unwrap();
    let out = built(dir.path());
    let mut bytes = std::fs::read(&out).unwrap();
    bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
    std::fs::write(&out, &bytes).unwrap();
    let msg = open_err(&out);
    assert!(
        msg.ends_with(
            "built by format version 1, this ferrofold reads version 2: \
             rebuild it with `ferrofold db build`"
        ),
        "{msg}"
    );
}

#[test]
fn flipped_byte_in_each_section_names_the_section() {
    let dir = tempfile::tempdir().unwrap();
    let out = built(dir.path());
    let bytes = std::fs::read(&out).unwrap();
    let header =
        super::format::FileHeader::decode(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
    let bad = dir.path().join("bad.ffdb");
    // The k-mer postings are not checksummed at open (`a_corrupt_posting_is_passed_over`).
    for section in Section::ALL
        .into_iter()
        .filter(|&s| s != Section::KmerPostings)
    {
        let entry = header.section(section);
        for at in [entry.offset, entry.offset + entry.len - 1] {
            let mut flipped = bytes.clone();
            flipped[at as usize] ^= 0x01;
            std::fs::write(&bad, &flipped).unwrap();
            let msg = open_err(&bad);
            let expected = format!("checksum mismatch in the {} section", section.name());
            assert!(msg.contains(&expected), "{msg}");
        }
    }
    for at in [12, 20, 50, HEADER_LEN - 1] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x10;
        std::fs::write(&bad, &flipped).unwrap();
        assert!(open_err(&bad).contains("header checksum mismatch"));
    }
}

/// Rewrites bytes of a section and fixes every checksum, as a buggy writer would.
fn patch_with_valid_checksums(bytes: &mut [u8], section: Section, at: u64, value: &[u8]) {
    use super::format::FileHeader;
    let mut header = FileHeader::decode(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
    let entry = header.section(section);
    let start = (entry.offset + at) as usize;
    bytes[start..start + value.len()].copy_from_slice(value);
    let range = entry.offset as usize..(entry.offset + entry.len) as usize;
    header.sections[section as usize].crc = crc32fast::hash(&bytes[range]);
    bytes[..HEADER_LEN].copy_from_slice(&header.encode());
}

#[test]
fn inconsistent_content_with_valid_checksums_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = built(dir.path());
    let bytes = std::fs::read(&out).unwrap();
    let bad = dir.path().join("bad.ffdb");
    let cases: [(Section, u64, &[u8], &str); 7] = [
        (
            Section::KmerStarts,
            4,
            &u32::MAX.to_le_bytes(),
            "k-mer starts",
        ),
        (Section::KmerStarts, 0, &1u32.to_le_bytes(), "k-mer starts"),
        (Section::Residues, 3, &[21], "residue code is out of range"),
        (
            Section::SequenceOffsets,
            8,
            &u64::MAX.to_le_bytes(),
            "invalid offset at entry 1",
        ),
        (
            Section::SequenceOffsets,
            0,
            &1u64.to_le_bytes(),
            "invalid offset at entry 0",
        ),
        (
            Section::HeaderOffsets,
            16,
            &1u64.to_le_bytes(),
            "invalid offset at entry 2",
        ),
        (Section::Headers, 0, &[0xff], "not UTF-8"),
    ];
    for (section, at, value, expected) in cases {
        let mut patched = bytes.clone();
        patch_with_valid_checksums(&mut patched, section, at, value);
        std::fs::write(&bad, &patched).unwrap();
        let msg = open_err(&bad);
        assert!(msg.contains(expected), "{msg}");
    }
}

#[test]
fn the_kmer_index_lists_every_window_by_code() {
    use crate::kmer::{window_codes, CODES, NO_CODE};
    let dir = tempfile::tempdir().unwrap();
    let fasta = ">a\nMKVLAAGMKVLAW\n>b\nACDEFXGHIKLMNPQ\n>c\nMKV\n>d\nWWWWWWWW\n";
    let (out, report) = build(dir.path(), fasta);
    report.unwrap();
    let db = Database::open(&out).unwrap();
    let index = db.kmer_index().unwrap();
    let mut expected = vec![Vec::new(); CODES];
    for i in 0..db.len() {
        let mut codes = Vec::new();
        window_codes(db.sequence(i), &mut codes);
        for (w, &code) in codes.iter().enumerate().filter(|(_, &c)| c != NO_CODE) {
            expected[code as usize].push((db.sequence_start(i) + w) as u32);
        }
    }
    let windows: usize = expected.iter().map(Vec::len).sum();
    // a: 9 windows, b: 1 before its X and 5 after, c: none, d: 4.
    assert_eq!(windows, 9 + 1 + 5 + 4);
    for (code, offsets) in expected.iter().enumerate() {
        assert_eq!(index.count(code as u32), offsets.len());
        assert_eq!(&index.postings(code as u32).collect::<Vec<_>>(), offsets);
    }
}

#[test]
fn a_corrupt_posting_is_passed_over() {
    let dir = tempfile::tempdir().unwrap();
    let (out, report) = build(dir.path(), ">a\nMKVLAAGMKVLAW\n");
    report.unwrap();
    let mut bytes = std::fs::read(&out).unwrap();
    let header =
        super::format::FileHeader::decode(bytes[..HEADER_LEN].try_into().unwrap()).unwrap();
    let postings = header.section(Section::KmerPostings);
    assert_eq!(postings.len, 9 * 4);
    let at = postings.offset as usize;
    let first = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(&out, &bytes).unwrap();
    let db = Database::open(&out).unwrap();
    let index = db.kmer_index().unwrap();
    let all: Vec<u32> = (0..crate::kmer::CODES as u32)
        .flat_map(|code| index.postings(code))
        .collect();
    assert_eq!(all.len(), 8);
    assert!(!all.contains(&first) && all.iter().all(|&at| at < 13));
}

#[test]
fn over_long_records_are_skipped_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let long = "MKVL".repeat(MAX_TARGET_LENGTH / 4 + 1);
    let (out, report) = build(dir.path(), &format!(">long\n{long}\n>ok\nMKV\n"));
    let report = report.unwrap();
    assert_eq!(report.sequences, 1);
    assert_eq!(
        report.skip_summary().unwrap(),
        format!("skipped 1 record: 1 too long (first: long: 100004 residues, over 100000)")
    );
    assert_eq!(Database::open(&out).unwrap().max_length(), 3);
}

#[test]
fn a_build_never_overwrites_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.fa");
    std::fs::write(&input, FASTA).unwrap();
    let same = dir.path().join(".").join("in.fa");
    let msg = build_database(&input, &same, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(msg.contains("its own FASTA input"), "{msg}");
    assert_eq!(std::fs::read_to_string(&input).unwrap(), FASTA);
}

#[test]
fn a_directory_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let msg = open_err(dir.path());
    assert!(msg.contains("not a regular file"), "{msg}");
}

#[cfg(unix)]
#[test]
fn databases_get_the_permissions_of_any_new_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = built(dir.path());
    let plain = dir.path().join("plain");
    std::fs::File::create(&plain).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), mode(&plain));
}
