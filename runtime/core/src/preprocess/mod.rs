//! Image preprocessing, bit-compatible with each model family's reference processor:
//! Hugging Face `CLIPImageProcessor`, `SiglipImageProcessor` and `BlipImageProcessor`
//! (PIL backend), and OpenCLIP's torchvision transforms (which resize with PIL too).
//!
//! The reference pipeline (HF `CLIPImageProcessor` with the PIL backend and CLIP
//! defaults, i.e. what OpenAI CLIP models were trained with) is:
//!
//! 1. resize so that the shortest side equals [`PreprocessConfig::resize_shortest_edge`]
//!    with PIL `BICUBIC` (`a = -0.5`, antialiased when shrinking, no `reducing_gap`);
//!    the long side is `int(long * shortest_edge / short)` (truncated);
//! 2. centre crop to `crop_size × crop_size` at offset `(resized - crop) // 2`
//!    (Python floor division; if the crop is larger than the resized image HF pads
//!    with zeros, which this module reproduces);
//! 3. rescale by `1/255` (computed in `f64`, stored as `f32`);
//! 4. normalise `(x - mean) / std` in `f32`;
//! 5. lay out as NCHW `[1, 3, crop, crop]`.
//!
//! The other families change three steps ([`PreprocessConfig`]'s fields): SigLIP and
//! BLIP resize both sides straight to the input size ([`ResizeMode::Squash`], no
//! crop); MobileCLIP resizes with PIL `BILINEAR` ([`Interpolation::Bilinear`], a
//! triangle filter of support 1, scaled like bicubic's); torchvision's `CenterCrop`
//! rounds the crop offset half-to-even instead of down ([`CropOffset::Round`]).
//! torchvision's `ToTensor` divides by 255 in `f32`, which gives the same value as
//! HF's `f64` rescale for every code (checked in `models/preprocess_parity.py`).
//!
//! The resize is a faithful port of Pillow's `ImagingResample`
//! (`libImaging/Resample.c`): per-output-pixel coefficient tables whose support is
//! scaled by the downscale factor, normalised to 22-bit fixed point
//! (`PRECISION_BITS = 32 - 8 - 2`), a horizontal pass (skipped when the width does
//! not change) and a vertical pass (skipped when the height does not change), each
//! clipped to `u8`. The passes run horizontal-then-vertical, except that Pillow >= 13
//! (python-pillow/Pillow#9549) runs the vertical pass first when the height shrinks by
//! more than twice as many pixels as the width (`h_in - h_out > 2 * (w_in - w_out)`,
//! height shrinking); this module follows Pillow 13. Older Pillow (<= 12) always runs
//! horizontal first, so for such (tall, shrinking) images it differs from this module
//! by a few code values. The 8-bit output is bit-identical to PIL's for RGB8 input,
//! so the `f32` tensor equals HF's exactly (the rescale/normalise step uses a lookup
//! table built with HF's exact arithmetic).
//!
//! Every output pixel of Pillow's two passes depends only on its own coefficient
//! row, so this implementation only computes the columns and rows that survive the
//! centre crop: the horizontal pass runs on the kept columns of the source rows the
//! vertical pass needs, and the vertical pass on the kept rows. This is exact.
//!
//! Note: Pillow's coefficient maths is plain IEEE `f64`; Rust never contracts
//! `a * b + c` into a fused multiply-add, so the tables match Pillow builds that do
//! not use FMA either (x86-64 wheels). A Pillow build that lets the C compiler fuse
//! (possible on aarch64) can differ from itself-on-x86 by one code value in rare
//! pixels; this module follows the x86-64 reference.
//!
//! [`Preprocessor`] caches the coefficient tables for the last source size and owns
//! all scratch buffers, so repeated calls on frames of the same size perform no heap
//! allocation after the first call.

use clip_edge_bundle::Interpolation;
#[cfg(doc)]
use clip_edge_bundle::{CropOffset, ResizeMode};
use clip_edge_bundle::{InvalidPreprocessConfig, PreprocessConfig};
use thiserror::Error;

/// Largest accepted source side (keeps all index arithmetic well inside `i32`).
const MAX_SOURCE_SIDE: u32 = 1 << 20;

/// Pillow's fixed-point precision for 8-bit resampling: `32 - 8 - 2`.
const PRECISION_BITS: u32 = 32 - 8 - 2;
/// Support (half-width) of Pillow's bicubic filter.
const BICUBIC_SUPPORT: f64 = 2.0;
/// Support (half-width) of Pillow's bilinear (triangle) filter.
const BILINEAR_SUPPORT: f64 = 1.0;

/// Errors from [`Preprocessor`].
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum PreprocessError {
    /// The [`PreprocessConfig`] is unusable.
    #[error(transparent)]
    InvalidConfig(#[from] InvalidPreprocessConfig),
    /// The source image has a zero or too large dimension.
    #[error("invalid source image size {width}x{height} (each side must be in 1..={max})")]
    InvalidImageSize {
        /// Source width in pixels.
        width: u32,
        /// Source height in pixels.
        height: u32,
        /// Largest accepted side.
        max: u32,
    },
    /// The RGB buffer length does not match `width * height * 3`.
    #[error("RGB buffer has {actual} bytes, expected {expected} for {width}x{height}x3")]
    InputLength {
        /// Source width in pixels.
        width: u32,
        /// Source height in pixels.
        height: u32,
        /// Expected byte count.
        expected: usize,
        /// Actual byte count.
        actual: usize,
    },
    /// The output buffer has the wrong length.
    #[error("output buffer has {actual} elements, expected {expected}")]
    OutputLength {
        /// Expected element count.
        expected: usize,
        /// Actual element count.
        actual: usize,
    },
}

/// Pillow's bicubic kernel with `a = -0.5` (same operation order as `bicubic_filter`).
#[inline]
fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow's bilinear (triangle) kernel.
#[inline]
fn bilinear_filter(x: f64) -> f64 {
    let x = if x < 0.0 { -x } else { x };
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Pillow's filter function and support for `interpolation`.
fn filter_of(interpolation: Interpolation) -> (fn(f64) -> f64, f64) {
    match interpolation {
        Interpolation::Bicubic => (bicubic_filter, BICUBIC_SUPPORT),
        Interpolation::Bilinear => (bilinear_filter, BILINEAR_SUPPORT),
    }
}

/// Resampling plan for one axis, restricted to the output indices kept by the crop.
#[derive(Debug, Default)]
struct AxisPlan {
    /// Source length along this axis.
    in_size: u32,
    /// Resized length along this axis (before cropping).
    out_size: u32,
    /// Crop offset in resized coordinates ([`PreprocessConfig::crop_offset`], may be
    /// negative).
    crop_offset: i64,
    /// First kept resized index.
    keep_lo: u32,
    /// One past the last kept resized index.
    keep_hi: u32,
    /// Whether Pillow runs a resampling pass on this axis (`in_size != out_size`).
    resample: bool,
    /// Max taps per output index (row stride of `coeffs`).
    ksize: usize,
    /// Per kept output index: (first source index, number of taps).
    bounds: Vec<(u32, u32)>,
    /// Fixed-point coefficients, `ksize` per kept output index.
    coeffs: Vec<i32>,
}

impl AxisPlan {
    fn kept(&self) -> usize {
        (self.keep_hi - self.keep_lo) as usize
    }

    /// Rebuilds the plan in place (reusing the vectors' capacity) for a resize of
    /// `in_size` to `out_size` with `filter`, keeping `crop` outputs from `offset`.
    fn rebuild(
        &mut self,
        in_size: u32,
        out_size: u32,
        crop: u32,
        offset: i64,
        (filter, filter_support): (fn(f64) -> f64, f64),
    ) {
        self.in_size = in_size;
        self.out_size = out_size;
        self.crop_offset = offset;
        self.keep_lo = offset.clamp(0, i64::from(out_size)) as u32;
        self.keep_hi = (offset + i64::from(crop)).clamp(0, i64::from(out_size)) as u32;
        self.resample = in_size != out_size;
        self.bounds.clear();
        self.coeffs.clear();
        if !self.resample {
            self.ksize = 1;
            for i in self.keep_lo..self.keep_hi {
                self.bounds.push((i, 1));
                self.coeffs.push(1 << PRECISION_BITS);
            }
            return;
        }
        // precompute_coeffs(): box is (0, in_size) as C floats.
        let scale = f64::from(in_size as f32 - 0.0f32) / f64::from(out_size);
        let filterscale = if scale < 1.0 { 1.0 } else { scale };
        let support = filter_support * filterscale;
        let ksize = support.ceil() as usize * 2 + 1;
        self.ksize = ksize;
        let ss = 1.0 / filterscale;
        for xx in self.keep_lo..self.keep_hi {
            let center = 0.0 + (f64::from(xx) + 0.5) * scale;
            let mut xmin = (center - support + 0.5) as i32;
            if xmin < 0 {
                xmin = 0;
            }
            let mut xmax = (center + support + 0.5) as i32;
            if xmax > in_size as i32 {
                xmax = in_size as i32;
            }
            let n = (xmax - xmin).max(0);
            let row_start = self.coeffs.len();
            // Sum the raw weights first, then recompute each one (deterministically the
            // same value) to normalise it: avoids an f64 scratch table.
            let mut ww = 0.0f64;
            for x in 0..n {
                ww += filter((f64::from(x + xmin) - center + 0.5) * ss);
            }
            for x in 0..n {
                let mut w = filter((f64::from(x + xmin) - center + 0.5) * ss);
                if ww != 0.0 {
                    w /= ww;
                }
                // normalize_coeffs_8bpc()
                let fixed = if w < 0.0 {
                    (-0.5 + w * f64::from(1u32 << PRECISION_BITS)) as i32
                } else {
                    (0.5 + w * f64::from(1u32 << PRECISION_BITS)) as i32
                };
                self.coeffs.push(fixed);
            }
            self.coeffs.resize(row_start + ksize, 0);
            self.bounds.push((xmin as u32, n as u32));
        }
    }

    /// Range `[lo, hi)` of source indices used by the kept outputs.
    fn source_span(&self) -> (u32, u32) {
        let mut lo = u32::MAX;
        let mut hi = 0u32;
        for &(start, n) in &self.bounds {
            if n == 0 {
                continue;
            }
            lo = lo.min(start);
            hi = hi.max(start + n);
        }
        if lo > hi {
            (0, 0)
        } else {
            (lo, hi)
        }
    }
}

/// Pillow's `clip8`: arithmetic shift out the fixed point, saturate to `u8`.
#[inline(always)]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Rounding bias Pillow adds before accumulating.
const ROUND_HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Reusable preprocessor: caches resize tables for the last source size and owns
/// its scratch buffers (no heap allocation per call once warmed up on a given size).
#[derive(Debug)]
pub struct Preprocessor {
    config: PreprocessConfig,
    /// `lut[c * 256 + v]` = HF-normalised value of code `v` in channel `c`.
    lut: Vec<f32>,
    cached_src: Option<(u32, u32)>,
    horiz: AxisPlan,
    vert: AxisPlan,
    /// Pass order for the cached size (see [`Preprocessor::prepare`]).
    vertical_first: bool,
    /// First-pass output (u8, interleaved RGB).
    temp: Vec<u8>,
    /// Final `crop × crop × 3` HWC crop.
    crop: Vec<u8>,
}

impl Preprocessor {
    /// Builds a preprocessor after validating `config`.
    pub fn new(config: PreprocessConfig) -> Result<Self, PreprocessError> {
        config.validate()?;
        let mut lut = Vec::with_capacity(3 * 256);
        for c in 0..3 {
            for v in 0..256u32 {
                lut.push(hf_normalize(v as u8, config.mean[c], config.std[c]));
            }
        }
        let crop_len = 3 * config.crop_size as usize * config.crop_size as usize;
        Ok(Self {
            config,
            lut,
            cached_src: None,
            horiz: AxisPlan::default(),
            vert: AxisPlan::default(),
            vertical_first: false,
            temp: Vec::new(),
            crop: vec![0; crop_len],
        })
    }

    /// The configuration this preprocessor was built with.
    pub fn config(&self) -> &PreprocessConfig {
        &self.config
    }

    /// Preprocesses an interleaved RGB8 image (`width * height * 3` bytes, row-major)
    /// into `out`, which must hold exactly `3 * crop * crop` floats (NCHW, batch 1).
    pub fn preprocess_into(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut [f32],
    ) -> Result<(), PreprocessError> {
        let expected = self.config.output_len();
        if out.len() != expected {
            return Err(PreprocessError::OutputLength {
                expected,
                actual: out.len(),
            });
        }
        let mut crop = std::mem::take(&mut self.crop);
        let res = self.resize_crop_into(rgb, width, height, &mut crop);
        if res.is_ok() {
            self.normalize_into(&crop, out);
        }
        self.crop = crop;
        res
    }

    /// Convenience wrapper around [`Preprocessor::preprocess_into`] that allocates
    /// the output tensor (`[1, 3, crop, crop]` flattened).
    pub fn preprocess(&mut self, img: &image::RgbImage) -> Result<Vec<f32>, PreprocessError> {
        let mut out = vec![0.0f32; self.config.output_len()];
        self.preprocess_into(img.as_raw(), img.width(), img.height(), &mut out)?;
        Ok(out)
    }

    /// Resizes (PIL's filter, bit-exact) and centre-crops an RGB8 image into `out`, an
    /// interleaved HWC `crop × crop × 3` buffer. Pixels outside the resized image
    /// (only when `crop_size > resize_shortest_edge`) are zero, as in HF.
    pub fn resize_crop_into(
        &mut self,
        rgb: &[u8],
        width: u32,
        height: u32,
        out: &mut [u8],
    ) -> Result<(), PreprocessError> {
        if width == 0 || height == 0 || width > MAX_SOURCE_SIDE || height > MAX_SOURCE_SIDE {
            return Err(PreprocessError::InvalidImageSize {
                width,
                height,
                max: MAX_SOURCE_SIDE,
            });
        }
        let expected = width as usize * height as usize * 3;
        if rgb.len() != expected {
            return Err(PreprocessError::InputLength {
                width,
                height,
                expected,
                actual: rgb.len(),
            });
        }
        let crop = self.config.crop_size as usize;
        if out.len() != crop * crop * 3 {
            return Err(PreprocessError::OutputLength {
                expected: crop * crop * 3,
                actual: out.len(),
            });
        }
        self.prepare(width, height);

        let w = width as usize;
        let kept_cols = self.horiz.kept();
        let kept_rows = self.vert.kept();
        let col_dst0 = (i64::from(self.horiz.keep_lo) - self.horiz.crop_offset) as usize;
        let row_dst0 = (i64::from(self.vert.keep_lo) - self.vert.crop_offset) as usize;
        out.fill(0);
        let hp = &self.horiz;
        let vp = &self.vert;
        if self.vertical_first {
            // Pillow >= 13 order: vertical pass over the source columns the kept
            // output columns need, then the horizontal pass.
            let (c_lo, c_hi) = hp.source_span();
            let (c_lo, tw) = (c_lo as usize, (c_hi - c_lo) as usize);
            self.temp.clear();
            self.temp.resize(kept_rows * tw * 3, 0);
            for i in 0..kept_rows {
                let (start, n) = vp.bounds[i];
                let k = &vp.coeffs[i * vp.ksize..i * vp.ksize + n as usize];
                let dst = &mut self.temp[i * tw * 3..(i + 1) * tw * 3];
                for (x, d) in dst.iter_mut().enumerate() {
                    let col = c_lo * 3 + x;
                    let mut s = ROUND_HALF;
                    for (t, &kv) in k.iter().enumerate() {
                        let v = rgb[(start as usize + t) * w * 3 + col];
                        s = s.wrapping_add(i32::from(v).wrapping_mul(kv));
                    }
                    *d = clip8(s);
                }
            }
            for i in 0..kept_rows {
                let src_row = &self.temp[i * tw * 3..(i + 1) * tw * 3];
                let dst_off = ((row_dst0 + i) * crop + col_dst0) * 3;
                let dst_row = &mut out[dst_off..dst_off + kept_cols * 3];
                horizontal_row(src_row, c_lo, hp, dst_row);
            }
        } else {
            // Classic order: horizontal pass (kept columns only) over the source rows
            // the kept output rows need, then the vertical pass.
            let (r_lo, r_hi) = vp.source_span();
            let (r_lo, r_hi) = (r_lo as usize, r_hi as usize);
            let stride = kept_cols * 3;
            self.temp.clear();
            self.temp.resize((r_hi - r_lo) * stride, 0);
            for (ty, sy) in (r_lo..r_hi).enumerate() {
                let src_row = &rgb[sy * w * 3..(sy + 1) * w * 3];
                let dst_row = &mut self.temp[ty * stride..(ty + 1) * stride];
                horizontal_row(src_row, 0, hp, dst_row);
            }
            for i in 0..kept_rows {
                let (start, n) = vp.bounds[i];
                let k = &vp.coeffs[i * vp.ksize..i * vp.ksize + n as usize];
                let first = start as usize - r_lo;
                let dst_off = ((row_dst0 + i) * crop + col_dst0) * 3;
                let dst = &mut out[dst_off..dst_off + stride];
                for (x, d) in dst.iter_mut().enumerate() {
                    let mut s = ROUND_HALF;
                    for (t, &kv) in k.iter().enumerate() {
                        let v = self.temp[(first + t) * stride + x];
                        s = s.wrapping_add(i32::from(v).wrapping_mul(kv));
                    }
                    *d = clip8(s);
                }
            }
        }
        Ok(())
    }

    /// Converts an HWC RGB8 crop into normalised NCHW floats with HF's arithmetic.
    fn normalize_into(&self, crop_hwc: &[u8], out: &mut [f32]) {
        let plane = crop_hwc.len() / 3;
        let (r_out, rest) = out.split_at_mut(plane);
        let (g_out, b_out) = rest.split_at_mut(plane);
        let (lr, rest) = self.lut.split_at(256);
        let (lg, lb) = rest.split_at(256);
        for (i, px) in crop_hwc.chunks_exact(3).enumerate() {
            r_out[i] = lr[px[0] as usize];
            g_out[i] = lg[px[1] as usize];
            b_out[i] = lb[px[2] as usize];
        }
    }

    /// (Re)builds the axis plans when the source size changed.
    fn prepare(&mut self, width: u32, height: u32) {
        if self.cached_src == Some((width, height)) {
            return;
        }
        let (rw, rh) = self.config.resized_size(width, height);
        let crop = self.config.crop_size;
        let filter = filter_of(self.config.interpolation);
        let (offset_x, offset_y) = (self.config.crop_offset(rw), self.config.crop_offset(rh));
        self.horiz.rebuild(width, rw, crop, offset_x, filter);
        self.vert.rebuild(height, rh, crop, offset_y, filter);
        // Pillow >= 13 (python-pillow/Pillow#9549) runs the vertical pass first when
        // the height shrinks by more than twice as many pixels as the width does.
        let (dh, dw) = (
            i64::from(height) - i64::from(rh),
            i64::from(width) - i64::from(rw),
        );
        self.vertical_first = dh > 0 && dh > 2 * dw;
        self.cached_src = Some((width, height));
    }
}

/// One horizontal-pass output row: `src_row` holds source columns starting at
/// `src_col0`; writes the plan's kept columns (RGB) into `dst_row`.
#[inline]
fn horizontal_row(src_row: &[u8], src_col0: usize, hp: &AxisPlan, dst_row: &mut [u8]) {
    for (j, (&(start, n), d)) in hp
        .bounds
        .iter()
        .zip(dst_row.chunks_exact_mut(3))
        .enumerate()
    {
        let k = &hp.coeffs[j * hp.ksize..j * hp.ksize + n as usize];
        let s0 = (start as usize - src_col0) * 3;
        let px = &src_row[s0..s0 + n as usize * 3];
        let (mut a, mut b, mut c) = (ROUND_HALF, ROUND_HALF, ROUND_HALF);
        for (p, &kv) in px.chunks_exact(3).zip(k) {
            a = a.wrapping_add(i32::from(p[0]).wrapping_mul(kv));
            b = b.wrapping_add(i32::from(p[1]).wrapping_mul(kv));
            c = c.wrapping_add(i32::from(p[2]).wrapping_mul(kv));
        }
        d[0] = clip8(a);
        d[1] = clip8(b);
        d[2] = clip8(c);
    }
}

/// HF's rescale + normalise for one code value: `f32(f64(v) * (1/255))`, then
/// `(x - mean) / std` in `f32`.
fn hf_normalize(v: u8, mean: f32, std: f32) -> f32 {
    let x = (f64::from(v) * (1.0f64 / 255.0)) as f32;
    (x - mean) / std
}

#[cfg(test)]
mod tests;
