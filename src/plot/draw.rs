//! The figure model, a column of panels over one shared x axis, and its
//! rendering with plotters to SVG or PNG.
//!
//! Recordings and training curves are both turned into a [`Figure`] first
//! (`recording.rs`, `curves.rs`); this file only lays it out and draws it.
//! Every panel is a chart on the left and a strip of notes (legend keys and
//! numbers) on the right, so legends never hide data.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::text::GlyphText;
use super::{Format, Size};
use crate::driver::Error;

/// Line colours: matplotlib's `tab20` order (the ten strong colours first).
pub(crate) const PALETTE: [RGBColor; 20] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
    RGBColor(247, 182, 210),
    RGBColor(199, 199, 199),
    RGBColor(219, 219, 141),
    RGBColor(158, 218, 229),
];

/// The colour of raster marks; used for nothing else, so that a mark can be
/// found in an SVG by its fill (`super::RASTER_MARK_FILL`).
pub(crate) const RASTER: RGBColor = RGBColor(0x14, 0x14, 0x5A);
/// The background of every panel's plotting area; used for nothing else
/// (`super::PANEL_FILL`).
pub(crate) const PANEL_BACKGROUND: RGBColor = RGBColor(0xFA, 0xFA, 0xFC);
/// Constant thresholds.
pub(crate) const THRESHOLD: RGBColor = RGBColor(80, 80, 80);
const GRID: RGBColor = RGBColor(226, 226, 232);

const FONT: &str = "sans-serif";
const TITLE_HEIGHT: u32 = 40;
const TOP_AXIS_HEIGHT: u32 = 44;
const BOTTOM_AXIS_HEIGHT: u32 = 46;
/// Space below the bottom axis's description.
const BOTTOM_MARGIN: u32 = 8;
const NOTES_WIDTH: u32 = 230;
const DEFAULT_WIDTH: u32 = 1200;
/// The smallest height a panel may get when the figure size is given.
const MIN_PANEL_HEIGHT: u32 = 90;

/// A column of panels sharing the x axis.
#[derive(Debug)]
pub(crate) struct Figure {
    pub title: String,
    /// The description of the x axis, below the bottom panel.
    pub x_desc: String,
    pub x_range: (f64, f64),
    /// A second x axis above the top panel: its description and the factor
    /// from x to its unit (e.g. steps to milliseconds).
    pub top_axis: Option<(String, f64)>,
    pub panels: Vec<Panel>,
}

#[derive(Debug)]
pub(crate) struct Panel {
    /// A short name for messages (`lif1 spikes`).
    pub label: String,
    pub title: String,
    pub y_desc: String,
    pub body: Body,
    pub notes: Vec<Note>,
    /// The panel's height in the default figure size, in pixels.
    pub height: u32,
}

#[derive(Debug)]
pub(crate) enum Body {
    /// One mark per spike at (step, neuron), over rows `0..neurons`.
    Raster {
        neurons: usize,
        marks: Vec<(usize, usize)>,
    },
    Lines {
        y_range: (f64, f64),
        lines: Vec<Line>,
    },
}

#[derive(Debug)]
pub(crate) struct Line {
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub stroke: Stroke,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stroke {
    /// 2 px.
    Solid,
    /// 1 px.
    Thin,
    /// 1 px, dashed.
    Dashed,
    /// 2 px with a dot at every point.
    Markers,
}

/// A line of text in a panel's notes, with an optional legend key.
#[derive(Debug)]
pub(crate) struct Note {
    pub text: String,
    pub key: Option<(RGBColor, Stroke)>,
}

impl Note {
    pub fn text(text: impl Into<String>) -> Note {
        Note { text: text.into(), key: None }
    }

    pub fn key(text: impl Into<String>, color: RGBColor, stroke: Stroke) -> Note {
        Note { text: text.into(), key: Some((color, stroke)) }
    }
}

/// A range that contains `values` (and is never empty), padded by 6%.
pub(crate) fn padded_range(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .into_iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (-1.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 0.0 { span * 0.06 } else { lo.abs().max(1.0) * 0.1 };
    (lo - pad, hi + pad)
}

/// A number for tick labels and notes: integers without a fraction, others
/// with at most 4 significant digits.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if (v - v.round()).abs() < 1e-9 * v.abs().max(1.0) && v.abs() < 1e15 {
        return format!("{}", v.round() as i64);
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    if s == "-0" { "0".into() } else { s }
}

/// The pixel heights of the panels (the first and last without their extra
/// axis areas) and the figure's size.
fn layout(fig: &Figure, size: Option<Size>) -> Result<(Vec<u32>, u32, u32), Error> {
    let extra =
        TITLE_HEIGHT + BOTTOM_AXIS_HEIGHT + BOTTOM_MARGIN + if fig.top_axis.is_some() { TOP_AXIS_HEIGHT } else { 0 };
    let preferred: Vec<u32> = fig.panels.iter().map(|p| p.height).collect();
    let total: u32 = preferred.iter().sum();
    let Some(size) = size else {
        return Ok((preferred, DEFAULT_WIDTH, total + extra));
    };
    let n = fig.panels.len() as u32;
    let needed = extra + n * MIN_PANEL_HEIGHT;
    if size.height < needed || size.width < NOTES_WIDTH + 300 {
        return Err(Error::User(format!(
            "--size {}x{} is too small for a figure of {n} panel(s); use at least {}x{needed}",
            size.width,
            size.height,
            NOTES_WIDTH + 300
        )));
    }
    let avail = u64::from(size.height - extra);
    let mut heights: Vec<u32> = preferred.iter().map(|&h| (u64::from(h) * avail / u64::from(total)) as u32).collect();
    // Give the pixels lost to rounding to the last panel.
    let used: u32 = heights.iter().sum();
    if let Some(last) = heights.last_mut() {
        *last += avail as u32 - used;
    }
    if heights.iter().any(|&h| h < MIN_PANEL_HEIGHT) {
        return Err(Error::User(format!(
            "--size {}x{} is too small for a figure of {n} panel(s); use a larger height",
            size.width, size.height
        )));
    }
    Ok((heights, size.width, size.height))
}

/// Draws a figure and encodes it.
pub(crate) fn render(fig: &Figure, format: Format, size: Option<Size>) -> Result<Vec<u8>, Error> {
    super::register_font()?;
    let (heights, width, height) = layout(fig, size)?;
    let internal = |e: String| Error::Internal(format!("cannot draw the figure: {e}"));
    match format {
        Format::Svg => {
            let mut text = String::new();
            {
                let root = SVGBackend::with_string(&mut text, (width, height)).into_drawing_area();
                draw(&root, fig, &heights).map_err(|e| internal(e.to_string()))?;
                root.present().map_err(|e| internal(e.to_string()))?;
            }
            Ok(text.into_bytes())
        }
        Format::Png => {
            let mut pixels = vec![0u8; width as usize * height as usize * 3];
            {
                let font = ab_glyph::FontRef::try_from_slice(super::FONT).map_err(|e| internal(e.to_string()))?;
                let bitmap = BitMapBackend::with_buffer(&mut pixels, (width, height));
                let root = GlyphText::new(bitmap, font).into_drawing_area();
                draw(&root, fig, &heights).map_err(|e| internal(e.to_string()))?;
                root.present().map_err(|e| internal(e.to_string()))?;
            }
            encode_png(&pixels, width, height).map_err(|e| internal(e.to_string()))
        }
    }
}

pub(super) fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, png::EncodingError> {
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(rgb)?;
        writer.finish()?;
    }
    Ok(out)
}

type Res<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;
type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure, heights: &[u32]) -> Res<DB> {
    root.fill(&WHITE)?;
    let (width, _) = root.dim_in_pixel();
    let (title_area, mut rest) = root.split_vertically(TITLE_HEIGHT);
    let style = (FONT, 18).into_font().color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
    title_area.draw_text(&fig.title, &style, (width as i32 / 2, TITLE_HEIGHT as i32 / 2))?;
    let last = fig.panels.len().saturating_sub(1);
    for (index, (panel, &h)) in fig.panels.iter().zip(heights).enumerate() {
        let top = index == 0 && fig.top_axis.is_some();
        let bottom = index == last;
        let h = h + if top { TOP_AXIS_HEIGHT } else { 0 } + if bottom { BOTTOM_AXIS_HEIGHT + BOTTOM_MARGIN } else { 0 };
        let (area, next) = rest.split_vertically(h);
        rest = next;
        let (chart_area, notes_area) = area.split_horizontally(width.saturating_sub(NOTES_WIDTH));
        draw_panel(&chart_area, fig, panel, top, bottom)?;
        draw_notes(&notes_area, panel, if top { TOP_AXIS_HEIGHT } else { 0 })?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    fig: &Figure,
    panel: &Panel,
    top: bool,
    bottom: bool,
) -> Res<DB> {
    let mut builder = ChartBuilder::on(area);
    builder
        .margin_left(10)
        .margin_right(14)
        .margin_top(4)
        .margin_bottom(if bottom { BOTTOM_MARGIN } else { 0 })
        .caption(&panel.title, (FONT, 15))
        .y_label_area_size(60)
        .x_label_area_size(if bottom { BOTTOM_AXIS_HEIGHT } else { 20 });
    if top {
        builder.top_x_label_area_size(TOP_AXIS_HEIGHT);
    }
    let (x0, x1) = fig.x_range;
    let (y0, y1) = match &panel.body {
        // Row n is centred on n.
        Body::Raster { neurons, .. } => (-0.5, (*neurons).max(1) as f64 - 0.5),
        Body::Lines { y_range, .. } => *y_range,
    };
    let chart = builder.build_cartesian_2d(x0..x1, y0..y1)?;
    let formatter = |v: &f64| num(*v);
    // The secondary axis takes the top label area, so it goes first: the
    // primary mesh then labels only the bottom.
    match (&fig.top_axis, top) {
        (Some((desc, factor)), true) => {
            let mut dual = chart.set_secondary_coord(x0 * factor..x1 * factor, 0.0..1.0);
            draw_mesh(&mut dual, fig, panel, bottom)?;
            dual.configure_secondary_axes()
                .x_labels(12)
                .y_labels(0)
                .x_label_formatter(&formatter)
                .label_style((FONT, 12))
                .axis_desc_style((FONT, 13))
                .x_desc(desc.as_str())
                .draw()?;
            draw_body(&mut dual, fig, panel)
        }
        _ => {
            let mut chart = chart;
            draw_mesh(&mut chart, fig, panel, bottom)?;
            draw_body(&mut chart, fig, panel)
        }
    }
}

fn draw_mesh<DB: DrawingBackend>(chart: &mut Chart<'_, DB>, fig: &Figure, panel: &Panel, bottom: bool) -> Res<DB> {
    chart.plotting_area().fill(&PANEL_BACKGROUND)?;
    let formatter = |v: &f64| num(*v);
    // Raster rows are neurons: label whole numbers only.
    let (y_labels, integers) = match &panel.body {
        Body::Raster { neurons, .. } => ((*neurons).clamp(1, 6), true),
        Body::Lines { .. } => (6, false),
    };
    let y_formatter = |v: &f64| if integers && v.fract() != 0.0 { String::new() } else { num(*v) };
    let mut mesh = chart.configure_mesh();
    mesh.bold_line_style(GRID)
        .light_line_style(TRANSPARENT)
        .x_labels(12)
        .y_labels(y_labels)
        .x_label_formatter(&formatter)
        .y_label_formatter(&y_formatter)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 13))
        .y_desc(panel.y_desc.as_str());
    if bottom {
        mesh.x_desc(fig.x_desc.as_str());
    }
    mesh.draw()
}

fn draw_body<DB: DrawingBackend>(chart: &mut Chart<'_, DB>, fig: &Figure, panel: &Panel) -> Res<DB> {
    match &panel.body {
        Body::Raster { neurons, marks } => {
            // Marks are sized in pixels: 80% of a step and of a row, at least 1 px.
            let (pw, ph) = chart.plotting_area().dim_in_pixel();
            let (x0, x1) = fig.x_range;
            let step_px = f64::from(pw) / (x1 - x0);
            let row_px = f64::from(ph) / (*neurons).max(1) as f64;
            // Ticks at most 8 px wide and 20 px tall, at least 1 px wide and 2 px tall.
            let w = ((step_px * 0.8).round() as i32).clamp(1, 8);
            let h = ((row_px * 0.8).round() as i32).clamp(2, 20);
            chart.draw_series(marks.iter().map(|&(t, n)| {
                EmptyElement::at((t as f64, n as f64))
                    + Rectangle::new([(-w / 2, -h / 2), (w - w / 2, h - h / 2)], RASTER.filled())
            }))?;
        }
        Body::Lines { lines, .. } => {
            for line in lines {
                let points = line.points.iter().copied();
                match line.stroke {
                    Stroke::Solid => {
                        chart.draw_series(LineSeries::new(points, line.color.stroke_width(2)))?;
                    }
                    Stroke::Thin => {
                        chart.draw_series(LineSeries::new(points, line.color.stroke_width(1)))?;
                    }
                    Stroke::Dashed => {
                        chart.draw_series(DashedLineSeries::new(points, 6, 4, line.color.stroke_width(1)))?;
                    }
                    Stroke::Markers => {
                        chart.draw_series(LineSeries::new(points.clone(), line.color.stroke_width(2)))?;
                        chart.draw_series(points.map(|p| Circle::new(p, 3, line.color.filled())))?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn draw_notes<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel, offset: u32) -> Res<DB> {
    const LINE: i32 = 17;
    let (_, height) = area.dim_in_pixel();
    let style = (FONT, 12).into_font().color(&BLACK);
    let mut y = offset as i32 + 30;
    for (i, note) in panel.notes.iter().enumerate() {
        if y + LINE > height as i32 {
            let more = panel.notes.len() - i;
            area.draw(&Text::new(format!("({more} more)"), (4, y - 4), style.clone()))?;
            break;
        }
        let x = match note.key {
            Some((color, stroke)) => {
                let mid = y + 7;
                match stroke {
                    Stroke::Dashed => {
                        for x in [2, 12] {
                            area.draw(&PathElement::new(vec![(x, mid), (x + 6, mid)], color.stroke_width(1)))?;
                        }
                    }
                    Stroke::Thin => area.draw(&PathElement::new(vec![(2, mid), (20, mid)], color.stroke_width(1)))?,
                    Stroke::Solid => area.draw(&PathElement::new(vec![(2, mid), (20, mid)], color.stroke_width(2)))?,
                    Stroke::Markers => {
                        area.draw(&PathElement::new(vec![(2, mid), (20, mid)], color.stroke_width(2)))?;
                        area.draw(&Circle::new((11, mid), 3, color.filled()))?;
                    }
                }
                26
            }
            None => 4,
        };
        area.draw(&Text::new(note.text.clone(), (x, y), style.clone()))?;
        y += LINE;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_short() {
        assert_eq!(num(3.0), "3");
        assert_eq!(num(-0.0), "0");
        assert_eq!(num(0.5), "0.5");
        assert_eq!(num(0.123456), "0.1235");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(1234.5678), "1235");
        assert_eq!(num(0.001), "0.001");
    }

    #[test]
    fn ranges_are_padded_and_never_empty() {
        assert_eq!(padded_range([]), (-1.0, 1.0));
        let (lo, hi) = padded_range([2.0, 2.0]);
        assert!(lo < 2.0 && hi > 2.0);
        let (lo, hi) = padded_range([0.0, 1.0, f64::NAN]);
        assert!((lo + 0.06).abs() < 1e-12 && (hi - 1.06).abs() < 1e-12);
    }
}
