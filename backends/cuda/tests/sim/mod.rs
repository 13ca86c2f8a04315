//! A small PTX simulator for tests on machines without a GPU: it runs the
//! subset of PTX that snnc-cuda emits, thread by thread, with `bar.sync`
//! and `vote.sync` resolved across the block or warp, on buffers laid out
//! as the manifest says, launching exactly what the manifest lists (so it
//! also tests the manifest's schedule and arguments).
//!
//! It is a semantic model, not a timing one: each thread runs until it
//! reaches a barrier, a vote or its end; `f32` arithmetic is Rust's (IEEE
//! round-to-nearest, like `.rn`), `ex2.approx` is `f32::exp2`. Global
//! addresses are `buffer << 40 | byte offset`.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};

use snnc_cuda::{Arg, Manifest};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Opd {
    Reg(u32),
    Imm(u64),
    Special(Special),
    /// A shared array's base address.
    Shared(u32),
    /// `[base + off]`.
    Addr(u32, i64),
    /// `[param]`.
    Param(u32),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Special {
    TidX,
    TidY,
    CtaidX,
    CtaidY,
    NtidX,
    NctaidX,
    LanemaskLt,
}

#[derive(Clone, Debug)]
struct Inst {
    pred: Option<(u32, bool)>,
    op: String,
    opds: Vec<Opd>,
}

#[derive(Clone, Debug)]
struct Kernel {
    params: Vec<String>,
    nregs: usize,
    shared_words: usize,
    insts: Vec<Inst>,
    labels: HashMap<String, usize>,
}

/// The kernels of a PTX module, parsed.
#[derive(Debug)]
pub struct Module {
    kernels: HashMap<String, Kernel>,
}

fn parse_imm(s: &str) -> Option<u64> {
    if let Some(h) = s.strip_prefix("0f") {
        return u32::from_str_radix(h, 16).ok().map(u64::from);
    }
    if let Some(h) = s.strip_prefix("0d") {
        return u64::from_str_radix(h, 16).ok();
    }
    if let Some(h) = s.strip_prefix("0x") {
        return u64::from_str_radix(h, 16).ok();
    }
    if let Ok(v) = s.parse::<i64>() {
        return Some(v as u64);
    }
    None
}

impl Module {
    pub fn parse(ptx: &str) -> Module {
        let mut kernels = HashMap::new();
        let mut lines = ptx.lines().peekable();
        while let Some(line) = lines.next() {
            let Some(rest) = line.strip_prefix(".visible .entry ") else { continue };
            let name = rest.trim_end_matches('(').to_string();
            let mut params = Vec::new();
            for l in lines.by_ref() {
                let l = l.trim();
                if l == ")" {
                    break;
                }
                let p = l.trim_end_matches(',').split_whitespace().last().expect("a param name");
                params.push(p.to_string());
            }
            let mut regs: HashMap<String, u32> = HashMap::new();
            let mut shared: HashMap<String, (u32, usize)> = HashMap::new();
            let mut shared_words = 0;
            let mut insts = Vec::new();
            let mut labels = HashMap::new();
            for l in lines.by_ref() {
                let l = l.trim();
                if l == "}" {
                    break;
                }
                if l.is_empty() || l == "{" || l.starts_with("//") || l.starts_with(".reg") {
                    continue;
                }
                if let Some(s) = l.strip_prefix(".shared .align 4 .b32 ") {
                    let (n, w) = s.trim_end_matches("];").split_once('[').expect("name[words]");
                    let words: usize = w.parse().expect("a size");
                    shared.insert(n.to_string(), ((shared_words * 4) as u32, words));
                    shared_words += words;
                    continue;
                }
                if let Some(label) = l.strip_suffix(':') {
                    labels.insert(label.to_string(), insts.len());
                    continue;
                }
                let l = l.trim_end_matches(';');
                let (pred, l) = if let Some(p) = l.strip_prefix('@') {
                    let (p, rest) = p.split_once(' ').expect("a predicated instruction");
                    let (neg, p) = match p.strip_prefix('!') {
                        Some(p) => (true, p),
                        None => (false, p),
                    };
                    let n = regs.len() as u32;
                    (Some((*regs.entry(p.to_string()).or_insert(n), neg)), rest.trim())
                } else {
                    (None, l)
                };
                let (op, args) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
                let mut opds = Vec::new();
                if op.starts_with("bra") {
                    opds.push(Opd::Imm(0));
                    insts.push(Inst { pred, op: format!("{op} {}", args.trim()), opds });
                    continue;
                }
                for a in args.split(',').map(str::trim).filter(|a| !a.is_empty()) {
                    let mut reg = |r: &str| {
                        let n = regs.len() as u32;
                        *regs.entry(r.to_string()).or_insert(n)
                    };
                    let opd = if let Some(inner) = a.strip_prefix('[').and_then(|a| a.strip_suffix(']')) {
                        if inner.starts_with('%') {
                            let (base, off) = match inner.split_once('+') {
                                Some((b, o)) => (b, o.parse::<i64>().expect("an offset")),
                                None => (inner, 0),
                            };
                            Opd::Addr(reg(base), off)
                        } else {
                            Opd::Param(params.iter().position(|p| p == inner).expect("a known param") as u32)
                        }
                    } else if a.starts_with('%') {
                        match a {
                            "%tid.x" => Opd::Special(Special::TidX),
                            "%tid.y" => Opd::Special(Special::TidY),
                            "%ctaid.x" => Opd::Special(Special::CtaidX),
                            "%ctaid.y" => Opd::Special(Special::CtaidY),
                            "%ntid.x" => Opd::Special(Special::NtidX),
                            "%nctaid.x" => Opd::Special(Special::NctaidX),
                            "%lanemask_lt" => Opd::Special(Special::LanemaskLt),
                            r => Opd::Reg(reg(r)),
                        }
                    } else if let Some(&(base, _)) = shared.get(a) {
                        Opd::Shared(base)
                    } else {
                        Opd::Imm(parse_imm(a).unwrap_or_else(|| panic!("operand `{a}` in `{l}`")))
                    };
                    opds.push(opd);
                }
                insts.push(Inst { pred, op: op.to_string(), opds });
            }
            // Resolve branch targets.
            for i in &mut insts {
                if i.op.starts_with("bra") {
                    let target = i.op.split_whitespace().nth(1).expect("a target").to_string();
                    let at = *labels.get(&target).unwrap_or_else(|| panic!("label {target}"));
                    i.opds[0] = Opd::Imm(at as u64);
                    i.op = "bra".into();
                }
            }
            kernels.insert(name, Kernel { params, nregs: regs.len(), shared_words, insts, labels });
        }
        Module { kernels }
    }
}

/// Global memory: one word vector per buffer.
pub struct Memory {
    pub bufs: Vec<Vec<u32>>,
}

const OFF_BITS: u32 = 40;

fn split_addr(a: u64) -> (usize, usize) {
    ((a >> OFF_BITS) as usize, ((a & ((1 << OFF_BITS) - 1)) / 4) as usize)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Wait {
    None,
    Bar,
    Vote,
    Done,
}

struct Thread {
    pc: usize,
    regs: Vec<u64>,
    wait: Wait,
    tid: (u32, u32),
    lin: u32,
}

fn f(x: u64) -> f32 {
    f32::from_bits(x as u32)
}

fn fb(x: f32) -> u64 {
    u64::from(x.to_bits())
}

fn d(x: u64) -> f64 {
    f64::from_bits(x)
}

fn db(x: f64) -> u64 {
    x.to_bits()
}

impl Module {
    /// Runs one launch.
    pub fn launch(&self, name: &str, grid: [u32; 3], block: [u32; 3], params: &[u64], mem: &mut Memory) {
        let k = self.kernels.get(name).unwrap_or_else(|| panic!("kernel {name}"));
        assert_eq!(k.params.len(), params.len(), "{name}: parameter count");
        let nthreads = (block[0] * block[1] * block[2]) as usize;
        for gy in 0..grid[1] {
            for gx in 0..grid[0] {
                let mut shared = vec![0u32; k.shared_words];
                let mut threads: Vec<Thread> = (0..nthreads as u32)
                    .map(|lin| Thread {
                        pc: 0,
                        regs: vec![0; k.nregs],
                        wait: Wait::None,
                        tid: (lin % block[0], lin / block[0]),
                        lin,
                    })
                    .collect();
                loop {
                    for t in threads.iter_mut() {
                        if t.wait == Wait::None {
                            run(k, t, (gx, gy), grid, block, params, mem, &mut shared);
                        }
                    }
                    if threads.iter().all(|t| t.wait == Wait::Done) {
                        break;
                    }
                    // Votes: per warp, when every live thread of it waits.
                    let mut progressed = false;
                    for w in threads.chunks_mut(32) {
                        let live: Vec<usize> = (0..w.len()).filter(|&i| w[i].wait != Wait::Done).collect();
                        if !live.is_empty() && live.iter().all(|&i| w[i].wait == Wait::Vote) {
                            let mut ballot = 0u32;
                            for &i in &live {
                                let inst = &k.insts[w[i].pc];
                                let p = val(&w[i], inst.opds[1], (gx, gy), grid, block, &shared);
                                if p != 0 {
                                    ballot |= 1 << (w[i].lin % 32);
                                }
                            }
                            for &i in &live {
                                let inst = &k.insts[w[i].pc];
                                if let Opd::Reg(d) = inst.opds[0] {
                                    w[i].regs[d as usize] = u64::from(ballot);
                                }
                                w[i].pc += 1;
                                w[i].wait = Wait::None;
                            }
                            progressed = true;
                        }
                    }
                    if !progressed {
                        let live: Vec<usize> = (0..threads.len()).filter(|&i| threads[i].wait != Wait::Done).collect();
                        assert!(
                            live.iter().all(|&i| threads[i].wait == Wait::Bar),
                            "{name}: threads wait on different things (deadlock)"
                        );
                        for i in live {
                            threads[i].pc += 1;
                            threads[i].wait = Wait::None;
                        }
                    }
                }
            }
        }
    }
}

fn val(t: &Thread, o: Opd, cta: (u32, u32), grid: [u32; 3], block: [u32; 3], _shared: &[u32]) -> u64 {
    match o {
        Opd::Reg(r) => t.regs[r as usize],
        Opd::Imm(v) => v,
        Opd::Shared(b) => u64::from(b),
        Opd::Special(s) => u64::from(match s {
            Special::TidX => t.tid.0,
            Special::TidY => t.tid.1,
            Special::CtaidX => cta.0,
            Special::CtaidY => cta.1,
            Special::NtidX => block[0],
            Special::NctaidX => grid[0],
            Special::LanemaskLt => (1u32 << (t.lin % 32)) - 1,
        }),
        Opd::Addr(..) | Opd::Param(_) => panic!("an address where a value is needed"),
    }
}

#[allow(clippy::too_many_arguments)]
fn run(
    k: &Kernel,
    t: &mut Thread,
    cta: (u32, u32),
    grid: [u32; 3],
    block: [u32; 3],
    params: &[u64],
    mem: &mut Memory,
    shared: &mut [u32],
) {
    loop {
        let inst = &k.insts[t.pc];
        if let Some((p, neg)) = inst.pred
            && (t.regs[p as usize] != 0) == neg
        {
            t.pc += 1;
            continue;
        }
        let o = &inst.opds;
        let v = |i: usize| val(t, o[i], cta, grid, block, shared);
        let dst = match o.first() {
            Some(Opd::Reg(r)) => *r as usize,
            _ => usize::MAX,
        };
        let op = inst.op.as_str();
        let res: Option<u64> = match op {
            "ret" => {
                t.wait = Wait::Done;
                return;
            }
            "bra" => {
                t.pc = v(0) as usize;
                continue;
            }
            "bar.sync" => {
                t.wait = Wait::Bar;
                return;
            }
            "vote.sync.ballot.b32" => {
                t.wait = Wait::Vote;
                return;
            }
            "ld.param.u64" | "ld.param.u32" => {
                let Opd::Param(p) = o[1] else { panic!("ld.param") };
                Some(params[p as usize])
            }
            "cvta.to.global.u64" | "mov.u32" | "mov.f32" | "mov.b32" | "mov.u64" | "mov.f64" | "mov.b64" => Some(v(1)),
            "cvt.f64.f32" => Some(db(f64::from(f(v(1))))),
            "cvt.rn.f32.f64" => Some(fb(d(v(1)) as f32)),
            "cvt.rni.f64.f64" => Some(db(d(v(1)).round_ties_even())),
            "cvt.rzi.s32.f64" => Some(u64::from(d(v(1)) as i32 as u32)),
            "cvt.rn.f64.s32" => Some(db(f64::from(v(1) as u32 as i32))),
            "add.rn.f64" => Some(db(d(v(1)) + d(v(2)))),
            "sub.rn.f64" => Some(db(d(v(1)) - d(v(2)))),
            "mul.rn.f64" => Some(db(d(v(1)) * d(v(2)))),
            "div.rn.f64" => Some(db(d(v(1)) / d(v(2)))),
            "fma.rn.f64" => Some(db(d(v(1)).mul_add(d(v(2)), d(v(3))))),
            "max.f64" => Some(db(d(v(1)).max(d(v(2))))),
            "min.f64" => Some(db(d(v(1)).min(d(v(2))))),
            "abs.f64" => Some(v(1) & !(1 << 63)),
            "copysign.f64" => Some((v(2) & !(1 << 63)) | (v(1) & (1 << 63))),
            "and.b64" => Some(v(1) & v(2)),
            "or.b64" => Some(v(1) | v(2)),
            "selp.f64" => Some(if v(3) != 0 { v(1) } else { v(2) }),
            "ld.global.f32" | "ld.global.u32" => {
                let Opd::Addr(r, off) = o[1] else { panic!("ld") };
                let (b, i) = split_addr(t.regs[r as usize].wrapping_add(off as u64));
                let buf = &mem.bufs[b];
                assert!(i < buf.len(), "{}: load out of bounds ({i} of {} in buffer {b})", k.insts.len(), buf.len());
                Some(u64::from(buf[i]))
            }
            "st.global.f32" | "st.global.u32" => {
                let Opd::Addr(r, off) = o[0] else { panic!("st") };
                let (b, i) = split_addr(t.regs[r as usize].wrapping_add(off as u64));
                let x = v(1) as u32;
                let buf = &mut mem.bufs[b];
                assert!(i < buf.len(), "store out of bounds ({i} of {} in buffer {b})", buf.len());
                buf[i] = x;
                None
            }
            "ld.shared.f32" => {
                let Opd::Addr(r, off) = o[1] else { panic!("ld.shared") };
                let a = (t.regs[r as usize] as i64 + off) as usize / 4;
                Some(u64::from(shared[a]))
            }
            "st.shared.f32" => {
                let Opd::Addr(r, off) = o[0] else { panic!("st.shared") };
                let a = (t.regs[r as usize] as i64 + off) as usize / 4;
                shared[a] = v(1) as u32;
                None
            }
            "add.rn.f32" | "add.f32" => Some(fb(f(v(1)) + f(v(2)))),
            "sub.rn.f32" => Some(fb(f(v(1)) - f(v(2)))),
            "mul.rn.f32" => Some(fb(f(v(1)) * f(v(2)))),
            "div.rn.f32" => Some(fb(f(v(1)) / f(v(2)))),
            "fma.rn.f32" => Some(fb(f(v(1)).mul_add(f(v(2)), f(v(3))))),
            "sqrt.rn.f32" => Some(fb(f(v(1)).sqrt())),
            "neg.f32" => Some(v(1) ^ 0x8000_0000),
            "abs.f32" => Some(v(1) & 0x7fff_ffff),
            "copysign.f32" => Some((v(2) & 0x7fff_ffff) | (v(1) & 0x8000_0000)),
            "ex2.approx.f32" => Some(fb(f(v(1)).exp2())),
            "min.f32" | "max.f32" => {
                let (a, b) = (f(v(1)), f(v(2)));
                Some(fb(if op == "min.f32" { a.min(b) } else { a.max(b) }))
            }
            "cvt.rni.f32.f32" => Some(fb(f(v(1)).round_ties_even())),
            "cvt.rzi.s32.f32" => Some(u64::from(f(v(1)) as i32 as u32)),
            "cvt.rn.f32.u32" => Some(fb(v(1) as u32 as f32)),
            "cvt.rn.f32.s32" => Some(fb(v(1) as u32 as i32 as f32)),
            "cvt.u64.u32" => Some(v(1) & 0xffff_ffff),
            "cvt.u32.u64" => Some(v(1) & 0xffff_ffff),
            "mul.wide.u32" => Some((v(1) & 0xffff_ffff) * (v(2) & 0xffff_ffff)),
            "add.s64" | "add.u64" => Some(v(1).wrapping_add(v(2))),
            "mul.lo.u64" => Some(v(1).wrapping_mul(v(2))),
            "xor.b64" => Some(v(1) ^ v(2)),
            "shr.u64" => Some(v(1) >> v(2)),
            "shl.b64" => Some(v(1) << v(2)),
            "mad.lo.u32" => Some(u64::from((v(1) as u32).wrapping_mul(v(2) as u32).wrapping_add(v(3) as u32))),
            "mul.lo.u32" => Some(u64::from((v(1) as u32).wrapping_mul(v(2) as u32))),
            "add.u32" | "add.s32" => Some(u64::from((v(1) as u32).wrapping_add(v(2) as u32))),
            "sub.u32" | "sub.s32" => Some(u64::from((v(1) as u32).wrapping_sub(v(2) as u32))),
            "div.u32" => Some(u64::from(v(1) as u32 / v(2) as u32)),
            "rem.u32" => Some(u64::from(v(1) as u32 % v(2) as u32)),
            "min.u32" => Some(u64::from((v(1) as u32).min(v(2) as u32))),
            "max.u32" => Some(u64::from((v(1) as u32).max(v(2) as u32))),
            "shr.s32" => Some(u64::from(((v(1) as u32 as i32) >> (v(2) as u32)) as u32)),
            "shr.u32" => Some(u64::from((v(1) as u32) >> (v(2) as u32))),
            "shl.b32" => Some(u64::from((v(1) as u32) << (v(2) as u32))),
            "and.b32" => Some(v(1) & v(2) & 0xffff_ffff),
            "or.b32" => Some((v(1) | v(2)) & 0xffff_ffff),
            "popc.b32" => Some(u64::from((v(1) as u32).count_ones())),
            "bfe.u32" => Some(u64::from(((v(1) as u32) >> (v(2) as u32)) & ((1u32 << (v(3) as u32)) - 1))),
            "selp.f32" | "selp.u32" | "selp.s32" => Some(if v(3) != 0 { v(1) } else { v(2) }),
            "and.pred" => Some(u64::from(v(1) != 0 && v(2) != 0)),
            "or.pred" => Some(u64::from(v(1) != 0 || v(2) != 0)),
            "not.pred" => Some(u64::from(v(1) == 0)),
            _ if op.starts_with("setp.") => {
                let (cmp, ty) = op[5..].split_once('.').expect("setp.cmp.ty");
                let r = if ty == "f32" || ty == "f64" {
                    let (a, b) =
                        if ty == "f32" { (f64::from(f(v(1))), f64::from(f(v(2)))) } else { (d(v(1)), d(v(2))) };
                    let nan = a.is_nan() || b.is_nan();
                    match cmp {
                        "gt" => a > b,
                        "ge" => a >= b,
                        "lt" => a < b,
                        "le" => a <= b,
                        "eq" => a == b,
                        "ne" => !nan && a != b,
                        "neu" => nan || a != b,
                        "ltu" => nan || a < b,
                        "nan" => nan,
                        c => panic!("setp.{c}.{ty}"),
                    }
                } else {
                    let (a, b) = (v(1) as u32, v(2) as u32);
                    match cmp {
                        "gt" => a > b,
                        "ge" => a >= b,
                        "lt" => a < b,
                        "le" => a <= b,
                        "eq" => a == b,
                        "ne" => a != b,
                        c => panic!("setp.{c}.u32"),
                    }
                };
                Some(u64::from(r))
            }
            _ => panic!("the simulator does not know `{op}`"),
        };
        if let Some(r) = res {
            t.regs[dst] = r;
        }
        t.pc += 1;
    }
}

/// The buffers of a run, allocated for batch size `b`, and how to run the
/// manifest's launches on them.
pub struct Run<'m> {
    pub manifest: &'m Manifest,
    pub batch: u64,
    pub mem: Memory,
}

impl<'m> Run<'m> {
    pub fn new(manifest: &'m Manifest, batch: u64) -> Self {
        let bufs = manifest
            .buffers
            .iter()
            .map(|b| {
                let bytes = if b.batched { b.bytes_per_sample * batch } else { b.bytes_per_sample };
                vec![0u32; (bytes / 4) as usize]
            })
            .collect();
        Run { manifest, batch, mem: Memory { bufs } }
    }

    pub fn set(&mut self, buffer: usize, data: &[f32]) {
        let b = &mut self.mem.bufs[buffer];
        assert_eq!(b.len(), data.len(), "buffer {} size", self.manifest.buffers[buffer].name);
        for (w, x) in b.iter_mut().zip(data) {
            *w = x.to_bits();
        }
    }

    pub fn get(&self, buffer: usize) -> Vec<f32> {
        self.mem.bufs[buffer].iter().map(|&w| f32::from_bits(w)).collect()
    }

    /// Sets every state buffer to its initial value, as the runtime does: a
    /// plastic weight's state (`init_param`) starts at its parameter's
    /// buffer, so set the weights first; every other state at its `initial`.
    pub fn init_states(&mut self) {
        for s in &self.manifest.states {
            let n = self.mem.bufs[s.buffer].len();
            let init = match s.init_param {
                Some(p) => self.get(p),
                None => s.initial(n),
            };
            self.set(s.buffer, &init);
        }
    }

    /// Runs every launch of the manifest, in order.
    pub fn run(&mut self, ptx: &Module) {
        let m = self.manifest;
        for (t, l) in m.launch_order() {
            let step = u64::from(t.unwrap_or(0));
            let params: Vec<u64> = l
                .args
                .iter()
                .map(|a| match *a {
                    Arg::Batch => self.batch,
                    Arg::Step => step,
                    Arg::Buffer { buffer, step_row } => {
                        let len = self.mem.bufs[buffer].len() as u64;
                        let off = if step_row { step * (len / u64::from(m.steps)) * 4 } else { 0 };
                        ((buffer as u64) << OFF_BITS) | off
                    }
                })
                .collect();
            let grid = [0, 1, 2].map(|i| l.grid[i].blocks(self.batch) as u32);
            ptx.launch(&l.kernel, grid, l.block, &params, &mut self.mem);
        }
    }
}

/// By-name buffers of a manifest (inputs, params, states, outputs).
pub fn bindings(m: &Manifest) -> BTreeMap<String, usize> {
    let mut res = BTreeMap::new();
    for b in m.inputs.iter().chain(&m.params).chain(&m.outputs) {
        res.insert(b.name.clone(), b.buffer);
    }
    for s in &m.states {
        res.insert(s.name.clone(), s.buffer);
    }
    res
}
