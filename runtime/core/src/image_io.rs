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
//! Size: an image may have at most [`MAX_PIXELS`] pixels and take at most
//! [`MAX_DECODED_BYTES`] decoded, checked from its header before decoding, so a
//! decompression bomb (a few hundred bytes claiming a huge size) is refused at once.
//! A PNG palette that is not whole RGB entries is refused before the decoder sees it
//! (png 0.18.1 panics on one).
//!
//! EXIF orientation is **not** applied (PIL's `open` + `convert` does not apply it
//! either). JPEG decoding uses the `image` crate's decoder, which can differ from
//! libjpeg-turbo (PIL) by a code value on some pixels.

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

/// The most pixels (width × height) an image may have: 40 megapixels, more than an 8K
/// video frame. The model sees 224×224 or so; a bigger file is a mistake or an attack.
pub const MAX_PIXELS: u64 = 40_000_000;

/// The most memory the decoder may take for one image (a 16-bit RGBA image of 24
/// megapixels, or 40 megapixels of 8-bit RGBA).
pub const MAX_DECODED_BYTES: u64 = 192 << 20;
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
    if reader.format() == Some(ImageFormat::Png) {
        check_png_palette(path)?;
    }
    let decoder = reader.into_decoder().map_err(|e| decode_error(path, e))?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > MAX_PIXELS || decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(ImageLoadError::Unsupported {
            path: owned(),
            message: format!(
                "{w}x{h} ({:.1} megapixels, {} MB decoded) is larger than an image may be \
                 ({} megapixels, {} MB)",
                pixels as f64 / 1e6,
                decoder.total_bytes() >> 20,
                MAX_PIXELS / 1_000_000,
                MAX_DECODED_BYTES >> 20
            ),
        });
    }
    let img = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(path, e))?;
    to_rgb8_pil(img).map_err(|e| ImageLoadError::Unsupported {
        path: owned(),
        message: e.to_string(),
    })
}

/// The bytes of `bytes` in a vector of exactly `len` (`collect` would grow it by
/// doubling, up to twice the image's size in one allocation).
fn exact(len: usize, bytes: impl Iterator<Item = u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    out.extend(bytes);
    out
}

/// Refuses a PNG whose palette (`PLTE`) is not whole RGB entries, 1 to 256 of them, as
/// the PNG specification requires: the png crate (0.18.1) panics expanding one. Reads
/// only the chunk headers before the image data.
fn check_png_palette(path: &Path) -> Result<(), ImageLoadError> {
    let corrupt = |message: String| ImageLoadError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut file = BufReader::new(file);
    let mut header = [0u8; 8];
    file.read_exact(&mut header)
        .map_err(|e| io_error(path, e))?;
    loop {
        let mut chunk = [0u8; 8];
        if file.read_exact(&mut chunk).is_err() {
            return Ok(()); // truncated: the decoder says so
        }
        let len = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        match &chunk[4..] {
            b"PLTE" if len == 0 || len % 3 != 0 || len > 768 => {
                return Err(corrupt(format!(
                    "PNG palette of {len} bytes (it must be 1 to 256 entries of 3 bytes)"
                )))
            }
            b"IDAT" | b"IEND" => return Ok(()),
            _ => {}
        }
        // The chunk's data and CRC.
        if file.seek(SeekFrom::Current(i64::from(len) + 4)).is_err() {
            return Ok(());
        }
    }
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
    let len = w as usize * h as usize * 3;
    let rgb: Vec<u8> = match img {
        DynamicImage::ImageRgb8(i) => return Ok(i),
        DynamicImage::ImageLuma8(i) => exact(len, i.into_raw().iter().flat_map(|&v| [v, v, v])),
        DynamicImage::ImageLumaA8(i) => exact(
            len,
            i.into_raw()
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0]]),
        ),
        DynamicImage::ImageRgba8(i) => exact(
            len,
            i.into_raw()
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]]),
        ),
        DynamicImage::ImageLuma16(i) => exact(
            len,
            i.into_raw().iter().flat_map(|&v| [hi(v), hi(v), hi(v)]),
        ),
        DynamicImage::ImageLumaA16(i) => exact(
            len,
            i.into_raw()
                .chunks_exact(2)
                .flat_map(|p| [hi(p[0]), hi(p[0]), hi(p[0])]),
        ),
        DynamicImage::ImageRgb16(i) => exact(len, i.into_raw().iter().map(|&v| hi(v))),
        DynamicImage::ImageRgba16(i) => exact(
            len,
            i.into_raw()
                .chunks_exact(4)
                .flat_map(|p| [hi(p[0]), hi(p[1]), hi(p[2])]),
        ),
        DynamicImage::ImageRgb32F(i) => exact(len, i.into_raw().iter().map(|&v| f(v))),
        DynamicImage::ImageRgba32F(i) => exact(
            len,
            i.into_raw()
                .chunks_exact(4)
                .flat_map(|p| [f(p[0]), f(p[1]), f(p[2])]),
        ),
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

    /// Inputs AFL++ found (fuzz/README.md): each is a clean error naming the file, not a
    /// panic (png's palette expansion) or an allocation of hundreds of megabytes.
    #[test]
    fn malformed_and_oversized_images_are_errors() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/image_io");
        let cases = [
            ("palette_of_683_bytes.png", "PNG palette of 683 bytes"),
            (
                "jpeg_claiming_100_megapixels.jpg",
                "65285x1535 (100.2 megapixels",
            ),
            // Its header also fails its CRC, which the decoder now reads first.
            ("png_claiming_8x16842758.png", "png_claiming"),
            (
                "bmp_claiming_8x16777210.bmp",
                "8x16777210 (134.2 megapixels",
            ),
        ];
        for (name, message) in cases {
            let e = load_rgb8(&fixtures.join(name)).unwrap_err();
            let text = e.to_string();
            assert!(
                text.contains(name) && text.contains(message),
                "{name}: {text}"
            );
        }
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
