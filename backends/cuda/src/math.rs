//! PTX for the scalar functions of the IR that are more than one
//! instruction: IEEE-exact `max`/`min` with the interpreter's NaN and
//! tie rules, `exp`, `log` and `tanh` (accurate to a few ulp, not bit for
//! bit: Rust's `f32::exp` is glibc's and a GPU has no such instruction),
//! and the counter-based generator of `Op::Uniform` (bit for bit).
//!
//! Each function appends its instructions to the kernel builder and
//! returns the register holding the result.

use crate::ptx::{Kb, NAN, ONE, ZERO, fimm};

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

/// `e^x`, within about 2 ulp: `x = j ln2 + r` with `j = round(x log2 e)`
/// and `|r| <= ln2 / 2` (Cody-Waite, two-part `ln2`), `e^r` by
/// `ex2.approx` of `r log2 e`, then two exact scalings by powers of two so
/// that overflow gives `inf` and underflow rounds to subnormals or 0. NaN
/// stays NaN; `x` is clamped to `[-104, 89]` first (beyond: 0 and inf).
pub(crate) fn exp(k: &mut Kb, x: &str) -> String {
    let (xc, xd, t, j, r0, r, u, p) = (k.f(), k.f(), k.f(), k.f(), k.f(), k.f(), k.f(), k.f());
    k.ins(format!("max.f32 {xc}, {x}, {}", fimm(-104.0)));
    k.ins(format!("min.f32 {xd}, {xc}, {}", fimm(89.0)));
    k.ins(format!("mul.rn.f32 {t}, {xd}, {}", fimm(std::f32::consts::LOG2_E)));
    k.ins(format!("cvt.rni.f32.f32 {j}, {t}"));
    // ln2 = LN2_HI + LN2_LO, LN2_HI with 11 trailing zero bits (exact j * LN2_HI).
    k.ins(format!("fma.rn.f32 {r0}, {j}, {}, {xd}", fimm(f32::from_bits(0xBF31_7200))));
    k.ins(format!("fma.rn.f32 {r}, {j}, {}, {r0}", fimm(f32::from_bits(0xB5BF_BE8E))));
    k.ins(format!("mul.rn.f32 {u}, {r}, {}", fimm(std::f32::consts::LOG2_E)));
    k.ins(format!("ex2.approx.f32 {p}, {u}"));
    // 2^j as 2^j1 * 2^j2, both normal for j in [-151, 129].
    let (ji, j1, j2, b1, b2) = (k.r(), k.r(), k.r(), k.r(), k.r());
    k.ins(format!("cvt.rzi.s32.f32 {ji}, {j}"));
    k.ins(format!("shr.s32 {j1}, {ji}, 1"));
    k.ins(format!("sub.s32 {j2}, {ji}, {j1}"));
    k.ins(format!("add.s32 {b1}, {j1}, 127"));
    k.ins(format!("shl.b32 {b1}, {b1}, 23"));
    k.ins(format!("add.s32 {b2}, {j2}, 127"));
    k.ins(format!("shl.b32 {b2}, {b2}, 23"));
    let (s1, s2, y0, y, nan, res) = (k.f(), k.f(), k.f(), k.f(), k.p(), k.f());
    k.ins(format!("mov.b32 {s1}, {b1}"));
    k.ins(format!("mov.b32 {s2}, {b2}"));
    k.ins(format!("mul.rn.f32 {y0}, {p}, {s1}"));
    k.ins(format!("mul.rn.f32 {y}, {y0}, {s2}"));
    let xx = k.f();
    k.ins(format!("add.f32 {xx}, {x}, {x}"));
    k.ins(format!("setp.nan.f32 {nan}, {x}, {x}"));
    k.ins(format!("selp.f32 {res}, {xx}, {y}, {nan}"));
    res
}

/// `ln x`, within about 2 ulp: `x = m 2^e` with `m` in `[sqrt(1/2),
/// sqrt(2))` (subnormals scaled by 2^23 first), `ln m = 2 atanh(s)` with
/// `s = (m - 1) / (m + 1)` as an odd polynomial, plus `e ln2`. Special
/// values as IEEE: NaN and negatives give NaN, `+-0` gives `-inf`, `inf`
/// gives `inf`.
pub(crate) fn log(k: &mut Kb, x: &str) -> String {
    let (sub, xs, bits, e0, eb, mb, m0) = (k.p(), k.f(), k.r(), k.r(), k.r(), k.r(), k.f());
    // Subnormal inputs: scale into the normal range.
    k.ins(format!("setp.lt.f32 {sub}, {x}, {}", fimm(f32::MIN_POSITIVE)));
    let scaled = k.f();
    k.ins(format!("mul.rn.f32 {scaled}, {x}, {}", fimm(8_388_608.0)));
    k.ins(format!("selp.f32 {xs}, {scaled}, {x}, {sub}"));
    k.ins(format!("mov.b32 {bits}, {xs}"));
    k.ins(format!("bfe.u32 {eb}, {bits}, 23, 8"));
    k.ins(format!("sub.s32 {e0}, {eb}, 127"));
    let adj = k.r();
    k.ins(format!("selp.s32 {adj}, 23, 0, {sub}"));
    let e1 = k.r();
    k.ins(format!("sub.s32 {e1}, {e0}, {adj}"));
    k.ins(format!("and.b32 {mb}, {bits}, 8388607"));
    k.ins(format!("or.b32 {mb}, {mb}, 1065353216"));
    k.ins(format!("mov.b32 {m0}, {mb}"));
    // m in [1, 2): halve it above sqrt(2).
    let (big, mh, m, e1p, e) = (k.p(), k.f(), k.f(), k.r(), k.r());
    k.ins(format!("setp.gt.f32 {big}, {m0}, {}", fimm(std::f32::consts::SQRT_2)));
    k.ins(format!("mul.rn.f32 {mh}, {m0}, 0f3F000000"));
    k.ins(format!("selp.f32 {m}, {mh}, {m0}, {big}"));
    k.ins(format!("add.s32 {e1p}, {e1}, 1"));
    k.ins(format!("selp.s32 {e}, {e1p}, {e1}, {big}"));
    let (f, den, s, z) = (k.f(), k.f(), k.f(), k.f());
    k.ins(format!("sub.rn.f32 {f}, {m}, {ONE}"));
    k.ins(format!("add.rn.f32 {den}, {m}, {ONE}"));
    k.ins(format!("div.rn.f32 {s}, {f}, {den}"));
    k.ins(format!("mul.rn.f32 {z}, {s}, {s}"));
    // 2 atanh(s) = 2s (1 + z/3 + z^2/5 + ... + z^5/11), |s| < 0.1716.
    let coef = [1.0 / 11.0, 1.0 / 9.0, 1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0f32];
    let mut acc = k.f();
    k.ins(format!("mov.f32 {acc}, {}", fimm(coef[0])));
    for c in &coef[1..] {
        let n = k.f();
        k.ins(format!("fma.rn.f32 {n}, {acc}, {z}, {}", fimm(*c)));
        acc = n;
    }
    let (s2, lm, ef, hi, lo, y) = (k.f(), k.f(), k.f(), k.f(), k.f(), k.f());
    k.ins(format!("add.rn.f32 {s2}, {s}, {s}"));
    k.ins(format!("mul.rn.f32 {lm}, {s2}, {acc}"));
    k.ins(format!("cvt.rn.f32.s32 {ef}, {e}"));
    k.ins(format!("fma.rn.f32 {lo}, {ef}, {}, {lm}", fimm(-2.121_944_4e-4)));
    k.ins(format!("fma.rn.f32 {hi}, {ef}, {}, {lo}", fimm(f32::from_bits(0x3F31_8000))));
    k.ins(format!("mov.f32 {y}, {hi}"));
    // Special values.
    let (p0, pinf, pneg, r1, r2, r3) = (k.p(), k.p(), k.p(), k.f(), k.f(), k.f());
    k.ins(format!("setp.eq.f32 {p0}, {x}, {ZERO}"));
    k.ins(format!("selp.f32 {r1}, 0fFF800000, {y}, {p0}"));
    k.ins(format!("setp.eq.f32 {pinf}, {x}, 0f7F800000"));
    k.ins(format!("selp.f32 {r2}, 0f7F800000, {r1}, {pinf}"));
    k.ins(format!("setp.ltu.f32 {pneg}, {x}, {ZERO}"));
    k.ins(format!("selp.f32 {r3}, {NAN}, {r2}, {pneg}"));
    r3
}

/// `tanh x`, within a few ulp: an odd Taylor polynomial for `|x| < 0.55`,
/// else `sign(x) (1 - 2 / (e^{2|x|} + 1))` (1 for large `|x|`). NaN stays
/// NaN.
pub(crate) fn tanh(k: &mut Kb, x: &str) -> String {
    let (a, z) = (k.f(), k.f());
    k.ins(format!("abs.f32 {a}, {x}"));
    k.ins(format!("mul.rn.f32 {z}, {x}, {x}"));
    // tanh x = x + x^3 (c3 + z (c5 + ...)), z = x^2.
    let coef: [f64; 7] = [
        -929_569.0 / 638_512_875.0,
        21_844.0 / 6_081_075.0,
        -1_382.0 / 155_925.0,
        62.0 / 2_835.0,
        -17.0 / 315.0,
        2.0 / 15.0,
        -1.0 / 3.0,
    ];
    let mut acc = k.f();
    k.ins(format!("mov.f32 {acc}, {}", fimm(coef[0] as f32)));
    for c in &coef[1..] {
        let n = k.f();
        k.ins(format!("fma.rn.f32 {n}, {acc}, {z}, {}", fimm(*c as f32)));
        acc = n;
    }
    let (x3, small) = (k.f(), k.f());
    k.ins(format!("mul.rn.f32 {x3}, {z}, {x}"));
    k.ins(format!("fma.rn.f32 {small}, {x3}, {acc}, {x}"));
    let a2 = k.f();
    k.ins(format!("add.rn.f32 {a2}, {a}, {a}"));
    let e = exp(k, &a2);
    let (d, q, big, signed) = (k.f(), k.f(), k.f(), k.f());
    k.ins(format!("add.rn.f32 {d}, {e}, {ONE}"));
    k.ins(format!("div.rn.f32 {q}, 0f40000000, {d}"));
    k.ins(format!("sub.rn.f32 {big}, {ONE}, {q}"));
    k.ins(format!("copysign.f32 {signed}, {x}, {big}"));
    let (p, res) = (k.p(), k.f());
    k.ins(format!("setp.lt.f32 {p}, {a}, 0f3F0CCCCD"));
    k.ins(format!("selp.f32 {res}, {small}, {signed}, {p}"));
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
