//! PTX for the scalar functions of the IR that are more than one
//! instruction: IEEE-exact `max`/`min` with the interpreter's NaN and
//! tie rules; `exp`, `log` and `tanh` computed in f64 from IEEE operations
//! only (no `.approx` instruction) and rounded once to f32, so they are
//! correctly rounded except in rare cases, like glibc's `expf`/`logf`
//! that Rust's `f32` functions call (the CPU's bits in practice, not by
//! construction); and the counter-based generator of `Op::Uniform` (bit
//! for bit).
//!
//! Each function appends its instructions to the kernel builder and
//! returns the register holding the result.

use crate::ptx::{Kb, NAN, ONE, ZERO, dimm};

/// `max(a, b)` as the interpreter's `max_nan`: the canonical NaN if either
/// is NaN, else `b > a ? b : a` (`a` wins ties, so `max(-0, +0) = -0`).
pub(crate) fn max_nan(k: &mut Kb, a: &str, b: &str) -> String {
    pick_nan(k, a, b, "gt")
}

/// `min(a, b)`: the canonical NaN if either is NaN, else `b < a ? b : a`.
pub(crate) fn min_nan(k: &mut Kb, a: &str, b: &str) -> String {
    pick_nan(k, a, b, "lt")
}

fn pick_nan(k: &mut Kb, a: &str, b: &str, cmp: &str) -> String {
    let (p, q, r, d) = (k.p(), k.p(), k.f(), k.f());
    k.ins(format!("setp.{cmp}.f32 {p}, {b}, {a}"));
    k.ins(format!("selp.f32 {r}, {b}, {a}, {p}"));
    k.ins(format!("setp.nan.f32 {q}, {a}, {b}"));
    k.ins(format!("selp.f32 {d}, {NAN}, {r}, {q}"));
    d
}

/// `1.0` where `p` holds, else `0.0`.
pub(crate) fn bool_to_f32(k: &mut Kb, p: &str) -> String {
    let d = k.f();
    k.ins(format!("selp.f32 {d}, {ONE}, {ZERO}, {p}"));
    d
}

/// `e^d` in f64 for an f64 register `d` in `[-745, 709]` (the caller
/// clamps), accurate to about 1e-16 relative: `d = k ln2 + r` with
/// `k = round(d log2 e)` (Cody-Waite, two-part `ln2`), `e^r` by its Taylor
/// polynomial of degree 13 (`|r| <= ln2 / 2`), scaled by `2^k` in two
/// exact steps.
fn exp_f64(k: &mut Kb, d: &str) -> String {
    let (t, kf, r0, r) = (k.fd(), k.fd(), k.fd(), k.fd());
    k.ins(format!("mul.rn.f64 {t}, {d}, {}", dimm(std::f64::consts::LOG2_E)));
    k.ins(format!("cvt.rni.f64.f64 {kf}, {t}"));
    k.ins(format!("fma.rn.f64 {r0}, {kf}, {}, {d}", dimm(-f64::from_bits(0x3FE6_2E42_FEE0_0000))));
    k.ins(format!("fma.rn.f64 {r}, {kf}, {}, {r0}", dimm(-f64::from_bits(0x3DEA_39EF_3579_3C76))));
    let mut fact = [1.0f64; 14];
    for n in 1..14 {
        fact[n] = fact[n - 1] * n as f64;
    }
    let mut acc = k.fd();
    k.ins(format!("mov.f64 {acc}, {}", dimm(1.0 / fact[13])));
    for n in (0..13).rev() {
        let next = k.fd();
        k.ins(format!("fma.rn.f64 {next}, {acc}, {r}, {}", dimm(1.0 / fact[n])));
        acc = next;
    }
    // 2^k = 2^k1 * 2^k2 with k1 = k >> 1: both normal for k in [-1075, 1024].
    let (ki, k1, k2) = (k.r(), k.r(), k.r());
    k.ins(format!("cvt.rzi.s32.f64 {ki}, {kf}"));
    k.ins(format!("shr.s32 {k1}, {ki}, 1"));
    k.ins(format!("sub.s32 {k2}, {ki}, {k1}"));
    let mut scaled = acc;
    for kk in [k1, k2] {
        let (e, b, sc, y) = (k.r(), k.rd(), k.fd(), k.fd());
        k.ins(format!("add.s32 {e}, {kk}, 1023"));
        k.ins(format!("cvt.u64.u32 {b}, {e}"));
        k.ins(format!("shl.b64 {b}, {b}, 52"));
        k.ins(format!("mov.b64 {sc}, {b}"));
        k.ins(format!("mul.rn.f64 {y}, {scaled}, {sc}"));
        scaled = y;
    }
    scaled
}

/// `e^x` for f32 `x`, computed in f64 and rounded once: correctly rounded
/// except in rare cases (as glibc's `expf`, which Rust's `f32::exp` calls,
/// so the CPU's bits in practice). NaN stays NaN; `x` is clamped to
/// `[-104, 89]` (beyond: 0 and inf).
pub(crate) fn exp(k: &mut Kb, x: &str) -> String {
    let (xd, lo, c) = (k.fd(), k.fd(), k.fd());
    k.ins(format!("cvt.f64.f32 {xd}, {x}"));
    k.ins(format!("max.f64 {lo}, {xd}, {}", dimm(-104.0)));
    k.ins(format!("min.f64 {c}, {lo}, {}", dimm(89.0)));
    let y = exp_f64(k, &c);
    let (yf, xx, nan, res) = (k.f(), k.f(), k.p(), k.f());
    k.ins(format!("cvt.rn.f32.f64 {yf}, {y}"));
    k.ins(format!("add.f32 {xx}, {x}, {x}"));
    k.ins(format!("setp.nan.f32 {nan}, {x}, {x}"));
    k.ins(format!("selp.f32 {res}, {xx}, {yf}, {nan}"));
    res
}

/// `ln x` for f32 `x`, computed in f64 and rounded once (correctly rounded
/// except in rare cases, as glibc's `logf`): `x = m 2^e` with `m` in
/// `[sqrt(1/2), sqrt(2))` (f64 has no f32 subnormals), `ln m = 2 atanh(s)`
/// with `s = (m - 1) / (m + 1)` as an odd polynomial to `s^19`, plus
/// `e ln2`. NaN and negatives give NaN, `+-0` gives `-inf`, `inf` gives
/// `inf`.
pub(crate) fn log(k: &mut Kb, x: &str) -> String {
    let (xd, bits, eb, e0, mb, m0) = (k.fd(), k.rd(), k.rd(), k.r(), k.rd(), k.fd());
    k.ins(format!("cvt.f64.f32 {xd}, {x}"));
    k.ins(format!("mov.b64 {bits}, {xd}"));
    k.ins(format!("shr.u64 {eb}, {bits}, 52"));
    k.ins(format!("and.b64 {eb}, {eb}, 2047"));
    k.ins(format!("cvt.u32.u64 {e0}, {eb}"));
    k.ins(format!("sub.s32 {e0}, {e0}, 1023"));
    k.ins(format!("and.b64 {mb}, {bits}, 0x000FFFFFFFFFFFFF"));
    k.ins(format!("or.b64 {mb}, {mb}, 0x3FF0000000000000"));
    k.ins(format!("mov.b64 {m0}, {mb}"));
    // m in [1, 2): halve it above sqrt(2).
    let (big, mh, m, e1, e) = (k.p(), k.fd(), k.fd(), k.r(), k.r());
    k.ins(format!("setp.gt.f64 {big}, {m0}, {}", dimm(std::f64::consts::SQRT_2)));
    k.ins(format!("mul.rn.f64 {mh}, {m0}, {}", dimm(0.5)));
    k.ins(format!("selp.f64 {m}, {mh}, {m0}, {big}"));
    k.ins(format!("add.s32 {e1}, {e0}, 1"));
    k.ins(format!("selp.s32 {e}, {e1}, {e0}, {big}"));
    let (f, den, s, z) = (k.fd(), k.fd(), k.fd(), k.fd());
    k.ins(format!("sub.rn.f64 {f}, {m}, {}", dimm(1.0)));
    k.ins(format!("add.rn.f64 {den}, {m}, {}", dimm(1.0)));
    k.ins(format!("div.rn.f64 {s}, {f}, {den}"));
    k.ins(format!("mul.rn.f64 {z}, {s}, {s}"));
    // 2 atanh(s) = 2s (1 + z/3 + z^2/5 + ... + z^9/19), |s| < 0.1716.
    let mut acc = k.fd();
    k.ins(format!("mov.f64 {acc}, {}", dimm(1.0 / 19.0)));
    for n in (0..9).rev() {
        let next = k.fd();
        k.ins(format!("fma.rn.f64 {next}, {acc}, {z}, {}", dimm(1.0 / f64::from(2 * n + 1))));
        acc = next;
    }
    let (s2, lm, ef, lo, y, yf) = (k.fd(), k.fd(), k.fd(), k.fd(), k.fd(), k.f());
    k.ins(format!("add.rn.f64 {s2}, {s}, {s}"));
    k.ins(format!("mul.rn.f64 {lm}, {s2}, {acc}"));
    k.ins(format!("cvt.rn.f64.s32 {ef}, {e}"));
    k.ins(format!("fma.rn.f64 {lo}, {ef}, {}, {lm}", dimm(f64::from_bits(0x3DEA_39EF_3579_3C76))));
    k.ins(format!("fma.rn.f64 {y}, {ef}, {}, {lo}", dimm(f64::from_bits(0x3FE6_2E42_FEE0_0000))));
    k.ins(format!("cvt.rn.f32.f64 {yf}, {y}"));
    // Special values.
    let (p0, pinf, pneg, r1, r2, r3) = (k.p(), k.p(), k.p(), k.f(), k.f(), k.f());
    k.ins(format!("setp.eq.f32 {p0}, {x}, {ZERO}"));
    k.ins(format!("selp.f32 {r1}, 0fFF800000, {yf}, {p0}"));
    k.ins(format!("setp.eq.f32 {pinf}, {x}, 0f7F800000"));
    k.ins(format!("selp.f32 {r2}, 0f7F800000, {r1}, {pinf}"));
    k.ins(format!("setp.ltu.f32 {pneg}, {x}, {ZERO}"));
    k.ins(format!("selp.f32 {r3}, {NAN}, {r2}, {pneg}"));
    r3
}

/// `tanh x` for f32 `x`, computed in f64 and rounded once: `x - x^3/3`
/// for `|x| < 2^-12`, else `sign(x) (1 - 2 / (e^{2|x|} + 1))` with `2|x|`
/// clamped to 40 (where the f32 result is 1). NaN stays NaN.
pub(crate) fn tanh(k: &mut Kb, x: &str) -> String {
    let (xd, a, a2, c) = (k.fd(), k.fd(), k.fd(), k.fd());
    k.ins(format!("cvt.f64.f32 {xd}, {x}"));
    k.ins(format!("abs.f64 {a}, {xd}"));
    k.ins(format!("add.rn.f64 {a2}, {a}, {a}"));
    k.ins(format!("min.f64 {c}, {a2}, {}", dimm(40.0)));
    let e = exp_f64(k, &c);
    let (d, q, big, signed) = (k.fd(), k.fd(), k.fd(), k.fd());
    k.ins(format!("add.rn.f64 {d}, {e}, {}", dimm(1.0)));
    k.ins(format!("div.rn.f64 {q}, {}, {d}", dimm(2.0)));
    k.ins(format!("sub.rn.f64 {big}, {}, {q}", dimm(1.0)));
    k.ins(format!("copysign.f64 {signed}, {xd}, {big}"));
    let (x2, x3, small) = (k.fd(), k.fd(), k.fd());
    k.ins(format!("mul.rn.f64 {x2}, {xd}, {xd}"));
    k.ins(format!("mul.rn.f64 {x3}, {x2}, {xd}"));
    k.ins(format!("fma.rn.f64 {small}, {x3}, {}, {xd}", dimm(-1.0 / 3.0)));
    let (p, y0, y, yf, nan, xx, res) = (k.p(), k.fd(), k.fd(), k.f(), k.p(), k.f(), k.f());
    k.ins(format!("setp.lt.f64 {p}, {a}, {}", dimm(1.0 / 4096.0)));
    k.ins(format!("selp.f64 {y0}, {small}, {signed}, {p}"));
    // The sign of x, also for -0 (tanh is odd).
    k.ins(format!("copysign.f64 {y}, {xd}, {y0}"));
    k.ins(format!("cvt.rn.f32.f64 {yf}, {y}"));
    k.ins(format!("add.f32 {xx}, {x}, {x}"));
    k.ins(format!("setp.nan.f32 {nan}, {x}, {x}"));
    k.ins(format!("selp.f32 {res}, {xx}, {yf}, {nan}"));
    res
}

/// SplitMix64's output function on the u64 register `z` (as
/// `snnc_ir::rng::mix64`).
fn mix64(k: &mut Kb, z: &str) -> String {
    let z0 = k.rd();
    k.ins(format!("add.u64 {z0}, {z}, 0x9E3779B97F4A7C15"));
    let mut cur = z0;
    for (shift, mul) in [(30, Some("0xBF58476D1CE4E5B9")), (27, Some("0x94D049BB133111EB")), (31, None)] {
        let (s, x) = (k.rd(), k.rd());
        k.ins(format!("shr.u64 {s}, {cur}, {shift}"));
        k.ins(format!("xor.b64 {x}, {cur}, {s}"));
        cur = match mul {
            Some(m) => {
                let y = k.rd();
                k.ins(format!("mul.lo.u64 {y}, {x}, {m}"));
                y
            }
            None => x,
        };
    }
    cur
}

/// `snnc_ir::rng::uniform(seed, t, k)` in f32 (exact: 24 random bits),
/// for the u32 registers `t` and `idx`.
pub(crate) fn uniform(k: &mut Kb, seed: u64, t: &str, idx: &str) -> String {
    let (t64, k64, c) = (k.rd(), k.rd(), k.rd());
    k.ins(format!("cvt.u64.u32 {t64}, {t}"));
    k.ins(format!("shl.b64 {t64}, {t64}, 40"));
    k.ins(format!("cvt.u64.u32 {k64}, {idx}"));
    k.ins(format!("xor.b64 {c}, {t64}, {k64}"));
    let inner = mix64(k, &c);
    let z = k.rd();
    k.ins(format!("xor.b64 {z}, {inner}, {seed:#x}"));
    let bits = mix64(k, &z);
    let (top, top32, f, u) = (k.rd(), k.r(), k.f(), k.f());
    k.ins(format!("shr.u64 {top}, {bits}, 40"));
    k.ins(format!("cvt.u32.u64 {top32}, {top}"));
    k.ins(format!("cvt.rn.f32.u32 {f}, {top32}"));
    k.ins(format!("mul.rn.f32 {u}, {f}, 0f33800000"));
    u
}
