//! A small CIF 1.1 reader: the first data block's items and loops as borrowed strings, with
//! Biopython's `MMCIF2Dict` tokenization (quotes end at a quote followed by whitespace,
//! `;` text fields, `#` comments at the start of a token).

use std::collections::HashMap;

/// Items of one data block: tag (lower case) → values (one for a plain item, one per row for
/// a loop column), only for the tags asked for.
pub(crate) struct CifBlock<'a> {
    items: HashMap<String, Vec<&'a str>>,
}

impl<'a> CifBlock<'a> {
    /// Values of `tag` (e.g. `_atom_site.label_atom_id`), if present.
    pub fn get(&self, tag: &str) -> Option<&[&'a str]> {
        self.items.get(tag).map(|v| v.as_slice())
    }

    /// The columns of a category as rows: `None` if any column is absent.
    pub fn column(&self, tag: &str) -> Result<&[&'a str], String> {
        self.get(tag).ok_or_else(|| format!("missing {tag}"))
    }
}

/// Most values kept from one file (16 bytes each, 2 GiB in all): about four times the
/// atom columns read of the largest PDB entries (3J3Q: 2.4 M atoms, 13 columns), and a
/// bound on memory whatever a file holds.
const MAX_VALUES: usize = 1 << 27;

/// The tokens of a CIF text, one at a time (a file's tokens are never all held at once).
struct Tokens<'a> {
    text: &'a str,
    at: usize,
    line_start: bool,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Result<&'a str, String>;

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.text;
        let bytes = text.as_bytes();
        let n = bytes.len();
        while self.at < n {
            let i = self.at;
            let c = bytes[i];
            if c == b'\n' {
                self.line_start = true;
                self.at += 1;
                continue;
            }
            let line_start = std::mem::replace(&mut self.line_start, false);
            // A form feed too: a bare token stops at any ASCII whitespace.
            if c.is_ascii_whitespace() {
                self.at += 1;
                continue;
            }
            if c == b';' && line_start {
                // Text field: up to a line starting with ';'.
                let start = i + 1;
                let Some(k) = text[start..].find("\n;") else {
                    self.at = n;
                    return Some(Err("unterminated ;-text field (truncated file?)".into()));
                };
                self.at = start + k + 2;
                return Some(Ok(text[start..start + k].trim_end_matches('\r')));
            }
            if c == b'#' {
                while self.at < n && bytes[self.at] != b'\n' {
                    self.at += 1;
                }
                continue;
            }
            if c == b'\'' || c == b'"' {
                let start = i + 1;
                let mut j = start;
                loop {
                    if j >= n || bytes[j] == b'\n' {
                        self.at = n;
                        return Some(Err(format!(
                            "unterminated quoted string at byte {i} (truncated file?)"
                        )));
                    }
                    if bytes[j] == c && (j + 1 >= n || bytes[j + 1].is_ascii_whitespace()) {
                        break;
                    }
                    j += 1;
                }
                self.at = j + 1;
                return Some(Ok(&text[start..j]));
            }
            while self.at < n && !bytes[self.at].is_ascii_whitespace() {
                self.at += 1;
            }
            return Some(Ok(&text[i..self.at]));
        }
        None
    }
}

/// Whether a token ends a loop's values (a new item, loop, block or frame).
fn ends_loop(token: &str) -> bool {
    let starts = |word: &str| token.get(..5).is_some_and(|t| t.eq_ignore_ascii_case(word));
    token.starts_with('_')
        || token.eq_ignore_ascii_case("loop_")
        || starts("data_")
        || starts("save_")
}

/// Parses the first data block of a CIF file, keeping the values of the tags in `wanted`
/// (lower case) only. Loops whose value count is not a multiple of their column count (a
/// truncated or corrupt file) are an error.
pub(crate) fn parse_block<'a>(text: &'a str, wanted: &[&str]) -> Result<CifBlock<'a>, String> {
    let mut toks = Tokens {
        text,
        at: 0,
        line_start: true,
    }
    .peekable();
    let mut items: HashMap<String, Vec<&str>> = HashMap::new();
    // Values kept so far, against `MAX_VALUES`.
    let mut kept = 0usize;
    let mut count_kept = || {
        kept += 1;
        if kept > MAX_VALUES {
            Err(format!("over {MAX_VALUES} values: too large to read"))
        } else {
            Ok(())
        }
    };
    let mut seen_block = false;
    while let Some(t) = toks.next() {
        let t = t?;
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("data_") {
            if seen_block {
                break; // only the first data block
            }
            seen_block = true;
        } else if lower == "loop_" {
            let mut tags = Vec::new();
            while let Some(tag) = toks.peek() {
                match tag {
                    Ok(tag) if tag.starts_with('_') => tags.push(tag.to_ascii_lowercase()),
                    Ok(_) => break,
                    Err(e) => return Err(e.clone()),
                }
                toks.next();
            }
            if tags.is_empty() {
                return Err("loop_ without tags".into());
            }
            // The values of each column asked for (`None` for the others), resolved once
            // per loop rather than per value.
            let mut columns: Vec<Option<Vec<&str>>> = tags
                .iter()
                .map(|t| wanted.contains(&t.as_str()).then(Vec::new))
                .collect();
            let mut count = 0usize;
            while let Some(v) = toks.peek() {
                let v = match v {
                    Ok(v) if ends_loop(v) => break,
                    Ok(v) => *v,
                    Err(e) => return Err(e.clone()),
                };
                if let Some(column) = &mut columns[count % tags.len()] {
                    count_kept()?;
                    column.push(v);
                }
                count += 1;
                toks.next();
            }
            if !count.is_multiple_of(tags.len()) {
                return Err(format!(
                    "loop of {} has {count} values, not a multiple of its {} columns (truncated \
                     or corrupt file)",
                    tags[0].split('.').next().unwrap_or(&tags[0]),
                    tags.len()
                ));
            }
            for (tag, column) in tags.into_iter().zip(columns) {
                if let Some(column) = column {
                    items.entry(tag).or_default().extend(column);
                }
            }
        } else if t.starts_with('_') {
            let Some(v) = toks.next() else {
                return Err(format!("item {t} has no value (truncated file?)"));
            };
            let v = v?;
            if wanted.contains(&lower.as_str()) {
                count_kept()?;
                items.entry(lower).or_default().push(v);
            }
        } else if lower.starts_with("save_") || lower == "global_" || lower == "stop_" {
            continue;
        } else {
            return Err(format!("unexpected value `{}` outside a loop", trunc(t)));
        }
    }
    if !seen_block {
        return Err("no data_ block: not an mmCIF file".into());
    }
    Ok(CifBlock { items })
}

fn trunc(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizes_quotes_text_fields_and_loops() {
        let text = "data_x\n_a.b 'it''s ok'\n_a.c\n;line1\nline2\n;\nloop_\n_l.x\n_l.y\n1 \"q r\" # c\n2 ?\n";
        let b = parse_block(text, &["_a.b", "_a.c", "_l.x", "_l.y"]).unwrap();
        assert_eq!(b.get("_a.b").unwrap(), &["it''s ok"]);
        assert_eq!(b.get("_a.c").unwrap(), &["line1\nline2"]);
        assert_eq!(b.get("_l.x").unwrap(), &["1", "2"]);
        assert_eq!(b.get("_l.y").unwrap(), &["q r", "?"]);
        // A form feed separates tokens like a space (a loop holding one once hung).
        let b = parse_block("data_x\nloop_\n_l.x\n_l.y\n1\x0c2\n3 4\n", &["_l.y"]).unwrap();
        assert_eq!(b.get("_l.y").unwrap(), &["2", "4"]);
        // Tags not asked for are not kept.
        let b = parse_block(text, &["_l.y"]).unwrap();
        assert!(b.get("_l.x").is_none() && b.get("_a.b").is_none());
        assert_eq!(b.get("_l.y").unwrap(), &["q r", "?"]);
    }

    #[test]
    fn truncated_loops_and_strings_are_errors() {
        assert!(parse_block("data_x\nloop_\n_l.x\n_l.y\n1 2\n3\n", &[]).is_err());
        assert!(parse_block("data_x\n_a.b 'open\n", &[]).is_err());
        let err = parse_block("data_x\nloop_\n'open\n", &[]).err().unwrap();
        assert!(err.contains("unterminated quoted string"), "{err}");
        assert!(parse_block("data_x\n_a.c\n;never closed\n", &[]).is_err());
        assert!(parse_block("not cif at all", &[]).is_err());
        assert!(parse_block("", &[]).is_err());
    }
}
