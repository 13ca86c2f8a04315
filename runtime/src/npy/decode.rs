//! An `.npy` file's data bytes into values, and Fortran order into C order.

use super::NpyValues;
use super::header::{Dtype, Kind, Scalar};
use crate::tensor::index_of;

/// 2^53: the largest magnitude up to which every integer is an f64.
const F64_EXACT: u64 = 1 << 53;

/// One scalar's raw value.
#[derive(Clone, Copy)]
enum Raw {
    I(i64),
    U(u64),
    F(f64),
}

fn read_scalar(s: Scalar, b: &[u8]) -> Raw {
    let mut buf = [0u8; 8];
    buf[..s.size].copy_from_slice(&b[..s.size]);
    if s.big {
        buf[..s.size].reverse();
    }
    let bits = u64::from_le_bytes(buf);
    match s.kind {
        Kind::Bool => Raw::U(u64::from(bits != 0)),
        Kind::UInt => Raw::U(bits),
        Kind::Int => {
            let shift = 64 - 8 * s.size as u32;
            Raw::I(((bits << shift) as i64) >> shift)
        }
        Kind::Float => Raw::F(match s.size {
            2 => half::f16::from_bits(bits as u16).to_f64(),
            4 => f64::from(f32::from_bits(bits as u32)),
            _ => f64::from_bits(bits),
        }),
    }
}

/// Decodes `data` (exactly `n · itemsize` bytes) of an array of `shape`
/// stored in C order (in Fortran order if `fortran`; the values stay in
/// the stored order). Errors name the element at fault.
pub(crate) fn decode(dtype: &Dtype, shape: &[usize], fortran: bool, data: &[u8]) -> Result<NpyValues, String> {
    // The multi-index of the `i`-th stored element, for messages.
    let index_of = |shape: &[usize], i: usize| {
        if fortran {
            let reversed: Vec<usize> = shape.iter().rev().copied().collect();
            index_of(&reversed, i).into_iter().rev().collect()
        } else {
            index_of(shape, i)
        }
    };
    match dtype {
        Dtype::Scalar(s) if s.kind == Kind::UInt && s.size == 1 => Ok(NpyValues::U8(data.to_vec())),
        Dtype::Scalar(s) if s.kind == Kind::Float => Ok(NpyValues::Float {
            bits: 8 * s.size as u8,
            data: data
                .chunks_exact(s.size)
                .map(|b| match read_scalar(*s, b) {
                    Raw::F(x) => x,
                    _ => unreachable!("a float dtype reads floats"),
                })
                .collect(),
        }),
        Dtype::Scalar(s) => data
            .chunks_exact(s.size)
            .enumerate()
            .map(|(i, b)| match read_scalar(*s, b) {
                Raw::I(v) => Ok(v),
                Raw::U(v) => i64::try_from(v).map_err(|_| {
                    format!(
                        "element {:?} = {v} does not fit int64 (at most {}); values above it are not read",
                        index_of(shape, i),
                        i64::MAX
                    )
                }),
                Raw::F(_) => unreachable!("an integer dtype reads integers"),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(NpyValues::Int),
        Dtype::Record { fields, itemsize } => {
            let n = data.len() / itemsize;
            let mut columns = Vec::new();
            for f in fields {
                let Some(s) = f.scalar else { continue };
                let mut column = Vec::new();
                column.try_reserve_exact(n).map_err(|_| "the record array is too large to hold".to_string())?;
                for i in 0..n {
                    let at = i * itemsize + f.offset;
                    let x = match read_scalar(s, &data[at..at + s.size]) {
                        Raw::F(x) => Some(x),
                        Raw::I(v) => (v.unsigned_abs() <= F64_EXACT).then_some(v as f64),
                        Raw::U(v) => (v <= F64_EXACT).then_some(v as f64),
                    };
                    let Some(x) = x else {
                        return Err(format!(
                            "field '{}' of element {:?} is an integer beyond 2^53, which a float64 cannot hold exactly",
                            f.name,
                            index_of(shape, i)
                        ));
                    };
                    column.push(x);
                }
                columns.push((f.name.clone(), column));
            }
            Ok(NpyValues::Record(columns))
        }
    }
}

/// Reorders values stored in Fortran order (first axis fastest) into C
/// order (last axis fastest).
pub(crate) fn fortran_to_c<T: Copy>(values: &[T], shape: &[usize]) -> Vec<T> {
    if shape.len() < 2 || values.is_empty() {
        return values.to_vec();
    }
    let mut stride = vec![1usize; shape.len()];
    for j in 1..shape.len() {
        stride[j] = stride[j - 1] * shape[j - 1];
    }
    let mut index = vec![0usize; shape.len()];
    let mut at = 0usize;
    let mut out = Vec::with_capacity(values.len());
    for _ in 0..values.len() {
        out.push(values[at]);
        for j in (0..shape.len()).rev() {
            index[j] += 1;
            at += stride[j];
            if index[j] < shape[j] {
                break;
            }
            at -= stride[j] * shape[j];
            index[j] = 0;
        }
    }
    out
}

/// [`fortran_to_c`] over every vector of decoded values.
pub(crate) fn values_to_c(values: NpyValues, shape: &[usize]) -> NpyValues {
    match values {
        NpyValues::Float { bits, data } => NpyValues::Float { bits, data: fortran_to_c(&data, shape) },
        NpyValues::U8(v) => NpyValues::U8(fortran_to_c(&v, shape)),
        NpyValues::Int(v) => NpyValues::Int(fortran_to_c(&v, shape)),
        NpyValues::Record(columns) => {
            NpyValues::Record(columns.into_iter().map(|(name, c)| (name, fortran_to_c(&c, shape))).collect())
        }
    }
}
