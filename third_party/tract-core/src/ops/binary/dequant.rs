//! clip-edge patch: an integer matmul's `Cast<f32>` and its per-channel dequantisation
//! scale and bias, in one pass.
//!
//! A dynamically quantised convolution ends in `Cast<f32>(acc)`, then `* scale[c]` and
//! `+ bias[c]` per output channel: on a channel-first map those are by-scalar steps of an
//! [`OptBinChain`]. The cast writes a new tensor, the chain reads it twice more. Here the
//! chain absorbs the cast (and a reshape between them, which does not care about the datum
//! type), takes the `i32` accumulator as its input, and runs cast, multiply and add as one
//! pass per channel. Each value is rounded after each operation as the three ops round it,
//! so the result is bit-identical.

use super::{BShare, OptBinChain, OptBinChainStep, has_natural_layout};
use crate::internal::*;
use crate::ops::cast::Cast;
use crate::ops::change_axes::IntoShape;
use tract_linalg::BinOp;

/// Whether a chain's first two steps are what [`cast_mul_add`] runs: a per-block `Mul`,
/// then a per-block `Add`.
pub(super) fn starts_with_mul_add(steps: &[OptBinChainStep]) -> bool {
    matches!(steps, [mul, add, ..]
        if mul.linalg_op == BinOp::Mul && mul.share == BShare::PerBlock
            && add.linalg_op == BinOp::Add && add.share == BShare::PerBlock)
}

/// `fuse` rule: an `OptBinChain` starting with a per-block `Mul` and `Add` whose input is
/// `Cast<f32>` of an `i32` tensor, possibly through an `IntoShape`, each read only by the
/// next, takes the `i32` tensor (reshaped the same way) as its input instead.
pub(super) fn absorb_i32_cast(
    model: &TypedModel,
    node: &TypedNode,
    chain: &OptBinChain,
) -> TractResult<Option<TypedModelPatch>> {
    rule_if!(!chain.from_i32 && starts_with_mul_add(&chain.steps));
    let only_read_by_next = |outlet: OutletId| -> TractResult<bool> {
        Ok(model.outlet_successors(outlet).len() == 1 && !model.output_outlets()?.contains(&outlet))
    };
    let mut outlet = node.inputs[0];
    let mut reshape = None;
    if let Some(op) = model.node(outlet.node).op_as::<IntoShape>() {
        rule_if!(only_read_by_next(outlet)?);
        reshape = Some((op.clone(), model.node(outlet.node).name.clone()));
        outlet = model.node(outlet.node).inputs[0];
    }
    let cast_node = model.node(outlet.node);
    rule_if_some!(cast = cast_node.op_as::<Cast>());
    rule_if!(cast.to == f32::datum_type());
    rule_if!(only_read_by_next(outlet)?);
    let source = cast_node.inputs[0];
    rule_if!(model.outlet_fact(source)?.datum_type == i32::datum_type());

    let mut patch = TypedModelPatch::new("absorbing an i32 cast into a dequantising chain");
    let mut input = patch.tap_model(model, source)?;
    if let Some((op, name)) = reshape {
        input = patch.wire_node(name, op, &[input])?[0];
    }
    let mut wires = tvec![input];
    for i in &node.inputs[1..] {
        wires.push(patch.tap_model(model, *i)?);
    }
    let op = OptBinChain { steps: chain.steps.clone(), from_i32: true };
    let wire = patch.wire_node(&node.name, op, &wires)?[0];
    patch.shunt_outside(model, node.id.into(), wire)?;
    Ok(Some(patch))
}

/// `(a as f32) * scale[b] + bias[b]` over the blocks of `a` (one scalar of each per block):
/// the chain's first two steps on its `i32` input, when both operands are plain `f32`
/// tensors with one element per block. `None` when they are not, for the caller to cast
/// and run the steps one by one.
pub(super) fn cast_mul_add(
    a: &Tensor,
    scale: &Tensor,
    bias: &Tensor,
) -> TractResult<Option<Tensor>> {
    rule_if!(a.datum_type() == i32::datum_type() && has_natural_layout(a));
    rule_if!(scale.datum_type() == f32::datum_type() && has_natural_layout(scale));
    rule_if!(bias.datum_type() == f32::datum_type() && has_natural_layout(bias));
    let blocks = scale.len();
    rule_if!(blocks > 0 && bias.len() == blocks && a.len() % blocks == 0);
    let period = a.len() / blocks;
    // Safety: every element is written below (`period * blocks == a.len()`).
    let mut out = unsafe { Tensor::uninitialized_dt(f32::datum_type(), a.shape())? };
    if period > 0 {
        let src = a.try_as_plain_ram()?;
        let src = src.as_slice::<i32>()?;
        let scale = scale.try_as_plain_ram()?;
        let bias = bias.try_as_plain_ram()?;
        let mut dst = out.try_as_plain_ram_mut()?;
        let dst = dst.as_slice_mut::<f32>()?;
        for (((src, dst), &s), &b) in src
            .chunks_exact(period)
            .zip(dst.chunks_exact_mut(period))
            .zip(scale.as_slice::<f32>()?)
            .zip(bias.as_slice::<f32>()?)
        {
            cast_mul_add_block(src, dst, s, b);
        }
    }
    Ok(Some(out))
}

/// `dst[i] = (src[i] as f32) * scale + bias`, each operation rounded on its own (no fused
/// multiply-add), as `Cast`, `Mul` and `Add` compute it.
pub(super) fn cast_mul_add_block(src: &[i32], dst: &mut [f32], scale: f32, bias: f32) {
    debug_assert_eq!(src.len(), dst.len());
    let n = src.len().min(dst.len());
    #[cfg(target_arch = "aarch64")]
    let done = {
        use std::arch::aarch64::*;
        let mut done = 0;
        // Safety: NEON is part of the aarch64 baseline; every access is below `n`.
        unsafe {
            let (s, b) = (vdupq_n_f32(scale), vdupq_n_f32(bias));
            let (sp, dp) = (src.as_ptr(), dst.as_mut_ptr());
            while done + 16 <= n {
                for k in 0..4 {
                    let x = vcvtq_f32_s32(vld1q_s32(sp.add(done + 4 * k)));
                    vst1q_f32(dp.add(done + 4 * k), vaddq_f32(vmulq_f32(x, s), b));
                }
                done += 16;
            }
        }
        done
    };
    #[cfg(not(target_arch = "aarch64"))]
    let done = 0;
    for (d, &x) in dst[done..n].iter_mut().zip(&src[done..n]) {
        *d = x as f32 * scale + bias;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::math::{add, mul};

    /// The block kernel against `as f32`, `*`, `+` one by one, bit for bit, over lengths
    /// around the vector width and values where `i32 -> f32` rounds.
    #[test]
    fn block_matches_three_ops() {
        for n in [0usize, 1, 15, 16, 17, 33, 64, 100] {
            let src: Vec<i32> =
                (0..n).map(|i| (i as i32 - 50) * 1_000_003 + (i as i32 % 7) * 16_777_217).collect();
            let mut got = vec![0f32; n];
            cast_mul_add_block(&src, &mut got, 3.1e-5, -0.7);
            for (i, (&x, g)) in src.iter().zip(&got).enumerate() {
                let want = (x as f32) * 3.1e-5 + -0.7;
                assert_eq!(g.to_bits(), want.to_bits(), "n={n} i={i} x={x}");
            }
        }
    }

    /// `Cast<f32>` then a per-channel `Mul`, `Add`, and a unicast `Add` over an `i32`
    /// channel-first map: the optimised plan runs one chain on the `i32` input and gives the
    /// decluttered model's bytes.
    #[test]
    fn optimised_plan_absorbs_the_cast() -> TractResult<()> {
        let (c, h, w) = (24usize, 8usize, 8usize);
        let mut model = TypedModel::default();
        let x = model.add_source("x", i32::fact([1, c, h, w]))?;
        let s = model.add_source("s", f32::fact([1, c, 1, 1]))?;
        let b = model.add_source("b", f32::fact([1, c, 1, 1]))?;
        let r = model.add_source("r", f32::fact([1, c, h, w]))?;
        let xf = model.wire_node("cast", Cast { to: f32::datum_type() }, &[x])?[0];
        let scaled = model.wire_node("scale", mul(), &[xf, s])?[0];
        let biased = model.wire_node("bias", add(), &[scaled, b])?[0];
        let out = model.wire_node("residual", add(), &[biased, r])?[0];
        model.select_output_outlets(&[out])?;

        let len = c * h * w;
        let inputs = tvec![
            Tensor::from_shape(
                &[1, c, h, w],
                &(0..len as i32).map(|i| (i - 700) * 40_009).collect::<Vec<_>>()
            )?
            .into_tvalue(),
            Tensor::from_shape(
                &[1, c, 1, 1],
                &(0..c).map(|i| 1e-4 * (i as f32 + 0.5)).collect::<Vec<_>>()
            )?
            .into_tvalue(),
            Tensor::from_shape(&[1, c, 1, 1], &(0..c).map(|i| i as f32 - 9.5).collect::<Vec<_>>())?
                .into_tvalue(),
            Tensor::from_shape(
                &[1, c, h, w],
                &(0..len).map(|i| (i % 17) as f32 * 0.25).collect::<Vec<_>>()
            )?
            .into_tvalue(),
        ];
        let reference = model.clone().into_decluttered()?.into_runnable()?.run(inputs.clone())?;
        let optimised = model.into_optimized()?;
        let chains: Vec<&OptBinChain> =
            optimised.nodes().iter().filter_map(|n| n.op_as::<OptBinChain>()).collect();
        assert!(
            chains.iter().any(|c| c.from_i32),
            "no chain took the i32 input: {:?}",
            optimised.nodes().iter().map(|n| n.op().name()).collect::<Vec<_>>()
        );
        assert!(
            !optimised.nodes().iter().any(|n| n.op_is::<Cast>()),
            "the cast is still in the plan"
        );
        let got = optimised.into_runnable()?.run(inputs)?;
        let bits = |t: &Tensor| -> TractResult<Vec<u32>> {
            Ok(t.try_as_plain_ram()?.as_slice::<f32>()?.iter().map(|v| v.to_bits()).collect())
        };
        assert_eq!(bits(&got[0])?, bits(&reference[0])?);
        Ok(())
    }
}
