//! Image loading with PIL-compatible conversion to 8-bit RGB.
//!
//! [`load_rgb8`] decodes a file (PNG, JPEG, BMP, TIFF, PNM, WebP; format detected
//! from the content, falling back to the extension) and converts it the way
//! `PIL.Image.open(path).convert("RGB")` does, which is what OpenAI CLIP and
//! Hugging Face (transformers 4.x) feed the model:
//!
//! * grayscale is replicated into R, G and B;
//! * alpha is **dropped**, not composited onto a background (transformers 5.x
//!   `convert_to_rgb` composites onto white instead; we follow PIL/OpenAI CLIP);
//! * palette images are expanded through the palette (transparency ignored);
//! * sub-8-bit grayscale is scaled to 0..=255 (as PIL's `L;1`/`L;2`/`L;4` raw modes);
//! * 16-bit RGB, RGBA and gray+alpha: PIL keeps the **high byte** (`v >> 8`,
//!   truncation, not rounding); we do the same;
//! * 16-bit grayscale: PIL opens it as mode `I;16` and `convert("RGB")` **clips**
//!   every value above 255 to 255 (a normal 16-bit photo becomes almost white).
//!   That is plainly broken, so we deliberately use the high byte (`v >> 8`),
//!   consistent with 16-bit RGB. This is the one intended difference from PIL;
//! * 32-bit float images (TIFF/PNM): clamped to `[0, 1]`, scaled by 255 and rounded.
//!
//! EXIF orientation is **not** applied (PIL's `open` + `convert` does not apply it
//! either). JPEG decoding uses the `image` crate's decoder, which can differ from
//! libjpeg-turbo (PIL) by a code value on some pixels.

use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageError, ImageReader, RgbImage};
use thiserror::Error;

/// Errors from [`load_rgb8`]; each names the file.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ImageLoadError {
    /// The file does not exist.
    #[error("image file not found: {}", path.display())]
    NotFound {
        /// The path that was requested.
        path: PathBuf,
    },
    /// The file could not be opened or read.
    #[error("cannot read image file {}: {source}", path.display())]
    Io {
        /// The path that was requested.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The content is not in any recognised image format.
    #[error("{} is not a recognised image (supported: PNG, JPEG, BMP, TIFF, PNM, WebP)", path.display())]
    NotAnImage {
        /// The path that was requested.
        path: PathBuf,
    },
    /// The file looks like an image but could not be decoded.
    #[error("corrupt or truncated image {}: {message}", path.display())]
    Corrupt {
        /// The path that was requested.
        path: PathBuf,
        /// Decoder message.
        message: String,
    },
    /// The image uses a feature or pixel layout that is not supported.
    #[error("unsupported image {}: {message}", path.display())]
    Unsupported {
        /// The path that was requested.
        path: PathBuf,
        /// Description of the unsupported feature.
        message: String,
    },
}

/// Loads `path` and converts it to 8-bit RGB like `PIL.Image.open(path).convert("RGB")`
/// (see the module documentation for the exact per-mode rules).
pub fn load_rgb8(path: &Path) -> Result<RgbImage, ImageLoadError> {
    let owned = || path.to_path_buf();
    let reader = ImageReader::open(path).map_err(|e| io_error(path, e))?;
    let reader = reader
        .with_guessed_format()
        .map_err(|e| io_error(path, e))?;
    if reader.format().is_none() {
        return Err(ImageLoadError::NotAnImage { path: owned() });
    }
    let img = reader.decode().map_err(|e| decode_error(path, e))?;
    to_rgb8_pil(img).map_err(|e| ImageLoadError::Unsupported {
        path: owned(),
        message: e.to_string(),
    })
}

/// A decoded image in a pixel layout [`to_rgb8_pil`] has no rule for.
#[derive(Debug, Error)]
#[error("unsupported pixel layout {0:?}")]
pub struct UnsupportedPixelLayout(pub image::ColorType);

/// Converts a decoded image to RGB8 with the PIL rules of [`load_rgb8`].
pub fn to_rgb8_pil(img: DynamicImage) -> Result<RgbImage, UnsupportedPixelLayout> {
    let (w, h) = (img.width(), img.height());
    let hi = |v: u16| (v >> 8) as u8;
    let f = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    let rgb: Vec<u8> = match img {
        DynamicImage::ImageRgb8(i) => return Ok(i),
        DynamicImage::ImageLuma8(i) => i.into_raw().iter().flat_map(|&v| [v, v, v]).collect(),
        DynamicImage::ImageLumaA8(i) => i
            .into_raw()
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        DynamicImage::ImageRgba8(i) => i
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
        DynamicImage::ImageLuma16(i) => i
            .into_raw()
            .iter()
            .flat_map(|&v| [hi(v), hi(v), hi(v)])
            .collect(),
        DynamicImage::ImageLumaA16(i) => i
            .into_raw()
            .chunks_exact(2)
            .flat_map(|p| [hi(p[0]), hi(p[0]), hi(p[0])])
            .collect(),
        DynamicImage::ImageRgb16(i) => i.into_raw().iter().map(|&v| hi(v)).collect(),
        DynamicImage::ImageRgba16(i) => i
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| [hi(p[0]), hi(p[1]), hi(p[2])])
            .collect(),
        DynamicImage::ImageRgb32F(i) => i.into_raw().iter().map(|&v| f(v)).collect(),
        DynamicImage::ImageRgba32F(i) => i
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| [f(p[0]), f(p[1]), f(p[2])])
            .collect(),
        other => return Err(UnsupportedPixelLayout(other.color())),
    };
    // Every rule above gives 3 bytes per pixel, so the buffer always fits.
    RgbImage::from_raw(w, h, rgb).ok_or(UnsupportedPixelLayout(image::ColorType::Rgb8))
}

fn io_error(path: &Path, e: std::io::Error) -> ImageLoadError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ImageLoadError::NotFound {
            path: path.to_path_buf(),
        }
    } else {
        ImageLoadError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

fn decode_error(path: &Path, e: ImageError) -> ImageLoadError {
    let path = path.to_path_buf();
    match e {
        ImageError::IoError(source) => {
            if source.kind() == std::io::ErrorKind::UnexpectedEof {
                ImageLoadError::Corrupt {
                    path,
                    message: source.to_string(),
                }
            } else {
                ImageLoadError::Io { path, source }
            }
        }
        ImageError::Unsupported(u) => {
            if matches!(
                u.kind(),
                image::error::UnsupportedErrorKind::Format(image::error::ImageFormatHint::Unknown)
            ) {
                ImageLoadError::NotAnImage { path }
            } else {
                ImageLoadError::Unsupported {
                    path,
                    message: u.to_string(),
                }
            }
        }
        ImageError::Limits(l) => ImageLoadError::Unsupported {
            path,
            message: l.to_string(),
        },
        other => ImageLoadError::Corrupt {
            path,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

    fn tmpdir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("clip_edge_image_io_{}_{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn conversions_follow_pil() {
        let g = DynamicImage::ImageLuma8(ImageBuffer::from_raw(2, 1, vec![7u8, 200]).unwrap());
        assert_eq!(
            to_rgb8_pil(g).unwrap().into_raw(),
            vec![7, 7, 7, 200, 200, 200]
        );
        let la = DynamicImage::ImageLumaA8(ImageBuffer::from_pixel(1, 1, LumaA([9u8, 0])));
        assert_eq!(to_rgb8_pil(la).unwrap().into_raw(), vec![9, 9, 9]);
        // Alpha dropped, not composited.
        let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(1, 1, Rgba([1u8, 2, 3, 0])));
        assert_eq!(to_rgb8_pil(rgba).unwrap().into_raw(), vec![1, 2, 3]);
        // 16-bit: high byte, truncating.
        let rgb16 =
            DynamicImage::ImageRgb16(ImageBuffer::from_pixel(1, 1, Rgb([255u16, 256, 65535])));
        assert_eq!(to_rgb8_pil(rgb16).unwrap().into_raw(), vec![0, 1, 255]);
        let g16 = DynamicImage::ImageLuma16(ImageBuffer::from_pixel(1, 1, Luma([40000u16])));
        assert_eq!(to_rgb8_pil(g16).unwrap().into_raw(), vec![156, 156, 156]);
    }

    #[test]
    fn errors_name_the_file() {
        let d = tmpdir("errors");
        let missing = d.join("missing.png");
        let e = load_rgb8(&missing).unwrap_err();
        assert!(matches!(e, ImageLoadError::NotFound { .. }), "{e}");
        assert!(e.to_string().contains("missing.png"));

        let text = d.join("notes.txt");
        std::fs::write(&text, b"hello, not an image at all").unwrap();
        let e = load_rgb8(&text).unwrap_err();
        assert!(matches!(e, ImageLoadError::NotAnImage { .. }), "{e}");
        assert!(e.to_string().contains("notes.txt"));

        // A valid PNG header followed by garbage.
        let png = d.join("broken.png");
        let mut buf = Vec::new();
        image::RgbImage::from_pixel(16, 16, Rgb([1, 2, 3]))
            .write_to(&mut std::io::Cursor::new(&mut buf), image::ImageFormat::Png)
            .unwrap();
        buf.truncate(buf.len() / 2);
        std::fs::write(&png, &buf).unwrap();
        let e = load_rgb8(&png).unwrap_err();
        assert!(matches!(e, ImageLoadError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("broken.png"));

        let dir_as_file = load_rgb8(&d).unwrap_err();
        assert!(dir_as_file
            .to_string()
            .contains(d.file_name().unwrap().to_str().unwrap()));
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn roundtrip_png_rgb() {
        let d = tmpdir("roundtrip");
        let p = d.join("a.png");
        let img = image::RgbImage::from_fn(5, 3, |x, y| Rgb([x as u8 * 40, y as u8 * 70, 9]));
        img.save(&p).unwrap();
        assert_eq!(load_rgb8(&p).unwrap(), img);
        std::fs::remove_dir_all(&d).ok();
    }
}
