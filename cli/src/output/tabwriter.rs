//! Docker's table layout: Go's `text/tabwriter` as `docker` configures it (minimum cell width
//! 10, padding 3, spaces). Cells end at a `\t`; the text after a line's last tab is written as
//! it is, so a row whose last cells are empty keeps the padding of the cells before them.

/// The narrowest a tab-terminated cell is, padding included.
const MIN_WIDTH: usize = 10;
/// Spaces added after the widest cell of a column.
const PADDING: usize = 3;

/// Lays out tab-separated text. Each column's width is worked out over every consecutive line
/// that has a cell in that column, as Go's tabwriter does.
pub fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_terminator('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    // widths[i][c]: the width of cell c of line i (only for tab-terminated cells).
    let mut widths: Vec<Vec<usize>> = lines.iter().map(|l| vec![0; l.len() - 1]).collect();
    let columns = lines.iter().map(|l| l.len() - 1).max().unwrap_or(0);
    for c in 0..columns {
        let mut start = 0;
        while start < lines.len() {
            if lines[start].len() - 1 <= c {
                start += 1;
                continue;
            }
            let mut end = start;
            let mut width = MIN_WIDTH;
            while end < lines.len() && lines[end].len() - 1 > c {
                width = width.max(lines[end][c].chars().count() + PADDING);
                end += 1;
            }
            for w in &mut widths[start..end] {
                w[c] = width;
            }
            start = end;
        }
    }
    let mut out = String::new();
    for (cells, widths) in lines.iter().zip(&widths) {
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if let Some(w) = widths.get(i) {
                out.extend(std::iter::repeat_n(
                    ' ',
                    w.saturating_sub(cell.chars().count()),
                ));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_widest_cell_plus_three_at_least_ten() {
        let t = tabwrite("ID\tNAME\tPORTS\nabcdefabcdef\tweb\t*:80->80/tcp\nx\tlonger-name\t\n");
        assert_eq!(
            t,
            "ID             NAME          PORTS\n\
             abcdefabcdef   web           *:80->80/tcp\n\
             x              longer-name   \n"
        );
    }

    #[test]
    fn lines_without_tabs_break_column_blocks() {
        let t = tabwrite("a\tb\nsection\nlonglonglong\tc\n");
        assert_eq!(t, "a         b\nsection\nlonglonglong   c\n");
    }

    #[test]
    fn widths_count_characters_not_bytes() {
        let t = tabwrite("é\tx\n");
        assert_eq!(t, "é         x\n");
    }
}
