//! Bytes as hex and ASCII, 16 to a row, as tshark's `-x` and the TUI's hex pane show them.

/// A hex dump: offset, 16 bytes in two groups of 8, and the printable characters.
pub fn hex_dump(bytes: &[u8]) -> Vec<String> {
    (0..bytes.len().div_ceil(16))
        .map(|row| hex_row(bytes, row))
        .collect()
}

/// Row `row` (16 bytes) of [`hex_dump`].
pub fn hex_row(bytes: &[u8], row: usize) -> String {
    use std::fmt::Write;
    let chunk = bytes.get(row * 16..).unwrap_or_default();
    let chunk = &chunk[..chunk.len().min(16)];
    let mut out = format!("{:04x}  ", row * 16);
    for (j, b) in chunk.iter().enumerate() {
        if j == 8 {
            out.push(' ');
        }
        let _ = write!(out, "{b:02x} ");
    }
    let width = 6 + 49;
    while out.len() < width {
        out.push(' ');
    }
    out.push(' ');
    out.extend(chunk.iter().map(|&b| {
        if (0x20..0x7f).contains(&b) {
            b as char
        } else {
            '.'
        }
    }));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_rows_line_up() {
        let bytes: Vec<u8> = (0..20).collect();
        let rows = hex_dump(&bytes);
        assert_eq!(rows.len(), 2);
        assert!(rows[0].starts_with("0000  00 01 02 03 04 05 06 07  08 09"));
        // The printable column starts at the same place on a short last row.
        assert_eq!(rows[0].find('.'), rows[1].find('.'));
    }
}
