//! A small builder for the text of one PTX kernel.
//!
//! Registers are virtual and typed by class (`%f` f32, `%r` 32-bit
//! integers, `%rd` 64-bit, `%p` predicates); each request gives a fresh one
//! and [`Kb::finish`] declares as many as were used. PTX is not SSA, so a
//! register may also be written more than once (loop counters, states).
//!
//! The text has two sections: the *prologue*, which runs once per thread
//! before any loop, and the *main* part. Code is written to the main part
//! unless [`Kb::hoisting`] is on, so a loop body can hoist a loop-invariant
//! load or constant into the prologue while it is being written. The
//! builder is deterministic: the same calls give the same text.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::manifest::Count;

/// A PTX f32 immediate (`0f3F800000` for 1.0): the exact bits.
pub(crate) fn fimm(x: f32) -> String {
    format!("0f{:08X}", x.to_bits())
}

/// A PTX f64 immediate (`0d3FF0000000000000` for 1.0): the exact bits.
pub(crate) fn dimm(x: f64) -> String {
    format!("0d{:016X}", x.to_bits())
}

/// The canonical NaN the reference interpreter produces (`f32::NAN`).
pub(crate) const NAN: &str = "0f7FC00000";
pub(crate) const ZERO: &str = "0f00000000";
pub(crate) const ONE: &str = "0f3F800000";

/// The kind of a kernel parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParamTy {
    /// A device pointer.
    Ptr,
    /// A 32-bit unsigned integer (the batch size, the step).
    U32,
}

impl ParamTy {
    pub(crate) fn ptx(self) -> &'static str {
        match self {
            ParamTy::Ptr => ".u64",
            ParamTy::U32 => ".u32",
        }
    }

    pub(crate) fn manifest(self) -> &'static str {
        match self {
            ParamTy::Ptr => "u64",
            ParamTy::U32 => "u32",
        }
    }
}

/// The text of one kernel being written.
#[derive(Debug)]
pub(crate) struct Kb {
    pub name: String,
    params: Vec<(String, ParamTy)>,
    shared: Vec<String>,
    pro: String,
    main: String,
    hoist: bool,
    n_f: u32,
    n_fd: u32,
    n_r: u32,
    n_rd: u32,
    n_p: u32,
    n_label: u32,
    /// Constants materialised in the prologue, by bits.
    consts: BTreeMap<u32, String>,
    /// The batch size register, once loaded.
    batch: Option<String>,
    /// Element counts computed in the prologue, by count.
    counts: BTreeMap<(bool, u64), String>,
}

impl Kb {
    /// A kernel whose first parameter is the batch size `B` (every kernel
    /// of this backend takes it, used or not).
    pub(crate) fn new(name: impl Into<String>) -> Self {
        let mut k = Kb {
            name: name.into(),
            params: Vec::new(),
            shared: Vec::new(),
            pro: String::new(),
            main: String::new(),
            hoist: false,
            n_f: 0,
            n_fd: 0,
            n_r: 0,
            n_rd: 0,
            n_p: 0,
            n_label: 0,
            consts: BTreeMap::new(),
            batch: None,
            counts: BTreeMap::new(),
        };
        k.param("B", ParamTy::U32);
        k
    }

    /// The parameters, in order.
    pub(crate) fn params(&self) -> &[(String, ParamTy)] {
        &self.params
    }

    /// Declares a parameter; returns its name.
    pub(crate) fn param(&mut self, name: &str, ty: ParamTy) -> String {
        self.params.push((name.to_string(), ty));
        name.to_string()
    }

    /// Declares a shared array of `len` f32 or u32 words (`.align 4`).
    pub(crate) fn shared(&mut self, name: &str, words: u32) -> String {
        self.shared.push(format!("\t.shared .align 4 .b32 {name}[{words}];\n"));
        name.to_string()
    }

    /// Writes to the prologue while on (see the module docs); returns the
    /// previous setting.
    pub(crate) fn hoisting(&mut self, on: bool) -> bool {
        std::mem::replace(&mut self.hoist, on)
    }

    fn out(&mut self) -> &mut String {
        if self.hoist { &mut self.pro } else { &mut self.main }
    }

    /// One instruction (the `;` and indentation are added).
    pub(crate) fn ins(&mut self, text: impl AsRef<str>) {
        let out = self.out();
        out.push('\t');
        out.push_str(text.as_ref());
        out.push_str(";\n");
    }

    /// A comment line.
    pub(crate) fn comment(&mut self, text: impl AsRef<str>) {
        let out = self.out();
        let _ = writeln!(out, "\t// {}", text.as_ref());
    }

    pub(crate) fn f(&mut self) -> String {
        self.n_f += 1;
        format!("%f{}", self.n_f - 1)
    }

    pub(crate) fn fd(&mut self) -> String {
        self.n_fd += 1;
        format!("%fd{}", self.n_fd - 1)
    }

    pub(crate) fn r(&mut self) -> String {
        self.n_r += 1;
        format!("%r{}", self.n_r - 1)
    }

    pub(crate) fn rd(&mut self) -> String {
        self.n_rd += 1;
        format!("%rd{}", self.n_rd - 1)
    }

    pub(crate) fn p(&mut self) -> String {
        self.n_p += 1;
        format!("%p{}", self.n_p - 1)
    }

    /// A fresh label name.
    pub(crate) fn label(&mut self, what: &str) -> String {
        self.n_label += 1;
        format!("$L{}_{what}", self.n_label - 1)
    }

    /// Places a label here.
    pub(crate) fn put(&mut self, label: &str) {
        let out = self.out();
        let _ = writeln!(out, "{label}:");
    }

    /// An f32 register holding `x`, made once in the prologue.
    pub(crate) fn fconst(&mut self, x: f32) -> String {
        if let Some(r) = self.consts.get(&x.to_bits()) {
            return r.clone();
        }
        let was = self.hoisting(true);
        let r = self.f();
        self.ins(format!("mov.f32 {r}, {}", fimm(x)));
        self.hoisting(was);
        self.consts.insert(x.to_bits(), r.clone());
        r
    }

    /// The batch size register (loaded once, in the prologue).
    pub(crate) fn batch(&mut self) -> String {
        if let Some(b) = &self.batch {
            return b.clone();
        }
        let was = self.hoisting(true);
        let b = self.r();
        self.ins(format!("ld.param.u32 {b}, [B]"));
        self.hoisting(was);
        self.batch = Some(b.clone());
        b
    }

    /// A register holding the element count `c` (computed once, in the
    /// prologue).
    pub(crate) fn count(&mut self, c: Count) -> String {
        if let Some(r) = self.counts.get(&(c.batch, c.fixed)) {
            return r.clone();
        }
        let b = if c.batch { Some(self.batch()) } else { None };
        let was = self.hoisting(true);
        let r = self.r();
        match b {
            Some(b) => self.ins(format!("mul.lo.u32 {r}, {b}, {}", c.fixed)),
            None => self.ins(format!("mov.u32 {r}, {}", c.fixed)),
        }
        self.hoisting(was);
        self.counts.insert((c.batch, c.fixed), r.clone());
        r
    }

    /// Loads a pointer parameter as a global address.
    pub(crate) fn ptr(&mut self, param: &str) -> String {
        let r = self.rd();
        self.ins(format!("ld.param.u64 {r}, [{param}]"));
        self.ins(format!("cvta.to.global.u64 {r}, {r}"));
        r
    }

    /// Loads a u32 parameter.
    pub(crate) fn u32_param(&mut self, param: &str) -> String {
        let r = self.r();
        self.ins(format!("ld.param.u32 {r}, [{param}]"));
        r
    }

    /// The global thread index along x: `ctaid.x * ntid.x + tid.x`.
    pub(crate) fn global_x(&mut self) -> String {
        let (a, b, c, e) = (self.r(), self.r(), self.r(), self.r());
        self.ins(format!("mov.u32 {a}, %ctaid.x"));
        self.ins(format!("mov.u32 {b}, %ntid.x"));
        self.ins(format!("mov.u32 {c}, %tid.x"));
        self.ins(format!("mad.lo.u32 {e}, {a}, {b}, {c}"));
        e
    }

    /// The total number of threads along x: `nctaid.x * ntid.x`.
    pub(crate) fn stride_x(&mut self) -> String {
        let (a, b, s) = (self.r(), self.r(), self.r());
        self.ins(format!("mov.u32 {a}, %nctaid.x"));
        self.ins(format!("mov.u32 {b}, %ntid.x"));
        self.ins(format!("mul.lo.u32 {s}, {a}, {b}"));
        s
    }

    /// The address of 4-byte element `idx` (u32) of `base`.
    pub(crate) fn addr(&mut self, base: &str, idx: &str) -> String {
        let (off, a) = (self.rd(), self.rd());
        self.ins(format!("mul.wide.u32 {off}, {idx}, 4"));
        self.ins(format!("add.s64 {a}, {base}, {off}"));
        a
    }

    /// Loads f32 element `idx` of `base`.
    pub(crate) fn ld(&mut self, base: &str, idx: &str) -> String {
        let a = self.addr(base, idx);
        let v = self.f();
        self.ins(format!("ld.global.f32 {v}, [{a}]"));
        v
    }

    /// Stores `v` to f32 element `idx` of `base`.
    pub(crate) fn st(&mut self, base: &str, idx: &str, v: &str) {
        let a = self.addr(base, idx);
        self.ins(format!("st.global.f32 [{a}], {v}"));
    }

    /// Loads u32 element `idx` of `base`.
    pub(crate) fn ld_u32(&mut self, base: &str, idx: &str) -> String {
        let a = self.addr(base, idx);
        let v = self.r();
        self.ins(format!("ld.global.u32 {v}, [{a}]"));
        v
    }

    /// Stores u32 `v` to element `idx` of `base`.
    pub(crate) fn st_u32(&mut self, base: &str, idx: &str, v: &str) {
        let a = self.addr(base, idx);
        self.ins(format!("st.global.u32 [{a}], {v}"));
    }

    /// `dst = a * b + c` on u32 (low 32 bits).
    pub(crate) fn mad(&mut self, a: &str, b: impl std::fmt::Display, c: &str) -> String {
        let d = self.r();
        self.ins(format!("mad.lo.u32 {d}, {a}, {b}, {c}"));
        d
    }

    /// Exits every thread whose `idx >= n`.
    pub(crate) fn exit_if_ge(&mut self, idx: &str, n: &str) {
        let p = self.p();
        self.ins(format!("setp.ge.u32 {p}, {idx}, {n}"));
        self.ins(format!("@{p} bra $Lexit"));
    }

    /// The complete `.entry`, with the register declarations.
    pub(crate) fn finish(self) -> String {
        let mut s = String::new();
        let params: Vec<String> = self.params.iter().map(|(n, t)| format!("\t.param {} {n}", t.ptx())).collect();
        let _ = writeln!(s, ".visible .entry {}(\n{}\n)", self.name, params.join(",\n"));
        s.push_str("{\n");
        let classes = [
            ("pred", ("%p", self.n_p)),
            ("f32", ("%f", self.n_f)),
            ("f64", ("%fd", self.n_fd)),
            ("b32", ("%r", self.n_r)),
            ("b64", ("%rd", self.n_rd)),
        ];
        for (class, n) in classes {
            if n.1 > 0 {
                let _ = writeln!(s, "\t.reg .{class} {}<{}>;", n.0, n.1);
            }
        }
        for sh in &self.shared {
            s.push_str(sh);
        }
        s.push_str(&self.pro);
        s.push_str(&self.main);
        s.push_str("$Lexit:\n\tret;\n}\n");
        s
    }
}
