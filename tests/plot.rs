//! Figures: `snnc run --plot`, `snnc plot` of recordings and of training
//! metrics, their content (one raster mark per spike, one background per
//! panel), PNG sizes, determinism and error messages. Temporary files go
//! under `target/`.

use std::path::{Path, PathBuf};

use snnc::plot::{PANEL_FILL, RASTER_MARK_FILL};

mod support;
use support::{snnc, stderr, stdout};

/// Runs snnc and expects success.
fn ok(args: &[&str]) -> String {
    let o = snnc(args);
    assert_eq!(o.status.code(), Some(0), "snnc {}: {}", args.join(" "), stderr(&o));
    stdout(&o)
}

/// Runs snnc and expects a user error (exit 2); returns the message.
fn user_error(args: &[&str]) -> String {
    let o = snnc(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "snnc {}: {err}", args.join(" "));
    assert!(err.starts_with("error: "), "{err}");
    err
}

/// A scratch folder under target/ for this test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plot").join(name);
    std::fs::create_dir_all(&dir).expect("can create a scratch folder");
    dir
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

fn recording(p: &str) -> serde_json::Value {
    serde_json::from_str(&read(p)).expect("a recording is JSON")
}

/// The spikes of one sample in a `[T, B, ...]` tensor of a recording,
/// counting only neurons `0, stride, 2 stride, ...`.
fn spikes(rec: &serde_json::Value, name: &str, sample: usize, stride: usize) -> usize {
    let t = &rec[name];
    let shape: Vec<usize> = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let (steps, batch) = (shape[0], shape[1]);
    let per: usize = shape[2..].iter().product();
    let data = t["data"].as_array().unwrap();
    let mut count = 0;
    for s in 0..steps {
        for n in (0..per).step_by(stride) {
            if data[(s * batch + sample) * per + n].as_f64().unwrap() != 0.0 {
                count += 1;
            }
        }
    }
    count
}

fn png_size(p: &str) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(p).expect("the PNG exists")));
    let mut reader = decoder.read_info().expect("a valid PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("a size")];
    let info = reader.next_frame(&mut buf).expect("a decodable frame");
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn lif_svg_has_one_mark_per_spike_and_two_panels() {
    let dir = scratch("lif");
    let (rec, fig) = (path(&dir, "rec.json"), path(&dir, "fig.svg"));
    let out = ok(&["run", "examples/lif.ron", "--record", &rec, "--plot", &fig]);
    assert!(out.contains(&format!("plotted 2 panel(s) to {fig}: lif spikes, lif voltage")), "{out}");
    let svg = read(&fig);
    let json = recording(&rec);
    let n_spikes = spikes(&json, "lif.z", 0, 1);
    assert_eq!(n_spikes, 90, "the example's spike count");
    assert_eq!(svg.matches(RASTER_MARK_FILL).count(), n_spikes);
    assert_eq!(svg.matches(PANEL_FILL).count(), 2);
    assert!(svg.contains("threshold v_th = 1"), "the threshold is drawn and named");
    assert!(svg.contains("time (ms)") && svg.contains("time step (1 step = dt = 1 ms)"), "both time axes");
    // The recording describes its network.
    assert_eq!(json["__meta__"]["network"], "lif");
    assert_eq!(json["__meta__"]["layers"][0]["v_th"], 1.0);

    // Redrawing the recording gives the same figure, byte for byte.
    let again = path(&dir, "again.svg");
    ok(&["plot", &rec, "-o", &again]);
    assert_eq!(read(&again), svg);
    // So does naming the network it was recorded from.
    let with_net = path(&dir, "with_net.svg");
    ok(&["plot", &rec, "--net", "examples/lif.ron", "-o", &with_net]);
    assert_eq!(read(&with_net), svg);
}

#[test]
fn tutorial_draws_the_chosen_sample_and_neurons() {
    let dir = scratch("tutorial");
    let (rec, fig) = (path(&dir, "rec.json"), path(&dir, "fig.svg"));
    ok(&["run", "examples/tutorial.ron", "--batch", "2", "--record", &rec]);
    let out = ok(&["plot", &rec, "-o", &fig, "--sample", "1", "--neurons", "0,4", "--neurons", "out:1,3"]);
    assert!(out.contains("4 panel(s)") && out.contains("input encoding, lif1 spikes, lif1 voltage, readout"), "{out}");
    let svg = read(&fig);
    let json = recording(&rec);
    // 784 input neurons: the raster shows every 2nd (at most 512 rows).
    let marks = spikes(&json, "encoder.z", 1, 2) + spikes(&json, "lif1.z", 1, 1);
    assert_ne!(spikes(&json, "lif1.z", 1, 1), spikes(&json, "lif1.z", 0, 1), "the samples differ");
    assert_eq!(svg.matches(RASTER_MARK_FILL).count(), marks);
    assert_eq!(svg.matches(PANEL_FILL).count(), 4);
    assert!(svg.contains("sample 1 of 2"), "the title names the sample");
    assert!(svg.contains("every 2nd of 784 neurons"), "the raster says it is subsampled");
    assert!(svg.contains("membrane voltage v of neurons 0, 4 of sample 1"));
    assert!(svg.contains("threshold v_th = 0.5"));
    assert!(svg.contains("class 1") && svg.contains("class 3") && !svg.contains("class 2"));
    assert!(svg.contains("MaxLogSoftmax picks class"));
}

#[test]
fn png_decodes_with_the_requested_size_and_holds_text() {
    let dir = scratch("png");
    let (rec, fig) = (path(&dir, "rec.json"), path(&dir, "fig.png"));
    ok(&["run", "examples/lif.ron", "--record", &rec]);
    ok(&["plot", &rec, "-o", &fig, "--size", "1000x700"]);
    let (w, h, pixels) = png_size(&fig);
    assert_eq!((w, h), (1000, 700));
    // The title (centred in the top 40 rows) is drawn: dark pixels there.
    let dark = pixels[..(w * 40 * 3) as usize].chunks(3).filter(|p| p.iter().all(|&c| c < 100)).count();
    assert!(dark > 100, "the title's glyphs are drawn ({dark} dark pixels)");
    // PNGs are deterministic too.
    let again = path(&dir, "again.png");
    ok(&["plot", &rec, "-o", &again, "--size", "1000x700"]);
    assert_eq!(std::fs::read(&fig).unwrap(), std::fs::read(&again).unwrap());
}

#[test]
fn example_nets_are_drawn() {
    let dir = scratch("examples");
    for (net, batch, panels) in [("tutorial", "1", 4), ("lif", "1", 2), ("li", "1", 1), ("convnet", "2", 8)] {
        for ext in ["svg", "png"] {
            let fig = path(&dir, &format!("{net}.{ext}"));
            let _ = std::fs::remove_file(&fig);
            let out = ok(&["run", &format!("examples/{net}.ron"), "--batch", batch, "--plot", &fig]);
            assert!(out.contains(&format!("plotted {panels} panel(s) to {fig}")), "{net}: {out}");
            let len = std::fs::metadata(&fig).map(|m| m.len()).unwrap_or(0);
            assert!(len > 1000, "{fig} is written ({len} bytes)");
        }
    }
}

const METRICS: &str = "epoch,train_loss,test_loss,test_accuracy,seconds
0,,2.31,0.098,0
1,0.92,0.85,0.71,12.5
2,0.61,0.63,0.80,25.1
3,0.45,0.52,0.86,37.4
";

#[test]
fn metrics_are_drawn_as_curves() {
    let dir = scratch("metrics");
    let metrics = path(&dir, "metrics.csv");
    std::fs::write(&metrics, METRICS).unwrap();
    let fig = path(&dir, "curves.svg");
    let out = ok(&["plot", &metrics, "-o", &fig]);
    assert!(out.contains("plotted 2 panel(s)") && out.contains("loss, accuracy"), "{out}");
    let svg = read(&fig);
    assert_eq!(svg.matches(PANEL_FILL).count(), 2);
    assert!(svg.contains("training: metrics.csv, 3 epochs"), "epoch 0 is the untrained network");
    assert!(svg.contains("best 86 % (epoch 3)"));

    // Per-batch losses: batches.csv beside it is picked up, or named.
    let mut batches = String::from("epoch,batch,train_loss\n");
    for e in 1..=3 {
        for b in 0..40 {
            batches.push_str(&format!("{e},{b},{}\n", 2.0 / (e as f64 + b as f64 / 40.0)));
        }
    }
    std::fs::write(dir.join("batches.csv"), &batches).unwrap();
    let fig2 = path(&dir, "curves2.svg");
    ok(&["plot", &metrics, "-o", &fig2]);
    let svg2 = read(&fig2);
    assert!(svg2.contains("120 batches") && svg2.contains("train loss per batch"), "batches.csv is read");
    let fig3 = path(&dir, "curves3.png");
    ok(&[
        "plot",
        &metrics,
        "--batches",
        &dir.join("batches.csv").display().to_string(),
        "-o",
        &fig3,
        "--size",
        "800x600",
    ]);
    assert_eq!(png_size(&fig3).0, 800);
    // The per-batch file alone.
    let fig4 = path(&dir, "curves4.svg");
    let out = ok(&["plot", &dir.join("batches.csv").display().to_string(), "-o", &fig4]);
    assert!(out.contains("plotted 1 panel(s)") && out.contains("loss"), "{out}");
}

#[test]
fn bad_input_is_a_user_error_that_names_the_problem() {
    let dir = scratch("errors");
    let lif = path(&dir, "lif.json");
    ok(&["run", "examples/lif.ron", "--record", &lif]);
    let fig = path(&dir, "fig.svg");

    // A recording of another network.
    let err = user_error(&["plot", &lif, "--net", "examples/tutorial.ron", "-o", &fig]);
    assert!(err.contains("is a recording of another network: of `lif`"), "{err}");
    assert!(err.contains("not of `tutorial`"), "{err}");
    // ... also when the recording has no metadata.
    let mut json = recording(&lif);
    json.as_object_mut().unwrap().remove("__meta__");
    let bare = path(&dir, "bare.json");
    std::fs::write(&bare, json.to_string()).unwrap();
    let err = user_error(&["plot", &bare, "--net", "examples/tutorial.ron", "-o", &fig]);
    assert!(err.contains("no `encoder.z` in the recording") && err.contains("of another network"), "{err}");
    let err = user_error(&["plot", &bare, "-o", &fig]);
    assert!(err.contains("no `__meta__` entry") && err.contains("--net"), "{err}");
    ok(&["plot", &bare, "--net", "examples/lif.ron", "-o", &fig]);

    // An empty CSV, and one without rows.
    let empty = path(&dir, "empty.csv");
    std::fs::write(&empty, "").unwrap();
    let err = user_error(&["plot", &empty, "-o", &fig]);
    assert!(err.contains("empty.csv: the metrics file is empty") && err.contains("epoch,train_loss"), "{err}");
    let header = path(&dir, "header.csv");
    std::fs::write(&header, "epoch,train_loss,test_loss,test_accuracy,seconds\n").unwrap();
    let err = user_error(&["plot", &header, "-o", &fig]);
    assert!(err.contains("header but no rows"), "{err}");
    let percent = path(&dir, "percent.csv");
    std::fs::write(&percent, "epoch,test_accuracy\n1,97.5\n").unwrap();
    let err = user_error(&["plot", &percent, "-o", &fig]);
    assert!(err.contains("percent.csv:2: `test_accuracy` is 97.5, but accuracies are fractions"), "{err}");
    let ragged = path(&dir, "ragged.csv");
    std::fs::write(&ragged, "epoch,train_loss\n1,0.5,7\n").unwrap();
    let err = user_error(&["plot", &ragged, "-o", &fig]);
    assert!(err.contains("ragged.csv:2: 3 values, but the header has 2 columns"), "{err}");

    // An unknown neuron index or layer.
    let err = user_error(&["run", "examples/lif.ron", "--plot", &fig, "--neurons", "1,7"]);
    assert!(err.contains("--neurons 1,7: there is no neuron 7 in layer `lif` (LIF, 5 neurons: 0 to 4)"), "{err}");
    let err = user_error(&["plot", &lif, "-o", &fig, "--neurons", "lif9:1"]);
    assert!(err.contains("no neuron layer `lif9`; its neuron layers: lif"), "{err}");
    let err = user_error(&["plot", &lif, "-o", &fig, "--neurons", "a,b"]);
    assert!(err.contains("`a` is not a neuron index"), "{err}");
    let err = user_error(&["plot", &lif, "-o", &fig, "--sample", "1"]);
    assert!(err.contains("--sample 1: the recording holds 1 sample"), "{err}");

    // Missing files, other formats, options without --plot.
    let err = user_error(&["plot", &path(&dir, "missing.json"), "-o", &fig]);
    assert!(err.contains("missing.json: cannot read the recording"), "{err}");
    let err = user_error(&["plot", &path(&dir, "missing.csv"), "-o", &fig]);
    assert!(err.contains("missing.csv: cannot read the metrics"), "{err}");
    let err = user_error(&["plot", &lif, "-o", &path(&dir, "fig.pdf")]);
    assert!(err.contains("name the file `.svg` or `.png`"), "{err}");
    let err = user_error(&["run", "examples/lif.ron", "--neurons", "1"]);
    assert!(err.contains("need --plot"), "{err}");
    let err = user_error(&["plot", &lif, "-o", &fig, "--size", "300x200"]);
    assert!(err.contains("too small"), "{err}");
}
