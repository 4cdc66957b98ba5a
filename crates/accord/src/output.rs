//! How results reach the terminal: aligned tables for people, JSON for
//! scripts (`--json`), the same data either way.

use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;

/// Prints `value` as pretty JSON.
pub fn json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints rows under a header, columns aligned.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.iter().map(|h| h.to_uppercase()));
    for row in rows {
        table.add_row(row);
    }
    // comfy-table pads every line, trailing spaces included: trim them.
    for line in table.to_string().lines() {
        println!("{}", line.trim_end());
    }
}

/// Prints `label: value` pairs, labels aligned.
pub fn fields(pairs: &[(&str, String)]) {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in pairs {
        println!("{k:<width$}  {v}");
    }
}

/// "3 of 120 (page 1)" under a paged listing.
pub fn page_footer(shown: usize, total: i64, page: u32, per_page: u32) {
    let pages = (total + i64::from(per_page) - 1) / i64::from(per_page.max(1));
    println!("{shown} shown of {total} (page {page} of {})", pages.max(1));
}
