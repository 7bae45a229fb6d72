//! Search results as files: the A3M MSA AlphaFold2 and ColabFold read, and a hit table.

use std::fmt::Write;

use crate::db::Database;
use crate::search::Hit;

/// The A3M of one query: the query first (as given), then each hit's aligned region with
/// match columns in upper case, insertions in lower case and deletions as `-`, padded with
/// `-` to the query's length.
pub fn a3m(query_name: &str, query_letters: &str, hits: &[&Hit], db: &Database) -> String {
    let m = query_letters.len();
    let mut out = format!(">{query_name}\n{query_letters}\n");
    for hit in hits {
        let target = db.sequence(hit.target as usize);
        let alignment = &hit.alignment;
        let _ = writeln!(out, ">{}", db.name(hit.target as usize));
        out.extend(std::iter::repeat_n('-', alignment.query_start));
        for column in alignment.columns() {
            out.push(match column {
                (Some(_), Some(j)) => letter(target[j]),
                (None, Some(j)) => letter(target[j]).to_ascii_lowercase(),
                _ => '-',
            });
        }
        out.extend(std::iter::repeat_n(
            '-',
            m.saturating_sub(alignment.query_end + 1),
        ));
        out.push('\n');
    }
    out
}

/// One tab-separated row per hit: target id, E-value, bit score, identity, query start and
/// end, target start and end (1-based, inclusive).
pub fn hit_table(hits: &[Hit], db: &Database) -> String {
    let mut out = String::new();
    for hit in hits {
        let a = &hit.alignment;
        let _ = writeln!(
            out,
            "{}\t{:.3e}\t{:.1}\t{:.3}\t{}\t{}\t{}\t{}",
            db.name(hit.target as usize),
            hit.evalue,
            hit.bits,
            hit.identity,
            a.query_start + 1,
            a.query_end + 1,
            a.target_start + 1,
            a.target_end + 1
        );
    }
    out
}

fn letter(code: u8) -> char {
    crate::alphabet::LETTERS[code as usize] as char
}
