//! `snnc train --data FILE.npz`: static samples, sequences and Tonic-style
//! event recordings (tests/fixtures/data, written by
//! scripts/make_data_fixtures.py); event frames bit for bit as Tonic's
//! `ToFrame` bins them (scripts/tonic_frames_oracle.py); checkpoints that
//! record the file; bad files refused with exit 2, naming file, array and
//! fix.

use std::path::Path;
use std::process::Output;

mod support;
use support::{TempDir, snnc};

use snnc_runtime::dataset::events::Events;
use snnc_runtime::{NpyValues, read_npz};

const DATA: &str = "tests/fixtures/data";

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// `snnc train DATA/NET --data DATA/FILE --quiet --out OUT` and `extra`.
fn train(net: &str, file: &str, out: &str, extra: &[&str]) -> Output {
    let (net, file) = (format!("{DATA}/{net}"), format!("{DATA}/{file}"));
    let mut args = vec!["train", &net, "--data", &file, "--quiet", "--out", out];
    args.extend(extra);
    snnc(&args)
}

/// The rows of metrics.csv: (train loss, test loss, test accuracy).
fn metrics(out: &str) -> Vec<(f64, f64, f64)> {
    let csv = std::fs::read_to_string(Path::new(out).join("metrics.csv")).expect("metrics.csv");
    csv.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<f64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            (f[1], f[2], f[3])
        })
        .collect()
}

fn weights(out: &str) -> String {
    std::fs::read_to_string(Path::new(out).join("weights.json")).expect("weights.json")
}

#[test]
fn event_frames_are_tonics_to_frame_bit_for_bit() {
    let arrays = read_npz(&Path::new(DATA).join("tonic_frames.npz")).expect("the oracle's file reads");
    let mut cases = 0;
    while let Some(ev) = arrays.get(&format!("events_{cases}")) {
        let k = cases;
        let NpyValues::Record(fields) = &ev.values else { panic!("events_{k} is a record array") };
        let field = |f: &str| fields.iter().find(|(n, _)| n == f).map(|(_, v)| v.as_slice()).unwrap();
        let ints = |key: String| match &arrays[&key].values {
            NpyValues::Int(v) => v.iter().map(|&i| i as usize).collect::<Vec<_>>(),
            v => panic!("{key}: {v:?}"),
        };
        let sensor = ints(format!("sensor_{k}"));
        let bins = ints(format!("bins_{k}"))[0];
        let events = Events { x: field("x"), y: field("y"), t: field("t"), p: field("p") };
        let got = snnc_runtime::dataset::to_frame(events, [sensor[0], sensor[1], sensor[2]], bins).expect("bins");
        let frames = &arrays[&format!("frames_{k}")];
        assert_eq!(frames.shape, [bins, sensor[2], sensor[1], sensor[0]], "case {k}");
        let NpyValues::Float { data: want, .. } = &frames.values else { panic!("frames_{k} is float32") };
        let got: Vec<u64> = got.iter().map(|&x| f64::from(x).to_bits()).collect();
        let want: Vec<u64> = want.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want, "case {k}: sensor {sensor:?}, {bins} bins");
        cases += 1;
    }
    assert_eq!(cases, 8);
}

#[test]
fn static_uint8_samples_train_with_a_test_split_and_resume_only_on_the_same_file() {
    let tmp = TempDir::new("static");
    let flags = ["--test-split", "0.2", "--normalize", "0.2,0.1", "--batch", "8", "--lr", "0.01", "--seed", "3"];
    let whole = tmp.path("whole");
    let o = train("static.ron", "static_u8.npz", &whole, &[&flags[..], &["--epochs", "4"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The last 20 % (8 of 40) are the test split.
    assert!(text(&o).contains("on 32 tests/fixtures/data/static_u8.npz samples (8 test)"), "{}", text(&o));
    let m = metrics(&whole);
    assert_eq!(m.len(), 4);
    assert!(m[3].0 < m[0].0, "the training loss did not fall: {m:?}");

    // Resumed after two epochs: the weights of the uninterrupted run.
    let part = tmp.path("part");
    let o = train("static.ron", "static_u8.npz", &part, &[&flags[..], &["--epochs", "2"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let ck = std::fs::read_to_string(Path::new(&part).join("checkpoint.json")).unwrap();
    assert!(ck.contains("\"data_file\"") && ck.contains("\"fnv1a64\""), "the checkpoint records the file");
    let o = train("static.ron", "static_u8.npz", &part, &[&flags[..], &["--epochs", "4", "--resume"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(weights(&part), weights(&whole), "resuming changed the result");

    // Another file (path), or the same path with other contents, is refused.
    let copy = tmp.path("copy.npz");
    std::fs::copy(Path::new(DATA).join("static_u8.npz"), &copy).unwrap();
    let other = tmp.path("other");
    let net = format!("{DATA}/static.ron");
    let run = |extra: &[&str]| {
        let mut args = vec!["train", &net, "--data", &copy, "--quiet", "--out", &other];
        args.extend(&flags);
        args.extend(extra);
        snnc(&args)
    };
    assert_eq!(run(&["--epochs", "1"]).status.code(), Some(0));
    let o = train("static.ron", "static_u8.npz", &other, &[&flags[..], &["--epochs", "2", "--resume"]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("--data: {copy} in the checkpoint, tests/fixtures/data/static_u8.npz now")),
        "{}",
        text(&o)
    );
    // Same path, other bytes.
    std::fs::copy(Path::new(DATA).join("bad_labels.npz"), &copy).unwrap();
    let o = run(&["--epochs", "2", "--resume"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("--resume: the checkpoint in") && t.contains("was trained on another") && t.contains(&copy),
        "{t}"
    );
}

#[test]
fn sequences_train_step_by_step_without_an_encoder() {
    let tmp = TempDir::new("seq");
    let out = tmp.path("out");
    let o = train("sequence.ron", "sequences.npz", &out, &["--epochs", "6", "--batch", "8", "--lr", "0.01"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let m = metrics(&out);
    assert!(m[5].0 < m[0].0 && m[5].1 < m[0].1, "the losses did not fall: {m:?}");
    assert!(m[5].2 >= 0.75, "test accuracy {} (chance is 0.5)", m[5].2);
    // The same run again: bit-identical weights.
    let again = tmp.path("again");
    let o = train("sequence.ron", "sequences.npz", &again, &["--epochs", "6", "--batch", "8", "--lr", "0.01"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(weights(&out), weights(&again));

    // Sequences of another length than the network's steps.
    let net = std::fs::read_to_string(Path::new(DATA).join("sequence.ron")).unwrap().replace("steps: 4", "steps: 5");
    let path = tmp.write("five.ron", net);
    let o = snnc(&["train", &path, "--data", &format!("{DATA}/sequences.npz"), "--out", &tmp.path("five")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("array `x_train` holds sequences of 4 steps (shape [24, 4, 3]), but network `sequence` runs 5 steps: set `steps: 4` in the network"),
        "{}",
        text(&o)
    );
}

#[test]
fn float_targets_train_a_regression_with_the_mse_loss() {
    let tmp = TempDir::new("mse");
    let out = tmp.path("out");
    let args = ["--loss", "mse", "--epochs", "5", "--batch", "8", "--lr", "0.01"];
    let o = train("regression.ron", "regression.npz", &out, &args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let m = metrics(&out);
    assert!(m[4].0 < m[0].0 && m[4].1 < m[0].1, "the losses did not fall: {m:?}");
    assert!(m.iter().all(|r| r.2.is_nan()), "a regression has no accuracy: {m:?}");
    // Class losses refuse float targets; targets of another width than the readout are named.
    let o = train("regression.ron", "regression.npz", &tmp.path("nll"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("y holds float targets (values to regress), but --loss nll"), "{}", text(&o));
    let o = train("static.ron", "float_targets.npz", &tmp.path("wide"), &["--loss", "mse", "--test-split", "0.25"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains(
            "array y: the targets of a sample have shape [], but the readout of network `static` gives 3 value(s) per sample ([B, 3]): save y as [N, 3]"
        ),
        "{}",
        text(&o)
    );
}

#[test]
fn tonic_event_recordings_train_as_frames() {
    let tmp = TempDir::new("events");
    let out = tmp.path("out");
    let o = train("events.ron", "events.npz", &out, &["--epochs", "6", "--batch", "8", "--lr", "0.01"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("on 16 tests/fixtures/data/events.npz samples (4 test)"), "{}", text(&o));
    let m = metrics(&out);
    assert!(m[5].0 < m[0].0 && m[5].1 < m[0].1, "the losses did not fall: {m:?}");
    assert_eq!(m[5].2, 1.0, "the two classes fire in separate halves of the sensor: {m:?}");
    // Frames [2, 4, 4] do not fit a network taking [3].
    let o = train("sequence.ron", "events.npz", &tmp.path("bad"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("its frames are [P, H, W] = [2, 4, 4] (sensor_size [4, 4, 2]), but network `sequence` takes input [3]: give it `input: [2, 4, 4]`"), "{}", text(&o));
}

#[test]
fn bad_files_and_flags_exit_2_naming_file_array_and_fix() {
    let tmp = TempDir::new("bad");
    let out = tmp.path("out");
    let cases: [(&str, &[&str], &str); 8] = [
        ("bad_missing.npz", &[], "bad_missing.npz: no array `y_test` (the file holds `x_test`, `x_train`, `y_train`)"),
        (
            "bad_missing.npz",
            &["--test-split", "0.2"],
            "holds a training and a test split (x_train, x_test): drop --test-split",
        ),
        ("static_u8.npz", &[], "static_u8.npz: it holds one set (x, y): give --test-split F"),
        ("static_u8.npz", &["--test-split", "1.5"], "--test-split must be a fraction between 0 and 1"),
        (
            "bad_labels.npz",
            &["--test-split", "0.2"],
            "bad_labels.npz, array y: label 5 of sample 7 is not a class of network `static`, whose readout has 3 classes (0 to 2)",
        ),
        (
            "bad_nan.npz",
            &["--test-split", "0.2"],
            "bad_nan.npz: array `x` holds NaN at [3, 1, 2, 0] (sample 3): inputs and targets must be finite numbers",
        ),
        (
            "bad_shape.npz",
            &["--test-split", "0.2"],
            "array `x` has shape [12, 5], which does not fit network `static` (input [2, 3, 3]): it has an encoder, so it takes static samples [N, 2, 3, 3]; sequences [N, 8, 2, 3, 3] would fit it without the encoder",
        ),
        (
            "float_targets.npz",
            &["--test-split", "0.2"],
            "y holds float targets (values to regress), but --loss nll compares class scores with class labels: train with --loss mse",
        ),
    ];
    for (file, extra, want) in cases {
        let o = train("static.ron", file, &out, &[extra, &["--force"]].concat());
        assert_eq!(o.status.code(), Some(2), "{file} {extra:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{file} {extra:?}: {}", text(&o));
    }
    let o = train("static.ron", "nope.npz", &out, &["--force"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("tests/fixtures/data/nope.npz"), "{}", text(&o));
    for (args, want) in [
        (&["--data", "cifar"][..], "--data cifar: give fashion-mnist, mnist, or a NumPy file whose name ends in .npz"),
        (&["--data", "mnist", "--test-split", "0.1"], "--test-split applies to --data FILE.npz"),
        (&["--data", "tests/fixtures/data/sequences.npz", "--data-dir", "x"], "drop --data-dir"),
        (
            &["--data", "tests/fixtures/data/sequences.npz", "--normalize", "0.5,0.2"],
            "--normalize applies to uint8 inputs",
        ),
        (&["--data", "tests/fixtures/data/sequences.npz", "--normalize", "0.5"], "is not MEAN,STD"),
    ] {
        let mut a = vec!["train", "tests/fixtures/data/sequence.ron", "--out", &out, "--force"];
        a.extend(args);
        let o = snnc(&a);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{args:?}: {}", text(&o));
    }
}
