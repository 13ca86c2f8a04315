//! Convolution with dilation, channel groups and per-axis attributes, and
//! max/avg/sum pooling with padding, forward and backward: the
//! interpreter against direct f64 loops over torch's definitions, the
//! gradients against the adjoint identity of these linear maps and against
//! central finite differences, and a few hand-computed values.

mod common;

use common::*;
use snnc_ir::{Builder, Dtype, MatMulKind, Module, Op, PoolOp, Shape, Type};

const F64: Dtype = Dtype::F64;

/// A convolution's geometry: one image `[c, h, w]`, weight `[o, c/g, kh,
/// kw]`.
#[derive(Clone, Copy, Debug)]
struct Conv {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
}

impl Conv {
    /// torch: `floor((H + 2p - d(k-1) - 1)/s) + 1`.
    fn out(&self) -> [usize; 2] {
        let n = [self.h, self.w];
        [0, 1].map(|ax| (n[ax] + 2 * self.padding[ax] - self.dilation[ax] * (self.k[ax] - 1) - 1) / self.stride[ax] + 1)
    }

    fn cg(&self) -> usize {
        self.c / self.groups
    }

    /// `x[c, r, q]` at output `(i, j)`, tap `(a, b)`, 0 in the padding.
    fn at(&self, x: &[f64], c: usize, i: usize, j: usize, a: usize, b: usize) -> f64 {
        let r = (i * self.stride[0] + a * self.dilation[0]) as isize - self.padding[0] as isize;
        let q = (j * self.stride[1] + b * self.dilation[1]) as isize - self.padding[1] as isize;
        if r < 0 || q < 0 || r as usize >= self.h || q as usize >= self.w {
            return 0.0;
        }
        x[(c * self.h + r as usize) * self.w + q as usize]
    }

    /// The direct definition: `y[o,i,j] = sum over ci, a, b of x[g cg +
    /// ci, i s + a d - p, ..] w[o, ci, a, b]`, `g = o / (O / groups)`.
    fn reference(&self, x: &[f64], wt: &[f64]) -> Vec<f64> {
        let [oh, ow] = self.out();
        let (cg, og) = (self.cg(), self.o / self.groups);
        let mut y = vec![0.0; self.o * oh * ow];
        for o in 0..self.o {
            for i in 0..oh {
                for j in 0..ow {
                    let mut acc = 0.0;
                    for ci in 0..cg {
                        for a in 0..self.k[0] {
                            for b in 0..self.k[1] {
                                let wv = wt[((o * cg + ci) * self.k[0] + a) * self.k[1] + b];
                                acc += self.at(x, o / og * cg + ci, i, j, a, b) * wv;
                            }
                        }
                    }
                    y[(o * oh + i) * ow + j] = acc;
                }
            }
        }
        y
    }

    /// The module: `y = conv2d(x, w)`, `dx`, `dw` of the gradient `g`.
    fn module(&self) -> Module {
        let [oh, ow] = self.out();
        let u = |v: usize| v as u32;
        let (stride, padding, dilation) = (self.stride.map(u), self.padding.map(u), self.dilation.map(u));
        let groups = u(self.groups);
        let mut b = Builder::new("conv", 1, 1e-3, F64);
        let xi = b.input("x", Type::new(F64, Shape::batched(&[u(self.c), u(self.h), u(self.w)])));
        let gi = b.input("g", Type::new(F64, Shape::batched(&[u(self.o), u(oh), u(ow)])));
        let wp = b.param(param("w", F64, &[u(self.o), u(self.cg()), u(self.k[0]), u(self.k[1])]));
        b.begin_seq();
        let (x, g, w) =
            (b.emit(Op::Input(xi)).unwrap(), b.emit(Op::Input(gi)).unwrap(), b.emit(Op::Param(wp)).unwrap());
        let kind = MatMulKind::Dense;
        let y =
            b.emit(Op::Conv2d { input: x, weight: w, bias: None, stride, padding, dilation, groups, kind }).unwrap();
        let input_size = [u(self.h), u(self.w)];
        let dx = Op::Conv2dGradInput { grad: g, weight: w, stride, padding, dilation, groups, input_size };
        let dx = b.emit(dx).unwrap();
        let kernel = self.k.map(u);
        let dw = Op::Conv2dGradWeight { grad: g, input: x, kernel, stride, padding, dilation, groups, kind };
        let dw = b.emit(dw).unwrap();
        for (name, v) in [("y", y), ("dx", dx), ("dw", dw)] {
            b.output(name, v);
        }
        b.finish()
    }

    /// Runs the module on one image: `[y, dx, dw]`.
    fn run(&self, x: &[f64], wt: &[f64], g: &[f64]) -> [Vec<f64>; 3] {
        let [oh, ow] = self.out();
        let ws = weights(&[("w", t64(&[self.o, self.cg(), self.k[0], self.k[1]], wt.to_vec()))]);
        let r = run(
            &self.module(),
            &ws,
            &[("x", t64(&[1, self.c, self.h, self.w], x.to_vec())), ("g", t64(&[1, self.o, oh, ow], g.to_vec()))],
        );
        ["y", "dx", "dw"].map(|n| r.outputs[n].data.clone())
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn close(got: f64, want: f64, tol: f64, what: &str) {
    assert!((got - want).abs() <= tol * want.abs().max(1.0), "{what}: got {got}, want {want}");
}

const CONVS: [Conv; 4] = [
    // The fixture's convolution: rectangular kernel, dilation 2, two groups.
    Conv { c: 2, h: 10, w: 12, o: 4, k: [3, 5], stride: [1, 2], padding: [2, 4], dilation: [2, 2], groups: 2 },
    // Different dilation and stride per axis, three groups of one channel.
    Conv { c: 3, h: 9, w: 8, o: 6, k: [2, 3], stride: [2, 1], padding: [0, 1], dilation: [3, 1], groups: 3 },
    // A dilated kernel that reaches past the image into the padding only.
    Conv { c: 4, h: 5, w: 4, o: 2, k: [3, 2], stride: [1, 3], padding: [3, 1], dilation: [2, 4], groups: 2 },
    // No options: as before.
    Conv { c: 2, h: 6, w: 5, o: 3, k: [3, 3], stride: [1, 1], padding: [1, 1], dilation: [1, 1], groups: 1 },
];

#[test]
fn conv2d_with_dilation_and_groups_matches_the_definition() {
    for conv in CONVS {
        let [oh, ow] = conv.out();
        let x = ramp(conv.c * conv.h * conv.w);
        let wt: Vec<f64> = ramp(conv.o * conv.cg() * conv.k[0] * conv.k[1] + 3)[3..].to_vec();
        let g = ramp(conv.o * oh * ow + 7)[7..].to_vec();
        let [y, _, _] = conv.run(&x, &wt, &g);
        let want = conv.reference(&x, &wt);
        assert_eq!(y.len(), want.len(), "{conv:?}");
        for (k, (a, b)) in y.iter().zip(&want).enumerate() {
            close(*a, *b, 1e-12, &format!("{conv:?} y[{k}]"));
        }
    }
    // The fixture's output size: (10 + 4 - 4 - 1)/1 + 1 = 10, (12 + 8 - 8 - 1)/2 + 1 = 6.
    assert_eq!(CONVS[0].out(), [10, 6]);
}

/// `y = conv(x, w)` is linear in `x` and in `w`, so the gradients satisfy
/// `<g, conv(e_k, w)> = dx[k]` and `<g, conv(x, e_k)> = dw[k]` exactly (up
/// to rounding) for every unit vector `e_k`: this checks every element of
/// both gradients against the forward definition.
#[test]
fn conv2d_grads_with_dilation_and_groups_are_the_adjoints() {
    for conv in CONVS {
        let [oh, ow] = conv.out();
        let x = ramp(conv.c * conv.h * conv.w);
        let wt: Vec<f64> = ramp(conv.o * conv.cg() * conv.k[0] * conv.k[1] + 3)[3..].to_vec();
        let g = ramp(conv.o * oh * ow + 7)[7..].to_vec();
        let [_, dx, dw] = conv.run(&x, &wt, &g);
        for k in 0..x.len() {
            let mut e = vec![0.0; x.len()];
            e[k] = 1.0;
            close(dx[k], dot(&g, &conv.reference(&e, &wt)), 1e-12, &format!("{conv:?} dx[{k}]"));
        }
        for k in 0..wt.len() {
            let mut e = vec![0.0; wt.len()];
            e[k] = 1.0;
            close(dw[k], dot(&g, &conv.reference(&x, &e)), 1e-12, &format!("{conv:?} dw[{k}]"));
        }
        // And by central finite differences of the interpreter's own forward
        // (exact for a linear map, up to rounding).
        let eps = 1e-3;
        for k in [0, x.len() / 2, x.len() - 1] {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp[k] += eps;
            xm[k] -= eps;
            let fd = (dot(&g, &conv.run(&xp, &wt, &g)[0]) - dot(&g, &conv.run(&xm, &wt, &g)[0])) / (2.0 * eps);
            close(dx[k], fd, 1e-8, &format!("{conv:?} dx[{k}] by finite differences"));
        }
    }
}

/// A pooling over one `[h, w]` plane.
#[derive(Clone, Copy, Debug)]
struct Pool {
    op: PoolOp,
    h: usize,
    w: usize,
    k: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
}

impl Pool {
    fn out(&self) -> [usize; 2] {
        let n = [self.h, self.w];
        [0, 1].map(|ax| (n[ax] + 2 * self.padding[ax] - self.k[ax]) / self.stride[ax] + 1)
    }

    /// torch's definitions: max over the window (padding `-inf`), the sum
    /// (padding 0), `avg = sum / (kh kw)` (`count_include_pad=True`).
    fn reference(&self, x: &[f64]) -> Vec<f64> {
        let [oh, ow] = self.out();
        let mut y = Vec::new();
        for i in 0..oh {
            for j in 0..ow {
                let (mut m, mut s) = (f64::NEG_INFINITY, 0.0);
                for a in 0..self.k[0] {
                    for b in 0..self.k[1] {
                        let r = (i * self.stride[0] + a) as isize - self.padding[0] as isize;
                        let q = (j * self.stride[1] + b) as isize - self.padding[1] as isize;
                        if r >= 0 && q >= 0 && (r as usize) < self.h && (q as usize) < self.w {
                            let v = x[r as usize * self.w + q as usize];
                            m = m.max(v);
                            s += v;
                        }
                    }
                }
                y.push(match self.op {
                    PoolOp::Max => m,
                    PoolOp::Sum => s,
                    PoolOp::Avg => s / (self.k[0] * self.k[1]) as f64,
                });
            }
        }
        y
    }

    fn run(&self, x: &[f64], g: &[f64]) -> [Vec<f64>; 2] {
        let [oh, ow] = self.out();
        let u = |v: usize| v as u32;
        let mut b = Builder::new("pool", 1, 1e-3, F64);
        let xi = b.input("x", Type::new(F64, Shape::batched(&[u(self.h), u(self.w)])));
        let gi = b.input("g", Type::new(F64, Shape::batched(&[u(oh), u(ow)])));
        b.begin_seq();
        let (xn, gn) = (b.emit(Op::Input(xi)).unwrap(), b.emit(Op::Input(gi)).unwrap());
        let (kernel, stride, padding) = (self.k.map(u), self.stride.map(u), self.padding.map(u));
        let y = b.emit(Op::Pool2d { op: self.op, input: xn, kernel, stride, padding }).unwrap();
        let dx = b.emit(Op::Pool2dGrad { op: self.op, input: xn, grad: gn, kernel, stride, padding }).unwrap();
        b.output("y", y);
        b.output("dx", dx);
        let m = b.finish();
        let r = run(
            &m,
            &Default::default(),
            &[("x", t64(&[1, self.h, self.w], x.to_vec())), ("g", t64(&[1, oh, ow], g.to_vec()))],
        );
        ["y", "dx"].map(|n| r.outputs[n].data.clone())
    }
}

#[test]
fn pools_with_padding_match_the_definitions_and_their_gradients_are_the_adjoints() {
    for op in [PoolOp::Max, PoolOp::Avg, PoolOp::Sum] {
        for (h, w, k, stride, padding) in [
            (5, 6, [3, 3], [2, 2], [1, 1]),
            (4, 7, [2, 3], [1, 2], [1, 1]),
            (6, 5, [3, 2], [1, 1], [0, 1]),
            (5, 5, [2, 2], [2, 2], [0, 0]),
        ] {
            let pool = Pool { op, h, w, k, stride, padding };
            let [oh, ow] = pool.out();
            let x = ramp(h * w);
            let g = ramp(oh * ow + 5)[5..].to_vec();
            let [y, dx] = pool.run(&x, &g);
            let want = pool.reference(&x);
            for (n, (a, b)) in y.iter().zip(&want).enumerate() {
                close(*a, *b, 1e-15, &format!("{pool:?} y[{n}]"));
            }
            if op == PoolOp::Max {
                // The values of `ramp` are distinct: each window's gradient
                // goes to its maximum.
                let mut want = vec![0.0; h * w];
                for (wi, &yv) in y.iter().enumerate() {
                    let at = x.iter().position(|&v| v == yv).expect("the maximum is an element");
                    want[at] += g[wi];
                }
                for (n, (a, b)) in dx.iter().zip(&want).enumerate() {
                    close(*a, *b, 1e-15, &format!("{pool:?} dx[{n}]"));
                }
            } else {
                // Linear: dx[k] = <g, pool(e_k)>.
                for n in 0..x.len() {
                    let mut e = vec![0.0; x.len()];
                    e[n] = 1.0;
                    close(dx[n], dot(&g, &pool.reference(&e)), 1e-15, &format!("{pool:?} dx[{n}]"));
                }
            }
        }
    }
}

#[test]
fn pools_with_padding_by_hand() {
    // x = [[1, 2], [3, 4]], kernel 2, stride 1, padding 1: a 3 × 3 output of
    // the windows over the padded [[0,0,0,0],[0,1,2,0],[0,3,4,0],[0,0,0,0]].
    let x = vec![1.0, 2.0, 3.0, 4.0];
    let g = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
    let base = Pool { op: PoolOp::Sum, h: 2, w: 2, k: [2, 2], stride: [1, 1], padding: [1, 1] };
    let [y, dx] = base.run(&x, &g);
    assert_eq!(y, vec![1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]);
    // Element (0, 0) is in windows (0,0), (0,1), (1,0), (1,1): 1 + 2 + 4 + 5.
    assert_eq!(dx, vec![12.0, 16.0, 24.0, 28.0]);
    let [y, dx] = Pool { op: PoolOp::Avg, ..base }.run(&x, &g);
    assert_eq!(y, vec![0.25, 0.75, 0.5, 1.0, 2.5, 1.5, 0.75, 1.75, 1.0]);
    assert_eq!(dx, vec![3.0, 4.0, 6.0, 7.0]);
    let [y, dx] = Pool { op: PoolOp::Max, ..base }.run(&x, &g);
    assert_eq!(y, vec![1.0, 2.0, 2.0, 3.0, 4.0, 4.0, 3.0, 4.0, 4.0]);
    // 1 wins window (0,0); 2 windows (0,1), (0,2); 3 windows (1,0), (2,0);
    // 4 windows (1,1), (1,2), (2,1), (2,2).
    assert_eq!(dx, vec![1.0, 5.0, 11.0, 28.0]);
    // Negative values: the padding (-inf for max) is never the maximum.
    let neg: Vec<f64> = x.iter().map(|v| -v).collect();
    let [y, _] = Pool { op: PoolOp::Max, ..base }.run(&neg, &g);
    assert_eq!(y, vec![-1.0, -1.0, -2.0, -1.0, -1.0, -2.0, -3.0, -3.0, -4.0]);
}

#[test]
fn avg_and_sum_pools_of_spikes_are_float_and_max_keeps_spikes() {
    let mut b = Builder::new("pool", 1, 1e-3, Dtype::F32);
    let xi = b.input("x", Type::new(Dtype::Spike, Shape::batched(&[4, 4])));
    b.begin_seq();
    let x = b.emit(Op::Input(xi)).unwrap();
    for (op, dtype) in [(PoolOp::Max, Dtype::Spike), (PoolOp::Avg, Dtype::F32), (PoolOp::Sum, Dtype::F32)] {
        let y = b.emit(Op::Pool2d { op, input: x, kernel: [2, 2], stride: [2, 2], padding: [1, 1] }).unwrap();
        assert_eq!(b.ty(y).dtype, dtype, "{op:?}");
        assert_eq!(b.ty(y).shape, Shape::batched(&[3, 3]));
    }
    // Torch requires a padding of at most half the kernel.
    let e = b.emit(Op::Pool2d { op: PoolOp::Avg, input: x, kernel: [2, 3], stride: [1, 1], padding: [1, 2] });
    assert!(e.unwrap_err().to_string().contains("`avg_pool2d` padding 2 is more than half the kernel 3"));
}
