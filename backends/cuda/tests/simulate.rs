//! The emitted PTX, run by the PTX simulator of `sim/` (no GPU needed)
//! through the manifest's launches, against the reference interpreter on
//! the fixture nets: the same bits, except where `exp`, `log` or `tanh`
//! take part (within 1e-5 relative there).

mod sim;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use snnc_cuda::{Arch, CudaOptions};
use snnc_frontend::LowerOptions;
use snnc_ir::{KernelInst, Module, ModuleInfo, Op, UnaryOp};
use snnc_runtime::Tensor;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn compiled(path: &Path, pipeline: &str, lower: &LowerOptions) -> Option<(Module, ModuleInfo)> {
    let net = snnc_frontend::load_network(path).unwrap_or_else(|e| panic!("{e}"));
    let mut module = snnc_frontend::lower(&net, &path.display().to_string(), lower).unwrap_or_else(|e| panic!("{e}"));
    let pipeline = snnc_passes::parse_pipeline(pipeline, &snnc_passes::PassOptions::default()).ok()?;
    let info = pipeline.run_all(&mut module).ok()?;
    Some((module, info))
}

/// Random inputs (as the root package's `tests/common` makes them).
fn inputs(module: &Module, batch: usize, seed: u64) -> BTreeMap<String, Tensor> {
    let elem = snnc_runtime::weights::elem_type(module.float);
    let mut res = BTreeMap::new();
    for (h, input) in module.inputs.iter() {
        let key = seed ^ snnc_ir::rng::mix64(0x1_0000 + h.index() as u64);
        let mut shape = input.ty.shape.resolve(batch);
        if input.ty.seq {
            shape.insert(0, module.steps as usize);
        }
        let n: usize = shape.iter().product();
        let data = (0..n)
            .map(|k| {
                let u = snnc_ir::rng::uniform(key, 0, k as u64);
                if input.ty.seq { 3.0 * u } else { (u - 0.2860) / 0.3530 }
            })
            .collect();
        res.insert(input.name.clone(), Tensor::new(shape, elem, data).expect("sized"));
    }
    res
}

/// Whether the module computes `exp`, `log` or `tanh` (not bit-exact here).
fn transcendental(module: &Module) -> bool {
    let t = |op: UnaryOp| matches!(op, UnaryOp::Exp | UnaryOp::Log | UnaryOp::Tanh);
    module.nodes.iter().any(|(_, n)| match &n.op {
        Op::Unary { op, .. } => t(*op),
        Op::LogSoftmax { .. } | Op::LogSoftmaxGrad { .. } => true,
        Op::Fused(k) => k.body.iter().any(|i| matches!(i, KernelInst::Unary { op, .. } if t(*op))),
        _ => false,
    })
}

fn close(a: f32, e: f32, exact: bool) -> bool {
    if a.is_nan() || e.is_nan() {
        return a.is_nan() && e.is_nan();
    }
    if exact {
        return a.to_bits() == e.to_bits() || (a == 0.0 && e == 0.0);
    }
    (a - e).abs() <= 1e-5 * e.abs().max(1.0)
}

/// Runs `path` through `pipeline` on the interpreter and the simulated
/// PTX; `None` when the pipeline or the interpreter cannot run it.
fn compare(path: &Path, pipeline: &str, batch: usize) -> Option<usize> {
    compare_lowered(path, pipeline, batch, &LowerOptions::default())
}

/// [`compare`] of the module lowered with `lower`.
fn compare_lowered(path: &Path, pipeline: &str, batch: usize, lower: &LowerOptions) -> Option<usize> {
    let (module, info) = compiled(path, pipeline, lower)?;
    let weights = snnc_runtime::init_weights(&module, 7);
    let ins = inputs(&module, batch, 11);
    let reference = std::panic::catch_unwind(|| {
        snnc_interp::run(&module, &info, &weights, &ins, &snnc_interp::RunOptions::default())
    });
    let reference = match reference {
        Ok(Ok(r)) => r,
        _ => return None,
    };
    let art = snnc_cuda::emit(&module, &info, &CudaOptions { arch: Arch::Sm80 })
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ptx = sim::Module::parse(&art.ptx);
    let names = sim::bindings(&art.manifest);
    let mut run = sim::Run::new(&art.manifest, batch as u64);
    for (name, t) in ins.iter().chain(&weights) {
        let data: Vec<f32> = t.data.iter().map(|&x| x as f32).collect();
        run.set(names[name], &data);
    }
    run.init_states();
    run.run(&ptx);
    let exact = !transcendental(&module);
    let mut checked = 0;
    let mut nonzero = 0;
    let pairs = reference.outputs.iter().chain(&reference.final_state);
    for (name, expected) in pairs {
        let got = run.get(names[name]);
        assert_eq!(got.len(), expected.data.len(), "{}: `{name}` size", path.display());
        for (i, (&a, &e)) in got.iter().zip(&expected.data).enumerate() {
            assert!(
                close(a, e as f32, exact),
                "{} ({pipeline}): `{name}`[{i}] is {a} on the simulated GPU, {e} in the interpreter",
                path.display()
            );
        }
        checked += got.len();
        nonzero += got.iter().filter(|&&x| x != 0.0).count();
    }
    assert!(nonzero > 0, "{} ({pipeline}): every value is 0, a weak test", path.display());
    Some(checked)
}

const DEFAULT: &str = "const-fold,cse,dce,time-batch,sparsify,fuse,unroll,cse,dce";
const TRAINING: &str = "const-fold,cse,dce,time-batch,autodiff,sparsify,fuse,unroll,cse,dce";

fn small_nets() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = ["lif", "li"].iter().map(|n| root().join(format!("examples/{n}.ron"))).collect();
    for e in std::fs::read_dir(root().join("tests/nets")).expect("fixtures") {
        let p = e.expect("entry").path();
        let stem = p.file_stem().expect("name").to_string_lossy().to_string();
        // The big image nets take long in a simulator.
        if p.extension().is_some_and(|x| x == "ron") && !["convnet", "tutorial"].contains(&stem.as_str()) {
            v.push(p);
        }
    }
    v.sort();
    v
}

#[test]
fn simulated_ptx_matches_the_interpreter() {
    for path in small_nets() {
        for batch in [1, 3] {
            let n = compare(&path, DEFAULT, batch).unwrap_or_else(|| panic!("{}: did not run", path.display()));
            assert!(n > 0, "{}", path.display());
            eprintln!("{} (batch {batch}): {n} values agree", path.display());
        }
    }
}

#[test]
fn simulated_ptx_matches_without_fusion() {
    // Unfused elementwise ops, unbatched loops with products inside.
    for pipeline in ["none", "const-fold,cse,dce", "const-fold,cse,dce,time-batch"] {
        for path in small_nets() {
            compare(&path, pipeline, 2).unwrap_or_else(|| panic!("{}: did not run", path.display()));
        }
    }
}

#[test]
fn simulated_backward_ptx_matches_the_interpreter() {
    let mut ran = 0;
    for path in small_nets() {
        match compare(&path, TRAINING, 2) {
            Some(n) => {
                ran += 1;
                eprintln!("{} backward: {n} values agree", path.display());
            }
            None => eprintln!("{} backward: the pipeline or the interpreter cannot run it", path.display()),
        }
    }
    eprintln!("{ran} backward module(s) compared");
}

#[test]
fn simulated_ptx_matches_on_the_tutorial_nets() {
    for path in [root().join("examples/tutorial.ron"), root().join("tests/nets/tutorial.ron")] {
        let n = compare(&path, DEFAULT, 2).unwrap_or_else(|| panic!("{}: did not run", path.display()));
        eprintln!("{}: {n} values agree", path.display());
        if let Some(n) = compare(&path, TRAINING, 2) {
            eprintln!("{} backward: {n} values agree", path.display());
        }
    }
}

/// The convnet takes about a minute in the simulator: run with
/// `cargo test -p snnc-cuda --test simulate -- --ignored`.
#[test]
#[ignore]
fn simulated_ptx_matches_on_the_convnet() {
    let path = root().join("examples/convnet.ron");
    let n = compare(&path, DEFAULT, 1).unwrap_or_else(|| panic!("{}: did not run", path.display()));
    eprintln!("{}: {n} values agree", path.display());
}

/// `exp`, `log` and `tanh` as emitted (f64 inside, one rounding) against
/// Rust's `f32` functions (glibc's) and the f64 ones, on special values,
/// every binade and random bit patterns: NaN where Rust gives NaN, else
/// Rust's bits, or (rarely: glibc's `expf`/`logf` are within 0.502 ulp, not
/// correctly rounded, `tanhf` within a few ulp) a value closer to the
/// exact one.
#[test]
fn exp_log_tanh_match_rust_f32() {
    use snnc_ir::{Builder, Dtype, Shape, Type};
    let mut values: Vec<f32> = vec![
        0.0,
        -0.0,
        1.0,
        -1.0,
        0.5,
        2.0,
        88.7,
        88.8,
        -87.3,
        -103.9,
        -104.5,
        89.5,
        1e-45,
        -1e-45,
        1.2e-38,
        f32::MIN_POSITIVE,
        f32::MAX,
        f32::MIN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1e-8,
        -1e-8,
        0.000244,
        0.55,
        -0.55,
        9.0,
        9.1,
        -20.0,
        1.0000001,
        0.99999994,
    ];
    let mut state = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        state = snnc_ir::rng::mix64(state);
        state
    };
    for _ in 0..6000 {
        values.push(f32::from_bits(next() as u32));
    }
    for _ in 0..6000 {
        values.push(((next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 220.0);
    }
    for _ in 0..3000 {
        values.push(1.0 + ((next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.01);
    }
    let n = values.len() as u32;
    let mut b = Builder::new("math", 1, 1e-3, Dtype::F32);
    let x = b.input("x", Type::new(Dtype::F32, Shape::batched(&[n])));
    b.begin_seq();
    let xv = b.emit(Op::Input(x)).expect("input");
    let mut outs = Vec::new();
    for (name, op) in [("exp", UnaryOp::Exp), ("log", UnaryOp::Log), ("tanh", UnaryOp::Tanh)] {
        let y = b.unary(op, xv).expect("unary");
        b.output(name, y);
        outs.push(name);
    }
    let module = b.finish();
    let info = snnc_ir::validate(&module).expect("valid");
    let art = snnc_cuda::emit(&module, &info, &CudaOptions::default()).expect("emits");
    let ptx = sim::Module::parse(&art.ptx);
    let names = sim::bindings(&art.manifest);
    let mut run = sim::Run::new(&art.manifest, 1);
    run.set(names["x"], &values);
    run.run(&ptx);
    type Pair = (fn(f32) -> f32, fn(f64) -> f64);
    let reference: [Pair; 3] = [(f32::exp, f64::exp), (f32::ln, f64::ln), (f32::tanh, f64::tanh)];
    for (name, (f, exact)) in outs.iter().zip(reference) {
        let got = run.get(names[*name]);
        let mut differ = 0;
        for (&x, &g) in values.iter().zip(&got) {
            let e = f(x);
            if e.is_nan() || g.is_nan() {
                assert!(e.is_nan() && g.is_nan(), "{name}({x:e}) = {g:e}, Rust gives {e:e}");
                continue;
            }
            if g.to_bits() != e.to_bits() {
                let ulps = (g.to_bits() as i64 - e.to_bits() as i64).abs();
                let ex = exact(f64::from(x));
                let (ours, rusts) = ((f64::from(g) - ex).abs(), (f64::from(e) - ex).abs());
                assert!(
                    ulps <= 4 && ours <= rusts,
                    "{name}({x:e}) = {g:e}, Rust gives {e:e}, exact {ex:e}: ours is not the closer one"
                );
                differ += 1;
            }
        }
        eprintln!("{name}: {differ} of {} values differ from Rust's (ours closer to exact)", values.len());
        // glibc's tanhf is fdlibm's (a few ulp); its expf and logf are
        // almost always correctly rounded.
        if *name != "tanh" {
            assert!(differ * 100 <= values.len(), "{name}: {differ} of {} values differ", values.len());
        }
    }
}

/// `uniform` in a sequence region (per-step and static) and in a step
/// loop, against the interpreter: the generator's exact numbers.
#[test]
fn uniform_draws_match_the_interpreter() {
    use snnc_ir::{Builder, Dtype, Shape, Type};
    let mut b = Builder::new("rng", 5, 1e-3, Dtype::F32);
    let x = b.input("x", Type::new(Dtype::F32, Shape::batched(&[3])));
    let s = b.state("acc", Type::new(Dtype::F32, Shape::batched(&[3])), snnc_ir::StateInit::Fill(0.0));
    b.begin_seq();
    let xv = b.emit(Op::Input(x)).expect("input");
    let useq = b.emit(Op::Uniform { seed: 42, shape: Shape::batched(&[3]), seq: true }).expect("uniform");
    let ustat = b.emit(Op::Uniform { seed: 7, shape: Shape::fixed(&[3]), seq: false }).expect("uniform");
    let shifted = b.add(xv, ustat).expect("add");
    b.output("seq", useq);
    b.output("static", shifted);
    b.begin_step();
    let acc = b.state_read(s).expect("read");
    let u = b.emit(Op::Uniform { seed: 9, shape: Shape::batched(&[3]), seq: false }).expect("uniform");
    let next = b.add(acc, u).expect("add");
    b.state_write(s, next).expect("write");
    b.begin_seq();
    let c = b.emit(Op::Collect(next)).expect("collect");
    b.output("loop", c);
    let module = b.finish();
    let info = snnc_ir::validate(&module).unwrap_or_else(|e| panic!("{e}"));
    let ins = inputs(&module, 2, 3);
    let weights = snnc_runtime::Weights::new();
    let reference = snnc_interp::run(&module, &info, &weights, &ins, &snnc_interp::RunOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let art = snnc_cuda::emit(&module, &info, &CudaOptions::default()).expect("emits");
    let ptx = sim::Module::parse(&art.ptx);
    let names = sim::bindings(&art.manifest);
    let mut run = sim::Run::new(&art.manifest, 2);
    run.set(names["x"], &ins["x"].data.iter().map(|&v| v as f32).collect::<Vec<_>>());
    run.run(&ptx);
    for (name, t) in &reference.outputs {
        let got = run.get(names[name]);
        let want: Vec<f32> = t.data.iter().map(|&v| v as f32).collect();
        assert_eq!(got, want, "{name}");
    }
}

/// `concat` of three `[B, C, H, W]` values and `narrow`s of it, over whole
/// sequences, per step in a step loop (one kernel per operand, into row
/// `t` of a collected value) and of spikes: the interpreter's bits.
#[test]
fn concat_and_narrow_match_the_interpreter() {
    use snnc_ir::{Builder, Dtype, Shape, Surrogate, Type};
    let mut b = Builder::new("layout", 3, 1e-3, Dtype::F32);
    let chans = [1u32, 3, 2];
    let xs: Vec<_> = chans
        .iter()
        .enumerate()
        .map(|(k, &c)| b.input(format!("x{k}"), Type::seq(Dtype::F32, Shape::batched(&[c, 2, 3]))))
        .collect();
    b.begin_seq();
    let xs: Vec<_> = xs.into_iter().map(|x| b.emit(Op::Input(x)).expect("input")).collect();
    let whole = b.concat(xs.clone()).expect("concat");
    let mid = b.narrow(whole, 1, 4).expect("narrow");
    b.output("whole", whole);
    b.output("mid", mid);
    b.begin_step();
    let steps: Vec<_> = xs.iter().map(|&x| b.emit(Op::Step(x)).expect("step")).collect();
    let spikes: Vec<_> = steps.iter().map(|&x| b.threshold(x, Surrogate::SuperSpike).expect("threshold")).collect();
    let per_step = b.concat(vec![steps[2], steps[0], steps[1]]).expect("concat");
    let spiked = b.concat(spikes).expect("concat");
    let last = b.narrow(spiked, 5, 1).expect("narrow");
    let sum = b.add(per_step, spiked).expect("add");
    b.begin_seq();
    for (name, v) in [("per_step", sum), ("last", last)] {
        let c = b.emit(Op::Collect(v)).expect("collect");
        b.output(name, c);
    }
    let module = b.finish();
    let info = snnc_ir::validate(&module).unwrap_or_else(|e| panic!("{e}"));
    let ins = inputs(&module, 2, 5);
    let weights = snnc_runtime::Weights::new();
    let reference = snnc_interp::run(&module, &info, &weights, &ins, &snnc_interp::RunOptions::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let art = snnc_cuda::emit(&module, &info, &CudaOptions::default()).expect("emits");
    let ptx = sim::Module::parse(&art.ptx);
    let names = sim::bindings(&art.manifest);
    let mut run = sim::Run::new(&art.manifest, 2);
    for (name, t) in &ins {
        run.set(names[name], &t.data.iter().map(|&v| v as f32).collect::<Vec<_>>());
    }
    run.run(&ptx);
    for (name, t) in &reference.outputs {
        let got = run.get(names[name]);
        let want: Vec<f32> = t.data.iter().map(|&v| v as f32).collect();
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(reference.outputs["whole"].shape, vec![3, 2, 6, 2, 3]);
}

/// The channel ops of BatchNorm (see `Op::ChannelSum`): `channel_sum` and
/// `channel_mean` of a whole sequence `[T, B, C, H, W]`, of a `[B, C]`
/// step value and of spikes per step (collected to `[T, C]`), and
/// `channel_broadcast` (`_mean`) of the results to `[B, C, H, W]`, to a
/// fixed `[C, H, W]` and to `[B, C]`, and the `_per_step` sums of the
/// sequences (`[T, C]`) broadcast step by step: the interpreter's bits.
#[test]
fn channel_sum_and_broadcast_match_the_interpreter() {
    use snnc_ir::{Builder, Dim, Dtype, Shape, Surrogate, Type};
    let mut b = Builder::new("channel", 3, 1e-3, Dtype::F32);
    let img = b.input("img", Type::seq(Dtype::F32, Shape::batched(&[3, 2, 5])));
    let vec = b.input("vec", Type::seq(Dtype::F32, Shape::batched(&[4])));
    let still = b.input("still", Type::new(Dtype::F32, Shape::batched(&[3, 4])));
    b.begin_seq();
    let still = b.emit(Op::Input(still)).expect("input");
    // The statistic of a value without time, at every step.
    let still_mean = b.channel_sum_per_step(still, true).expect("channel_mean_per_step");
    let img = b.emit(Op::Input(img)).expect("input");
    let vec = b.emit(Op::Input(vec)).expect("input");
    let sum = b.channel_sum(img, false).expect("channel_sum");
    let mean = b.channel_sum(img, true).expect("channel_mean");
    let batched = Shape(vec![Dim::Batch, Dim::Fixed(3), Dim::Fixed(2), Dim::Fixed(5)]);
    let spread = b.emit(Op::ChannelBroadcast { arg: mean, shape: batched, mean: true }).expect("broadcast");
    let fixed = b.channel_broadcast(sum, Shape::fixed(&[3, 2, 5])).expect("broadcast");
    // Per step: `[T, C]` statistics and their step-by-step broadcasts.
    let step_mean = b.channel_sum_per_step(img, true).expect("channel_mean_per_step");
    let step_sum = b.channel_sum_per_step(img, false).expect("channel_sum_per_step");
    let batched = Shape(vec![Dim::Batch, Dim::Fixed(3), Dim::Fixed(2), Dim::Fixed(5)]);
    let step_spread = b.channel_broadcast(step_mean, batched).expect("broadcast");
    let shape = Shape::fixed(&[3, 2, 5]);
    let step_fixed = b.emit(Op::ChannelBroadcast { arg: step_sum, shape, mean: true }).expect("broadcast");
    let vec_mean = b.channel_sum_per_step(vec, true).expect("channel_mean_per_step");
    let vec_spread = b.channel_broadcast(vec_mean, Shape::batched(&[4])).expect("broadcast");
    for (name, v) in [
        ("sum", sum),
        ("mean", mean),
        ("spread", spread),
        ("fixed", fixed),
        ("step_mean", step_mean),
        ("step_sum", step_sum),
        ("step_spread", step_spread),
        ("step_fixed", step_fixed),
        ("vec_mean", vec_mean),
        ("vec_spread", vec_spread),
        ("still_mean", still_mean),
    ] {
        b.output(name, v);
    }
    b.begin_step();
    let v = b.emit(Op::Step(vec)).expect("step");
    let total = b.channel_sum(v, false).expect("channel_sum");
    let back = b.emit(Op::ChannelBroadcast { arg: total, shape: Shape::batched(&[4]), mean: true }).expect("broadcast");
    let centred = b.sub(v, back).expect("sub");
    let s = b.threshold(centred, Surrogate::SuperSpike).expect("threshold");
    let rate = b.channel_sum(s, true).expect("channel_mean");
    b.begin_seq();
    for (name, v) in [("rate", rate), ("total", total), ("centred", centred)] {
        let c = b.emit(Op::Collect(v)).expect("collect");
        b.output(name, c);
    }
    let module = b.finish();
    let info = snnc_ir::validate(&module).unwrap_or_else(|e| panic!("{e}"));
    for batch in [1, 3] {
        let ins = inputs(&module, batch, 5);
        let reference =
            snnc_interp::run(&module, &info, &snnc_runtime::Weights::new(), &ins, &snnc_interp::RunOptions::default())
                .unwrap_or_else(|e| panic!("{e}"));
        let art = snnc_cuda::emit(&module, &info, &CudaOptions::default()).expect("emits");
        assert!(art.ptx.contains("_channel_mean(") && art.ptx.contains("_channel_broadcast_mean("));
        assert!(art.ptx.contains("_channel_mean_per_step(") && art.ptx.contains("_channel_sum_per_step("));
        let ptx = sim::Module::parse(&art.ptx);
        let names = sim::bindings(&art.manifest);
        let mut run = sim::Run::new(&art.manifest, batch as u64);
        for (name, t) in &ins {
            run.set(names[name], &t.data.iter().map(|&v| v as f32).collect::<Vec<_>>());
        }
        run.run(&ptx);
        for (name, t) in &reference.outputs {
            let got = run.get(names[name]);
            let want: Vec<f32> = t.data.iter().map(|&v| v as f32).collect();
            let same = got.len() == want.len() && got.iter().zip(&want).all(|(a, e)| a.to_bits() == e.to_bits());
            assert!(same, "batch {batch}: `{name}`: {got:?} on the simulated GPU, {want:?} in the interpreter");
        }
        // The statistics are not trivial: a mean that is no sum / 3 in f32
        // would show, and some of the spikes fire.
        assert_eq!(reference.outputs["sum"].shape, vec![3]);
        assert_eq!(reference.outputs["rate"].shape, vec![3, 4]);
        assert_eq!(reference.outputs["fixed"].shape, vec![3, 2, 5]);
        assert_eq!(reference.outputs["step_mean"].shape, vec![3, 3]);
        assert_eq!(reference.outputs["step_spread"].shape, vec![3, batch, 3, 2, 5]);
        assert_eq!(reference.outputs["step_fixed"].shape, vec![3, 3, 2, 5]);
        assert_eq!(reference.outputs["vec_spread"].shape, vec![3, batch, 4]);
        assert_eq!(reference.outputs["still_mean"].shape, vec![3, 3]);
        assert!(reference.outputs["rate"].data.iter().any(|&r| r > 0.0 && r < 1.0) || batch == 1);
    }
}

/// The BatchNorm fixture (BatchNorm2d after a convolution, BatchNorm1d
/// after a Linear layer): evaluation lowering (running statistics),
/// training lowering (per-step batch statistics, with the
/// `NAME.batch_mean`/`batch_var` outputs) forward, and its backward pass,
/// with and without fusion: the interpreter's bits (no `exp`/`log`/`tanh`
/// here: `sqrt.rn` is exact).
#[test]
fn batchnorm_matches_the_interpreter() {
    let path = root().join("tests/nets/batchnorm.ron");
    let training = LowerOptions { training: true, ..LowerOptions::default() };
    for (lower, what) in [(LowerOptions::default(), "eval"), (training, "training")] {
        for pipeline in [DEFAULT, "none", TRAINING] {
            let (module, _) = compiled(&path, pipeline, &lower).expect("compiles");
            assert!(!transcendental(&module), "{what} {pipeline}: compared to a tolerance");
            // Eval forward broadcasts BatchNorm2d's `[C]` parameters to
            // `[C, H, W]`; batch statistics and parameter gradients sum.
            let count = |f: fn(&Op) -> bool| module.nodes.iter().filter(|(_, n)| f(&n.op)).count();
            let sums = count(|op| matches!(op, Op::ChannelSum { .. }));
            let broadcasts = count(|op| matches!(op, Op::ChannelBroadcast { .. }));
            assert!(broadcasts > 0, "{what} {pipeline}: no channel_broadcast");
            assert_eq!(sums > 0, lower.training || pipeline == TRAINING, "{what} {pipeline}: {sums} channel sums");
            // `time-batch` lifts the per-step statistics out of the loop.
            let per_step = count(|op| matches!(op, Op::ChannelSum { per_step: true, .. }));
            assert_eq!(per_step > 0, lower.training && pipeline != "none", "{what} {pipeline}: {per_step} per step");
            let n =
                compare_lowered(&path, pipeline, 3, &lower).unwrap_or_else(|| panic!("{what} {pipeline}: did not run"));
            eprintln!("batchnorm {what} ({pipeline}): {n} values agree");
        }
    }
}
