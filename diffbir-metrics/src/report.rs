//! Reports of scored pairs: the mean, a text table, CSV and JSON lines.

use std::io::Write;

use serde_json::Value;

use crate::{Metric, Scores};

/// The scores of one pair, or the mean over pairs (`file` is then `"mean"`).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The pair's name, or `"mean"`.
    pub file: String,
    /// Its scores.
    pub scores: Scores,
}

/// The arithmetic mean of each metric over `rows` (all scored with the same metrics); an
/// infinite PSNR (identical images) makes the mean infinite, as it does in BasicSR's scripts.
pub fn mean(metrics: &[Metric], rows: &[Row]) -> Row {
    let scores = metrics
        .iter()
        .map(|&m| {
            let values: Vec<f64> = rows
                .iter()
                .flat_map(|r| r.scores.iter().filter(|(k, _)| *k == m).map(|(_, v)| *v))
                .collect();
            let mean = if values.is_empty() {
                f64::NAN
            } else {
                values.iter().sum::<f64>() / values.len() as f64
            };
            (m, mean)
        })
        .collect();
    Row {
        file: "mean".into(),
        scores,
    }
}

/// A score as the table and CSV print it: PSNR with 2 decimals, the others with 4; `inf`.
pub fn format_score(metric: Metric, value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.into();
    }
    match metric {
        Metric::Psnr | Metric::PsnrPyiqa => format!("{value:.2}"),
        _ => format!("{value:.4}"),
    }
}

/// An aligned text table: a header (`↑`/`↓` after each metric), one line per row.
pub fn table(metrics: &[Metric], rows: &[Row]) -> String {
    let header: Vec<String> = std::iter::once("file".to_string())
        .chain(metrics.iter().map(|m| {
            format!(
                "{}{}",
                m.name(),
                if m.higher_is_better() { "↑" } else { "↓" }
            )
        }))
        .collect();
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            std::iter::once(r.file.clone())
                .chain(r.scores.iter().map(|(m, v)| format_score(*m, *v)))
                .collect()
        })
        .collect();
    let width = |i: usize| {
        std::iter::once(&header)
            .chain(&lines)
            .map(|l| l.get(i).map_or(0, |c| c.chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..header.len()).map(width).collect();
    let mut out = String::new();
    for line in std::iter::once(&header).chain(&lines) {
        let cells: Vec<String> = line
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = widths[i].saturating_sub(c.chars().count());
                if i == 0 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One JSON object on one line: `file`, then a field per metric in the metrics' order; a
/// non-finite score is `null` (JSON has no infinity).
pub fn json_line(row: &Row) -> String {
    let field = |name: &str, value: Value| format!("{}:{value}", Value::from(name));
    let fields: Vec<String> = std::iter::once(field("file", Value::from(row.file.as_str())))
        .chain(row.scores.iter().map(|(m, v)| {
            let value = serde_json::Number::from_f64(*v).map_or(Value::Null, Value::Number);
            field(m.name(), value)
        }))
        .collect();
    format!("{{{}}}", fields.join(","))
}

/// CSV: a header `file,<metric>…`, then the rows with full precision (`inf` as such).
pub fn write_csv<W: Write>(out: W, metrics: &[Metric], rows: &[Row]) -> csv::Result<()> {
    let mut w = csv::Writer::from_writer(out);
    w.write_record(std::iter::once("file").chain(metrics.iter().map(|m| m.name())))?;
    for r in rows {
        w.write_record(
            std::iter::once(r.file.clone()).chain(r.scores.iter().map(|(_, v)| v.to_string())),
        )?;
    }
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        vec![
            Row {
                file: "a.png".into(),
                scores: vec![(Metric::Psnr, 30.0), (Metric::Lpips, 0.25)],
            },
            Row {
                file: "b.png".into(),
                scores: vec![(Metric::Psnr, f64::INFINITY), (Metric::Lpips, 0.0)],
            },
        ]
    }

    #[test]
    fn mean_table_json_and_csv() {
        let metrics = [Metric::Psnr, Metric::Lpips];
        let mut all = rows();
        all.push(mean(&metrics, &all));
        assert_eq!(
            all[2].scores,
            vec![(Metric::Psnr, f64::INFINITY), (Metric::Lpips, 0.125)]
        );
        assert_eq!(
            table(&metrics, &all),
            "file   psnr↑  lpips↓\na.png  30.00  0.2500\nb.png    inf  0.0000\nmean     inf  0.1250\n"
        );
        assert_eq!(
            json_line(&all[2]),
            r#"{"file":"mean","psnr":null,"lpips":0.125}"#
        );
        let mut csv = Vec::new();
        write_csv(&mut csv, &metrics, &all).unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "file,psnr,lpips\na.png,30,0.25\nb.png,inf,0\nmean,inf,0.125\n"
        );
    }
}
