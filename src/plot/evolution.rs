//! Weight evolution: how a plastic weight changed during a run, from the
//! snapshots of `snnc run --record REC --record-every K`
//! (`crate::snapshots`), drawn by `snnc plot REC -o FIG.png`.
//!
//! Per plastic weight, a panel whose x axis is the step and y axis the
//! weight's value: at each snapshot a column of the weights' histogram
//! (`BINS` bins between the smallest and the largest weight of all
//! snapshots; white for no weight, dark blue for the column's fullest bin, on a square-root
//! scale so that a few weights still show), with the mean (orange) and the
//! smallest and largest weight (grey) as lines. When the weight's fields
//! are images (`fields::geometry`: a Linear whose input is a square number,
//! or a one-channel convolution), a row below shows the receptive fields of
//! its first `MAX_FIELDS` neurons at up to `MAX_COLUMNS` snapshots (the
//! first, the last, and evenly spaced ones between), all on one grey scale.
//! PNG only.

use std::collections::BTreeMap;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use snnc_runtime::Tensor;

use super::draw::{PALETTE, encode_png, num};
use super::fields;
use super::text::GlyphText;
use crate::driver::Error;
use crate::snapshots::Snapshots;

/// Histogram bins of a column.
pub const BINS: usize = 48;
/// Receptive-field grids shown per weight, at most.
pub const MAX_COLUMNS: usize = 5;
/// Neurons whose fields are shown, at most (a 4 × 4 grid).
pub const MAX_FIELDS: usize = 16;

const WIDTH: u32 = 1200;
const TITLE: u32 = 36;
const HIST: u32 = 380;
const LABEL: u32 = 24;
const FONT: &str = "sans-serif";

/// The histogram of one snapshot: counts per bin.
pub fn histogram(values: &[f64], lo: f64, hi: f64) -> Vec<usize> {
    let mut counts = vec![0; BINS];
    let span = if hi > lo { hi - lo } else { 1.0 };
    for &v in values.iter().filter(|v| v.is_finite()) {
        let b = (((v - lo) / span) * BINS as f64).floor().clamp(0.0, (BINS - 1) as f64) as usize;
        counts[b] += 1;
    }
    counts
}

/// Which snapshots get a receptive-field grid: up to `MAX_COLUMNS`, evenly
/// spaced, the first and the last included.
pub fn chosen(n: usize) -> Vec<usize> {
    if n <= MAX_COLUMNS {
        return (0..n).collect();
    }
    let mut res: Vec<usize> =
        (0..MAX_COLUMNS).map(|i| (i * (n - 1) + (MAX_COLUMNS - 1) / 2) / (MAX_COLUMNS - 1)).collect();
    res.dedup();
    res
}

/// One snapshot of a stacked `[n, ...]` tensor.
fn snapshot(t: &Tensor, i: usize) -> Tensor {
    let per = t.shape[1..].iter().product::<usize>();
    Tensor { shape: t.shape[1..].to_vec(), dtype: t.dtype, data: t.data[i * per..(i + 1) * per].to_vec() }
}

/// The fields of the first `MAX_FIELDS` neurons of one snapshot, on the
/// scale `lo..hi`: pixels, width, height.
fn field_grid(name: &str, w: &Tensor, lo: f64, hi: f64) -> Result<(Vec<u8>, u32, u32), Error> {
    let (out, h, wd) = fields::geometry(name, w)?;
    let shown = out.min(MAX_FIELDS);
    let mut shape = w.shape.clone();
    shape[0] = shown;
    let t = Tensor { shape, dtype: w.dtype, data: w.data[..shown * h * wd].to_vec() };
    fields::pixels_on(name, &t, Some((lo, hi)))
}

/// The figure of the snapshots as PNG bytes, and a line for the user.
pub fn png(s: &Snapshots) -> Result<(Vec<u8>, String), Error> {
    super::register_font()?;
    if s.weights.is_empty() || s.steps.is_empty() {
        return Err(Error::User("the recording holds no weight snapshots to draw".into()));
    }
    // Blocks: per weight, its histogram panel and maybe a fields row.
    struct Block<'a> {
        name: &'a str,
        t: &'a Tensor,
        lo: f64,
        hi: f64,
        grids: Vec<(usize, Vec<u8>, u32, u32)>,
    }
    let mut blocks = Vec::new();
    for (name, t) in &s.weights {
        let finite = || t.data.iter().copied().filter(|v| v.is_finite());
        let lo = finite().fold(f64::INFINITY, f64::min);
        let hi = finite().fold(f64::NEG_INFINITY, f64::max);
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
        let mut grids = Vec::new();
        if fields::geometry(name, &snapshot(t, 0)).is_ok() {
            for i in chosen(s.steps.len()) {
                let (rgb, w, h) = field_grid(name, &snapshot(t, i), lo, hi)?;
                grids.push((i, rgb, w, h));
            }
        }
        blocks.push(Block { name, t, lo, hi, grids });
    }
    let grid_row = |b: &Block<'_>| {
        let w: u32 = b.grids.iter().map(|g| g.2 + 16).sum();
        let h = b.grids.iter().map(|g| g.3).max().unwrap_or(0);
        (w, if b.grids.is_empty() { 0 } else { h + LABEL + 12 })
    };
    let width = blocks.iter().map(|b| grid_row(b).0 + 40).fold(WIDTH, u32::max);
    let heights: Vec<u32> = blocks.iter().map(|b| TITLE + HIST + grid_row(b).1).collect();
    let height: u32 = heights.iter().sum::<u32>() + 8;
    let internal = |e: String| Error::Internal(format!("cannot draw the weight evolution: {e}"));
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    // Where each grid goes: (x, y, index into blocks, index into grids).
    let mut places = Vec::new();
    {
        let font = ab_glyph::FontRef::try_from_slice(super::FONT).map_err(|e| internal(e.to_string()))?;
        let bitmap = BitMapBackend::with_buffer(&mut pixels, (width, height));
        let root = GlyphText::new(bitmap, font).into_drawing_area();
        root.fill(&WHITE).map_err(|e| internal(e.to_string()))?;
        let mut y0 = 0i32;
        for (bi, (b, &h)) in blocks.iter().zip(&heights).enumerate() {
            let area = root.clone().shrink((0, y0), (width, h));
            draw_block(&area, s, b.name, b.t, b.lo, b.hi).map_err(|e| internal(e.to_string()))?;
            let mut x = 30i32;
            let y = y0 + (TITLE + HIST) as i32;
            for (gi, (i, _, gw, _)) in b.grids.iter().enumerate() {
                let style = (FONT, 14).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Top));
                let text = format!("step {}", s.steps[*i]);
                root.draw_text(&text, &style, (x, y + 4)).map_err(|e| internal(e.to_string()))?;
                places.push((x as u32, (y + LABEL as i32) as u32, bi, gi));
                x += *gw as i32 + 16;
            }
            y0 += h as i32;
        }
        root.present().map_err(|e| internal(e.to_string()))?;
    }
    for (x, y, bi, gi) in places {
        let (_, rgb, gw, gh) = &blocks[bi].grids[gi];
        for row in 0..*gh {
            let src = (row * gw * 3) as usize;
            let dst = (((y + row) * width + x) * 3) as usize;
            pixels[dst..dst + *gw as usize * 3].copy_from_slice(&rgb[src..src + *gw as usize * 3]);
        }
    }
    let png = encode_png(&pixels, width, height).map_err(|e| internal(e.to_string()))?;
    let names: Vec<String> = blocks.iter().map(|b| format!("`{}`", b.name)).collect();
    let with_fields = blocks.iter().filter(|b| !b.grids.is_empty()).count();
    let msg = format!(
        "the evolution of {} over {} snapshots (steps {}..{}){}",
        names.join(", "),
        s.steps.len(),
        s.steps[0],
        s.steps[s.steps.len() - 1],
        if with_fields > 0 { ", with receptive fields" } else { "" }
    );
    Ok((png, msg))
}

type Res<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw_block<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    s: &Snapshots,
    name: &str,
    t: &Tensor,
    lo: f64,
    hi: f64,
) -> Res<DB> {
    let n = s.steps.len();
    let per = t.data.len() / n.max(1);
    let (width, _) = area.dim_in_pixel();
    let title = format!("`{name}` {:?}: weight distribution per snapshot, mean, min and max", &t.shape[1..]);
    let style = (FONT, 17).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text(&title, &style, (width as i32 / 2, TITLE as i32 / 2))?;
    let (_, rest) = area.split_vertically(TITLE);
    let (chart_area, notes) = rest.split_vertically(HIST).0.split_horizontally(width.saturating_sub(200));
    let last = s.steps[n - 1] as f64;
    let (x0, x1) = if last > 0.0 { (0.0, last) } else { (-0.5, 0.5) };
    let pad = if hi > lo { (hi - lo) * 0.04 } else { 0.5 };
    let (y0, y1) = (lo - pad, hi + pad);
    let mut chart = ChartBuilder::on(&chart_area)
        .margin_left(10)
        .margin_right(14)
        .margin_top(6)
        .y_label_area_size(64)
        .x_label_area_size(46)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let formatter = |v: &f64| num(*v);
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(226, 226, 232))
        .x_labels(12)
        .y_labels(8)
        .x_label_formatter(&formatter)
        .y_label_formatter(&formatter)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .x_desc("step")
        .y_desc("weight")
        .draw()?;
    // Column i spans half-way to its neighbours.
    let edge = |i: usize| -> f64 {
        match i {
            0 => x0,
            i if i >= n => x1,
            i => (s.steps[i - 1] + s.steps[i]) as f64 / 2.0,
        }
    };
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut rects = Vec::new();
    let mut stats = Vec::new();
    for i in 0..n {
        let vals = &t.data[i * per..(i + 1) * per];
        let counts = histogram(vals, lo, hi);
        let (left, right) = (edge(i), edge(i + 1));
        let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64;
        for (b, &c) in counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let f = (c as f64 / top).sqrt();
            let shade = |full: u8| (255.0 - f * (255.0 - f64::from(full))).round() as u8;
            let color = RGBColor(shade(8), shade(48), shade(107));
            let (b0, b1) = (lo + span * b as f64 / BINS as f64, lo + span * (b + 1) as f64 / BINS as f64);
            let (b0, b1) = if hi > lo { (b0, b1) } else { (lo - 0.02, lo + 0.02) };
            rects.push(Rectangle::new([(left, b0), (right, b1)], color.filled()));
        }
        let finite: Vec<f64> = vals.iter().copied().filter(|v| v.is_finite()).collect();
        let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        stats.push((s.steps[i] as f64, mean, min, max));
    }
    chart.draw_series(rects)?;
    let grey = RGBColor(90, 90, 90);
    let line = |k: usize| stats.iter().map(move |s| (s.0, [s.1, s.2, s.3][k]));
    chart.draw_series(LineSeries::new(line(1), grey.stroke_width(1)))?;
    chart.draw_series(LineSeries::new(line(2), grey.stroke_width(1)))?;
    chart.draw_series(LineSeries::new(line(0), PALETTE[1].stroke_width(2)))?;
    let note = (FONT, 12).into_font().color(&BLACK);
    let (first, end) = (stats[0], stats[n - 1]);
    let lines = [
        (Some(PALETTE[1]), "mean".to_string()),
        (Some(grey), "min, max".to_string()),
        (None, format!("{per} weights, {n} snapshots")),
        (None, format!("mean {} -> {}", num(first.1), num(end.1))),
        (None, format!("min {} -> {}", num(first.2), num(end.2))),
        (None, format!("max {} -> {}", num(first.3), num(end.3))),
        (None, "shade: weights in a bin, over".to_string()),
        (None, "the column's fullest (sqrt)".to_string()),
    ];
    for (k, (key, text)) in lines.iter().enumerate() {
        let y = 20 + 18 * k as i32;
        if let Some(c) = key {
            notes.draw(&PathElement::new(vec![(4, y + 7), (22, y + 7)], c.stroke_width(2)))?;
        }
        notes.draw(&Text::new(text.clone(), (28, y), note.clone()))?;
    }
    Ok(())
}

/// Reads the snapshots of a recording (`.npz` or JSON, from `snnc run
/// --record REC --record-every K`): `weight_steps` and every `NAME.weight`
/// with as many snapshots. `None` when it has no `weight_steps`.
pub fn from_tensors(tensors: &BTreeMap<String, Tensor>, file: &str) -> Result<Option<Snapshots>, Error> {
    let Some(steps) = tensors.get(crate::snapshots::STEPS_KEY) else { return Ok(None) };
    let n = steps.data.len();
    let steps: Vec<usize> = steps.data.iter().map(|&s| s.max(0.0) as usize).collect();
    let weights: BTreeMap<String, Tensor> = tensors
        .iter()
        .filter(|(k, t)| k.ends_with(".weight") && t.shape.len() >= 2 && t.shape[0] == n)
        .map(|(k, t)| (k.clone(), t.clone()))
        .collect();
    if weights.is_empty() || n == 0 {
        return Err(Error::User(format!(
            "{file}: `{}` is there but no `NAME.weight` with {n} snapshots; record again with `snnc run NET --record \
             {file} --record-every K`",
            crate::snapshots::STEPS_KEY
        )));
    }
    Ok(Some(Snapshots { steps, weights }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_put_the_ends_in_the_end_bins() {
        let h = histogram(&[0.0, 0.5, 1.0, f64::NAN], 0.0, 1.0);
        assert_eq!(h.iter().sum::<usize>(), 3);
        assert_eq!((h[0], h[BINS / 2], h[BINS - 1]), (1, 1, 1));
    }

    #[test]
    fn chosen_snapshots_include_the_first_and_last() {
        assert_eq!(chosen(3), [0, 1, 2]);
        assert_eq!(chosen(11), [0, 3, 5, 8, 10]);
        assert_eq!(chosen(6), [0, 1, 3, 4, 5]);
    }
}
