//! FASTA reading.
//!
//! Generic: sequences are returned as written (whitespace removed); alphabet checks
//! belong to the model that consumes them.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

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

/// Longest header line accepted, in bytes (without the line break): a longer one is an
/// error, so a binary or corrupt file cannot make the reader buffer it whole.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Most residues (non-whitespace characters) accepted in one record: 1 Gi, ten thousand
/// times the longest known protein, so a genome or a file without line breaks is an error
/// rather than exhausting memory.
pub const MAX_SEQUENCE_LEN: usize = 1 << 30;

/// Reads and parses a FASTA file (the whole file; see [`FastaReader`] to stream it).
pub fn read_fasta(path: impl AsRef<Path>) -> Result<Vec<FastaRecord>> {
    FastaReader::open(path)?.collect()
}

/// Parses FASTA text; `origin` (usually the file name) prefixes error messages.
///
/// Blank lines are ignored. Fails on input without records, sequence data before the
/// first header, headers without a name and records without sequence, and on input over
/// the limits [`MAX_HEADER_BYTES`] and [`MAX_SEQUENCE_LEN`].
pub fn parse_fasta(text: &str, origin: &str) -> Result<Vec<FastaRecord>> {
    FastaReader::new(text.as_bytes(), origin).collect()
}

/// A streaming FASTA parser: yields one record at a time and holds no more than that
/// record (plus the next header line), so databases larger than memory can be read.
///
/// The format rules and error messages are those of [`parse_fasta`] (which uses this
/// reader): a leading byte-order mark is skipped, a header is a line starting with `>`,
/// every whitespace character of sequence lines is removed, and lines end at `\n`. The
/// input must be UTF-8. After the first error the iterator ends.
pub struct FastaReader<R> {
    reader: R,
    /// Prefixes error messages.
    origin: String,
    /// The file read, for I/O errors; `None` for in-memory input.
    path: Option<PathBuf>,
    allow_empty: bool,
    max_header: usize,
    max_sequence: usize,
    /// Lines started so far (the number of the current line).
    line_no: usize,
    bytes_read: u64,
    records: u64,
    /// The header line that ended the previous record, with its line number.
    pending: Option<(String, usize)>,
    eof: bool,
    failed: bool,
}

/// What the next line of input held.
enum Line {
    Eof,
    /// A header line: its text after `>`, untrimmed.
    Header(String),
    /// A sequence (or blank) line, its characters appended to the caller's buffer;
    /// `false` when that buffer went over the record length limit.
    Data(bool),
}

impl FastaReader<BufReader<File>> {
    /// Opens a FASTA file for streaming; errors name `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| IoError::file(path, e))?;
        let mut reader = FastaReader::new(
            BufReader::with_capacity(256 * 1024, file),
            path.display().to_string(),
        );
        reader.path = Some(path.to_path_buf());
        Ok(reader)
    }
}

impl<R: BufRead> FastaReader<R> {
    /// Streams FASTA from `reader`; `origin` (usually the file name) prefixes error messages.
    pub fn new(reader: R, origin: impl Into<String>) -> Self {
        FastaReader {
            reader,
            origin: origin.into(),
            path: None,
            allow_empty: false,
            max_header: MAX_HEADER_BYTES,
            max_sequence: MAX_SEQUENCE_LEN,
            line_no: 0,
            bytes_read: 0,
            records: 0,
            pending: None,
            eof: false,
            failed: false,
        }
    }

    /// Yields records with an empty sequence instead of failing on them: a database build
    /// skips and counts such records rather than refusing the whole file.
    pub fn allow_empty(mut self, allow: bool) -> Self {
        self.allow_empty = allow;
        self
    }

    /// Bytes of input consumed so far (for progress reports).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    fn error(&self, message: String) -> IoError {
        IoError::Fasta {
            origin: self.origin.clone(),
            message,
        }
    }

    fn read_error(&self, e: io::Error) -> IoError {
        match &self.path {
            Some(path) => IoError::file(path, e),
            None => self.error(format!("line {}: {e}", self.line_no)),
        }
    }

    /// The buffered input, refilled when empty; empty at the end of the input.
    fn fill(&mut self) -> Result<&[u8]> {
        loop {
            match self.reader.fill_buf() {
                // Re-borrowed: returning `buf` directly here would keep `self.reader`
                // borrowed in the error arm too.
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.read_error(e)),
            }
        }
        Ok(self.reader.fill_buf().unwrap_or(&[]))
    }

    fn consume(&mut self, n: usize) {
        self.reader.consume(n);
        self.bytes_read += n as u64;
    }

    /// Reads the next line, appending sequence characters to `seq`.
    fn read_line(&mut self, seq: &mut Vec<u8>) -> Result<Line> {
        let Some(&first) = self.fill()?.first() else {
            return Ok(Line::Eof);
        };
        self.line_no += 1;
        let mut prefix = Vec::new();
        if self.line_no == 1 && first == BOM[0] {
            // Skip a byte-order mark; bytes that only looked like one are line data.
            for &b in BOM {
                match self.fill()?.first() {
                    Some(&next) if next == b => {
                        prefix.push(b);
                        self.consume(1);
                    }
                    _ => break,
                }
            }
            if prefix == BOM {
                prefix.clear();
            }
        }
        if prefix.is_empty() && self.fill()?.first() == Some(&b'>') {
            self.consume(1);
            let raw = self.read_raw_line(self.max_header)?;
            let header = String::from_utf8(raw)
                .map_err(|_| self.error(format!("line {}: not valid UTF-8", self.line_no)))?;
            return Ok(Line::Header(header));
        }
        self.read_data_line(seq, &prefix).map(Line::Data)
    }

    /// Reads the rest of a line, at most `limit` bytes of it, without the line break.
    fn read_raw_line(&mut self, limit: usize) -> Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let buf = self.fill()?;
            if buf.is_empty() {
                return Ok(line);
            }
            let (len, found) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            if line.len() + len > limit {
                return Err(self.error(format!(
                    "line {}: header line is longer than {limit} bytes (the limit)",
                    self.line_no
                )));
            }
            line.extend_from_slice(&buf[..len]);
            self.consume(len + usize::from(found));
            if found {
                return Ok(line);
            }
        }
    }

    /// Appends the non-whitespace characters of the rest of a line (after `prefix`, bytes
    /// already consumed) to `seq`; returns `false` as soon as `seq` is over the limit.
    fn read_data_line(&mut self, seq: &mut Vec<u8>, prefix: &[u8]) -> Result<bool> {
        let start = seq.len();
        // ASCII is filtered as it streams by; a chunk with other bytes is kept whole and
        // filtered once the line is complete, so multi-byte characters are never split.
        let mut non_ascii = !prefix.is_empty();
        seq.extend_from_slice(prefix);
        loop {
            let max_sequence = self.max_sequence;
            let buf = self.fill()?;
            if buf.is_empty() {
                break;
            }
            let (len, found) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i, true),
                None => (buf.len(), false),
            };
            let chunk = &buf[..len];
            if chunk.is_ascii() {
                seq.extend(chunk.iter().copied().filter(|&b| !is_whitespace(b)));
            } else {
                non_ascii = true;
                seq.extend_from_slice(chunk);
            }
            self.consume(len + usize::from(found));
            if seq.len() > max_sequence {
                return Ok(false);
            }
            if found {
                break;
            }
        }
        if non_ascii {
            let text = std::str::from_utf8(&seq[start..])
                .map_err(|_| self.error(format!("line {}: not valid UTF-8", self.line_no)))?;
            let kept: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            seq.truncate(start);
            seq.extend_from_slice(kept.as_bytes());
        }
        Ok(true)
    }

    /// Reads the next record, `None` after the last.
    fn read_record(&mut self) -> Result<Option<FastaRecord>> {
        let (header, header_line) = match self.pending.take() {
            Some(pending) => pending,
            None if self.eof => return Ok(None),
            // Start of input: blank lines, then the first header.
            None => loop {
                let mut data = Vec::new();
                // Only blank lines may come first: the header's limit there refuses binary
                // input at once, not after a gigabyte of it (a non-ASCII chunk is kept whole
                // until its line ends, so the limit cannot be zero).
                let max_sequence = std::mem::replace(&mut self.max_sequence, self.max_header);
                let line = self.read_line(&mut data);
                self.max_sequence = max_sequence;
                match line? {
                    Line::Eof => {
                        self.eof = true;
                        return Err(self.error("no FASTA records (the input is empty)".into()));
                    }
                    Line::Header(header) => break (header, self.line_no),
                    Line::Data(within_limit) => {
                        if !data.is_empty() || !within_limit {
                            return Err(self.error(format!(
                                "line {}: sequence data before the first '>' header",
                                self.line_no
                            )));
                        }
                    }
                }
            },
        };
        let description = header.trim().to_string();
        let name = description
            .split_whitespace()
            .next()
            .ok_or_else(|| self.error(format!("line {header_line}: record header has no name")))?
            .to_string();
        let mut seq = Vec::new();
        loop {
            match self.read_line(&mut seq)? {
                Line::Eof => {
                    self.eof = true;
                    break;
                }
                Line::Header(next) => {
                    self.pending = Some((next, self.line_no));
                    break;
                }
                Line::Data(true) => {}
                Line::Data(false) => {
                    return Err(self.error(format!(
                        "line {}: record `{name}` is longer than {} residues (the limit)",
                        self.line_no, self.max_sequence
                    )))
                }
            }
        }
        if seq.is_empty() && !self.allow_empty {
            return Err(self.error(format!(
                "line {header_line}: record `{name}` has an empty sequence"
            )));
        }
        // Every line was checked to be UTF-8 or is ASCII.
        let sequence = String::from_utf8(seq)
            .map_err(|_| self.error(format!("record `{name}`: not valid UTF-8")))?;
        self.records += 1;
        Ok(Some(FastaRecord {
            name,
            description,
            sequence,
        }))
    }
}

impl<R: BufRead> Iterator for FastaReader<R> {
    type Item = Result<FastaRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        match self.read_record() {
            Ok(record) => record.map(Ok),
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl<R: BufRead> std::iter::FusedIterator for FastaReader<R> {}

const BOM: &[u8] = "\u{feff}".as_bytes();

/// `char::is_whitespace` for ASCII bytes.
fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
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
    fn refuses_endless_binary_input_at_once() {
        let zeros = std::io::BufReader::new(std::io::repeat(0));
        let mut reader = FastaReader::new(zeros, "zeros");
        let msg = reader.next().unwrap().unwrap_err().to_string();
        assert!(msg.contains("line 1: sequence data before"), "{msg}");
        assert!(
            reader.bytes_read() <= 1 << 17,
            "{} bytes read",
            reader.bytes_read()
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

    /// The line-based parser this module had before the streaming reader: the oracle
    /// that [`FastaReader`] must agree with.
    fn reference_parse(text: &str, origin: &str) -> Result<Vec<FastaRecord>> {
        let err = |message: String| IoError::Fasta {
            origin: origin.to_string(),
            message,
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut records = Vec::new();
        let mut current: Option<(FastaRecord, usize)> = None;
        let finish = |(record, line): (FastaRecord, usize)| {
            if record.sequence.is_empty() {
                return Err(err(format!(
                    "line {line}: record `{}` has an empty sequence",
                    record.name
                )));
            }
            Ok(record)
        };
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            if let Some(header) = line.strip_prefix('>') {
                if let Some(done) = current.take() {
                    records.push(finish(done)?);
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
            records.push(finish(done)?);
        }
        if records.is_empty() {
            return Err(err("no FASTA records (the input is empty)".to_string()));
        }
        Ok(records)
    }

    fn outcome(result: Result<Vec<FastaRecord>>) -> std::result::Result<Vec<FastaRecord>, String> {
        result.map_err(|e| e.to_string())
    }

    #[test]
    fn streaming_reader_agrees_with_parse_fasta_and_the_line_parser() {
        let pieces = [
            ">", ">a", ">x y ", "> ", "\n", "\n", "\n", "\r\n", "\r", "AC", "DE", "a", " ", "\t",
            "\u{b}", "\u{feff}", "\u{a0}", "\u{85}", "\u{3000}", "é", "\u{fec0}", "*", "-",
        ];
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut parsed = 0;
        for case in 0..4000 {
            let n = (next() % 24) as usize;
            let text: String = (0..n)
                .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                .collect();
            let expected = outcome(reference_parse(&text, "in.fa"));
            parsed += usize::from(expected.is_ok());
            assert_eq!(outcome(parse_fasta(&text, "in.fa")), expected, "{text:?}");
            let capacity = 1 + case % 5;
            let streamed =
                FastaReader::new(BufReader::with_capacity(capacity, text.as_bytes()), "in.fa")
                    .collect();
            assert_eq!(outcome(streamed), expected, "{text:?} capacity {capacity}");
        }
        assert!(
            parsed > 200,
            "only {parsed} inputs parsed: the generator is too hostile"
        );
    }

    #[test]
    fn streaming_reader_yields_one_record_at_a_time_and_stops_after_an_error() {
        let mut reader = FastaReader::new(&b">a\nAC\n>b\nDE\n>\nX\n>c\nA\n"[..], "in.fa");
        assert_eq!(reader.next().unwrap().unwrap().sequence, "AC");
        assert_eq!(reader.bytes_read(), 9, "read up to the next header only");
        assert_eq!(reader.next().unwrap().unwrap().name, "b");
        let err = reader.next().unwrap().unwrap_err().to_string();
        assert_eq!(err, "in.fa: line 5: record header has no name");
        assert!(reader.next().is_none());
    }

    #[test]
    fn allow_empty_yields_empty_records() {
        let records: Vec<_> = FastaReader::new(&b">a\n>b\nAC\n>c\n"[..], "in.fa")
            .allow_empty(true)
            .collect::<Result<_>>()
            .unwrap();
        let seqs: Vec<_> = records.iter().map(|r| r.sequence.as_str()).collect();
        assert_eq!(seqs, ["", "AC", ""]);
        let err = FastaReader::new(&b""[..], "in.fa")
            .allow_empty(true)
            .collect::<Result<Vec<_>>>()
            .unwrap_err();
        assert!(err.to_string().contains("no FASTA records"));
    }

    #[test]
    fn limits_give_clear_errors() {
        let mut reader = FastaReader::new(&b">abcdefghij\nAC\n"[..], "in.fa");
        reader.max_header = 8;
        let err = reader.next().unwrap().unwrap_err().to_string();
        assert_eq!(
            err,
            "in.fa: line 1: header line is longer than 8 bytes (the limit)"
        );

        let mut reader = FastaReader::new(&b">a\nACDE FG\nHIK\n>b\nA\n"[..], "in.fa");
        reader.max_sequence = 6;
        let err = reader.next().unwrap().unwrap_err().to_string();
        assert_eq!(
            err,
            "in.fa: line 3: record `a` is longer than 6 residues (the limit)"
        );
        // Whitespace does not count; exactly the limit is fine.
        let mut reader = FastaReader::new(&b">a\nACD  \nEF G\n"[..], "in.fa");
        reader.max_sequence = 6;
        assert_eq!(reader.next().unwrap().unwrap().sequence, "ACDEFG");
    }

    #[test]
    fn reports_invalid_utf8_with_line() {
        let err = FastaReader::new(&b">a\nAC\n>b\nA\xffC\n"[..], "in.fa")
            .collect::<Result<Vec<_>>>()
            .unwrap_err()
            .to_string();
        assert_eq!(err, "in.fa: line 4: not valid UTF-8");
        let err = FastaReader::new(&b">a\xff\nAC\n"[..], "in.fa")
            .collect::<Result<Vec<_>>>()
            .unwrap_err()
            .to_string();
        assert_eq!(err, "in.fa: line 1: not valid UTF-8");
    }

    #[test]
    fn open_streams_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.fa");
        std::fs::write(&path, ">a x\nAC\nDE\n>b\nFG\n").unwrap();
        let records = read_fasta(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].sequence, "ACDE");
        let streamed: Vec<_> = FastaReader::open(&path)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(streamed, records);
    }

    #[test]
    fn read_fasta_names_missing_file() {
        let msg = read_fasta("/nonexistent/x.fa").unwrap_err().to_string();
        assert!(msg.starts_with("/nonexistent/x.fa: "), "{msg}");
    }
}
