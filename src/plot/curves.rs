//! Learning curves from the CSV files `snnc train` writes.
//!
//! `metrics.csv` has a header line and one row per epoch; the columns are
//! found by name, in any order: `epoch` (required, counted from 1; a row 0
//! may hold the untrained network's test scores), `train_loss`,
//! `test_loss`, `train_accuracy`, `test_accuracy` (fractions, 0 to 1) and
//! others (`seconds`, ...) that are not drawn. An empty cell has no value.
//!
//! `batches.csv` (optional) has the columns `epoch,batch,train_loss`, one
//! row per batch (or per logged batch), `batch` counted from 0 within its
//! epoch. Batch `b` of epoch `e` is drawn at `e - 1 + (b + 1) / n`, `n` the
//! number of batches of epoch `e` (its largest batch index + 1), so a
//! batch curve ends where its epoch's point is.

use std::path::Path;

use plotters::style::RGBColor;

use super::draw::{Body, Figure, Line, Note, PALETTE, Panel, Stroke, num, padded_range};
use crate::driver::Error;

/// The header `snnc train` writes to `metrics.csv`.
pub const METRICS_HEADER: &str = "epoch,train_loss,test_loss,test_accuracy,seconds";
/// The header of the per-batch file `batches.csv`.
pub const BATCHES_HEADER: &str = "epoch,batch,train_loss";

const TRAIN: RGBColor = PALETTE[0];
const TEST: RGBColor = PALETTE[1];
const BATCH: RGBColor = PALETTE[10];

/// A CSV file of numbers with a header line.
#[derive(Debug)]
pub(crate) struct Table {
    file: String,
    columns: Vec<String>,
    /// Each row with its line number.
    rows: Vec<(usize, Vec<Option<f64>>)>,
}

impl Table {
    /// Reads a table; `header` is the header expected, for messages.
    pub fn read(path: &Path, what: &str, header: &str) -> Result<Table, Error> {
        let file = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::User(format!("{file}: cannot read the {what}: {e}")))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.trim()))
            .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'));
        let Some((_, head)) = lines.next() else {
            return Err(Error::User(format!(
                "{file}: the {what} file is empty; expected a header line `{header}` and one row per line"
            )));
        };
        let columns: Vec<String> = head.split(',').map(|c| c.trim().to_string()).collect();
        let mut rows = Vec::new();
        for (line, l) in lines {
            let cells: Vec<&str> = l.split(',').map(str::trim).collect();
            if cells.len() != columns.len() {
                return Err(Error::User(format!(
                    "{file}:{line}: {} values, but the header has {} columns ({})",
                    cells.len(),
                    columns.len(),
                    columns.join(",")
                )));
            }
            let mut row = Vec::with_capacity(cells.len());
            for (cell, col) in cells.iter().zip(&columns) {
                row.push(if cell.is_empty() {
                    None
                } else {
                    Some(
                        cell.parse::<f64>().map_err(|_| {
                            Error::User(format!("{file}:{line}: column `{col}`: `{cell}` is not a number"))
                        })?,
                    )
                });
            }
            rows.push((line, row));
        }
        if rows.is_empty() {
            return Err(Error::User(format!(
                "{file}: the {what} file has a header but no rows; expected `{header}` and one row per line"
            )));
        }
        Ok(Table { file, columns, rows })
    }

    pub fn has_column(&self, column: &str) -> bool {
        self.columns.iter().any(|c| c == column)
    }

    /// `(line, values)` of the rows where every one of `columns` has a
    /// value, in file order.
    fn rows_of(&self, columns: &[&str]) -> Vec<(usize, Vec<f64>)> {
        let Some(idx) =
            columns.iter().map(|c| self.columns.iter().position(|x| x == c)).collect::<Option<Vec<usize>>>()
        else {
            return Vec::new();
        };
        self.rows
            .iter()
            .filter_map(|(line, row)| Some((*line, idx.iter().map(|&i| row[i]).collect::<Option<Vec<f64>>>()?)))
            .collect()
    }

    /// `(line, key, value)` of the rows where both columns have a value.
    fn pairs(&self, key: &str, column: &str) -> Vec<(usize, f64, f64)> {
        self.rows_of(&[key, column]).into_iter().map(|(line, v)| (line, v[0], v[1])).collect()
    }

    fn require(&self, columns: &[&str], header: &str) -> Result<(), Error> {
        match columns.iter().find(|c| !self.has_column(c)) {
            Some(c) => Err(Error::User(format!(
                "{}: no `{c}` column; the header is `{}`, expected `{header}`",
                self.file,
                self.columns.join(",")
            ))),
            None => Ok(()),
        }
    }
}

/// An exponential moving average over about `n / 25` points (at least 1,
/// at most 100), corrected for its start as TensorBoard's.
fn smooth(points: &[(f64, f64)]) -> (Vec<(f64, f64)>, usize) {
    let span = (points.len() / 25).clamp(1, 100);
    let alpha = 2.0 / (span as f64 + 1.0);
    let (mut avg, mut weight) = (0.0, 0.0);
    let res = points
        .iter()
        .map(|&(x, y)| {
            avg = (1.0 - alpha) * avg + alpha * y;
            weight = (1.0 - alpha) * weight + alpha;
            (x, avg / weight)
        })
        .collect();
    (res, span)
}

fn finite(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    points.into_iter().filter(|(x, y)| x.is_finite() && y.is_finite()).collect()
}

/// Builds the figure of training metrics, per-batch losses, or both.
pub(crate) fn figure(metrics: Option<&Table>, batches: Option<&Table>, name: &str) -> Result<Figure, Error> {
    let mut loss_lines = Vec::new();
    let mut loss_notes = Vec::new();
    let mut acc_lines = Vec::new();
    let mut acc_notes = Vec::new();
    let mut epochs = 0;
    let mut n_batches = 0;
    let mut xs: Vec<f64> = Vec::new();

    if let Some(b) = batches {
        b.require(&["epoch", "batch", "train_loss"], BATCHES_HEADER)?;
        let rows = b.rows_of(&["epoch", "batch", "train_loss"]);
        let mut per_epoch: std::collections::BTreeMap<i64, f64> = std::collections::BTreeMap::new();
        for (line, row) in &rows {
            let (epoch, batch) = (row[0], row[1]);
            if batch < 0.0 || batch.fract() != 0.0 {
                return Err(Error::User(format!(
                    "{}:{line}: `batch` is {}, but batches are counted 0, 1, 2, ... within an epoch",
                    b.file,
                    num(batch)
                )));
            }
            let n = per_epoch.entry(epoch.round() as i64).or_insert(0.0);
            *n = n.max(batch + 1.0);
        }
        let raw: Vec<(f64, f64)> = rows
            .iter()
            .map(|(_, row)| (row[0] - 1.0 + (row[1] + 1.0) / per_epoch[&(row[0].round() as i64)], row[2]))
            .collect();
        let raw = finite(raw);
        if !raw.is_empty() {
            n_batches = raw.len();
            xs.extend(raw.iter().map(|p| p.0));
            let (smoothed, span) = smooth(&raw);
            loss_lines.push(Line { points: raw, color: BATCH, stroke: Stroke::Thin });
            loss_lines.push(Line { points: smoothed, color: TRAIN, stroke: Stroke::Solid });
            loss_notes.push(Note::key("train loss per batch", BATCH, Stroke::Thin));
            loss_notes.push(Note::key(
                if span > 1 { format!("smoothed (EMA, ~{span} batches)") } else { "smoothed (no: few batches)".into() },
                TRAIN,
                Stroke::Solid,
            ));
        }
    }

    if let Some(m) = metrics {
        m.require(&["epoch"], METRICS_HEADER)?;
        if !["train_loss", "test_loss", "train_accuracy", "test_accuracy"].iter().any(|c| m.has_column(c)) {
            return Err(Error::User(format!(
                "{}: none of the columns train_loss, test_loss, train_accuracy, test_accuracy; the header is `{}`, expected `{METRICS_HEADER}`",
                m.file,
                m.columns.join(",")
            )));
        }
        let epoch_col = m.columns.iter().position(|c| c == "epoch").expect("required above");
        if let Some((line, _)) = m.rows.iter().find(|(_, row)| row[epoch_col].is_none()) {
            return Err(Error::User(format!("{}:{line}: the row has no `epoch`", m.file)));
        }
        // Epoch 0, if there, is the untrained network.
        epochs = m.rows.iter().filter(|(_, row)| row[epoch_col].is_some_and(|e| e > 0.0)).count();
        xs.extend(m.rows.iter().filter_map(|(_, row)| row[epoch_col]));
        for (column, label, color) in [("train_loss", "train loss", TRAIN), ("test_loss", "test loss", TEST)] {
            let points = finite(m.pairs("epoch", column).into_iter().map(|(_, e, v)| (e, v)).collect());
            if let Some(&(e, last)) = points.last() {
                loss_notes.push(Note::key(format!("{label} per epoch"), color, Stroke::Markers));
                loss_notes.push(Note::text(format!("   last {} (epoch {})", num(last), num(e))));
                loss_lines.push(Line { points, color, stroke: Stroke::Markers });
            }
        }
        for (column, label, color) in
            [("train_accuracy", "train accuracy", TRAIN), ("test_accuracy", "test accuracy", TEST)]
        {
            let values = m.pairs("epoch", column);
            if let Some((line, _, v)) = values.iter().find(|(_, _, v)| !(0.0..=1.0).contains(v)) {
                return Err(Error::User(format!(
                    "{}:{line}: `{column}` is {}, but accuracies are fractions from 0 to 1",
                    m.file,
                    num(*v)
                )));
            }
            let points: Vec<(f64, f64)> = values.iter().map(|&(_, e, v)| (e, 100.0 * v)).collect();
            if let Some(&(e, last)) = points.last() {
                let (best_e, best) = points.iter().fold(points[0], |b, &p| if p.1 > b.1 { p } else { b });
                acc_notes.push(Note::key(label, color, Stroke::Markers));
                acc_notes.push(Note::text(format!("   last {} % (epoch {})", num(last), num(e))));
                acc_notes.push(Note::text(format!("   best {} % (epoch {})", num(best), num(best_e))));
                acc_lines.push(Line { points, color, stroke: Stroke::Markers });
            }
        }
    }

    let mut panels = Vec::new();
    if !loss_lines.is_empty() {
        let y_range = padded_range(loss_lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)));
        panels.push(Panel {
            label: "loss".into(),
            title: "loss".into(),
            y_desc: "loss".into(),
            body: Body::Lines { y_range, lines: loss_lines },
            notes: loss_notes,
            height: 320,
        });
    }
    if !acc_lines.is_empty() {
        let (lo, hi) = padded_range(acc_lines.iter().flat_map(|l| l.points.iter().map(|p| p.1)));
        panels.push(Panel {
            label: "accuracy".into(),
            title: "accuracy".into(),
            y_desc: "accuracy (%)".into(),
            body: Body::Lines { y_range: (lo.max(0.0), hi.min(100.0)), lines: acc_lines },
            notes: acc_notes,
            height: 260,
        });
    }
    if panels.is_empty() {
        let file = metrics.or(batches).map_or("the metrics", |t| t.file.as_str());
        return Err(Error::User(format!("{file}: no values to draw: every loss and accuracy cell is empty")));
    }
    let (mut x0, mut x1) = xs.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| (a.min(x), b.max(x)));
    if n_batches > 0 {
        x0 = x0.min(x1.floor().min(x0.floor()));
    }
    if x1 - x0 < 1.0 {
        x0 -= 0.5;
        x1 += 0.5;
    }
    let pad = (x1 - x0) * 0.02;
    let mut title = format!("training: {name}");
    if epochs > 0 {
        title.push_str(&format!(", {epochs} epoch{}", if epochs == 1 { "" } else { "s" }));
    }
    if n_batches > 0 {
        title.push_str(&format!(", {n_batches} batch{}", if n_batches == 1 { "" } else { "es" }));
    }
    Ok(Figure { title, x_desc: "epoch".into(), x_range: (x0 - pad, x1 + pad), top_axis: None, panels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_starts_at_the_first_value() {
        let points: Vec<(f64, f64)> = (0..100).map(|i| (i as f64, if i % 2 == 0 { 1.0 } else { 3.0 })).collect();
        let (s, span) = smooth(&points);
        assert_eq!(span, 4);
        assert_eq!(s[0], (0.0, 1.0));
        assert!((s[99].1 - 2.0).abs() < 0.5);
    }
}
