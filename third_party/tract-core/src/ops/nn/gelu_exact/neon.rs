//! clip-edge patch: exact GELU, `0.5 * x * (1 + erf(x / sqrt(2)))`, in one NEON pass.
//!
//! `GeluExact` otherwise scales into a scratch buffer, runs the generic erf (through the
//! element-wise helper's aligned temporary), then combines: three passes and the generic
//! erf's scalar-shaped code. This computes the same Abramowitz–Stegun 7.1.28 erf
//! (`1 - 1 / (1 + a1 x + ... + a6 x^6)^16`, absolute error under 3e-7) with its polynomial by
//! fused multiply-adds, and the GELU around it as one select (see `gelu_exact_f32`).

#[allow(clippy::excessive_precision)]
const A: [f32; 6] =
    [0.0705230784, 0.0422820123, 0.0092705272, 0.0001520143, 0.0002765672, 0.0000430638];

/// The scalar form, for the tail: the generic erf's arithmetic.
fn gelu_exact_scalar(x: f32) -> f32 {
    let t = x * std::f32::consts::FRAC_1_SQRT_2;
    let abs = t.abs();
    let mut y = A[5] * abs;
    for a in A[..5].iter().rev() {
        y = (a + y) * abs;
    }
    let erf = (1.0 - (y + 1.0).powi(16).recip()).copysign(t);
    x * 0.5 * (erf + 1.0)
}

/// Exact GELU of every element of `xs`, in place.
///
/// With `r = 1 / (1 + a1 |t| + ... + a6 |t|^6)^16` and `t = x / sqrt(2)`, erf(t) is
/// `sign(t) (1 - r)`, so GELU is `x (1 - r / 2)` for `x >= 0` and `x r / 2` below: one select
/// instead of the copysign and the `0.5 x (1 + erf)` around it. Two vectors per iteration.
pub fn gelu_exact_f32(xs: &mut [f32]) {
    use std::arch::aarch64::*;
    let pairs = xs.len() / 8;
    // Safety: NEON is part of the aarch64 baseline; every access is within `xs`.
    unsafe {
        let scale = vdupq_n_f32(std::f32::consts::FRAC_1_SQRT_2);
        let a: [float32x4_t; 6] = std::array::from_fn(|i| vdupq_n_f32(A[i]));
        let one = vdupq_n_f32(1.0);
        let half = vdupq_n_f32(0.5);
        let gelu = |x: float32x4_t| {
            let abs = vabsq_f32(vmulq_f32(x, scale));
            let mut y = vfmaq_f32(a[4], a[5], abs);
            y = vfmaq_f32(a[3], y, abs);
            y = vfmaq_f32(a[2], y, abs);
            y = vfmaq_f32(a[1], y, abs);
            y = vfmaq_f32(a[0], y, abs);
            y = vfmaq_f32(one, y, abs);
            let y2 = vmulq_f32(y, y);
            let y4 = vmulq_f32(y2, y2);
            let y8 = vmulq_f32(y4, y4);
            let half_r = vdivq_f32(half, vmulq_f32(y8, y8));
            let factor = vbslq_f32(vcltzq_f32(x), half_r, vsubq_f32(one, half_r));
            vmulq_f32(x, factor)
        };
        let p = xs.as_mut_ptr();
        for pair in 0..pairs {
            let at = p.add(8 * pair);
            let (x0, x1) = (vld1q_f32(at), vld1q_f32(at.add(4)));
            vst1q_f32(at, gelu(x0));
            vst1q_f32(at.add(4), gelu(x1));
        }
    }
    for x in &mut xs[8 * pairs..] {
        *x = gelu_exact_scalar(*x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf to double precision (Abramowitz–Stegun 7.1.26 is too coarse to judge 3e-7):
    /// its Maclaurin series below 3, 1 beyond (erfc(3) = 2.2e-5 is covered by the tolerance
    /// only past 4, so the series runs to 4).
    fn erf64(x: f64) -> f64 {
        if x.abs() > 4.0 {
            return x.signum();
        }
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn gelu_exact_matches_erf() {
        let xs: Vec<f32> = (0..8003).map(|i| (i as f32 - 4001.0) * 0.0025).collect();
        let mut got = xs.clone();
        gelu_exact_f32(&mut got);
        for (&x, &g) in xs.iter().zip(&got) {
            let want = 0.5 * x as f64 * (1.0 + erf64(x as f64 / std::f64::consts::SQRT_2));
            let tolerance = 1e-6 * (1.0 + (x as f64).abs());
            assert!((g as f64 - want).abs() < tolerance, "gelu({x}) = {g}, want {want}");
        }
        // The vector loop and the scalar tail agree.
        for (&x, &g) in xs.iter().zip(&got) {
            assert!((g - gelu_exact_scalar(x)).abs() < 1e-6, "{x}: {g} vs the scalar form");
        }
        let mut special = [0.0f32, -0.0, f32::INFINITY, f32::NEG_INFINITY, 30.0, -30.0, 1e-30];
        gelu_exact_f32(&mut special);
        assert_eq!(special[..2], [0.0, 0.0]);
        assert_eq!(special[2], f32::INFINITY);
        assert!(special[3].is_nan() || special[3] == 0.0);
        assert_eq!((special[4], special[5]), (30.0, 0.0));
    }
}
