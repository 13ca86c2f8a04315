//! Text in PNG figures.
//!
//! plotters 0.3.7 draws ab_glyph text without each glyph's left side
//! bearing, so "100" reads "1 00". [`GlyphText`] wraps a pixel backend and
//! draws text itself with ab_glyph, every glyph at its true position and
//! anti-aliased; everything else goes to the wrapped backend. Text is
//! measured as plotters measures it, so layouts are unchanged.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont, point};
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingBackend, DrawingErrorKind};

/// A pixel backend whose text is drawn with `font`.
pub(crate) struct GlyphText<'f, B> {
    inner: B,
    font: FontRef<'f>,
}

impl<'f, B> GlyphText<'f, B> {
    pub fn new(inner: B, font: FontRef<'f>) -> Self {
        GlyphText { inner, font }
    }
}

type Res<E> = Result<(), DrawingErrorKind<E>>;

impl<B: DrawingBackend> DrawingBackend for GlyphText<'_, B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Res<B::ErrorType> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Res<B::ErrorType> {
        self.inner.present()
    }

    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Res<B::ErrorType> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(&mut self, from: BackendCoord, to: BackendCoord, style: &S) -> Res<B::ErrorType> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Res<B::ErrorType> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Res<B::ErrorType> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Res<B::ErrorType> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Res<B::ErrorType> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Res<B::ErrorType> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn draw_text<S: BackendTextStyle>(&mut self, text: &str, style: &S, pos: BackendCoord) -> Res<B::ErrorType> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        // The box plotters laid the text out in, anchored as plotters anchors it.
        let ((min_x, min_y), (max_x, max_y)) =
            style.layout_box(text).map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let (width, height) = (max_x - min_x, max_y - min_y);
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -width,
            HPos::Center => -width / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -height / 2,
            VPos::Bottom => -height,
        };
        let scale = PxScale::from(style.size() as f32);
        let font = self.font.as_scaled(scale);
        // Capital letters are centred in the box.
        let cap = font.outline_glyph(font.scaled_glyph('H')).map_or(scale.y * 0.7, |g| -g.px_bounds().min.y);
        let baseline = (height as f32 + cap) / 2.0;
        let transform = style.transform();
        let (w, h) = self.inner.get_size();
        let inner = &mut self.inner;
        let mut res = Ok(());
        let mut x = 0.0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                x += font.kern(p, id);
            }
            prev = Some(id);
            let glyph = id.with_scale_and_position(scale, point(x, baseline));
            x += font.h_advance(id);
            let Some(outline) = font.outline_glyph(glyph) else { continue };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                if res.is_err() || coverage <= 0.0 {
                    return;
                }
                let px = bounds.min.x as i32 + gx as i32 + dx;
                let py = bounds.min.y as i32 + gy as i32 + dy;
                let (tx, ty) = transform.transform(px, py);
                let (tx, ty) = (pos.0 + tx, pos.1 + ty);
                if tx >= 0 && ty >= 0 && (tx as u32) < w && (ty as u32) < h {
                    let alpha = color.alpha * f64::from(coverage.min(1.0));
                    res = inner.draw_pixel((tx, ty), BackendColor { alpha, rgb: color.rgb });
                }
            });
            if res.is_err() {
                break;
            }
        }
        res
    }
}
