//! On x86-64, no operator of the encoder leaves the upper halves of the AVX
//! registers dirty.
//!
//! Code compiled for x86-64's baseline (SSE2) runs several times slower while the
//! upper halves of ymm0-15/zmm0-15 hold data: every SSE instruction then merges
//! with them. Compilers end their own AVX functions with `vzeroupper`; tract's
//! hand-written kernels did not, and a plain f32 → i8 cast after them took 40 µs
//! instead of 8 (ViT-B/32-sized int8 encoder, 3.4 ms per frame in all). The
//! vendored tract-linalg now ends each of them with `vzeroupper`. This test runs
//! both shapes bundles node by node and reads the processor's XINUSE bits after
//! each node: bit 2 (upper halves of ymm0-15) and bit 6 (upper halves of zmm0-15)
//! must be clear.
#![cfg(target_arch = "x86_64")]

use std::path::Path;

use clip_edge_core::Classifier;

/// XINUSE bits of the state that slows SSE code down: AVX (2) and ZMM_Hi256 (6).
const DIRTY_UPPER: u64 = (1 << 2) | (1 << 6);

/// `XGETBV` with ECX = 1 (XINUSE), when this processor has it.
fn xinuse() -> Option<u64> {
    // CPUID.(EAX=0DH, ECX=1):EAX bit 2 says XGETBV takes ECX = 1.
    let leaf = std::arch::x86_64::__cpuid_count(0xd, 1);
    if leaf.eax & (1 << 2) == 0 || !std::is_x86_feature_detected!("xsave") {
        return None;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX = 1 is supported (checked above) and only reads.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 1u32, out("eax") lo, out("edx") hi,
            options(nomem, nostack, preserves_flags));
    }
    Some(u64::from(hi) << 32 | u64::from(lo))
}

#[test]
fn no_operator_leaves_avx_upper_state_dirty() {
    if xinuse().is_none() {
        eprintln!("skipped: this processor has no XGETBV with ECX = 1");
        return;
    }
    let frame = image::RgbImage::from_fn(256, 200, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 5) as u8, (x ^ y) as u8])
    });
    for bundle in ["bundle", "bundle-int8"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models/shapes")
            .join(bundle);
        let mut classifier = Classifier::load(&dir).expect("shapes bundle loads");
        let input = classifier.preprocess(&frame).expect("preprocess").to_vec();
        let mut dirty = Vec::new();
        let mut nodes = 0;
        classifier
            .encoder_mut()
            .run_node_by_node(&input, |node| {
                nodes += 1;
                if xinuse().unwrap_or(0) & DIRTY_UPPER != 0 {
                    dirty.push(format!("{} ({})", node.name, node.operator));
                }
            })
            .expect("encoder runs");
        assert!(nodes > 10, "{bundle}: only {nodes} nodes ran");
        assert!(
            dirty.is_empty(),
            "{bundle}: {} of {nodes} nodes left the AVX upper state dirty: {}",
            dirty.len(),
            dirty.join(", ")
        );
    }
}
