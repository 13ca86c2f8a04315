//! Receptive fields: each postsynaptic neuron's weights drawn as an image
//! (`snnc plot WEIGHTS.safetensors -o FIELDS.png`), e.g. the weights an
//! STDP layer learnt from images (`docs/plasticity.md`).
//!
//! A weight `[out, in]` whose `in` is a square number (784 = 28 × 28) or a
//! convolution kernel `[out, 1, kh, kw]` gives one image per output neuron,
//! in a grid of ⌈√out⌉ columns, each weight a `SCALE × SCALE` square of
//! grey: black at the tensor's smallest weight, white at its largest (one
//! scale for all, so that fields can be compared), fields separated by a
//! `GAP`-pixel mid-blue border. PNG only.

use snnc_runtime::Tensor;

use crate::driver::Error;

/// Pixels per weight.
pub const SCALE: u32 = 3;
/// Pixels between fields (and around the grid).
pub const GAP: u32 = 2;
/// The border colour.
pub const BORDER: [u8; 3] = [70, 90, 140];

/// The field geometry of a weight named `name`: (fields, height, width).
pub fn geometry(name: &str, w: &Tensor) -> Result<(usize, usize, usize), Error> {
    match w.shape[..] {
        [out, n] => {
            let side = (n as f64).sqrt().round() as usize;
            if side * side != n || n == 0 {
                return Err(Error::User(format!(
                    "`{name}` has shape {:?}: its {n} inputs are not a square image, so its receptive fields \
                     cannot be drawn (a Linear's input must be a flattened square image, e.g. 784 = 28 x 28)",
                    w.shape
                )));
            }
            Ok((out, side, side))
        }
        [out, 1, kh, kw] => Ok((out, kh, kw)),
        _ => Err(Error::User(format!(
            "`{name}` has shape {:?}; receptive fields are drawn for a Linear's weight [out, in] (in a square \
             number) or a one-channel convolution's [out, 1, kh, kw]",
            w.shape
        ))),
    }
}

/// The RGB pixels of the grid and its size (width, height).
pub fn pixels(name: &str, w: &Tensor) -> Result<(Vec<u8>, u32, u32), Error> {
    pixels_on(name, w, None)
}

/// [`pixels`] with black at `range.0` and white at `range.1` (default: the
/// tensor's smallest and largest finite weight), so that several grids
/// can share one scale.
pub fn pixels_on(name: &str, w: &Tensor, range: Option<(f64, f64)>) -> Result<(Vec<u8>, u32, u32), Error> {
    let (fields, h, wd) = geometry(name, w)?;
    if fields == 0 {
        return Err(Error::User(format!("`{name}` has no output neurons to draw")));
    }
    let cols = (fields as f64).sqrt().ceil() as usize;
    let rows = fields.div_ceil(cols);
    let (cell_w, cell_h) = (wd as u32 * SCALE + GAP, h as u32 * SCALE + GAP);
    let (width, height) = (cols as u32 * cell_w + GAP, rows as u32 * cell_h + GAP);
    if u64::from(width) * u64::from(height) > 50_000_000 {
        return Err(Error::User(format!("`{name}`: {fields} fields of {h}x{wd} make too large an image")));
    }
    let finite = || w.data.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) =
        range.unwrap_or_else(|| (finite().fold(f64::INFINITY, f64::min), finite().fold(f64::NEG_INFINITY, f64::max)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    let mut rgb: Vec<u8> = BORDER.iter().copied().cycle().take(width as usize * height as usize * 3).collect();
    let per = h * wd;
    for f in 0..fields {
        let (x0, y0) = (GAP + (f % cols) as u32 * cell_w, GAP + (f / cols) as u32 * cell_h);
        for (k, &v) in w.data[f * per..(f + 1) * per].iter().enumerate() {
            // NaN and infinities: red.
            let c = if v.is_finite() {
                let g = (255.0 * (v - lo) / span).round().clamp(0.0, 255.0) as u8;
                [g, g, g]
            } else {
                [220, 30, 30]
            };
            let (px, py) = (x0 + (k % wd) as u32 * SCALE, y0 + (k / wd) as u32 * SCALE);
            for dy in 0..SCALE {
                for dx in 0..SCALE {
                    let at = (((py + dy) * width + px + dx) * 3) as usize;
                    rgb[at..at + 3].copy_from_slice(&c);
                }
            }
        }
    }
    Ok((rgb, width, height))
}

/// The PNG of the receptive fields of `name`.
pub fn png(name: &str, w: &Tensor) -> Result<Vec<u8>, Error> {
    let (rgb, width, height) = pixels(name, w)?;
    super::draw::encode_png(&rgb, width, height).map_err(|e| Error::Internal(format!("cannot encode the PNG: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use snnc_runtime::ElemType;

    #[test]
    fn fields_are_a_grid_of_grey_images_on_one_scale() {
        // Three neurons of 2x2 inputs: a grid of 2 columns, 2 rows.
        let data = vec![0.0, 1.0, 2.0, 3.0, 4.0, 4.0, 4.0, 4.0, 0.0, 0.0, 0.0, f64::NAN];
        let w = Tensor::new(vec![3, 4], ElemType::F32, data).unwrap();
        assert_eq!(geometry("fc.weight", &w).unwrap(), (3, 2, 2));
        let (rgb, width, height) = pixels("fc.weight", &w).unwrap();
        let cell = 2 * SCALE + GAP;
        assert_eq!((width, height), (2 * cell + GAP, 2 * cell + GAP));
        let at = |x: u32, y: u32| {
            let i = ((y * width + x) * 3) as usize;
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        };
        // Field 0: its first weight is the smallest (black), its last 3 of 4 (191).
        assert_eq!(at(GAP, GAP), [0, 0, 0]);
        assert_eq!(at(GAP + SCALE, GAP + SCALE), [191, 191, 191]);
        // Field 1 (second column) is all 4: white.
        assert_eq!(at(GAP + cell, GAP), [255, 255, 255]);
        // Field 2 (second row): NaN is red; the empty fourth cell is border.
        assert_eq!(at(GAP + SCALE, GAP + cell + SCALE), [220, 30, 30]);
        assert_eq!(at(GAP + cell, GAP + cell), BORDER);
        assert_eq!(at(0, 0), BORDER);
        let png = png("fc.weight", &w).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }

    #[test]
    fn other_shapes_are_clear_errors() {
        let w = Tensor::new(vec![2, 3], ElemType::F32, vec![0.0; 6]).unwrap();
        let e = geometry("fc.weight", &w).unwrap_err().to_string();
        assert!(e.contains("not a square image") && e.contains("`fc.weight`"), "{e}");
        let w = Tensor::new(vec![2], ElemType::F32, vec![0.0; 2]).unwrap();
        assert!(geometry("fc.bias", &w).unwrap_err().to_string().contains("[out, in]"));
        let w = Tensor::new(vec![2, 1, 3, 3], ElemType::F32, vec![0.0; 18]).unwrap();
        assert_eq!(geometry("conv.weight", &w).unwrap(), (2, 3, 3));
    }
}
