//! CIF syntax helpers: value quoting and category (loop) rendering.
//!
//! Public so that model code can format extra categories (e.g. ModelCIF
//! `_ma_qa_metric_local`) for [`crate::mmcif::write_mmcif_with`].

use std::borrow::Cow;

/// Formats `value` as one CIF token, quoting it when it would otherwise be read as
/// something else. `?` and `.` stay unquoted: they are CIF's null markers (unknown,
/// inapplicable).
pub fn cif_value(value: &str) -> Cow<'_, str> {
    if value == "?" || value == "." || is_bare(value) {
        return Cow::Borrowed(value);
    }
    let closes = |q: char| {
        value
            .char_indices()
            .any(|(i, c)| c == q && value[i + 1..].starts_with(char::is_whitespace))
    };
    if !value.contains(['\n', '\r']) {
        for q in ['\'', '"'] {
            if !closes(q) {
                return Cow::Owned(format!("{q}{value}{q}"));
            }
        }
    }
    Cow::Owned(format!("\n;{value}\n;\n"))
}

/// Whether `value` can be written without quotes.
fn is_bare(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    !value.is_empty()
        && !value.starts_with(['_', '#', '$', '\'', '"', '[', ']', ';'])
        && !value.contains(|c: char| c.is_whitespace() || c.is_control())
        && !lower.starts_with("data_")
        && !lower.starts_with("save_")
        && !matches!(lower.as_str(), "loop_" | "stop_" | "global_")
}

/// One CIF category: a name such as `_atom_site`, its item names and rows of values.
/// Rendered as `_cat.item value` pairs when it has one row, as a `loop_` otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct CifCategory {
    name: String,
    items: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl CifCategory {
    /// A category without rows; `name` includes the leading underscore.
    pub fn new(name: &str, items: &[&str]) -> Self {
        Self {
            name: name.to_string(),
            items: items.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row of unquoted values (quoting happens when rendering).
    ///
    /// # Panics
    /// When the row length differs from the number of items (a programming error).
    pub fn push_row<S: Into<String>>(&mut self, row: impl IntoIterator<Item = S>) {
        let row: Vec<String> = row.into_iter().map(Into::into).collect();
        assert_eq!(
            row.len(),
            self.items.len(),
            "row length does not match the items of {}",
            self.name
        );
        self.rows.push(row);
    }

    /// Renders the category followed by a `#` separator line; nothing if it has no rows.
    pub fn render(&self) -> String {
        let mut out = String::new();
        match self.rows.as_slice() {
            [] => return out,
            [row] => {
                let width = self.items.iter().map(String::len).max().unwrap_or(0);
                for (item, value) in self.items.iter().zip(row) {
                    let tag = format!("{}.{item}", self.name);
                    out.push_str(&format!(
                        "{tag:<w$} {}\n",
                        cif_value(value),
                        w = self.name.len() + 1 + width
                    ));
                }
            }
            rows => {
                out.push_str("loop_\n");
                for item in &self.items {
                    out.push_str(&format!("{}.{item}\n", self.name));
                }
                for row in rows {
                    let values: Vec<_> = row.iter().map(|v| cif_value(v)).collect();
                    out.push_str(values.join(" ").trim_start_matches('\n'));
                    if !out.ends_with('\n') {
                        out.push('\n');
                    }
                }
            }
        }
        out.push_str("#\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(cif_value("CA"), "CA");
        assert_eq!(cif_value("O5'"), "O5'");
        assert_eq!(cif_value("-1.250"), "-1.250");
        assert_eq!(cif_value("?"), "?");
        assert_eq!(cif_value("."), ".");
        assert_eq!(cif_value(""), "''");
        assert_eq!(cif_value("two words"), "'two words'");
        assert_eq!(cif_value("_x"), "'_x'");
        assert_eq!(cif_value("#1"), "'#1'");
        assert_eq!(cif_value("data_x"), "'data_x'");
        assert_eq!(cif_value("LOOP_"), "'LOOP_'");
        // A quote only ends a quoted value when whitespace follows it.
        assert_eq!(cif_value("it's ok"), "'it's ok'");
        assert_eq!(cif_value("x' y"), "\"x' y\"");
        assert_eq!(cif_value("a' \"b\" c"), "\n;a' \"b\" c\n;\n");
        assert_eq!(cif_value("line\nbreak"), "\n;line\nbreak\n;\n");
    }

    #[test]
    fn single_row_renders_as_pairs() {
        let mut c = CifCategory::new("_entry", &["id", "long_name"]);
        c.push_row(["x y", "1"]);
        assert_eq!(
            c.render(),
            "_entry.id        'x y'\n_entry.long_name 1\n#\n"
        );
    }

    #[test]
    fn multiple_rows_render_as_loop() {
        let mut c = CifCategory::new("_t", &["a", "b"]);
        c.push_row(["1", "x"]);
        c.push_row(["2", "a b"]);
        assert_eq!(c.render(), "loop_\n_t.a\n_t.b\n1 x\n2 'a b'\n#\n");
        assert_eq!(CifCategory::new("_t", &["a"]).render(), "");
    }

    #[test]
    #[should_panic(expected = "row length")]
    fn wrong_row_length_panics() {
        CifCategory::new("_t", &["a", "b"]).push_row(["1"]);
    }
}
