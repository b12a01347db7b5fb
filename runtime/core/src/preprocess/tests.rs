//! Tests of the preprocessing against Pillow's numbers and of its refusals.

use super::*;
use clip_edge_bundle::{CLIP_MEAN, CLIP_STD};

#[test]
fn preprocessor_refuses_an_invalid_config() {
    let mut c = PreprocessConfig::default();
    c.mean[0] = f32::NAN;
    assert!(matches!(
        Preprocessor::new(c),
        Err(PreprocessError::InvalidConfig(_))
    ));
}

#[test]
fn bicubic_kernel_values() {
    assert_eq!(bicubic_filter(0.0), 1.0);
    assert_eq!(bicubic_filter(1.0), 0.0);
    assert_eq!(bicubic_filter(-2.0), 0.0);
    assert!((bicubic_filter(0.5) - 0.5625).abs() < 1e-12);
    assert!((bicubic_filter(1.5) + 0.0625).abs() < 1e-12);
}

#[test]
fn pass_order_follows_pillow_13() {
    let mut p = Preprocessor::new(PreprocessConfig::default()).unwrap();
    // 409x1087 -> 224x595: height shrinks by 492 > 2 * 185 pixels: vertical first.
    p.prepare(409, 1087);
    assert!(p.vertical_first);
    // 262x300 -> 224x256: 44 <= 2 * 38: horizontal first.
    p.prepare(262, 300);
    assert!(!p.vertical_first);
    // Upscaling never goes vertical first.
    p.prepare(50, 200);
    assert!(!p.vertical_first);
}

#[test]
fn identity_size_is_a_copy() {
    // 224x224 input: Pillow skips both passes; the crop is the image itself.
    let mut p = Preprocessor::new(PreprocessConfig::default()).unwrap();
    let img: Vec<u8> = (0..224 * 224 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let mut crop = vec![0u8; 224 * 224 * 3];
    p.resize_crop_into(&img, 224, 224, &mut crop).unwrap();
    assert_eq!(crop, img);
}

#[test]
fn constant_image_stays_constant() {
    let mut p = Preprocessor::new(PreprocessConfig::default()).unwrap();
    for &(w, h) in &[(1u32, 1u32), (3, 500), (640, 480), (50, 60), (1000, 224)] {
        let img = vec![200u8; (w * h * 3) as usize];
        let mut crop = vec![0u8; 224 * 224 * 3];
        p.resize_crop_into(&img, w, h, &mut crop).unwrap();
        assert!(crop.iter().all(|&v| v == 200), "{w}x{h}");
    }
}

#[test]
fn normalization_matches_formula() {
    let mut p = Preprocessor::new(PreprocessConfig::default()).unwrap();
    let img = image::RgbImage::from_pixel(300, 260, image::Rgb([0, 128, 255]));
    let out = p.preprocess(&img).unwrap();
    assert_eq!(out.len(), 3 * 224 * 224);
    let plane = 224 * 224;
    let expect = |v: f32, c: usize| (v / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
    assert!((out[0] - expect(0.0, 0)).abs() < 1e-6);
    assert!((out[plane + 5] - expect(128.0, 1)).abs() < 1e-6);
    assert!((out[2 * plane + 17] - expect(255.0, 2)).abs() < 1e-6);
}

#[test]
fn padding_when_crop_exceeds_resize() {
    let cfg = PreprocessConfig {
        resize_shortest_edge: 8,
        crop_size: 11,
        ..Default::default()
    };
    let mut p = Preprocessor::new(cfg).unwrap();
    let img = vec![100u8; 8 * 8 * 3];
    let mut crop = vec![0u8; 11 * 11 * 3];
    p.resize_crop_into(&img, 8, 8, &mut crop).unwrap();
    // HF: top_pad = ceil((11 - 8) / 2) = 2, so rows/cols 2..10 hold the image.
    for y in 0..11 {
        for x in 0..11 {
            let inside = (2..10).contains(&y) && (2..10).contains(&x);
            let v = crop[(y * 11 + x) * 3];
            assert_eq!(v, if inside { 100 } else { 0 }, "({x},{y})");
        }
    }
}

#[test]
fn errors_on_bad_buffers() {
    let mut p = Preprocessor::new(PreprocessConfig::default()).unwrap();
    let mut out = vec![0.0f32; 3 * 224 * 224];
    assert!(matches!(
        p.preprocess_into(&[0u8; 10], 2, 2, &mut out),
        Err(PreprocessError::InputLength { .. })
    ));
    assert!(matches!(
        p.preprocess_into(&[], 0, 2, &mut out),
        Err(PreprocessError::InvalidImageSize { .. })
    ));
    let mut short = vec![0.0f32; 5];
    assert!(matches!(
        p.preprocess_into(&[0u8; 12], 2, 2, &mut short),
        Err(PreprocessError::OutputLength { .. })
    ));
}

#[test]
fn cache_reuse_gives_same_result_and_no_growth() {
    let mut p = Preprocessor::new(PreprocessConfig::default()).unwrap();
    let a: Vec<u8> = (0..640 * 480 * 3).map(|i| (i * 31 % 256) as u8).collect();
    let b: Vec<u8> = (0..300 * 400 * 3).map(|i| (i * 17 % 256) as u8).collect();
    let mut out1 = vec![0.0f32; 3 * 224 * 224];
    let mut out2 = vec![0.0f32; 3 * 224 * 224];
    p.preprocess_into(&a, 640, 480, &mut out1).unwrap();
    let caps = (
        p.temp.capacity(),
        p.horiz.coeffs.capacity(),
        p.vert.coeffs.capacity(),
    );
    let ptrs = (
        p.temp.as_ptr(),
        p.horiz.coeffs.as_ptr(),
        p.vert.coeffs.as_ptr(),
    );
    p.preprocess_into(&a, 640, 480, &mut out2).unwrap();
    assert_eq!(out1, out2);
    assert_eq!(
        caps,
        (
            p.temp.capacity(),
            p.horiz.coeffs.capacity(),
            p.vert.coeffs.capacity()
        )
    );
    assert_eq!(
        ptrs,
        (
            p.temp.as_ptr(),
            p.horiz.coeffs.as_ptr(),
            p.vert.coeffs.as_ptr()
        )
    );
    // A different size and back again gives the same answer.
    p.preprocess_into(&b, 300, 400, &mut out2).unwrap();
    p.preprocess_into(&a, 640, 480, &mut out2).unwrap();
    assert_eq!(out1, out2);
}
