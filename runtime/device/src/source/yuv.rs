//! YUV → RGB8 for camera frames: YUYV (packed 4:2:2, V4L2 webcams) and I420
//! (planar 4:2:0, `rpicam-vid --codec yuv420`).
//!
//! Both use **BT.601, limited ("TV") range**: Y in 16..=235, U/V in 16..=240 centred
//! on 128. That is what UVC webcams and the Raspberry Pi camera stack emit for
//! SD/HD video unless told otherwise:
//!
//! ```text
//! R = 1.164383 (Y-16)                   + 1.596027 (V-128)
//! G = 1.164383 (Y-16) - 0.391762 (U-128) - 0.812968 (V-128)
//! B = 1.164383 (Y-16) + 2.017232 (U-128)
//! ```
//!
//! computed in 16-bit fixed point (coefficients × 65536, rounded), rounded to
//! nearest and clamped to 0..=255. Chroma is not interpolated: each U/V sample
//! applies to the 2×1 (YUYV) or 2×2 (I420) pixels it covers, as libyuv does.
//!
//! A scalar loop: at camera sizes (640×480) it is a small fraction of a
//! millisecond next to an image encoder that takes tens to hundreds.

/// Y scale, 255/219, × 65536.
const CY: i32 = 76309;
/// V → R, 2(1-Kr)·255/224, × 65536.
const CVR: i32 = 104597;
/// U → G, 2(1-Kb)Kb/Kg·255/224, × 65536.
const CUG: i32 = 25675;
/// V → G, 2(1-Kr)Kr/Kg·255/224, × 65536.
const CVG: i32 = 53279;
/// U → B, 2(1-Kb)·255/224, × 65536.
const CUB: i32 = 132201;

/// A buffer is too small for the frame size given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} has {actual} bytes, {expected} needed for {width}x{height}")]
pub struct YuvSizeError {
    /// Which buffer.
    pub what: &'static str,
    /// Bytes needed.
    pub expected: usize,
    /// Bytes given.
    pub actual: usize,
    /// Frame width.
    pub width: usize,
    /// Frame height.
    pub height: usize,
}

#[inline(always)]
fn clamp(v: i32) -> u8 {
    ((v + (1 << 15)) >> 16).clamp(0, 255) as u8
}

/// One pixel: `y` luma, `u`/`v` chroma, BT.601 limited range → RGB.
#[inline(always)]
pub fn ycbcr_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = (y as i32 - 16) * CY;
    let d = u as i32 - 128;
    let e = v as i32 - 128;
    [
        clamp(c + CVR * e),
        clamp(c - CUG * d - CVG * e),
        clamp(c + CUB * d),
    ]
}

fn check(
    what: &'static str,
    actual: usize,
    expected: usize,
    width: usize,
    height: usize,
) -> Result<(), YuvSizeError> {
    if actual < expected {
        return Err(YuvSizeError {
            what,
            expected,
            actual,
            width,
            height,
        });
    }
    Ok(())
}

/// A frame of no pixels (a driver that reports 0x0) is an error, not a panic.
fn not_empty(what: &'static str, width: usize, height: usize) -> Result<(), YuvSizeError> {
    if width == 0 || height == 0 {
        return Err(YuvSizeError {
            what,
            expected: 1,
            actual: 0,
            width,
            height,
        });
    }
    Ok(())
}

/// Converts a YUYV (Y0 U Y1 V per pixel pair) frame to packed RGB8.
///
/// `stride` is the bytes per source row (at least `2 * width`; V4L2's
/// `bytesperline`); `width` must be even. `dst` gets `width * height * 3` bytes.
pub fn yuyv_to_rgb(
    src: &[u8],
    stride: usize,
    width: usize,
    height: usize,
    dst: &mut [u8],
) -> Result<(), YuvSizeError> {
    not_empty("YUYV frame (no pixels)", width, height)?;
    let row = width * 2;
    check("YUYV row stride", stride, row, width, height)?;
    if !width.is_multiple_of(2) {
        return Err(YuvSizeError {
            what: "YUYV width (must be even)",
            expected: width + 1,
            actual: width,
            width,
            height,
        });
    }
    let need = if height == 0 {
        0
    } else {
        stride * (height - 1) + row
    };
    check("YUYV frame", src.len(), need, width, height)?;
    check("RGB buffer", dst.len(), width * height * 3, width, height)?;
    for (y, out) in dst.chunks_exact_mut(width * 3).take(height).enumerate() {
        let line = &src[y * stride..y * stride + row];
        for (px, out) in line.chunks_exact(4).zip(out.chunks_exact_mut(6)) {
            let (u, v) = (px[1], px[3]);
            out[..3].copy_from_slice(&ycbcr_to_rgb(px[0], u, v));
            out[3..].copy_from_slice(&ycbcr_to_rgb(px[2], u, v));
        }
    }
    Ok(())
}

/// Converts an I420 frame (Y plane `width*height`, then U and V planes
/// `(width/2)*(height/2)` each, contiguous, no padding) to packed RGB8.
///
/// `width` and `height` must be even. `dst` gets `width * height * 3` bytes.
pub fn i420_to_rgb(
    src: &[u8],
    width: usize,
    height: usize,
    dst: &mut [u8],
) -> Result<(), YuvSizeError> {
    not_empty("I420 frame (no pixels)", width, height)?;
    if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
        return Err(YuvSizeError {
            what: "I420 size (width and height must be even)",
            expected: 0,
            actual: 0,
            width,
            height,
        });
    }
    let (cw, ch) = (width / 2, height / 2);
    let luma = width * height;
    let chroma = cw * ch;
    check("I420 frame", src.len(), luma + 2 * chroma, width, height)?;
    check("RGB buffer", dst.len(), luma * 3, width, height)?;
    let (yp, rest) = src.split_at(luma);
    let (up, vp) = rest.split_at(chroma);
    for (y, out) in dst.chunks_exact_mut(width * 3).take(height).enumerate() {
        let yrow = &yp[y * width..(y + 1) * width];
        let c = (y / 2) * cw;
        let (urow, vrow) = (&up[c..c + cw], &vp[c..c + cw]);
        for (((ys, &u), &v), out) in yrow
            .chunks_exact(2)
            .zip(urow)
            .zip(vrow)
            .zip(out.chunks_exact_mut(6))
        {
            out[..3].copy_from_slice(&ycbcr_to_rgb(ys[0], u, v));
            out[3..].copy_from_slice(&ycbcr_to_rgb(ys[1], u, v));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The BT.601 limited-range formula in f64, written from the standard's
    /// constants (Kr = 0.299, Kb = 0.114), independent of the fixed-point ones.
    fn reference(y: u8, u: u8, v: u8) -> [u8; 3] {
        let (kr, kb) = (0.299f64, 0.114f64);
        let kg = 1.0 - kr - kb;
        let yy = (y as f64 - 16.0) * 255.0 / 219.0;
        let pb = (u as f64 - 128.0) * 255.0 / 224.0;
        let pr = (v as f64 - 128.0) * 255.0 / 224.0;
        let r = yy + 2.0 * (1.0 - kr) * pr;
        let b = yy + 2.0 * (1.0 - kb) * pb;
        let g = (yy - kr * r - kb * b) / kg;
        [r, g, b].map(|c| c.round().clamp(0.0, 255.0) as u8)
    }

    #[test]
    fn known_colours() {
        // Limited-range black, white and grey, then the primaries as integer Y'CbCr
        // (rounding the codes costs a level: 254, 1). Expected values computed
        // with the float formula in Python.
        assert_eq!(ycbcr_to_rgb(16, 128, 128), [0, 0, 0]);
        assert_eq!(ycbcr_to_rgb(235, 128, 128), [255, 255, 255]);
        assert_eq!(ycbcr_to_rgb(126, 128, 128), [128, 128, 128]);
        assert_eq!(ycbcr_to_rgb(81, 90, 240), [254, 0, 0]);
        assert_eq!(ycbcr_to_rgb(145, 54, 34), [0, 255, 1]);
        assert_eq!(ycbcr_to_rgb(41, 240, 110), [0, 0, 255]);
        // Out-of-range inputs clamp.
        assert_eq!(ycbcr_to_rgb(0, 0, 0), [0, 136, 0]);
        assert_eq!(ycbcr_to_rgb(255, 255, 255), [255, 125, 255]);
    }

    #[test]
    fn fixed_point_matches_the_float_formula() {
        let mut off_by_one = 0;
        for y in (0..=255u8).step_by(3) {
            for u in (0..=255u8).step_by(5) {
                for v in (0..=255u8).step_by(7) {
                    let (a, b) = (ycbcr_to_rgb(y, u, v), reference(y, u, v));
                    for c in 0..3 {
                        let d = (a[c] as i32 - b[c] as i32).abs();
                        assert!(d <= 1, "yuv {y} {u} {v}: {a:?} vs {b:?}");
                        off_by_one += d;
                    }
                }
            }
        }
        // Only values within rounding distance of .5 may differ.
        assert!(off_by_one < 200, "{off_by_one} components off by one");
    }

    /// Found by the fuzz smoke (raw_frames): a 0-pixel-wide YUYV frame panicked in
    /// `chunks_exact_mut(0)`.
    #[test]
    fn frames_without_pixels_are_errors() {
        let mut dst = [];
        let e = yuyv_to_rgb(&[0; 16], 0, 0, 2, &mut dst).unwrap_err();
        assert_eq!((e.width, e.height), (0, 2));
        assert!(i420_to_rgb(&[0; 16], 2, 0, &mut dst).is_err());
        assert!(yuyv_to_rgb(&[], 0, 0, 0, &mut dst).is_err());
    }

    #[test]
    fn yuyv_fixture() {
        // 4x2 frame with a row stride of 10 (2 bytes of padding per row).
        #[rustfmt::skip]
        let src = [
            16, 128, 235, 128,   81, 90, 100, 240,   0xEE, 0xEE,
            145, 54, 41, 34,     126, 128, 126, 128, 0xEE, 0xEE,
        ];
        let mut dst = [0u8; 4 * 2 * 3];
        yuyv_to_rgb(&src, 10, 4, 2, &mut dst).unwrap();
        let expect: Vec<u8> = [
            (16, 128, 128),
            (235, 128, 128),
            (81, 90, 240),
            (100, 90, 240),
            (145, 54, 34),
            (41, 54, 34),
            (126, 128, 128),
            (126, 128, 128),
        ]
        .iter()
        .flat_map(|&(y, u, v)| reference(y, u, v))
        .collect();
        assert_eq!(dst.to_vec(), expect);
        assert_eq!(&dst[..6], &[0, 0, 0, 255, 255, 255]);
        assert!(yuyv_to_rgb(&src[..15], 10, 4, 2, &mut dst).is_err());
        assert!(yuyv_to_rgb(&src, 6, 4, 2, &mut dst).is_err());
        assert!(yuyv_to_rgb(&src, 10, 3, 2, &mut dst).is_err());
    }

    #[test]
    fn i420_fixture() {
        // 4x4: Y plane 16 bytes, U and V planes 2x2 each.
        let ys: Vec<u8> = (0..16).map(|i| 16 + i * 14).collect();
        let us = [90u8, 54, 240, 128];
        let vs = [240u8, 34, 110, 128];
        let src: Vec<u8> = ys.iter().chain(&us).chain(&vs).copied().collect();
        let mut dst = vec![0u8; 4 * 4 * 3];
        i420_to_rgb(&src, 4, 4, &mut dst).unwrap();
        for row in 0..4 {
            for col in 0..4 {
                let c = (row / 2) * 2 + col / 2;
                let want = reference(ys[row * 4 + col], us[c], vs[c]);
                let at = (row * 4 + col) * 3;
                assert_eq!(&dst[at..at + 3], &want, "pixel {col},{row}");
            }
        }
        assert!(i420_to_rgb(&src[..23], 4, 4, &mut dst).is_err());
        assert!(i420_to_rgb(&src, 3, 4, &mut dst).is_err());
    }
}
