//! FASTA reading.
//!
//! Generic: sequences are returned as written (whitespace removed); alphabet checks
//! belong to the model that consumes them.

use std::path::Path;

use crate::{IoError, Result};

/// One FASTA record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FastaRecord {
    /// First whitespace-separated word of the header.
    pub name: String,
    /// The full header line without the leading `>`, trimmed.
    pub description: String,
    /// All sequence lines concatenated, with every whitespace character removed.
    pub sequence: String,
}

/// Reads and parses a FASTA file.
pub fn read_fasta(path: impl AsRef<Path>) -> Result<Vec<FastaRecord>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| IoError::file(path, e))?;
    parse_fasta(&text, &path.display().to_string())
}

/// Parses FASTA text; `origin` (usually the file name) prefixes error messages.
///
/// Blank lines are ignored. Fails on input without records, sequence data before the
/// first header, headers without a name and records without sequence.
pub fn parse_fasta(text: &str, origin: &str) -> Result<Vec<FastaRecord>> {
    let err = |message: String| IoError::Fasta {
        origin: origin.to_string(),
        message,
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    // The record being filled and the line number of its header.
    let mut current: Option<(FastaRecord, usize)> = None;

    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if let Some(header) = line.strip_prefix('>') {
            if let Some(done) = current.take() {
                records.push(finish(done, origin)?);
            }
            let description = header.trim().to_string();
            let name = description
                .split_whitespace()
                .next()
                .ok_or_else(|| err(format!("line {line_no}: record header has no name")))?
                .to_string();
            let record = FastaRecord {
                name,
                description,
                sequence: String::new(),
            };
            current = Some((record, line_no));
        } else if !line.trim().is_empty() {
            let (record, _) = current.as_mut().ok_or_else(|| {
                err(format!(
                    "line {line_no}: sequence data before the first '>' header"
                ))
            })?;
            record
                .sequence
                .extend(line.chars().filter(|c| !c.is_whitespace()));
        }
    }
    if let Some(done) = current.take() {
        records.push(finish(done, origin)?);
    }
    if records.is_empty() {
        return Err(err("no FASTA records (the input is empty)".to_string()));
    }
    Ok(records)
}

/// Checks a completed record.
fn finish((record, header_line): (FastaRecord, usize), origin: &str) -> Result<FastaRecord> {
    if record.sequence.is_empty() {
        return Err(IoError::Fasta {
            origin: origin.to_string(),
            message: format!(
                "line {header_line}: record `{}` has an empty sequence",
                record.name
            ),
        });
    }
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        parse_fasta(text, "in.fa").unwrap_err().to_string()
    }

    #[test]
    fn parses_multiline_records() {
        let text = "\u{feff}>H heavy chain  \nEVQL VES\r\nGGGL\n\n>L light\nDIQMTQ\n";
        let records = parse_fasta(text, "in.fa").unwrap();
        assert_eq!(
            records,
            vec![
                FastaRecord {
                    name: "H".into(),
                    description: "H heavy chain".into(),
                    sequence: "EVQLVESGGGL".into(),
                },
                FastaRecord {
                    name: "L".into(),
                    description: "L light".into(),
                    sequence: "DIQMTQ".into(),
                },
            ]
        );
    }

    #[test]
    fn keeps_residue_letters_verbatim() {
        let records = parse_fasta(">x\nacdX*-\n", "in.fa").unwrap();
        assert_eq!(records[0].sequence, "acdX*-");
    }

    #[test]
    fn rejects_empty_input() {
        assert!(parse_err("").contains("no FASTA records"));
        assert!(parse_err("\n  \n").contains("no FASTA records"));
    }

    #[test]
    fn rejects_sequence_before_header() {
        let msg = parse_err("\nACDE\n>x\nAC\n");
        assert_eq!(
            msg,
            "in.fa: line 2: sequence data before the first '>' header"
        );
    }

    #[test]
    fn rejects_header_without_name() {
        assert_eq!(
            parse_err(">a\nAC\n>  \nAC\n"),
            "in.fa: line 3: record header has no name"
        );
    }

    #[test]
    fn rejects_empty_sequence_naming_record_and_line() {
        assert_eq!(
            parse_err(">a\nAC\n>b desc\n\n>c\nA\n"),
            "in.fa: line 3: record `b` has an empty sequence"
        );
        assert_eq!(
            parse_err(">a\nAC\n>last\n"),
            "in.fa: line 3: record `last` has an empty sequence"
        );
    }

    #[test]
    fn read_fasta_names_missing_file() {
        let msg = read_fasta("/nonexistent/x.fa").unwrap_err().to_string();
        assert!(msg.starts_with("/nonexistent/x.fa: "), "{msg}");
    }
}
