//! `-w table`: the boxes of Go's `tablewriter` as etcdctl sets it up (upper-case centred
//! headers, cells aligned right).

/// Renders `header` and `rows` as a boxed table.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = header.iter().map(|h| h.to_uppercase()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(width(cell));
        }
    }
    let line = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = line.clone();
    out.push('|');
    for (h, w) in header.iter().zip(&widths) {
        let pad = w - width(h);
        let left = pad / 2;
        out.push_str(&format!(
            " {}{}{} |",
            " ".repeat(left),
            h,
            " ".repeat(pad - left)
        ));
    }
    out.push('\n');
    out.push_str(&line);
    for row in rows {
        out.push('|');
        for (cell, w) in row.iter().zip(&widths) {
            out.push_str(&format!(" {}{} |", " ".repeat(w - width(cell)), cell));
        }
        out.push('\n');
    }
    out.push_str(&line);
    out
}

/// Display width: one column per character (etcdctl's cells are ASCII).
fn width(s: &str) -> usize {
    s.chars().count()
}
