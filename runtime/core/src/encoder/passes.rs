//! Graph passes the encoder runs at load, and what it reads off the optimised plan.

use tract_nnef::prelude::*;

/// Replaces every `Cast` to f32 of a constant int8 tensor by its f32 value, and
/// returns how many it replaced.
///
/// A weight-only int8 model (`clip-quantize quantize --mode weights`) stores
/// `Cast<f32>(Wq) · scale`. tract's constant folding leaves out folds that grow the
/// data beyond a budget (an i8 → f32 cast of a 768×3072 weight does), so without this
/// the widening would run at every frame (docs/perf.md#widen-int8). Done here, once,
/// at load; tract then folds the scale.
pub(crate) fn widen_int8_weights(model: &mut TypedModel) -> TractResult<usize> {
    use tract_nnef::tract_core::ops::konst::Const;
    let casts = int8_weight_casts(model);
    if casts.is_empty() {
        return Ok(0);
    }
    let mut patch = TypedModelPatch::new("widen int8 weights");
    for &id in &casts {
        let node = model.node(id);
        let Some(weight) = model.node(node.inputs[0].node).op_as::<Const>() else {
            continue;
        };
        let wide = weight.val().cast_to::<f32>()?.into_owned();
        let wire = patch.add_const(format!("{}.f32", node.name), wide)?;
        patch.shunt_outside(model, id.into(), wire)?;
    }
    patch.apply(model)?;
    Ok(casts.len())
}

/// The `Cast` to f32 nodes whose input is a constant int8 tensor.
fn int8_weight_casts(model: &TypedModel) -> Vec<usize> {
    use tract_nnef::tract_core::ops::cast::Cast;
    use tract_nnef::tract_core::ops::konst::Const;
    model
        .nodes()
        .iter()
        .filter(|node| {
            node.op_as::<Cast>()
                .is_some_and(|c| c.to == f32::datum_type())
                && node.inputs.len() == 1
                && model
                    .node(node.inputs[0].node)
                    .op_as::<Const>()
                    .is_some_and(|k| k.val().datum_type() == i8::datum_type())
        })
        .map(|node| node.id)
        .collect()
}

/// Kernel names of the plan's optimised matmuls, as `name ×count`, sorted.
pub(crate) fn matmul_kernels(model: &TypedModel) -> Vec<String> {
    use tract_nnef::tract_core::ops::matmul::optimized::OptMatMul;
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for node in model.nodes() {
        if let Some(op) = node.op_as::<OptMatMul>() {
            for mmm in &op.mmm {
                *counts.entry(mmm.name().to_string()).or_default() += 1;
            }
        }
    }
    counts
        .into_iter()
        .map(|(name, count)| format!("{name} x{count}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_nnef::tract_core::ops::cast::Cast;
    use tract_nnef::tract_core::ops::math;

    /// `y = x · (Cast<f32>(Wq) · scale)`, the weight-only int8 form, by hand (a
    /// weight of at least 16 values: tract folds smaller constants as they are wired).
    fn weight_only_model() -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, 4])).unwrap();
        let wq = model
            .add_const(
                "wq",
                tensor2(&[
                    [1i8, -2, 3, 4, 5, -6],
                    [2, 2, 2, 2, 2, 2],
                    [7, 7, 7, 7, 7, 7],
                    [-7, -7, -7, -7, -7, -7],
                ]),
            )
            .unwrap();
        let wf = model
            .wire_node(
                "cast",
                Cast {
                    to: f32::datum_type(),
                },
                &[wq],
            )
            .unwrap()[0];
        let scale = model
            .add_const("scale", tensor2(&[[0.5f32, 0.25, 2.0, 1.0, 1.0, 1.0]]))
            .unwrap();
        let w = model
            .wire_node("scaled", math::mul(), &[wf, scale])
            .unwrap()[0];
        let y = model
            .wire_node(
                "matmul",
                tract_nnef::tract_core::ops::einsum::EinSum::new(
                    "mk,kn->mn".parse().unwrap(),
                    f32::datum_type(),
                ),
                &[x, w],
            )
            .unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        model
    }

    fn run(model: TypedModel) -> Vec<f32> {
        let plan = model.into_optimized().unwrap().into_runnable().unwrap();
        let out = plan
            .run(tvec!(tensor2(&[[1.0f32, 2.0, 0.0, 0.0]]).into()))
            .unwrap();
        out[0]
            .to_plain_array_view::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect()
    }

    #[test]
    fn int8_weights_are_widened_once_with_the_same_result() {
        let expected = run(weight_only_model());
        let mut model = weight_only_model();
        assert_eq!(int8_weight_casts(&model).len(), 1);
        assert_eq!(widen_int8_weights(&mut model).unwrap(), 1);
        assert!(int8_weight_casts(&model).is_empty());
        assert_eq!(widen_int8_weights(&mut model).unwrap(), 0);
        // x = [1, 2, 0, 0]: (row 0 + 2 · row 1) · scale.
        let want = vec![2.5, 0.5, 14.0, 8.0, 9.0, -2.0];
        assert_eq!(run(model), want);
        assert_eq!(expected, want);
    }

    #[test]
    fn casts_of_activations_are_left_alone() {
        let mut model = TypedModel::default();
        let x = model.add_source("x", i8::fact([32])).unwrap();
        let y = model
            .wire_node(
                "cast",
                Cast {
                    to: f32::datum_type(),
                },
                &[x],
            )
            .unwrap()[0];
        model.select_output_outlets(&[y]).unwrap();
        assert_eq!(widen_int8_weights(&mut model).unwrap(), 0);
    }
}
