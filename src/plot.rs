//! Figures: what a network did in one run, and how its training went.
//!
//! - `snnc run NET --plot FIG` and `snnc plot REC.json -o FIG` draw one
//!   sample of a run as a column of panels sharing the time axis (steps
//!   below, milliseconds above): the input encoding's spike raster, then per
//!   spiking layer a raster (one mark per spike) and the membrane voltages
//!   of a few neurons with their threshold as a dashed line, and the readout
//!   (the output layer's voltages, one line per class). See `recording.rs`.
//! - `snnc plot metrics.csv -o FIG` draws the loss and accuracy curves of
//!   `snnc train`, per epoch and per batch. See `curves.rs` for the format.
//! - `snnc plot REC.npz -o FIG.png` (or `REC.json --evolution`) draws how
//!   the plastic weights changed, from the snapshots of `snnc run --record
//!   REC --record-every K`. See `evolution.rs`.
//! - `snnc plot weights.safetensors -o FIG.png [--weight NAME]` draws a
//!   weight's receptive fields, one image per output neuron (e.g. what an
//!   STDP layer learnt, saved by `snnc run --save-weights`). See `fields.rs`.
//!
//! Figures are drawn with `plotters`, as SVG or PNG by the file's
//! extension. Text is measured (and in PNG drawn) with the embedded DejaVu
//! Sans (`assets/fonts/`): figures need no system fonts and are the same,
//! byte for byte, on every machine. A recording made by `snnc run --record`
//! carries a [`META_KEY`] entry ([`recording_metadata`]) naming the
//! network, its steps, `dt`, and each layer's kind, shape and threshold, so
//! it can be drawn on its own and checked against a network (`--net`).

mod curves;
mod draw;
pub mod evolution;
pub mod fields;
mod recording;
mod text;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::OnceLock;

pub use curves::{BATCHES_HEADER, METRICS_HEADER};
pub use recording::{
    EncoderMeta, LayerMeta, MAX_RASTER_NEURONS, MAX_TRACES, META_KEY, Meta, Recording, Role, recording_metadata,
};

use crate::driver::{self, Compiled, Error, RunOutput};

/// DejaVu Sans 2.37 (Bitstream Vera and Arev licenses, see
/// `assets/fonts/DejaVuSans.LICENSE`).
static FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");

/// How a raster mark's fill is written in an SVG figure (a colour used for
/// nothing else), so that tests can count marks.
pub const RASTER_MARK_FILL: &str = "fill=\"#14145A\"";
/// How a panel's background fill is written in an SVG figure (one per
/// panel, a colour used for nothing else).
pub const PANEL_FILL: &str = "fill=\"#FAFAFC\"";

/// Registers the embedded font as plotters' `sans-serif`, once.
fn register_font() -> Result<(), Error> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE
        .get_or_init(|| plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err(Error::Internal("the embedded font DejaVuSans.ttf does not load".into())) }
}

/// The file format of a figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    /// The format a file name asks for: `.svg` or `.png`.
    pub fn of(path: &Path) -> Result<Format, Error> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("svg") => Ok(Format::Svg),
            Some("png") => Ok(Format::Png),
            _ => Err(Error::User(format!(
                "{}: a figure is written as SVG or PNG; name the file `.svg` or `.png`",
                path.display()
            ))),
        }
    }
}

/// A figure's size in pixels, written `WIDTHxHEIGHT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Size, String> {
        let usage = format!("`{s}` is not a size; expected WIDTHxHEIGHT in pixels, e.g. 1200x900");
        let (w, h) = s.split_once(['x', 'X']).ok_or_else(|| usage.clone())?;
        let (width, height) = (w.trim().parse::<u32>(), h.trim().parse::<u32>());
        let (Ok(width), Ok(height)) = (width, height) else { return Err(usage) };
        if !(1..=10_000).contains(&width) || !(1..=10_000).contains(&height) {
            return Err(format!(
                "`{s}`: a figure's width and height are each from 1 to 10000 pixels (1x1 to 10000x10000)"
            ));
        }
        Ok(Size { width, height })
    }
}

/// How to draw a recording: the options `snnc run --plot` and `snnc plot`
/// share.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FigureArgs {
    /// Neurons whose voltages to draw: `0,3,7` in every hidden neuron layer,
    /// or `LAYER:0,3,7` in one (also the output layer); repeat for more
    /// layers. Default: the 3 most active neurons of each layer.
    #[arg(long, value_name = "[LAYER:]I,J,..")]
    pub neurons: Vec<String>,
    /// Which sample of the batch to draw (default 0).
    #[arg(long, value_name = "K")]
    pub sample: Option<usize>,
    /// The figure's size in pixels, e.g. 1200x900 (default: 1200 wide, as
    /// tall as its panels need).
    #[arg(long, value_name = "WxH")]
    pub size: Option<Size>,
}

/// `snnc run`'s plotting options.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RunPlotArgs {
    /// Draw the run (spike rasters, voltages with thresholds, the readout)
    /// to this figure: `.svg` or `.png`.
    #[arg(long, value_name = "FIGURE")]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub figure: FigureArgs,
}

impl RunPlotArgs {
    /// Checks the options against the network before it runs.
    pub fn check(&self, c: &Compiled) -> Result<(), Error> {
        let f = &self.figure;
        let Some(path) = &self.plot else {
            if !f.neurons.is_empty() || f.sample.is_some() || f.size.is_some() {
                return Err(Error::User("--neurons, --sample and --size need --plot FIGURE.svg (or .png)".into()));
            }
            return Ok(());
        };
        Format::of(path)?;
        recording::choose_neurons(&f.neurons, &Meta::of(c))?;
        Ok(())
    }
}

/// Draws a run that just happened, when `--plot` asks for it; returns what
/// to tell the user.
pub fn plot_run(c: &Compiled, res: &RunOutput, args: &RunPlotArgs) -> Result<Option<String>, Error> {
    let Some(path) = &args.plot else { return Ok(None) };
    let rec = Recording::from_run(c, res)?;
    draw_recording(&rec, path, &args.figure).map(Some)
}

fn draw_recording(rec: &Recording, path: &Path, f: &FigureArgs) -> Result<String, Error> {
    let format = Format::of(path)?;
    let choice = recording::choose_neurons(&f.neurons, &rec.meta)?;
    let fig = recording::figure(rec, &choice, f.sample)?;
    write_figure(&fig, format, f.size, path)
}

fn write_figure(fig: &draw::Figure, format: Format, size: Option<Size>, path: &Path) -> Result<String, Error> {
    let bytes = draw::render(fig, format, size)?;
    snnc_runtime::write_file(path, &bytes)?;
    let labels: Vec<&str> = fig.panels.iter().map(|p| p.label.as_str()).collect();
    Ok(format!("plotted {} panel(s) to {}: {}", fig.panels.len(), path.display(), labels.join(", ")))
}

/// `snnc plot`: draws a recording or training metrics.
#[derive(clap::Args, Clone, Debug)]
pub struct PlotArgs {
    /// A recording (`.json`, from `snnc run --record`), training metrics
    /// (`.csv`, from `snnc train`: `epoch,train_loss,test_loss,test_accuracy,seconds`),
    /// or weights (`.safetensors`, e.g. from `snnc run --save-weights`: their receptive fields).
    pub input: PathBuf,
    /// The figure to write: `.svg` or `.png`.
    #[arg(short, long, value_name = "FIGURE")]
    pub output: PathBuf,
    /// The network the recording was made from: it must match the
    /// recording (and stands in for a recording without metadata).
    #[arg(long, value_name = "NET.ron")]
    pub net: Option<PathBuf>,
    /// Per-batch losses (`epoch,batch,train_loss`) to draw with the
    /// metrics; default: `batches.csv` beside the metrics file, if there.
    #[arg(long, value_name = "CSV")]
    pub batches: Option<PathBuf>,
    /// The weight whose receptive fields to draw, from a `.safetensors`
    /// file (default: its only weight `[out, in]` or `[out, 1, kh, kw]`).
    #[arg(long, value_name = "NAME")]
    pub weight: Option<String>,
    /// Draw the weight evolution of a `.json` recording made with `--record-every K` (an
    /// `.npz` recording with weight snapshots is drawn so without it).
    #[arg(long)]
    pub evolution: bool,
    #[command(flatten)]
    pub figure: FigureArgs,
}

/// `snnc plot REC -o FIG.png` for a recording with weight snapshots.
fn plot_evolution(
    args: &PlotArgs,
    format: Format,
    tensors: &std::collections::BTreeMap<String, snnc_runtime::Tensor>,
) -> Result<Option<String>, Error> {
    let file = args.input.display().to_string();
    let Some(snaps) = evolution::from_tensors(tensors, &file)? else { return Ok(None) };
    let f = &args.figure;
    if args.net.is_some() || args.batches.is_some() || !f.neurons.is_empty() || f.sample.is_some() || f.size.is_some() {
        return Err(Error::User(
            "--net, --batches, --neurons, --sample and --size go with a run's figure, not the weight evolution".into(),
        ));
    }
    if format != Format::Png {
        return Err(Error::User(format!(
            "{}: the weight evolution is drawn as PNG; name the figure `.png`",
            args.output.display()
        )));
    }
    let (png, what) = evolution::png(&snaps)?;
    snnc_runtime::write_file(&args.output, &png)?;
    Ok(Some(format!("plotted {what} to {}", args.output.display())))
}

/// Every array of an `.npz` recording as a tensor (record arrays skipped).
fn read_npz_tensors(path: &Path) -> Result<std::collections::BTreeMap<String, snnc_runtime::Tensor>, Error> {
    let file = path.display();
    let mut res = std::collections::BTreeMap::new();
    for (name, a) in snnc_runtime::read_npz(path)? {
        if matches!(a.values, snnc_runtime::npy::NpyValues::Record(_)) {
            continue;
        }
        let t = a.to_tensor(&name).map_err(|e| Error::User(format!("{file}: {e}")))?;
        res.insert(name, t);
    }
    Ok(res)
}

/// `snnc plot WEIGHTS.safetensors`: the receptive fields of one weight.
fn plot_fields(args: &PlotArgs, format: Format) -> Result<String, Error> {
    let f = &args.figure;
    if args.net.is_some() || args.batches.is_some() || !f.neurons.is_empty() || f.sample.is_some() || f.size.is_some() {
        return Err(Error::User(
            "--net, --batches, --neurons, --sample and --size go with a recording or metrics, not weights".into(),
        ));
    }
    if format != Format::Png {
        return Err(Error::User(format!(
            "{}: receptive fields are drawn as PNG; name the figure `.png`",
            args.output.display()
        )));
    }
    let file = args.input.display();
    let bytes = crate::memory::read_binary_file(&args.input, "the weights file", crate::memory::MAX_JSON_BYTES)?;
    let weights = snnc_runtime::read_weights_safetensors(&bytes).map_err(|e| Error::User(format!("{file}: {e}")))?;
    let drawable = |t: &snnc_runtime::Tensor| matches!(t.shape[..], [_, _] | [_, 1, _, _]);
    let name = match &args.weight {
        Some(n) => n.clone(),
        None => {
            let names: Vec<&String> = weights.iter().filter(|(_, t)| drawable(t)).map(|(n, _)| n).collect();
            match names[..] {
                [one] => one.clone(),
                _ => {
                    return Err(Error::User(format!(
                        "{file}: say which weight to draw with --weight NAME; it holds {}",
                        weights.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
    };
    let Some(w) = weights.get(&name) else {
        return Err(Error::User(format!(
            "{file} has no weight `{name}`; it holds {}",
            weights.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        )));
    };
    let png = fields::png(&name, w)?;
    snnc_runtime::write_file(&args.output, &png)?;
    let (n, h, wd) = fields::geometry(&name, w)?;
    Ok(format!("plotted the receptive fields of `{name}` ({n} of {h}x{wd}) to {}", args.output.display()))
}

/// Runs `snnc plot`.
pub fn plot_command(out: &mut impl Write, args: &PlotArgs) -> Result<(), Error> {
    let format = Format::of(&args.output)?;
    let ext = args.input.extension().map(|e| e.to_string_lossy().to_ascii_lowercase());
    if args.weight.is_some() && ext.as_deref() != Some("safetensors") {
        return Err(Error::User("--weight goes with a weights file (.safetensors), not a recording or metrics".into()));
    }
    if args.evolution && !matches!(ext.as_deref(), Some("json" | "npz")) {
        return Err(Error::User("--evolution goes with a recording (.json or .npz), not metrics or weights".into()));
    }
    let message = match ext.as_deref() {
        Some("json") if args.evolution => {
            let text = crate::memory::read_json_file(&args.input, "the recording", crate::memory::MAX_JSON_BYTES)?;
            let file = args.input.display().to_string();
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::User(format!("{file}:{}:{}: not valid JSON: {e}", e.line(), e.column())))?;
            let mut tensors = std::collections::BTreeMap::new();
            for (name, v) in value.as_object().into_iter().flatten() {
                if name == META_KEY || v.get("shape").is_none() {
                    continue;
                }
                let t =
                    snnc_runtime::Tensor::from_json(v).map_err(|e| Error::User(format!("{file}: `{name}`: {e}")))?;
                tensors.insert(name.clone(), t);
            }
            plot_evolution(args, format, &tensors)?.ok_or_else(|| no_snapshots(&args.input))?
        }
        Some("json") => {
            if args.batches.is_some() {
                return Err(Error::User("--batches goes with training metrics (.csv), not a recording".into()));
            }
            let compiled = match &args.net {
                Some(p) => {
                    let net = driver::load(p)?;
                    Some(driver::compile(&net, &p.display().to_string(), &Default::default())?)
                }
                None => None,
            };
            let net = compiled.as_ref().zip(args.net.as_deref());
            let rec = Recording::read(&args.input, net)?;
            draw_recording(&rec, &args.output, &args.figure)?
        }
        Some("csv") => {
            let f = &args.figure;
            if args.net.is_some() || !f.neurons.is_empty() || f.sample.is_some() {
                return Err(Error::User(
                    "--net, --neurons and --sample go with a recording (.json), not metrics".into(),
                ));
            }
            let first = curves::Table::read(&args.input, "metrics", METRICS_HEADER)?;
            let (metrics, batches) = if first.has_column("batch") {
                (None, Some(first))
            } else {
                let beside = args.input.with_file_name("batches.csv");
                let batches = match &args.batches {
                    Some(p) => Some(curves::Table::read(p, "per-batch losses", BATCHES_HEADER)?),
                    None if beside.is_file() && beside != args.input => {
                        Some(curves::Table::read(&beside, "per-batch losses", BATCHES_HEADER)?)
                    }
                    None => None,
                };
                (Some(first), batches)
            };
            let name = args
                .input
                .file_name()
                .map_or_else(|| args.input.display().to_string(), |n| n.to_string_lossy().into_owned());
            let fig = curves::figure(metrics.as_ref(), batches.as_ref(), &name)?;
            write_figure(&fig, format, f.size, &args.output)?
        }
        Some("safetensors") => plot_fields(args, format)?,
        Some("npz") => {
            if let Some(msg) = plot_evolution(args, format, &read_npz_tensors(&args.input)?)? {
                let _ = writeln!(out, "{msg}");
                return Ok(());
            }
            if args.evolution {
                return Err(no_snapshots(&args.input));
            }
            return Err(Error::User(format!(
                "{}: an .npz recording holds the arrays only, not the network's metadata a plot needs; record \
                 with `snnc run --record FILE.json` to plot it, or draw during the run with `snnc run --plot FIGURE`",
                args.input.display()
            )));
        }
        _ => {
            return Err(Error::User(format!(
                "{}: expected a recording (.json, from `snnc run --record`) or training metrics (.csv, from `snnc train`)",
                args.input.display()
            )));
        }
    };
    let _ = writeln!(out, "{message}");
    Ok(())
}

/// The error for `--evolution` on a recording without weight snapshots.
fn no_snapshots(path: &Path) -> Error {
    Error::User(format!(
        "{}: the recording has no weight snapshots (`{}`); record them with `snnc run NET --record {} --record-every K` \
         (a network with `plasticity: STDP(...)`)",
        path.display(),
        crate::snapshots::STEPS_KEY,
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!("1200x900".parse::<Size>(), Ok(Size { width: 1200, height: 900 }));
        assert!("1200".parse::<Size>().unwrap_err().contains("WIDTHxHEIGHT"));
        assert!("0x10".parse::<Size>().is_err());
        // The message gives the whole range, not only the upper end.
        assert_eq!(
            "0x0".parse::<Size>().unwrap_err(),
            "`0x0`: a figure's width and height are each from 1 to 10000 pixels (1x1 to 10000x10000)"
        );
        assert!("10001x5".parse::<Size>().unwrap_err().contains("from 1 to 10000"));
    }

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(Format::of(Path::new("a/b.SVG")).unwrap(), Format::Svg);
        assert_eq!(Format::of(Path::new("b.png")).unwrap(), Format::Png);
        assert!(Format::of(Path::new("b.pdf")).unwrap_err().to_string().contains(".svg"));
    }
}
