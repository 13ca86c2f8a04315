//! Kernels of convolutions and pooling, forward and backward (the rest of
//! the heavy ops are in `ops.rs`, whose helpers these use).
//!
//! | op | kernel |
//! |---|---|
//! | `conv2d` | one thread per output element: the sum over the `(c, a, b)` of its group in order, zero padding as zero products, then the bias |
//! | `{max,avg,sum}_pool2d` | one thread per output element: over the in-image part of the window in row-major order, the `max` fold from its first element, or the sum from `+0` (`avg`: then one division by `kh * kw`) |
//! | `conv2d_grad_input` | one thread per input element: the sum over `(o, a, b)` (the `o` of its group) of the windows that read it |
//! | `conv2d_grad_weight` | one thread per weight: the sum over `(n, i, j)` in order (padding as zero products) |
//! | `conv2d_grad_bias` | one thread per channel |
//! | `max_pool2d_grad` | one thread per input element: the gradients of the windows whose first maximum (NaN counts as maximal, as torch) it is, in window order |
//! | `{avg,sum}_pool2d_grad` | one thread per input element: the gradients of the windows holding it, in window order (`avg`: each divided by `kh * kw` first) |
//!
//! Every axis has its own kernel size, stride, padding and dilation.

use snnc_ir::{Dim, Handle, Node, PoolOp};

use crate::CudaError;
use crate::manifest::Count;
use crate::math;
use crate::ops::{HeavyKernel, Hk, acc_mul, divmod, fixed, for_range, zero_acc};
use crate::plan::{Mode, Plan, count_dims};
use crate::ptx::{Kb, ZERO, fimm};

/// The geometry of a convolution: `n` images of `[c, h, w]`, weight
/// `[o, c / groups, kh, kw]`, output planes `[oh, ow]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvDims {
    n: Count,
    c: u64,
    h: u64,
    w: u64,
    o: u64,
    kh: u64,
    kw: u64,
    oh: u64,
    ow: u64,
    sh: u64,
    sw: u64,
    ph: u64,
    pw: u64,
    dh: u64,
    dw: u64,
    groups: u64,
}

/// A convolution's attributes as the IR has them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvAttrs {
    pub stride: [u32; 2],
    pub padding: [u32; 2],
    pub dilation: [u32; 2],
    pub groups: u32,
}

impl ConvDims {
    /// `lead` the image dims, `chw` `[C, H, W]` of the input (all
    /// channels), `weight` `[O, C/g, kh, kw]`, `out` `[oh, ow]`.
    pub(crate) fn new(
        lead: &[Dim],
        chw: &[Dim],
        weight: &[Dim],
        out: &[Dim],
        a: ConvAttrs,
        what: &str,
    ) -> Result<Self, CudaError> {
        Ok(ConvDims {
            n: count_dims(lead),
            c: fixed(chw[0], what)?,
            h: fixed(chw[1], what)?,
            w: fixed(chw[2], what)?,
            o: fixed(weight[0], what)?,
            kh: fixed(weight[2], what)?,
            kw: fixed(weight[3], what)?,
            oh: fixed(out[0], what)?,
            ow: fixed(out[1], what)?,
            sh: a.stride[0].into(),
            sw: a.stride[1].into(),
            ph: a.padding[0].into(),
            pw: a.padding[1].into(),
            dh: a.dilation[0].into(),
            dw: a.dilation[1].into(),
            groups: a.groups.max(1).into(),
        })
    }

    /// Input channels per group.
    fn cg(&self) -> u64 {
        self.c / self.groups
    }

    /// Output channels per group.
    fn og(&self) -> u64 {
        self.o / self.groups
    }
}

/// `r = i * s + a * d - p` as a u32 (negative values wrap, so `r < size`
/// tests both bounds).
fn tap(k: &mut Kb, i: &str, s: u64, a: &str, d: u64, p: u64) -> String {
    let ad = k.r();
    k.ins(format!("mul.lo.u32 {ad}, {a}, {d}"));
    let r = k.mad(i, s, &ad);
    k.ins(format!("sub.u32 {r}, {r}, {p}"));
    r
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    input: Handle<Node>,
    weight: Handle<Node>,
    bias: Option<Handle<Node>>,
    d: ConvDims,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let x = hk.input(input)?;
    let w = hk.input(weight)?;
    let b = bias.map(|b| hk.input(b)).transpose()?;
    let y = hk.output(h)?;
    let threads = d.n.times(d.o * d.oh * d.ow);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    let (t1, j) = divmod(k, &e, d.ow);
    let (t2, i) = divmod(k, &t1, d.oh);
    let (img, o) = divmod(k, &t2, d.o);
    // The first input channel of `o`'s group.
    let (grp, _) = divmod(k, &o, d.og());
    let c0 = k.r();
    k.ins(format!("mul.lo.u32 {c0}, {grp}, {}", d.cg()));
    let acc = zero_acc(k);
    for_range(k, "0", &d.cg().to_string(), |k, ci| {
        let c = k.r();
        k.ins(format!("add.u32 {c}, {c0}, {ci}"));
        let xc = k.mad(&img, d.c, &c);
        let xbase = k.r();
        k.ins(format!("mul.lo.u32 {xbase}, {xc}, {}", d.h * d.w));
        let wc = k.mad(&o, d.cg(), ci);
        let wbase = k.r();
        k.ins(format!("mul.lo.u32 {wbase}, {wc}, {}", d.kh * d.kw));
        for_range(k, "0", &d.kh.to_string(), |k, a| {
            let r = tap(k, &i, d.sh, a, d.dh, d.ph);
            let pr = k.p();
            k.ins(format!("setp.lt.u32 {pr}, {r}, {}", d.h));
            let xrow = k.mad(&r, d.w, &xbase);
            let wrow = k.mad(a, d.kw, &wbase);
            for_range(k, "0", &d.kw.to_string(), |k, bb| {
                let q = tap(k, &j, d.sw, bb, d.dw, d.pw);
                let (pq, p) = (k.p(), k.p());
                k.ins(format!("setp.lt.u32 {pq}, {q}, {}", d.w));
                k.ins(format!("and.pred {p}, {pr}, {pq}"));
                let xi = k.r();
                k.ins(format!("add.u32 {xi}, {xrow}, {q}"));
                let ax = k.addr(&x, &xi);
                let xv = k.f();
                k.ins(format!("mov.f32 {xv}, {ZERO}"));
                k.ins(format!("@{p} ld.global.f32 {xv}, [{ax}]"));
                let wi = k.r();
                k.ins(format!("add.u32 {wi}, {wrow}, {bb}"));
                let wv = k.ld(&w, &wi);
                acc_mul(k, &acc, &xv, &wv);
                Ok(())
            })
        })
    })?;
    if let Some(b) = b {
        let bv = k.ld(&b, &o);
        k.ins(format!("add.rn.f32 {acc}, {acc}, {bv}"));
    }
    k.st(&y, &e, &acc);
    let what = format!(
        "conv2d [{}, {}, {}, {}] * [{}, {}, {}, {}] -> [{}, {}]{}",
        d.n.show(),
        d.c,
        d.h,
        d.w,
        d.o,
        d.cg(),
        d.kh,
        d.kw,
        d.oh,
        d.ow,
        extras(&d)
    );
    Ok(hk.done(what, threads))
}

/// `, dilation [dh, dw], groups g` where they are not the defaults.
fn extras(d: &ConvDims) -> String {
    let mut s = String::new();
    if (d.dh, d.dw) != (1, 1) {
        s += &format!(", dilation [{}, {}]", d.dh, d.dw);
    }
    if d.groups != 1 {
        s += &format!(", groups {}", d.groups);
    }
    s
}

pub(crate) fn conv2d_grad_input(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    grad: Handle<Node>,
    weight: Handle<Node>,
    d: ConvDims,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let g = hk.input(grad)?;
    let w = hk.input(weight)?;
    let y = hk.output(h)?;
    let threads = d.n.times(d.c * d.h * d.w);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    let (t1, xw) = divmod(k, &e, d.w);
    let (t2, xh) = divmod(k, &t1, d.h);
    let (img, c) = divmod(k, &t2, d.c);
    // The group of `c`, its output channels `o0..o0 + og`, and `c`'s index
    // in the group.
    let (grp, ci) = divmod(k, &c, d.cg());
    let (o0, o1) = (k.r(), k.r());
    k.ins(format!("mul.lo.u32 {o0}, {grp}, {}", d.og()));
    k.ins(format!("add.u32 {o1}, {o0}, {}", d.og()));
    let acc = zero_acc(k);
    for_range(k, &o0, &o1, |k, o| {
        let go = k.mad(&img, d.o, o);
        let wo = k.mad(o, d.cg(), &ci);
        for_range(k, "0", &d.kh.to_string(), |k, a| {
            // ih = xh + ph - a dh must be a non-negative multiple of sh, and ih / sh < oh.
            let ad = k.r();
            k.ins(format!("mul.lo.u32 {ad}, {a}, {}", d.dh));
            let ih = k.r();
            k.ins(format!("add.u32 {ih}, {xh}, {}", d.ph));
            let (p0, p1, p2, pa) = (k.p(), k.p(), k.p(), k.p());
            k.ins(format!("setp.le.u32 {p0}, {ad}, {ih}"));
            k.ins(format!("sub.u32 {ih}, {ih}, {ad}"));
            let (qi, ri) = divmod(k, &ih, d.sh);
            k.ins(format!("setp.eq.u32 {p1}, {ri}, 0"));
            k.ins(format!("setp.lt.u32 {p2}, {qi}, {}", d.oh));
            k.ins(format!("and.pred {pa}, {p0}, {p1}"));
            k.ins(format!("and.pred {pa}, {pa}, {p2}"));
            let grow = k.mad(&go, d.oh, &qi);
            let wrow = k.mad(&wo, d.kh, a);
            for_range(k, "0", &d.kw.to_string(), |k, b| {
                let bd = k.r();
                k.ins(format!("mul.lo.u32 {bd}, {b}, {}", d.dw));
                let iw = k.r();
                k.ins(format!("add.u32 {iw}, {xw}, {}", d.pw));
                let (q0, q1, q2, p) = (k.p(), k.p(), k.p(), k.p());
                k.ins(format!("setp.le.u32 {q0}, {bd}, {iw}"));
                k.ins(format!("sub.u32 {iw}, {iw}, {bd}"));
                let (qj, rj) = divmod(k, &iw, d.sw);
                k.ins(format!("setp.eq.u32 {q1}, {rj}, 0"));
                k.ins(format!("setp.lt.u32 {q2}, {qj}, {}", d.ow));
                k.ins(format!("and.pred {p}, {pa}, {q0}"));
                k.ins(format!("and.pred {p}, {p}, {q1}"));
                k.ins(format!("and.pred {p}, {p}, {q2}"));
                let gi = k.mad(&grow, d.ow, &qj);
                let ag = k.addr(&g, &gi);
                let gv = k.f();
                k.ins(format!("mov.f32 {gv}, {ZERO}"));
                k.ins(format!("@{p} ld.global.f32 {gv}, [{ag}]"));
                let wi = k.mad(&wrow, d.kw, b);
                let wv = k.ld(&w, &wi);
                let pr = k.f();
                k.ins(format!("mul.rn.f32 {pr}, {gv}, {wv}"));
                k.ins(format!("@{p} add.rn.f32 {acc}, {acc}, {pr}"));
                Ok(())
            })
        })
    })?;
    k.st(&y, &e, &acc);
    let what = format!("conv2d input gradient [{}, {}, {}, {}]{}", d.n.show(), d.c, d.h, d.w, extras(&d));
    Ok(hk.done(what, threads))
}

pub(crate) fn conv2d_grad_weight(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    grad: Handle<Node>,
    input: Handle<Node>,
    d: ConvDims,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let g = hk.input(grad)?;
    let x = hk.input(input)?;
    let y = hk.output(h)?;
    let threads = Count::fixed(d.o * d.cg() * d.kh * d.kw);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    let (t1, b) = divmod(k, &e, d.kw);
    let (t2, a) = divmod(k, &t1, d.kh);
    let (o, ci) = divmod(k, &t2, d.cg());
    // The input channel: `ci` of `o`'s group.
    let (grp, _) = divmod(k, &o, d.og());
    let c = k.mad(&grp, d.cg(), &ci);
    let nimg = k.count(d.n);
    let acc = zero_acc(k);
    for_range(k, "0", &nimg, |k, img| {
        let go = k.mad(img, d.o, &o);
        let xc = k.mad(img, d.c, &c);
        for_range(k, "0", &d.oh.to_string(), |k, i| {
            let r = tap(k, i, d.sh, &a, d.dh, d.ph);
            let pr = k.p();
            k.ins(format!("setp.lt.u32 {pr}, {r}, {}", d.h));
            let grow = k.mad(&go, d.oh, i);
            let xrow0 = k.mad(&xc, d.h, &r);
            for_range(k, "0", &d.ow.to_string(), |k, j| {
                let q = tap(k, j, d.sw, &b, d.dw, d.pw);
                let (pq, p) = (k.p(), k.p());
                k.ins(format!("setp.lt.u32 {pq}, {q}, {}", d.w));
                k.ins(format!("and.pred {p}, {pr}, {pq}"));
                let gi = k.mad(&grow, d.ow, j);
                let xi = k.mad(&xrow0, d.w, &q);
                let gv = k.ld(&g, &gi);
                let ax = k.addr(&x, &xi);
                let xv = k.f();
                // Padding reads as 0, and its product is computed too.
                k.ins(format!("mov.f32 {xv}, {ZERO}"));
                k.ins(format!("@{p} ld.global.f32 {xv}, [{ax}]"));
                acc_mul(k, &acc, &gv, &xv);
                Ok(())
            })
        })
    })?;
    k.st(&y, &e, &acc);
    let what = format!("conv2d weight gradient [{}, {}, {}, {}]{}", d.o, d.cg(), d.kh, d.kw, extras(&d));
    Ok(hk.done(what, threads))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_grad_bias(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    grad: Handle<Node>,
    images: Count,
    o: u64,
    plane: u64,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let g = hk.input(grad)?;
    let y = hk.output(h)?;
    let threads = Count::fixed(o);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    let nimg = k.count(images);
    let acc = zero_acc(k);
    for_range(k, "0", &nimg, |k, img| {
        let go = k.mad(img, o, &e);
        let base = k.r();
        k.ins(format!("mul.lo.u32 {base}, {go}, {plane}"));
        for_range(k, "0", &plane.to_string(), |k, p| {
            let gi = k.r();
            k.ins(format!("add.u32 {gi}, {base}, {p}"));
            let v = k.ld(&g, &gi);
            k.ins(format!("add.rn.f32 {acc}, {acc}, {v}"));
            Ok(())
        })
    })?;
    k.st(&y, &e, &acc);
    Ok(hk.done(format!("conv2d bias gradient [{o}] over [{}] images of {plane}", images.show()), threads))
}

/// The geometry of pooling: `lead` planes `[h, w]` pooled to `[oh, ow]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pool {
    pub op: PoolOp,
    pub lead: Count,
    pub h: u64,
    pub w: u64,
    pub oh: u64,
    pub ow: u64,
    pub kernel: [u32; 2],
    pub stride: [u32; 2],
    pub padding: [u32; 2],
}

impl Pool {
    /// The pooling of `[.., h, w]` (`xd`) to `[.., oh, ow]` (`od`).
    pub(crate) fn new(
        op: PoolOp,
        xd: &[Dim],
        od: &[Dim],
        [kernel, stride, padding]: [[u32; 2]; 3],
        what: &str,
    ) -> Result<Self, CudaError> {
        let r = xd.len();
        Ok(Pool {
            op,
            lead: count_dims(&xd[..r - 2]),
            h: fixed(xd[r - 2], what)?,
            w: fixed(xd[r - 1], what)?,
            oh: fixed(od[r - 2], what)?,
            ow: fixed(od[r - 1], what)?,
            kernel,
            stride,
            padding,
        })
    }

    fn what(&self, suffix: &str) -> String {
        format!(
            "{}_pool2d{suffix} [{}, {}, {}] window {}x{} stride {}x{} padding {}x{}",
            self.op.name(),
            self.lead.show(),
            self.h,
            self.w,
            self.kernel[0],
            self.kernel[1],
            self.stride[0],
            self.stride[1],
            self.padding[0],
            self.padding[1]
        )
    }
}

/// The in-image part `lo..hi` of window `i` along an axis of `size`:
/// `lo = max(i s, p) - p`, `hi = min(i s + k - p, size)` (`k >= 2 p`).
fn window(k: &mut Kb, i: &str, kk: u32, s: u32, p: u32, size: u64) -> (String, String) {
    let (start, lo, hi) = (k.r(), k.r(), k.r());
    k.ins(format!("mul.lo.u32 {start}, {i}, {s}"));
    k.ins(format!("max.u32 {lo}, {start}, {p}"));
    k.ins(format!("sub.u32 {lo}, {lo}, {p}"));
    k.ins(format!("add.u32 {hi}, {start}, {}", kk - p));
    k.ins(format!("min.u32 {hi}, {hi}, {size}"));
    (lo, hi)
}

pub(crate) fn pool2d(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    input: Handle<Node>,
    p: Pool,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let x = hk.input(input)?;
    let y = hk.output(h)?;
    let threads = p.lead.times(p.oh * p.ow);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    let (t1, j) = divmod(k, &e, p.ow);
    let (l, i) = divmod(k, &t1, p.oh);
    let plane = k.r();
    k.ins(format!("mul.lo.u32 {plane}, {l}, {}", p.h * p.w));
    let (rlo, rhi) = window(k, &i, p.kernel[0], p.stride[0], p.padding[0], p.h);
    let (clo, chi) = window(k, &j, p.kernel[1], p.stride[1], p.padding[1], p.w);
    let acc = match p.op {
        PoolOp::Max => {
            let first = k.mad(&rlo, p.w, &plane);
            k.ins(format!("add.u32 {first}, {first}, {clo}"));
            let v = k.ld(&x, &first);
            let m = k.f();
            k.ins(format!("mov.f32 {m}, {v}"));
            m
        }
        PoolOp::Avg | PoolOp::Sum => zero_acc(k),
    };
    for_range(k, &rlo, &rhi, |k, r| {
        let row = k.mad(r, p.w, &plane);
        for_range(k, &clo, &chi, |k, q| {
            let xi = k.r();
            k.ins(format!("add.u32 {xi}, {row}, {q}"));
            let v = k.ld(&x, &xi);
            if p.op == PoolOp::Max {
                let n = math::max_nan(k, &acc, &v);
                k.ins(format!("mov.f32 {acc}, {n}"));
            } else {
                k.ins(format!("add.rn.f32 {acc}, {acc}, {v}"));
            }
            Ok(())
        })
    })?;
    if p.op == PoolOp::Avg {
        k.ins(format!("div.rn.f32 {acc}, {acc}, {}", fimm((p.kernel[0] * p.kernel[1]) as f32)));
    }
    k.st(&y, &e, &acc);
    Ok(hk.done(p.what(""), threads))
}

/// Windows `i` whose in-image part holds `x` along an axis: `i s - p <= x <
/// i s - p + k`, from `lo` (0, or `(x + p - k) / s + 1`) to `min((x + p) /
/// s, n - 1) + 1`.
fn windows_of(k: &mut Kb, x: &str, kk: u32, s: u32, p: u32, n: u64) -> (String, String) {
    let (xp, lo, hi, d, pge) = (k.r(), k.r(), k.r(), k.r(), k.p());
    k.ins(format!("add.u32 {xp}, {x}, {p}"));
    k.ins(format!("setp.ge.u32 {pge}, {xp}, {kk}"));
    k.ins(format!("sub.u32 {d}, {xp}, {kk}"));
    k.ins(format!("div.u32 {d}, {d}, {s}"));
    k.ins(format!("add.u32 {d}, {d}, 1"));
    k.ins(format!("selp.u32 {lo}, {d}, 0, {pge}"));
    k.ins(format!("div.u32 {hi}, {xp}, {s}"));
    k.ins(format!("min.u32 {hi}, {hi}, {}", n - 1));
    k.ins(format!("add.u32 {hi}, {hi}, 1"));
    (lo, hi)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn pool2d_grad(
    plan: &Plan<'_>,
    h: Handle<Node>,
    mode: Mode,
    name: String,
    input: Handle<Node>,
    grad: Handle<Node>,
    p: Pool,
) -> Result<HeavyKernel, CudaError> {
    let mut hk = Hk::new(plan, mode, name);
    let x = hk.input(input)?;
    let g = hk.input(grad)?;
    let y = hk.output(h)?;
    let threads = p.lead.times(p.h * p.w);
    let e = hk.thread(threads);
    let k = &mut hk.k;
    let (t1, xw) = divmod(k, &e, p.w);
    let (l, xh) = divmod(k, &t1, p.h);
    let me = k.mad(&xh, p.w, &xw);
    let plane = k.r();
    k.ins(format!("mul.lo.u32 {plane}, {l}, {}", p.h * p.w));
    let gplane = k.r();
    k.ins(format!("mul.lo.u32 {gplane}, {l}, {}", p.oh * p.ow));
    let (ilo, ihi) = windows_of(k, &xh, p.kernel[0], p.stride[0], p.padding[0], p.oh);
    let (jlo, jhi) = windows_of(k, &xw, p.kernel[1], p.stride[1], p.padding[1], p.ow);
    let acc = zero_acc(k);
    for_range(k, &ilo, &ihi, |k, i| {
        for_range(k, &jlo, &jhi, |k, j| {
            let gi0 = k.mad(i, p.ow, j);
            let gi = k.r();
            k.ins(format!("add.u32 {gi}, {gplane}, {gi0}"));
            if p.op != PoolOp::Max {
                let gv = k.ld(&g, &gi);
                if p.op == PoolOp::Avg {
                    k.ins(format!("div.rn.f32 {gv}, {gv}, {}", fimm((p.kernel[0] * p.kernel[1]) as f32)));
                }
                k.ins(format!("add.rn.f32 {acc}, {acc}, {gv}"));
                return Ok(());
            }
            // The first maximal element of window (i, j)'s in-image part, NaN
            // counting as maximal.
            let (rlo, rhi) = window(k, i, p.kernel[0], p.stride[0], p.padding[0], p.h);
            let (clo, chi) = window(k, j, p.kernel[1], p.stride[1], p.padding[1], p.w);
            let start = k.mad(&rlo, p.w, &clo);
            let sx = k.r();
            k.ins(format!("add.u32 {sx}, {plane}, {start}"));
            let first = k.ld(&x, &sx);
            let (m, am) = (k.f(), k.r());
            k.ins(format!("mov.f32 {m}, {first}"));
            k.ins(format!("mov.u32 {am}, {start}"));
            for_range(k, &rlo, &rhi, |k, r| {
                let row = k.r();
                k.ins(format!("mul.lo.u32 {row}, {r}, {}", p.w));
                for_range(k, &clo, &chi, |k, q| {
                    let pos = k.r();
                    k.ins(format!("add.u32 {pos}, {row}, {q}"));
                    let xi = k.r();
                    k.ins(format!("add.u32 {xi}, {plane}, {pos}"));
                    let v = k.ld(&x, &xi);
                    let (gt, isnan, take) = (k.p(), k.p(), k.p());
                    k.ins(format!("setp.gt.f32 {gt}, {v}, {m}"));
                    k.ins(format!("setp.nan.f32 {isnan}, {v}, {v}"));
                    k.ins(format!("or.pred {take}, {gt}, {isnan}"));
                    k.ins(format!("@{take} mov.f32 {m}, {v}"));
                    k.ins(format!("@{take} mov.u32 {am}, {pos}"));
                    Ok(())
                })
            })?;
            let hit = k.p();
            k.ins(format!("setp.eq.u32 {hit}, {am}, {me}"));
            let ag = k.addr(&g, &gi);
            let gv = k.f();
            k.ins(format!("mov.f32 {gv}, {ZERO}"));
            k.ins(format!("@{hit} ld.global.f32 {gv}, [{ag}]"));
            k.ins(format!("@{hit} add.rn.f32 {acc}, {acc}, {gv}"));
            Ok(())
        })
    })?;
    k.st(&y, &e, &acc);
    Ok(hk.done(p.what(" gradient"), threads))
}
