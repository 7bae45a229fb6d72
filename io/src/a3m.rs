//! A3M multiple-sequence-alignment reading, as AlphaFold2's `parsers.parse_a3m` does.
//!
//! An A3M file is FASTA whose first record is the query. In every record, upper-case
//! letters and `-` are aligned columns (one per query residue); lower-case letters are
//! insertions relative to the query: they are removed from the row and counted into the
//! deletion matrix, `deletions[j]` = the insertions immediately to the left of column `j`
//! (insertions after the last column are dropped, as AF2 drops them). Headers are kept.
//!
//! Beyond AF2's parser, for files written by other tools: lines starting with `#`
//! (HH-suite's `#A3M#`, ColabFold's `#<lengths>\t<cardinalities>`) are skipped, and `.`
//! (a gap in an insertion column, A2M style) is dropped like an insertion that contains
//! no residue. Letters are kept as written (any upper-case letter; mapping to residue
//! classes belongs to the model), so the aligned rows are exactly what AF2 deduplicates.
//!
//! Errors name the record and the line: input without records, sequence data before the
//! first header, characters other than letters, `-` and `.`, and rows whose aligned length
//! differs from the first record's.

use std::path::Path;

use crate::{IoError, Result};

/// One aligned record of an A3M file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A3mRecord {
    /// The header line without the leading `>`, trimmed.
    pub description: String,
    /// 1-based line number of the header.
    pub line: usize,
    /// The aligned row: upper-case letters and `-`, insertions removed.
    pub sequence: String,
    /// Insertions to the left of each aligned column (`sequence.len()` entries).
    pub deletions: Vec<u32>,
}

/// A parsed A3M alignment; `records[0]` is the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A3m {
    /// Where it came from (usually the file name), for error messages.
    pub origin: String,
    pub records: Vec<A3mRecord>,
}

impl A3m {
    /// Aligned columns (the query length).
    pub fn width(&self) -> usize {
        self.records.first().map_or(0, |r| r.sequence.len())
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Most rows an alignment may have (ColabFold's largest MSAs hold a few hundred thousand).
pub const MAX_ROWS: usize = 1 << 20;
/// Most memory the parsed rows may take ([`row_bytes`] each), and the largest A3M file read.
pub const MAX_BYTES: usize = 4 << 30;

/// What one parsed row of `width` aligned columns with a `description_len`-byte header
/// holds in memory: its letters, four bytes of deletion count per column, the header and
/// the record's own fields.
pub fn row_bytes(width: usize, description_len: usize) -> usize {
    5 * width + description_len + std::mem::size_of::<A3mRecord>()
}

/// Checks an alignment of `rows` rows taking `bytes` ([`row_bytes`] summed) against
/// [`MAX_ROWS`] and [`MAX_BYTES`].
pub fn check_size(rows: usize, bytes: usize) -> std::result::Result<(), String> {
    if rows > MAX_ROWS {
        Err(format!("over {MAX_ROWS} rows: too large to read"))
    } else if bytes > MAX_BYTES {
        Err(format!(
            "its rows take over {MAX_BYTES} bytes: too large to read"
        ))
    } else {
        Ok(())
    }
}

/// Reads and parses an A3M file.
pub fn read_a3m(path: impl AsRef<Path>) -> Result<A3m> {
    let path = path.as_ref();
    let size = std::fs::metadata(path)
        .map_err(|e| IoError::file(path, e))?
        .len();
    if size > MAX_BYTES as u64 {
        return Err(IoError::Fasta {
            origin: path.display().to_string(),
            message: format!("{size} bytes, over the {MAX_BYTES}-byte limit for an A3M file"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| IoError::file(path, e))?;
    parse_a3m(&text, &path.display().to_string())
}

/// Parses A3M text; `origin` (usually the file name) prefixes error messages.
pub fn parse_a3m(text: &str, origin: &str) -> Result<A3m> {
    let err = |message: String| IoError::Fasta {
        origin: origin.to_string(),
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records: Vec<A3mRecord> = Vec::new();
    // Insertions seen since the last aligned column of the current record.
    let mut pending = 0u32;
    // Memory of the finished records (`row_bytes`), and the query's width once it is done.
    let mut bytes = 0usize;
    let mut query_width = 0usize;

    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = line.trim();
        if let Some(header) = line.strip_prefix('>') {
            if let Some(done) = records.last() {
                check_width(done, &records[0], &err)?;
                query_width = records[0].sequence.len();
                bytes += row_bytes(done.sequence.len(), done.description.len());
                check_size(records.len(), bytes)
                    .map_err(|m| err(format!("line {line_no}: {m}")))?;
            }
            records.push(A3mRecord {
                description: header.trim().to_string(),
                line: line_no,
                sequence: String::new(),
                deletions: Vec::new(),
            });
            pending = 0;
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let rows = records.len();
        let Some(record) = records.last_mut() else {
            return Err(err(format!(
                "line {line_no}: sequence data before the first '>' header"
            )));
        };
        for (col, c) in line.chars().enumerate() {
            match c {
                'A'..='Z' | '-' => {
                    record.sequence.push(c);
                    record.deletions.push(pending);
                    pending = 0;
                }
                'a'..='z' => pending += 1,
                '.' => {}
                c if c.is_whitespace() => {}
                c => {
                    return Err(err(format!(
                        "line {line_no}, character {}: record `{}` holds {c:?}, which is \
                         not an A3M residue (letters, '-' for a gap, lower case for an \
                         insertion)",
                        col + 1,
                        record.description
                    )))
                }
            }
        }
        // A row longer than the query is an error anyway; the query itself is bounded by
        // memory: neither grows on past what the file may hold.
        let over_query = rows > 1 && query_width > 0 && record.sequence.len() > query_width;
        if over_query || bytes + row_bytes(record.sequence.len(), 0) > MAX_BYTES {
            let record = records.last().expect("a record is open");
            check_width(record, &records[0], &err)?;
            check_size(rows, bytes + row_bytes(record.sequence.len(), 0))
                .map_err(|m| err(format!("line {line_no}: {m}")))?;
        }
    }
    if let Some(last) = records.last() {
        bytes += row_bytes(last.sequence.len(), last.description.len());
        check_size(records.len(), bytes).map_err(err)?;
    }
    let Some(query) = records.first() else {
        return Err(err("no A3M records (the input is empty)".to_string()));
    };
    if query.sequence.is_empty() {
        return Err(err(format!(
            "line {}: the first record (the query) `{}` has no aligned residues",
            query.line, query.description
        )));
    }
    check_width(records.last().expect("non-empty"), query, &err)?;
    Ok(A3m {
        origin: origin.to_string(),
        records,
    })
}

/// A record's aligned length must equal the query's.
fn check_width(
    record: &A3mRecord,
    query: &A3mRecord,
    err: &impl Fn(String) -> IoError,
) -> Result<()> {
    if record.sequence.len() == query.sequence.len() {
        return Ok(());
    }
    Err(err(format!(
        "line {}: record `{}` has {} aligned columns (upper case and '-'), but the query \
         `{}` has {}",
        record.line,
        record.description,
        record.sequence.len(),
        query.description,
        query.sequence.len()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        parse_a3m(text, "in.a3m").unwrap_err().to_string()
    }

    #[test]
    fn alignments_past_the_limits_are_refused() {
        assert!(check_size(MAX_ROWS, MAX_BYTES).is_ok());
        assert!(check_size(MAX_ROWS + 1, 0).unwrap_err().contains("rows"));
        assert!(check_size(1, MAX_BYTES + 1).unwrap_err().contains("bytes"));
        let msg = parse_err(&">q\nA\n".repeat(MAX_ROWS + 1));
        assert!(msg.contains(&format!("over {MAX_ROWS} rows")), "{msg}");
        // Past the limit by more, the header that passes it is named.
        let msg = parse_err(&">q\nA\n".repeat(MAX_ROWS + 2));
        assert!(
            msg.contains(&format!("line {}: over {MAX_ROWS} rows", 2 * MAX_ROWS + 3)),
            "{msg}"
        );
        assert!(parse_a3m(&">q\nA\n".repeat(MAX_ROWS), "in.a3m").is_ok());
    }

    #[test]
    fn a3m_insertions_become_deletion_counts() {
        // AF2 parsers.parse_a3m on the same text gives these rows and deletion matrix.
        let text = "\u{feff}#A3M#\n>query desc\nMKV\nLE\n\n>hit1 x\nM-abVLcE\n>hit2\naaMKVLE\n\
                    >hit3\nMKVLEzz\n>hit4\n-.-VL-\n";
        let a = parse_a3m(text, "in.a3m").unwrap();
        assert_eq!(a.origin, "in.a3m");
        assert_eq!((a.len(), a.width()), (5, 5));
        let rows: Vec<_> = a
            .records
            .iter()
            .map(|r| (r.description.as_str(), r.line, r.sequence.as_str()))
            .collect();
        assert_eq!(
            rows,
            [
                ("query desc", 2, "MKVLE"),
                ("hit1 x", 6, "M-VLE"),
                ("hit2", 8, "MKVLE"),
                ("hit3", 10, "MKVLE"),
                ("hit4", 12, "--VL-"),
            ]
        );
        let dels: Vec<_> = a.records.iter().map(|r| r.deletions.clone()).collect();
        assert_eq!(
            dels,
            [
                vec![0, 0, 0, 0, 0],
                vec![0, 0, 2, 0, 1],
                vec![2, 0, 0, 0, 0],
                vec![0, 0, 0, 0, 0], // trailing insertions are dropped, as in AF2
                vec![0, 0, 0, 0, 0],
            ]
        );
    }

    #[test]
    fn a3m_insertions_carry_across_line_breaks() {
        let a = parse_a3m(">q\nMKV\n>h\nMKab\ncV\n", "x").unwrap();
        assert_eq!(a.records[1].sequence, "MKV");
        assert_eq!(a.records[1].deletions, [0, 0, 3]);
    }

    #[test]
    fn a3m_rejects_empty_input() {
        assert_eq!(parse_err(""), "in.a3m: no A3M records (the input is empty)");
        assert_eq!(
            parse_err("#A3M#\n\n"),
            "in.a3m: no A3M records (the input is empty)"
        );
        assert_eq!(
            parse_err(">q\n\n>h\nMK\n"),
            "in.a3m: line 1: the first record (the query) `q` has no aligned residues"
        );
    }

    #[test]
    fn a3m_rejects_rows_of_another_length_naming_record_and_line() {
        assert_eq!(
            parse_err(">q\nMKVLE\n>h1\nMKVLE\n>h2 s\nMKaaVL\n>h3\nMKVLE\n"),
            "in.a3m: line 5: record `h2 s` has 4 aligned columns (upper case and '-'), \
             but the query `q` has 5"
        );
        assert!(
            parse_err(">q\nMKVLE\n>last\nMKVLEE\n").starts_with("in.a3m: line 3: record `last`")
        );
        assert!(parse_err(">q\nMKVLE\n>empty\n").contains("record `empty` has 0 aligned"));
    }

    #[test]
    fn a3m_rejects_illegal_characters() {
        assert_eq!(
            parse_err(">q\nMKVLE\n>h\nMK\nV*LE\n"),
            "in.a3m: line 5, character 2: record `h` holds '*', which is not an A3M \
             residue (letters, '-' for a gap, lower case for an insertion)"
        );
        assert!(parse_err(">q\nMK1LE\n").contains("line 2, character 3: record `q` holds '1'"));
        assert_eq!(
            parse_err("MKV\n>q\nMKV\n"),
            "in.a3m: line 1: sequence data before the first '>' header"
        );
    }

    #[test]
    fn read_a3m_names_missing_file() {
        let msg = read_a3m("/nonexistent/x.a3m").unwrap_err().to_string();
        assert!(msg.starts_with("/nonexistent/x.a3m: "), "{msg}");
    }
}
