//! How numbers, counts, times and tables are written for people: thousands separators,
//! singular and plural, column widths computed from the cells, times in RFC 3339.

use std::fmt::Write as _;

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Like [`thousands`], for signed numbers.
pub fn thousands_i(n: i64) -> String {
    if n < 0 {
        format!("-{}", thousands(n.unsigned_abs()))
    } else {
        thousands(n as u64)
    }
}

/// `count(1, "file")` → `1 file`, `count(2000, "file")` → `2,000 files`.
pub fn count(n: u64, singular: &str) -> String {
    plural(n, singular, &format!("{singular}s"))
}

/// [`count`] with an irregular plural.
pub fn plural(n: u64, singular: &str, plural: &str) -> String {
    format!(
        "{} {}",
        thousands(n),
        if n == 1 { singular } else { plural }
    )
}

/// A rate per second, rounded: `12,345`.
pub fn per_sec(n: u64, secs: f64) -> String {
    thousands((n as f64 / secs.max(0.001)).round() as u64)
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn time_ms(ms: i64) -> String {
    if ms < 0 {
        return format!("{ms} ms");
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64);
    ots_format::time::rfc3339(t)
}

/// A duration in seconds, short: `0.4 s`, `31.4 s`, `12 min 5 s`, `3 h 2 min`.
pub fn duration_secs(secs: f64) -> String {
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        format!("{} min {} s", (secs / 60.0) as u64, (secs % 60.0) as u64)
    } else {
        format!(
            "{} h {} min",
            (secs / 3600.0) as u64,
            ((secs % 3600.0) / 60.0) as u64
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A text table whose column widths come from its widest cell; two spaces between columns, no
/// padding after the last one.
pub struct Table {
    headers: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[(&str, Align)]) -> Self {
        Table {
            headers: headers.iter().map(|(h, a)| (h.to_string(), *a)).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let n = self.headers.len();
        let width = |s: &str| s.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|(h, _)| width(h)).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(width(c));
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.headers.iter().map(|(h, _)| h.clone()).collect();
        for r in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, (_, align)) in self.headers.iter().enumerate() {
                let cell = r.get(i).map_or("", String::as_str);
                let pad = widths[i].saturating_sub(width(cell));
                if i > 0 {
                    line.push_str("  ");
                }
                match align {
                    Align::Left if i + 1 == n => line.push_str(cell),
                    Align::Left => {
                        line.push_str(cell);
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(cell);
                    }
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_counts() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands_i(-86400), "-86,400");
        assert_eq!(count(1, "file"), "1 file");
        assert_eq!(count(0, "file"), "0 files");
        assert_eq!(count(12000, "row"), "12,000 rows");
        assert_eq!(plural(1, "entry", "entries"), "1 entry");
        assert_eq!(time_ms(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn tables_align_whatever_the_lengths() {
        let mut t = Table::new(&[
            ("NAME", Align::Left),
            ("N", Align::Right),
            ("NOTE", Align::Left),
        ]);
        t.row(vec!["a".into(), "1".into(), "x".into()]);
        t.row(vec![
            "a_very_long_name".into(),
            "1,000,000".into(),
            "".into(),
        ]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME                      N  NOTE");
        assert_eq!(lines[1], "a                         1  x");
        assert_eq!(lines[2], "a_very_long_name  1,000,000");
    }
}
