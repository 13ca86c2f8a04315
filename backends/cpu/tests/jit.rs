//! The Cranelift JIT gives the interpreter's bits for every fused kernel.
//!
//! The reference is [`eval_ref`], a plain per-element evaluation of the
//! kernel body that mirrors `snnc-interp`'s `kernels.rs` (`max_nan`,
//! `min_nan`, `bool_to`, `select`, `threshold`, ...). Results are compared
//! bit for bit: NaN payloads included, except where both sides are NaN
//! from arithmetic on NaN operands (`fadd` of two NaNs), whose payload Rust
//! leaves unspecified; the canonical NaN of `max`/`min`/`relu` is checked
//! exactly.

#[path = "../../../tests/common/proptest_config.rs"]
mod proptest_config;

use std::path::Path;
use std::sync::Mutex;

use proptest::prelude::*;
use snnc_cpu::jit::{
    InputLayout, JitError, JitKernel, JitStepKernel, KernelCompiler, StepInput, kernel_clif, step_kernel_clif,
};
use snnc_ir::{BinaryOp, CompareOp, Dtype, FusedKernel, KernelInst, Module, Op, Surrogate, UnaryOp};

// ---------------------------------------------------------------------------
// The reference: kernels.rs, one element at a time.

fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if b > a {
        b
    } else {
        a
    }
}

fn min_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else if b < a {
        b
    } else {
        a
    }
}

fn bool_to(b: bool) -> f32 {
    if b { 1.0 } else { 0.0 }
}

fn eval_inst(inst: &KernelInst, r: &[f32], input: impl Fn(u32) -> f32) -> f32 {
    let v = |a: u32| r[a as usize];
    match *inst {
        KernelInst::Input(k) => input(k),
        KernelInst::Const { value, .. } => value as f32,
        KernelInst::Unary { op, arg } => {
            let x = v(arg);
            match op {
                UnaryOp::Neg => -x,
                UnaryOp::Abs => x.abs(),
                UnaryOp::Exp => x.exp(),
                UnaryOp::Log => x.ln(),
                UnaryOp::Tanh => x.tanh(),
                UnaryOp::Sqrt => x.sqrt(),
                UnaryOp::Relu => max_nan(x, 0.0),
            }
        }
        KernelInst::Binary { op, lhs, rhs } => {
            let (x, y) = (v(lhs), v(rhs));
            match op {
                BinaryOp::Add => x + y,
                BinaryOp::Sub => x - y,
                BinaryOp::Mul => x * y,
                BinaryOp::Div => x / y,
                BinaryOp::Max => max_nan(x, y),
                BinaryOp::Min => min_nan(x, y),
            }
        }
        KernelInst::Compare { op, lhs, rhs } => {
            let (x, y) = (v(lhs), v(rhs));
            bool_to(match op {
                CompareOp::Gt => x > y,
                CompareOp::Ge => x >= y,
                CompareOp::Lt => x < y,
                CompareOp::Le => x <= y,
                CompareOp::Eq => x == y,
            })
        }
        KernelInst::Select { cond, on_true, on_false } => {
            if v(cond) != 0.0 {
                v(on_true)
            } else {
                v(on_false)
            }
        }
        KernelInst::Threshold { arg, .. } => bool_to(v(arg) > 0.0),
        KernelInst::StopGradient(arg) => v(arg),
        KernelInst::Cast { arg, .. } => v(arg),
    }
}

/// Every output of `kernel` over `n` elements.
fn eval_ref(kernel: &FusedKernel, layouts: &[InputLayout], ins: &[Vec<f32>], n: usize) -> Vec<Vec<f32>> {
    let mut outs = vec![Vec::with_capacity(n); kernel.outputs.len()];
    let mut regs = Vec::with_capacity(kernel.body.len());
    for e in 0..n {
        regs.clear();
        for inst in &kernel.body {
            let x = eval_inst(inst, &regs, |k| match layouts[k as usize] {
                InputLayout::Full => ins[k as usize][e],
                InputLayout::Scalar => ins[k as usize][0],
            });
            regs.push(x);
        }
        for (o, &i) in outs.iter_mut().zip(&kernel.outputs) {
            o.push(regs[i as usize]);
        }
    }
    outs
}

/// Whether instruction `i` of `kernel` is a max/min/relu (whose NaN must be
/// the canonical one, bit for bit).
fn canonical_nan(kernel: &FusedKernel, i: u32) -> bool {
    matches!(
        kernel.body[i as usize],
        KernelInst::Binary { op: BinaryOp::Max | BinaryOp::Min, .. } | KernelInst::Unary { op: UnaryOp::Relu, .. }
    )
}

fn same(kernel: &FusedKernel, out: usize, want: f32, got: f32) -> bool {
    want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan() && !canonical_nan(kernel, kernel.outputs[out]))
}

fn run_jit(k: &JitKernel, ins: &[Vec<f32>], n: usize) -> Vec<Vec<f32>> {
    let mut outs = vec![vec![f32::from_bits(0xdead_beef); n]; k.n_outputs()];
    let in_refs: Vec<&[f32]> = ins.iter().map(|x| x.as_slice()).collect();
    let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(|x| x.as_mut_slice()).collect();
    k.run(&in_refs, &mut out_refs).expect("jit run");
    outs
}

/// Runs `kernel` both ways and reports the first difference.
fn check(
    jit: &mut KernelCompiler,
    kernel: &FusedKernel,
    layouts: &[InputLayout],
    ins: &[Vec<f32>],
    n: usize,
) -> Result<(), String> {
    let k = jit.compile(kernel, layouts).map_err(|e| format!("compile {}: {e}", kernel.name))?;
    let want = eval_ref(kernel, layouts, ins, n);
    let got = run_jit(&k, ins, n);
    for (o, (w, g)) in want.iter().zip(&got).enumerate() {
        for e in 0..n {
            if !same(kernel, o, w[e], g[e]) {
                let args: Vec<f32> =
                    ins.iter().zip(layouts).map(|(x, l)| if *l == InputLayout::Full { x[e] } else { x[0] }).collect();
                return Err(format!(
                    "kernel {} (n = {n}, layouts {layouts:?}) output {o} element {e}: want {} ({:#010x}), got {} ({:#010x}); inputs {args:?}\n{kernel:#?}",
                    kernel.name,
                    w[e],
                    w[e].to_bits(),
                    g[e],
                    g[e].to_bits()
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Inputs.

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Mostly ordinary values, some spikes, thresholds and specials
    /// (`special_in_10` tenths of them, at least).
    fn value_with(&mut self, special_in_10: u64) -> f32 {
        const SPECIAL: [f32; 14] = [
            0.0,
            -0.0,
            1.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1.000_000_1,
            0.999_999_94,
            f32::MIN_POSITIVE,
            -f32::MIN_POSITIVE,
            1e-45,
            f32::MAX,
            -1.0,
            0.5,
        ];
        let pick = self.below(10);
        if pick < special_in_10 {
            return SPECIAL[self.below(SPECIAL.len() as u64) as usize];
        }
        match pick {
            0..=1 => SPECIAL[self.below(SPECIAL.len() as u64) as usize],
            2 => self.below(2) as f32,
            // Some NaN with a payload and a sign.
            3 if self.below(8) == 0 => f32::from_bits(0x7f80_0001 | (self.next() as u32 & 0x803f_ffff)),
            _ => (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 8.0 - 4.0,
        }
    }

    fn values(&mut self, n: usize, special_in_10: u64) -> Vec<f32> {
        (0..n).map(|_| self.value_with(special_in_10)).collect()
    }
}

/// Random inputs, `special_in_10` tenths of them special values.
fn inputs_with(rng: &mut Rng, layouts: &[InputLayout], n: usize, special_in_10: u64) -> Vec<Vec<f32>> {
    layouts
        .iter()
        .map(|l| match l {
            InputLayout::Full => rng.values(n, special_in_10),
            InputLayout::Scalar => rng.values(1, special_in_10),
        })
        .collect()
}

fn inputs(rng: &mut Rng, layouts: &[InputLayout], n: usize) -> Vec<Vec<f32>> {
    inputs_with(rng, layouts, n, 2)
}

// ---------------------------------------------------------------------------
// Fixture kernels.

fn fixture_paths() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut paths = Vec::new();
    for dir in ["tests/nets", "examples"] {
        let mut v: Vec<_> = std::fs::read_dir(root.join(dir))
            .expect("fixture dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "ron"))
            .collect();
        v.sort();
        paths.extend(v);
    }
    paths
}

fn optimized(path: &Path) -> Module {
    let net = snnc_frontend::load_network(path).expect("fixture parses");
    let mut module =
        snnc_frontend::lower(&net, &path.display().to_string(), &Default::default()).expect("fixture lowers");
    snnc_passes::default_pipeline(snnc_passes::PipelineKind::Cpu).run(&mut module, &mut |_| {}).expect("pipeline");
    module
}

/// Every fused kernel of `module`, with the layouts the executor would
/// likely use (scalar-shaped inputs `Scalar`, the rest `Full`).
fn fused_kernels(module: &Module) -> Vec<(FusedKernel, Vec<InputLayout>)> {
    let mut res = Vec::new();
    for (_, node) in module.nodes.iter() {
        if let Op::Fused(k) = &node.op {
            let layouts = k
                .inputs
                .iter()
                .map(|&h| {
                    let ty = &module.nodes[h].ty;
                    if ty.shape.is_scalar() && !ty.seq { InputLayout::Scalar } else { InputLayout::Full }
                })
                .collect();
            res.push(((**k).clone(), layouts));
        }
    }
    res
}

const SIZES: [usize; 6] = [1, 3, 4, 5, 783, 4096];

#[test]
fn every_fixture_kernel_gives_the_interpreters_bits() {
    let mut jit = KernelCompiler::new().expect("jit");
    let mut rng = Rng(7);
    let mut count = 0;
    let mut ops = std::collections::BTreeSet::new();
    for path in fixture_paths() {
        let module = optimized(&path);
        for (kernel, natural) in fused_kernels(&module) {
            count += 1;
            for inst in &kernel.body {
                ops.insert(inst.mnemonic());
            }
            let all_full = vec![InputLayout::Full; natural.len()];
            for layouts in [natural.clone(), all_full] {
                for n in SIZES {
                    let ins = inputs(&mut rng, &layouts, n);
                    if let Err(e) = check(&mut jit, &kernel, &layouts, &ins, n) {
                        panic!("{}: {e}", path.display());
                    }
                }
            }
        }
    }
    assert!(count >= 10, "only {count} fused kernels in the fixtures");
    for op in ["in", "const", "add", "sub", "mul", "threshold", "select"] {
        assert!(ops.contains(op), "no fixture kernel uses {op}: {ops:?}");
    }
}

/// Special values at every lane position of both loops: each input is the
/// same special value everywhere but at one rotating position.
#[test]
fn special_values_in_every_lane() {
    let mut jit = KernelCompiler::new().expect("jit");
    let module = optimized(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tutorial.ron"));
    let specials =
        [0.0f32, -0.0, 1.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, -f32::NAN, 1.000_000_1, 0.999_999_94];
    for (kernel, layouts) in fused_kernels(&module) {
        for &s in &specials {
            for n in [5usize, 7] {
                for pos in 0..n {
                    let ins: Vec<Vec<f32>> = layouts
                        .iter()
                        .enumerate()
                        .map(|(k, l)| {
                            let len = if *l == InputLayout::Full { n } else { 1 };
                            (0..len).map(|e| if e == (pos + k) % n { s } else { 0.25 * k as f32 - 0.5 }).collect()
                        })
                        .collect();
                    check(&mut jit, &kernel, &layouts, &ins, n).unwrap();
                }
            }
        }
    }
}

fn kernel(name: &str, n_inputs: u32, body: Vec<KernelInst>, outputs: Vec<u32>) -> FusedKernel {
    // The handles are never read by the JIT; any will do.
    let mut m = Module::new("k", 1, 1e-3, Dtype::F32);
    let h = m.nodes.append(snnc_ir::Node {
        op: Op::Const { value: 0.0, dtype: Dtype::F32 },
        ty: snnc_ir::Type::new(Dtype::F32, snnc_ir::Shape::scalar()),
        name: None,
    });
    FusedKernel { name: name.into(), inputs: vec![h; n_inputs as usize], body, outputs }
}

#[test]
fn max_min_relu_nan_and_signed_zero() {
    use KernelInst::*;
    let k = kernel(
        "mm",
        2,
        vec![
            Input(0),
            Input(1),
            Binary { op: BinaryOp::Max, lhs: 0, rhs: 1 },
            Binary { op: BinaryOp::Min, lhs: 0, rhs: 1 },
            Unary { op: UnaryOp::Relu, arg: 0 },
        ],
        vec![2, 3, 4],
    );
    let mut jit = KernelCompiler::new().unwrap();
    let jk = jit.compile(&k, &[InputLayout::Full, InputLayout::Full]).unwrap();
    let nan = f32::from_bits(0xffc0_0001);
    let a = vec![-0.0, 0.0, nan, 1.0, f32::NAN, -1.0, -0.0];
    let b = vec![0.0, -0.0, 1.0, nan, 2.0, -0.0, f32::NEG_INFINITY];
    let out = run_jit(&jk, &[a.clone(), b.clone()], a.len());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let want_max: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| max_nan(x, y)).collect();
    let want_min: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| min_nan(x, y)).collect();
    let want_relu: Vec<f32> = a.iter().map(|&x| max_nan(x, 0.0)).collect();
    assert_eq!(bits(&out[0]), bits(&want_max));
    assert_eq!(bits(&out[1]), bits(&want_min));
    assert_eq!(bits(&out[2]), bits(&want_relu));
    // Spelled out: ties keep the first operand, NaN is canonical.
    assert_eq!(out[0][0].to_bits(), (-0.0f32).to_bits());
    assert_eq!(out[0][1].to_bits(), 0.0f32.to_bits());
    assert_eq!(out[0][2].to_bits(), f32::NAN.to_bits());
    assert_eq!(out[2][0].to_bits(), (-0.0f32).to_bits());
}

#[test]
fn f64_kernels_are_unsupported() {
    use KernelInst::*;
    let k = kernel(
        "f64",
        1,
        vec![Input(0), Const { value: 0.5, dtype: Dtype::F64 }, Binary { op: BinaryOp::Mul, lhs: 0, rhs: 1 }],
        vec![2],
    );
    let mut jit = KernelCompiler::new().unwrap();
    assert!(matches!(jit.compile(&k, &[InputLayout::Full]), Err(JitError::Unsupported(_))));
    assert!(matches!(kernel_clif(&k, &[InputLayout::Full]), Err(JitError::Unsupported(_))));
    let k = kernel("cast", 1, vec![Input(0), Cast { arg: 0, dtype: Dtype::F64 }], vec![1]);
    assert!(matches!(jit.compile(&k, &[InputLayout::Full]), Err(JitError::Unsupported(_))));
}

#[test]
fn lengths_are_checked() {
    use KernelInst::*;
    let k = kernel("add", 2, vec![Input(0), Input(1), Binary { op: BinaryOp::Add, lhs: 0, rhs: 1 }], vec![2]);
    let mut jit = KernelCompiler::new().unwrap();
    assert!(matches!(jit.compile(&k, &[InputLayout::Full]), Err(JitError::Shape(_))));
    let jk = jit.compile(&k, &[InputLayout::Full, InputLayout::Scalar]).unwrap();
    assert_eq!((jk.n_inputs(), jk.n_outputs()), (2, 1));
    let a = [1.0f32, 2.0, 3.0];
    let mut o = [0.0f32; 3];
    let mut short = [0.0f32; 2];
    assert!(matches!(jk.run(&[&a, &[1.0, 2.0]], &mut [&mut o]), Err(JitError::Shape(_))));
    assert!(matches!(jk.run(&[&a[..2], &[1.0]], &mut [&mut o]), Err(JitError::Shape(_))));
    assert!(matches!(jk.run(&[&a], &mut [&mut o]), Err(JitError::Shape(_))));
    assert!(matches!(jk.run(&[&a, &[1.0]], &mut [&mut short]), Err(JitError::Shape(_))));
    jk.run(&[&a, &[0.5]], &mut [&mut o]).unwrap();
    assert_eq!(o, [1.5, 2.5, 3.5]);
    // n = 0 runs nothing.
    jk.run(&[&[], &[0.5]], &mut [&mut []]).unwrap();
    // Malformed kernels are errors, not panics.
    let bad = kernel("bad", 1, vec![Input(0), Unary { op: UnaryOp::Neg, arg: 1 }], vec![1]);
    assert!(matches!(jit.compile(&bad, &[InputLayout::Full]), Err(JitError::Codegen(_))));
    let bad = kernel("bad", 1, vec![Input(3)], vec![0]);
    assert!(matches!(jit.compile(&bad, &[InputLayout::Full]), Err(JitError::Codegen(_))));
    let bad = kernel("bad", 1, vec![Input(0)], vec![1]);
    assert!(matches!(jit.compile(&bad, &[InputLayout::Full]), Err(JitError::Codegen(_))));
}

#[test]
fn kernels_are_send_sync_and_outlive_the_compiler() {
    fn send_sync<T: Send + Sync + Clone>() {}
    fn send<T: Send>() {}
    send_sync::<JitKernel>();
    send_sync::<JitStepKernel>();
    send::<KernelCompiler>();
    use KernelInst::*;
    let k = kernel("exp", 1, vec![Input(0), Unary { op: UnaryOp::Exp, arg: 0 }], vec![1]);
    let jk = {
        let mut jit = KernelCompiler::new().unwrap();
        jit.compile(&k, &[InputLayout::Full]).unwrap()
    };
    let jk2 = jk.clone();
    let h = std::thread::spawn(move || run_jit(&jk2, &[vec![1.0; 9]], 9));
    assert_eq!(h.join().unwrap()[0], vec![1.0f32.exp(); 9]);
    assert_eq!(run_jit(&jk, &[vec![0.0; 2]], 2)[0], vec![1.0; 2]);
}

#[test]
fn clif_text_is_deterministic_and_fma_free() {
    let mut texts = Vec::new();
    for path in fixture_paths() {
        let module = optimized(&path);
        for (kernel, layouts) in fused_kernels(&module) {
            let a = kernel_clif(&kernel, &layouts).unwrap();
            let b = kernel_clif(&kernel, &layouts).unwrap();
            assert_eq!(a, b, "kernel {}", kernel.name);
            assert!(a.contains("f32x4"), "{a}");
            assert!(!a.contains("fma"), "{a}");
            // No data-dependent branch: the only brif are the loop tests
            // (entry, vector loop, tail test, tail loop).
            assert_eq!(a.matches("brif").count(), 4, "{a}");
            assert!(!a.contains("= select"), "{a}");
            texts.push(a);
        }
    }
    // A second lowering gives the same text again.
    let mut again = Vec::new();
    for path in fixture_paths() {
        for (kernel, layouts) in fused_kernels(&optimized(&path)) {
            again.push(kernel_clif(&kernel, &layouts).unwrap());
        }
    }
    assert_eq!(texts, again);
}

// ---------------------------------------------------------------------------
// Random kernels.

#[derive(Clone, Debug)]
struct Case {
    kernel: FusedKernel,
    layouts: Vec<InputLayout>,
    n: usize,
    seed: u64,
}

fn arb_inst(i: u32) -> impl Strategy<Value = KernelInst> {
    let a = 0..i;
    let consts = prop_oneof![
        Just(0.0f64),
        Just(1.0),
        Just(-1.0),
        Just(0.5),
        Just(1e-3),
        Just(100.0),
        Just(f64::INFINITY),
        Just(0.1),
        -10.0f64..10.0,
    ];
    prop_oneof![
        consts.prop_map(|value| KernelInst::Const { value, dtype: Dtype::F32 }),
        (prop::sample::select(UnaryOp::ALL.to_vec()), a.clone()).prop_map(|(op, arg)| KernelInst::Unary { op, arg }),
        (prop::sample::select(BinaryOp::ALL.to_vec()), a.clone(), a.clone())
            .prop_map(|(op, lhs, rhs)| KernelInst::Binary { op, lhs, rhs }),
        (
            prop::sample::select(vec![CompareOp::Gt, CompareOp::Ge, CompareOp::Lt, CompareOp::Le, CompareOp::Eq]),
            a.clone(),
            a.clone()
        )
            .prop_map(|(op, lhs, rhs)| KernelInst::Compare { op, lhs, rhs }),
        (a.clone(), a.clone(), a.clone()).prop_map(|(cond, on_true, on_false)| KernelInst::Select {
            cond,
            on_true,
            on_false
        }),
        a.clone().prop_map(|arg| KernelInst::Threshold { arg, surrogate: Surrogate::SuperSpike }),
        a.clone().prop_map(KernelInst::StopGradient),
        (a, prop::sample::select(vec![Dtype::F32, Dtype::Spike]))
            .prop_map(|(arg, dtype)| KernelInst::Cast { arg, dtype }),
    ]
}

fn arb_case() -> impl Strategy<Value = Case> {
    (1u32..4, 1usize..10)
        .prop_flat_map(|(n_in, len)| {
            let body: Vec<BoxedStrategy<KernelInst>> = (0..n_in)
                .map(|k| Just(KernelInst::Input(k)).boxed())
                .chain((0..len as u32).map(|j| arb_inst(n_in + j).boxed()))
                .collect();
            let total = n_in + len as u32;
            (
                body,
                prop::collection::vec(0..total, 1..4),
                prop::collection::vec(prop::bool::ANY, n_in as usize),
                prop::sample::select(vec![1usize, 2, 3, 4, 5, 8, 9, 13, 16, 21, 37]),
                any::<u64>(),
            )
        })
        .prop_map(|(body, outputs, scalar, n, seed)| {
            let layouts: Vec<InputLayout> =
                scalar.iter().map(|&s| if s { InputLayout::Scalar } else { InputLayout::Full }).collect();
            Case { kernel: kernel("random", layouts.len() as u32, body, outputs), layouts, n, seed }
        })
}

static JIT: Mutex<Option<KernelCompiler>> = Mutex::new(None);

proptest! {
    #![proptest_config(proptest_config::proptest_config(512))]

    #[test]
    fn random_kernels_give_the_interpreters_bits(case in arb_case()) {
        let mut guard = JIT.lock().unwrap_or_else(|e| e.into_inner());
        let jit = guard.get_or_insert_with(|| KernelCompiler::new().expect("jit"));
        let mut rng = Rng(case.seed);
        let ins = inputs_with(&mut rng, &case.layouts, case.n, 5);
        check(jit, &case.kernel, &case.layouts, &ins, case.n).map_err(TestCaseError::fail)?;
    }
}

// ---------------------------------------------------------------------------
// Step loops.

/// Buffers of a step-loop run, and the reference: `steps` steps of
/// [`eval_ref`], the states updated from each step's outputs.
struct StepRun {
    ins: Vec<Vec<f32>>,
    states: Vec<Vec<f32>>,
    want_states: Vec<Vec<f32>>,
    want_outs: Vec<Vec<f32>>,
}

fn step_reference(
    kernel: &FusedKernel,
    inputs: &[StepInput],
    record: &[bool],
    n: usize,
    steps: usize,
    rng: &mut Rng,
) -> StepRun {
    let mut ins = Vec::new();
    let mut states = Vec::new();
    for input in inputs {
        match input {
            StepInput::Seq => ins.push(rng.values(n * steps, 5)),
            StepInput::Static => ins.push(rng.values(n, 5)),
            StepInput::Scalar => ins.push(rng.values(1, 5)),
            StepInput::State { .. } => states.push(rng.values(n, 5)),
        }
    }
    let layouts: Vec<InputLayout> =
        inputs.iter().map(|i| if *i == StepInput::Scalar { InputLayout::Scalar } else { InputLayout::Full }).collect();
    let mut cur = states.clone();
    let mut want_outs = vec![Vec::new(); record.iter().filter(|&&r| r).count()];
    for t in 0..steps {
        let (mut given, mut st) = (ins.iter(), cur.iter());
        let step_ins: Vec<Vec<f32>> = inputs
            .iter()
            .map(|i| match i {
                StepInput::Seq => given.next().unwrap()[t * n..(t + 1) * n].to_vec(),
                StepInput::Static | StepInput::Scalar => given.next().unwrap().clone(),
                StepInput::State { .. } => st.next().unwrap().clone(),
            })
            .collect();
        let outs = eval_ref(kernel, &layouts, &step_ins, n);
        for (w, o) in want_outs.iter_mut().zip(outs.iter().zip(record).filter(|(_, r)| **r).map(|(o, _)| o)) {
            w.extend_from_slice(o);
        }
        cur = inputs
            .iter()
            .filter_map(|i| match i {
                StepInput::State { output } => Some(outs[*output as usize].clone()),
                _ => None,
            })
            .collect();
    }
    StepRun { ins, states, want_states: cur, want_outs }
}

fn check_steps(
    jk: &JitStepKernel,
    kernel: &FusedKernel,
    inputs: &[StepInput],
    record: &[bool],
    n: usize,
    steps: usize,
    rng: &mut Rng,
) -> Result<(), String> {
    let mut r = step_reference(kernel, inputs, record, n, steps, rng);
    let mut outs = vec![vec![f32::from_bits(0xdead_beef); n * steps]; r.want_outs.len()];
    let in_refs: Vec<&[f32]> = r.ins.iter().map(|x| x.as_slice()).collect();
    let mut st_refs: Vec<&mut [f32]> = r.states.iter_mut().map(|x| x.as_mut_slice()).collect();
    let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(|x| x.as_mut_slice()).collect();
    jk.run(&in_refs, &mut st_refs, &mut out_refs, n, steps).map_err(|e| e.to_string())?;
    let state_outputs: Vec<usize> = inputs
        .iter()
        .filter_map(|i| match i {
            StepInput::State { output } => Some(*output as usize),
            _ => None,
        })
        .collect();
    let rec_outputs: Vec<usize> = (0..record.len()).filter(|&j| record[j]).collect();
    let pairs = r
        .want_states
        .iter()
        .zip(&r.states)
        .zip(&state_outputs)
        .map(|((w, g), &o)| ("state", w, g, o))
        .chain(r.want_outs.iter().zip(&outs).zip(&rec_outputs).map(|((w, g), &o)| ("output", w, g, o)));
    for (what, w, g, o) in pairs {
        for e in 0..w.len() {
            if !same(kernel, o, w[e], g[e]) {
                return Err(format!(
                    "{what} (kernel output {o}) element {e} (n = {n}, steps = {steps}): want {} ({:#010x}), got {} ({:#010x})\n{inputs:?} {record:?}\n{kernel:#?}",
                    w[e],
                    w[e].to_bits(),
                    g[e],
                    g[e].to_bits()
                ));
            }
        }
    }
    Ok(())
}

#[derive(Clone, Debug)]
struct StepCase {
    kernel: FusedKernel,
    inputs: Vec<StepInput>,
    record: Vec<bool>,
    n: usize,
    steps: usize,
    seed: u64,
}

fn arb_step_case() -> impl Strategy<Value = StepCase> {
    arb_case()
        .prop_flat_map(|c| {
            let n_out = c.kernel.outputs.len() as u32;
            let kinds = prop::collection::vec(
                prop_oneof![
                    Just(StepInput::Seq),
                    Just(StepInput::Static),
                    Just(StepInput::Scalar),
                    (0..n_out).prop_map(|output| StepInput::State { output }),
                ],
                c.layouts.len(),
            );
            let record = prop::collection::vec(prop::bool::ANY, n_out as usize);
            (Just(c), kinds, record, prop::sample::select(vec![1usize, 2, 3, 7]))
        })
        .prop_map(|(c, inputs, record, steps)| StepCase {
            kernel: c.kernel,
            inputs,
            record,
            n: c.n,
            steps,
            seed: c.seed,
        })
}

proptest! {
    #![proptest_config(proptest_config::proptest_config(512))]

    #[test]
    fn random_step_loops_give_the_bits_of_repeated_steps(case in arb_step_case()) {
        let mut guard = JIT.lock().unwrap_or_else(|e| e.into_inner());
        let jit = guard.get_or_insert_with(|| KernelCompiler::new().expect("jit"));
        let jk = jit.compile_steps(&case.kernel, &case.inputs, &case.record).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut rng = Rng(case.seed);
        check_steps(&jk, &case.kernel, &case.inputs, &case.record, case.n, case.steps, &mut rng)
            .map_err(TestCaseError::fail)?;
    }
}

/// The step inputs of a fused kernel in a step loop: `state_read` inputs
/// whose state the kernel's own output writes are `State`, scalars
/// `Scalar`, other per-step values `Seq`; records every output.
fn step_inputs(module: &Module, fused: snnc_ir::Handle<snnc_ir::Node>) -> Option<Vec<StepInput>> {
    let Op::Fused(k) = &module.nodes[fused].op else { return None };
    let output_of = |v: snnc_ir::Handle<snnc_ir::Node>| -> Option<u32> {
        if v == fused {
            return Some(0);
        }
        match module.nodes[v].op {
            Op::Extract { kernel, index } if kernel == fused => Some(index),
            _ => None,
        }
    };
    let mut any_state = false;
    let res = k
        .inputs
        .iter()
        .map(|&h| {
            let node = &module.nodes[h];
            if let Op::StateRead(s) = node.op {
                for (_, w) in module.nodes.iter() {
                    if let Op::StateWrite { state, value } = w.op
                        && state == s
                        && let Some(output) = output_of(value)
                    {
                        any_state = true;
                        return StepInput::State { output };
                    }
                }
            }
            if node.ty.shape.is_scalar() { StepInput::Scalar } else { StepInput::Seq }
        })
        .collect();
    any_state.then_some(res)
}

#[test]
fn fixture_step_loops_give_the_bits_of_repeated_steps() {
    let mut jit = KernelCompiler::new().unwrap();
    let mut rng = Rng(11);
    let mut count = 0;
    for path in fixture_paths() {
        let module = optimized(&path);
        for (h, node) in module.nodes.iter() {
            let Op::Fused(kernel) = &node.op else { continue };
            let Some(inputs) = step_inputs(&module, h) else { continue };
            count += 1;
            let record = vec![true; kernel.outputs.len()];
            let jk = jit.compile_steps(kernel, &inputs, &record).unwrap();
            for (n, steps) in [(1, 3), (5, 4), (783, 10)] {
                if let Err(e) = check_steps(&jk, kernel, &inputs, &record, n, steps, &mut rng) {
                    panic!("{}: {e}", path.display());
                }
            }
            let a = step_kernel_clif(kernel, &inputs, &record).unwrap();
            assert_eq!(a, step_kernel_clif(kernel, &inputs, &record).unwrap());
            assert!(!a.contains("fma"), "{a}");
        }
    }
    assert!(count >= 5, "only {count} fixture kernels update a state");
}

// ---------------------------------------------------------------------------
// Throughput: `cargo test --release -p snnc-cpu --test jit -- --ignored --nocapture`.

#[test]
#[ignore = "a benchmark; run in --release"]
fn bench_tutorial_lif1() {
    let module = optimized(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tutorial.ron"));
    let (kernel, layouts) =
        fused_kernels(&module).into_iter().find(|(k, _)| k.name.starts_with("lif1")).expect("a lif1 kernel");
    println!("{}", kernel_clif(&kernel, &layouts).unwrap());
    let mut jit = KernelCompiler::new().unwrap();
    let t0 = std::time::Instant::now();
    let jk = jit.compile(&kernel, &layouts).unwrap();
    println!("compile: {:?}", t0.elapsed());
    let n = 1 << 20;
    let mut rng = Rng(1);
    let ins = inputs(&mut rng, &layouts, n);
    let in_refs: Vec<&[f32]> = ins.iter().map(|x| x.as_slice()).collect();
    let mut outs = vec![vec![0.0f32; n]; jk.n_outputs()];
    let full_in = layouts.iter().filter(|l| **l == InputLayout::Full).count();
    let bytes = (full_in + jk.n_outputs()) * 4 * n;
    let mut best = f64::INFINITY;
    for _ in 0..30 {
        let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(|x| x.as_mut_slice()).collect();
        let t = std::time::Instant::now();
        for _ in 0..10 {
            jk.run(&in_refs, &mut out_refs).unwrap();
        }
        best = best.min(t.elapsed().as_secs_f64() / 10.0);
    }
    println!(
        "lif1: {} inputs ({full_in} full), {} outputs, n = {n}: {:.3} ns/element, {:.1} GB/s ({bytes} bytes per call)",
        layouts.len(),
        jk.n_outputs(),
        best * 1e9 / n as f64,
        bytes as f64 / best / 1e9
    );
    // A plain Rust loop with the same streams, for the machine's bandwidth
    // (4 inputs, 3 outputs).
    if full_in == 4 && jk.n_outputs() == 3 {
        let mut best = f64::INFINITY;
        for _ in 0..30 {
            let t = std::time::Instant::now();
            for _ in 0..10 {
                let [o0, o1, o2] = &mut outs[..] else { unreachable!() };
                let (a, b, c, d) = (&ins[0][..n], &ins[1][..n], &ins[2][..n], &ins[3][..n]);
                let (o0, o1, o2) = (&mut o0[..n], &mut o1[..n], &mut o2[..n]);
                for e in 0..n {
                    o0[e] = a[e] + b[e];
                    o1[e] = c[e] * d[e];
                    o2[e] = a[e] - d[e];
                }
                std::hint::black_box(&outs);
            }
            best = best.min(t.elapsed().as_secs_f64() / 10.0);
        }
        println!(
            "rust loop, same streams: {:.3} ns/element, {:.1} GB/s",
            best * 1e9 / n as f64,
            bytes as f64 / best / 1e9
        );
    }
}

/// The same lif1 kernel as a step loop: `steps` steps inside the kernel
/// against `steps` calls of the one-step kernel (states copied back as an
/// executor would). `cargo test --release -p snnc-cpu --test jit -- --ignored --nocapture bench`.
#[test]
#[ignore = "a benchmark; run in --release"]
fn bench_tutorial_lif1_step_loop() {
    let module = optimized(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/tutorial.ron"));
    let (h, kernel) = module
        .nodes
        .iter()
        .find_map(|(h, node)| match &node.op {
            Op::Fused(k) if k.name.starts_with("lif1") => Some((h, (**k).clone())),
            _ => None,
        })
        .expect("a lif1 kernel");
    let inputs = step_inputs(&module, h).expect("lif1 updates states");
    let state_outputs: Vec<u32> = inputs
        .iter()
        .filter_map(|i| match i {
            StepInput::State { output } => Some(*output),
            _ => None,
        })
        .collect();
    let record: Vec<bool> = (0..kernel.outputs.len() as u32).map(|j| !state_outputs.contains(&j)).collect();
    println!("lif1 step inputs {inputs:?}, recorded outputs {record:?}");
    let mut jit = KernelCompiler::new().unwrap();
    let sk = jit.compile_steps(&kernel, &inputs, &record).unwrap();
    let layouts: Vec<InputLayout> =
        inputs.iter().map(|i| if *i == StepInput::Scalar { InputLayout::Scalar } else { InputLayout::Full }).collect();
    let k1 = jit.compile(&kernel, &layouts).unwrap();
    for (n, steps) in [(1usize << 20, 10usize), (1 << 16, 100)] {
        let mut rng = Rng(3);
        let r = step_reference(&kernel, &inputs, &record, 1, 1, &mut rng);
        drop(r);
        let seq: Vec<Vec<f32>> = inputs
            .iter()
            .filter(|i| !matches!(i, StepInput::State { .. }))
            .map(|_| (0..n * steps).map(|_| rng.values(1, 0)[0]).collect())
            .collect();
        let mut states: Vec<Vec<f32>> = state_outputs.iter().map(|_| vec![0.0f32; n]).collect();
        let mut outs: Vec<Vec<f32>> = record.iter().filter(|&&r| r).map(|_| vec![0.0f32; n * steps]).collect();
        let per = |f: &mut dyn FnMut()| {
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                let t = std::time::Instant::now();
                f();
                best = best.min(t.elapsed().as_secs_f64());
            }
            best * 1e9 / (n * steps) as f64
        };
        let fused = per(&mut || {
            let in_refs: Vec<&[f32]> = seq.iter().map(|x| x.as_slice()).collect();
            let mut st: Vec<&mut [f32]> = states.iter_mut().map(|x| x.as_mut_slice()).collect();
            let mut o: Vec<&mut [f32]> = outs.iter_mut().map(|x| x.as_mut_slice()).collect();
            sk.run(&in_refs, &mut st, &mut o, n, steps).unwrap();
        });
        // One call per step; state outputs go to scratch buffers, then swap.
        let mut all_outs: Vec<Vec<f32>> = (0..kernel.outputs.len()).map(|_| vec![0.0f32; n]).collect();
        let stepwise = per(&mut || {
            for t in 0..steps {
                let (mut s_it, mut q_it) = (states.iter(), seq.iter());
                let ins: Vec<&[f32]> = inputs
                    .iter()
                    .map(|i| match i {
                        StepInput::State { .. } => s_it.next().unwrap().as_slice(),
                        StepInput::Seq => &q_it.next().unwrap()[t * n..(t + 1) * n],
                        _ => q_it.next().unwrap().as_slice(),
                    })
                    .collect();
                let mut o: Vec<&mut [f32]> = all_outs.iter_mut().map(|x| x.as_mut_slice()).collect();
                k1.run(&ins, &mut o).unwrap();
                for (s, &j) in states.iter_mut().zip(&state_outputs) {
                    std::mem::swap(s, &mut all_outs[j as usize]);
                }
            }
        });
        println!(
            "lif1, n = {n}, {steps} steps: step loop in the kernel {fused:.3} ns per neuron-step; one call per step {stepwise:.3} ns"
        );
    }
}
