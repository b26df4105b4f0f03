//! Plain column-aligned tables, as `kubectl get` prints them: upper-case header, columns
//! separated by three spaces, no borders, no trailing blanks.

/// A table being built row by row.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

const GAP: &str = "   ";

impl Table {
    pub fn new(header: Vec<String>) -> Self {
        Table {
            header,
            rows: Vec::new(),
        }
    }

    pub fn add_row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table with every column as wide as its widest cell.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        out.push_str(&line(&self.header, &widths));
        for row in &self.rows {
            out.push_str(&line(row, &widths));
        }
        out
    }
}

/// One line, each cell padded to its column's width (the last cell is not padded).
pub fn line(cells: &[String], widths: &[usize]) -> String {
    let mut s = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            s.push_str(GAP);
        }
        s.push_str(cell);
        if i + 1 < cells.len() {
            let w = widths.get(i).copied().unwrap_or(0);
            s.extend(std::iter::repeat_n(
                ' ',
                w.saturating_sub(cell.chars().count()),
            ));
        }
    }
    s.truncate(s.trim_end().len());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn columns_align() {
        let mut t = Table::new(strings(&["NAME", "MODE", "AGE"]));
        t.add_row(strings(&["voting_vote", "replicated", "5s"]));
        t.add_row(strings(&["db", "global", ""]));
        assert_eq!(
            t.render(),
            "NAME          MODE         AGE\n\
             voting_vote   replicated   5s\n\
             db            global\n"
        );
    }
}
