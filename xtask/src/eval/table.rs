//! The results of `cargo xtask eval`: one CSV row per image, degradation and method, and a
//! markdown table of the means in the layout of DiffBIR's tables (a block per test set and
//! degradation, a row per metric with its direction, a column per method, the best in bold).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use diffbir::metrics::Metric;
use diffbir::metrics::report::format_score;

/// One scored output.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The reference image's file name.
    pub image: String,
    /// The degradation's name.
    pub degradation: String,
    /// `stage1` or `diffbir`.
    pub method: String,
    /// One score per metric, in the run's order.
    pub scores: Vec<f64>,
}

/// The CSV of `rows`: `image,degradation,method,<metric>…`, scores at full precision.
pub fn csv(metrics: &[Metric], rows: &[Row]) -> Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["image", "degradation", "method"];
    header.extend(metrics.iter().map(|m| m.name()));
    w.write_record(&header)?;
    for r in rows {
        let mut record = vec![r.image.clone(), r.degradation.clone(), r.method.clone()];
        record.extend(r.scores.iter().map(f64::to_string));
        w.write_record(&record)?;
    }
    Ok(w.into_inner()?)
}

/// The rows of a CSV written by [`csv`] with the same metrics; `None` when the file does not
/// exist.
pub fn read_csv(path: &Path, metrics: &[Metric]) -> Result<Option<Vec<Row>>> {
    if !path.exists() {
        return Ok(None);
    }
    let mut reader = csv::Reader::from_path(path)?;
    let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    let mut expected = vec!["image".to_string(), "degradation".into(), "method".into()];
    expected.extend(metrics.iter().map(|m| m.name().to_string()));
    if header != expected {
        anyhow::bail!(
            "{} has the columns {header:?}, this run writes {expected:?}",
            path.display()
        );
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record?;
        let scores = record
            .iter()
            .skip(3)
            .map(|v| v.parse::<f64>())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}: a score is not a number", path.display()))?;
        rows.push(Row {
            image: record[0].to_string(),
            degradation: record[1].to_string(),
            method: record[2].to_string(),
            scores,
        });
    }
    Ok(Some(rows))
}

/// The markdown table: `title` lines first, then per degradation the mean of each metric for
/// each method (`methods`: the CSV name and the column title).
pub fn markdown(
    title: &[String],
    metrics: &[Metric],
    degradations: &[String],
    methods: &[(&str, String)],
    rows: &[Row],
) -> String {
    let mut out = String::new();
    for line in title {
        out.push_str(line);
        out.push('\n');
    }
    for degradation in degradations {
        let mut means: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut images = 0;
        for (method, _) in methods {
            let mine: Vec<&Row> = rows
                .iter()
                .filter(|r| &r.degradation == degradation && r.method == *method)
                .collect();
            images = images.max(mine.len());
            let mean = (0..metrics.len())
                .map(|k| mine.iter().map(|r| r.scores[k]).sum::<f64>() / mine.len().max(1) as f64)
                .collect();
            means.insert(method, mean);
        }
        out.push_str(&format!(
            "\n## {degradation} ({images} images)\n\n| metric |"
        ));
        for (_, name) in methods {
            out.push_str(&format!(" {name} |"));
        }
        out.push_str("\n| --- |");
        out.push_str(&" ---: |".repeat(methods.len()));
        out.push('\n');
        for (k, metric) in metrics.iter().enumerate() {
            let arrow = if metric.higher_is_better() {
                "↑"
            } else {
                "↓"
            };
            let values: Vec<f64> = methods.iter().map(|(m, _)| means[m][k]).collect();
            let best = values
                .iter()
                .copied()
                .filter(|v| !v.is_nan())
                .reduce(|a, b| {
                    if metric.higher_is_better() == (b > a) {
                        b
                    } else {
                        a
                    }
                });
            out.push_str(&format!("| {}{arrow} |", metric.name().to_uppercase()));
            for v in values {
                let cell = format_score(*metric, v);
                if Some(v) == best && methods.len() > 1 {
                    out.push_str(&format!(" **{cell}** |"));
                } else {
                    out.push_str(&format!(" {cell} |"));
                }
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_bolds_the_best_of_each_row_and_the_csv_reads_back() {
        let metrics = [Metric::Psnr, Metric::Lpips];
        let row = |image: &str, method: &str, scores: [f64; 2]| Row {
            image: image.into(),
            degradation: "codeformer".into(),
            method: method.into(),
            scores: scores.to_vec(),
        };
        let rows = vec![
            row("a.png", "stage1", [24.0, 0.40]),
            row("a.png", "diffbir", [22.0, 0.20]),
            row("b.png", "stage1", [26.0, 0.30]),
            row("b.png", "diffbir", [23.0, 0.25]),
        ];
        let table = markdown(
            &["# Evaluation".into()],
            &metrics,
            &["codeformer".into()],
            &[("stage1", "Stage 1".into()), ("diffbir", "DiffBIR".into())],
            &rows,
        );
        assert_eq!(
            table,
            "# Evaluation\n\n## codeformer (2 images)\n\n| metric | Stage 1 | DiffBIR |\n\
             | --- | ---: | ---: |\n| PSNR↑ | **25.00** | 22.50 |\n| LPIPS↓ | 0.3500 | **0.2250** |\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.csv");
        std::fs::write(&path, csv(&metrics, &rows).unwrap()).unwrap();
        assert_eq!(read_csv(&path, &metrics).unwrap().unwrap(), rows);
        assert!(
            read_csv(&path, &[Metric::Ssim])
                .unwrap_err()
                .to_string()
                .contains("columns")
        );
    }
}
