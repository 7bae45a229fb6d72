//! A small CIF 1.1 reader: the first data block's items and loops as borrowed strings, with
//! Biopython's `MMCIF2Dict` tokenization (quotes end at a quote followed by whitespace,
//! `;` text fields, `#` comments at the start of a token).

use std::collections::HashMap;

/// Items of one data block: tag (lower case) → values (one for a plain item, one per row for
/// a loop column).
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

fn tokens(text: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let n = bytes.len();
    let mut line_start = true;
    while i < n {
        let c = bytes[i];
        if c == b'\n' {
            line_start = true;
            i += 1;
            continue;
        }
        if c == b' ' || c == b'\t' || c == b'\r' {
            line_start = false;
            i += 1;
            continue;
        }
        if c == b';' && line_start {
            // Text field: up to a line starting with ';'.
            let start = i + 1;
            match text[start..].find("\n;") {
                Some(k) => {
                    let end = start + k;
                    out.push(text[start..end].trim_end_matches('\r'));
                    i = end + 2;
                }
                None => return Err("unterminated ;-text field (truncated file?)".into()),
            }
            line_start = false;
            continue;
        }
        line_start = false;
        if c == b'#' {
            while i < n && bytes[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'\'' || c == b'"' {
            let start = i + 1;
            let mut j = start;
            loop {
                if j >= n || bytes[j] == b'\n' {
                    return Err(format!(
                        "unterminated quoted string at byte {i} (truncated file?)"
                    ));
                }
                if bytes[j] == c && (j + 1 >= n || bytes[j + 1].is_ascii_whitespace()) {
                    break;
                }
                j += 1;
            }
            out.push(&text[start..j]);
            i = j + 1;
            continue;
        }
        let start = i;
        while i < n && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        out.push(&text[start..i]);
    }
    Ok(out)
}

/// Parses the first data block of a CIF file. Loops whose value count is not a multiple of
/// their column count (a truncated or corrupt file) are an error.
pub(crate) fn parse_block(text: &str) -> Result<CifBlock<'_>, String> {
    let toks = tokens(text)?;
    let mut items: HashMap<String, Vec<&str>> = HashMap::new();
    let mut i = 0;
    let mut seen_block = false;
    while i < toks.len() {
        let t = toks[i];
        let lower = t.to_ascii_lowercase();
        if lower.starts_with("data_") {
            if seen_block {
                break; // only the first data block
            }
            seen_block = true;
            i += 1;
        } else if lower == "loop_" {
            i += 1;
            let mut tags = Vec::new();
            while i < toks.len() && toks[i].starts_with('_') {
                tags.push(toks[i].to_ascii_lowercase());
                i += 1;
            }
            if tags.is_empty() {
                return Err("loop_ without tags".into());
            }
            let start = i;
            while i < toks.len() {
                let v = toks[i];
                let lv = v.to_ascii_lowercase();
                if v.starts_with('_')
                    || lv == "loop_"
                    || lv.starts_with("data_")
                    || lv.starts_with("save_")
                {
                    break;
                }
                i += 1;
            }
            let values = &toks[start..i];
            if values.len() % tags.len() != 0 {
                return Err(format!(
                    "loop of {} has {} values, not a multiple of its {} columns (truncated or \
                     corrupt file)",
                    tags[0].split('.').next().unwrap_or(&tags[0]),
                    values.len(),
                    tags.len()
                ));
            }
            for (c, tag) in tags.iter().enumerate() {
                let col = values.iter().skip(c).step_by(tags.len()).copied();
                items.entry(tag.clone()).or_default().extend(col);
            }
        } else if t.starts_with('_') {
            let Some(v) = toks.get(i + 1) else {
                return Err(format!("item {t} has no value (truncated file?)"));
            };
            items.entry(lower).or_default().push(v);
            i += 2;
        } else if lower.starts_with("save_") || lower == "global_" || lower == "stop_" {
            i += 1;
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
        let b = parse_block(text).unwrap();
        assert_eq!(b.get("_a.b").unwrap(), &["it''s ok"]);
        assert_eq!(b.get("_a.c").unwrap(), &["line1\nline2"]);
        assert_eq!(b.get("_l.x").unwrap(), &["1", "2"]);
        assert_eq!(b.get("_l.y").unwrap(), &["q r", "?"]);
    }

    #[test]
    fn truncated_loops_and_strings_are_errors() {
        assert!(parse_block("data_x\nloop_\n_l.x\n_l.y\n1 2\n3\n").is_err());
        assert!(parse_block("data_x\n_a.b 'open\n").is_err());
        assert!(parse_block("data_x\n_a.c\n;never closed\n").is_err());
        assert!(parse_block("not cif at all").is_err());
        assert!(parse_block("").is_err());
    }
}
