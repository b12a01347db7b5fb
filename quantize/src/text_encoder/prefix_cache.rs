//! Template prefixes computed once: the graph passes that let a text tower take
//! the keys and values of a shared prompt prefix as inputs.
//!
//! Every prompt of a template starts with the same tokens (`SOT a photo of a`), and
//! under a causal mask the keys and values at those positions depend on nothing
//! after them. The *suffix* plan takes them as inputs ([`with_past_key_values`]):
//! each attention scores its queries against the cached keys as well as its own,
//! over one softmax, and sums the cached values with its own; position embeddings
//! are read from the prefix length on. It also gives its own keys and values as
//! outputs ([`with_key_value_outputs`]), so run after an empty prefix on a
//! template's shared tokens it computes their cache; then each prompt runs only
//! its own tokens.
//!
//! Both passes work on tract's decluttered graph and find the attention by its
//! shape (a softmax over the key axis between two matrix products), so they serve
//! the Hugging Face and OpenCLIP layouts alike. A graph they do not recognise is
//! refused; one they recognise wrongly is caught by the probe check at load
//! ([`super::TextEncoder::load`]).

use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::array::{Slice, TypedConcat};
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::change_axes::InOut;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::konst::Const;
use tract_onnx::tract_core::ops::nn::Softmax;

/// Name of the symbol for the prefix length in the suffix plan.
pub const PREFIX_SYMBOL: &str = "prefix";

/// One attention of the tower, as found in the decluttered graph.
#[derive(Debug, Clone)]
pub struct Attention {
    /// The product of queries and keys.
    scores: usize,
    /// Which of its inputs holds the keys.
    key_slot: usize,
    /// The binary operations between the product and the softmax, in order, with
    /// the input slot the scores come in on, and whether it applies to the scores
    /// against the cached keys too (a scale does; an additive mask over the keys
    /// does not: every cached position is visible to every prompt token).
    between: Vec<(usize, usize, bool)>,
    /// The softmax over the key axis.
    softmax: usize,
    /// The product of probabilities and values.
    mix: usize,
    /// Which of its inputs holds the values.
    value_slot: usize,
    /// The sequence axis of the values.
    value_axis: usize,
    /// The sequence axis of the keys.
    key_axis: usize,
}

impl Attention {
    /// Where the keys come from.
    fn keys(&self, model: &TypedModel) -> OutletId {
        model.node(self.scores).inputs[self.key_slot]
    }

    /// Where the values come from.
    fn values(&self, model: &TypedModel) -> OutletId {
        model.node(self.mix).inputs[self.value_slot]
    }
}

/// Finds every attention of a decluttered text tower whose sequence axis is the
/// symbol `length`, in graph order; an error says what did not match.
pub fn find_attention(model: &TypedModel, length: &TDim) -> Result<Vec<Attention>, String> {
    let mut found = vec![];
    for node in model.nodes() {
        let Some(softmax) = node.op_as::<Softmax>() else {
            continue;
        };
        found.push(attention_at(model, node.id, softmax, length)?);
    }
    if found.is_empty() {
        return Err("no attention softmax found".into());
    }
    Ok(found)
}

fn attention_at(
    model: &TypedModel,
    softmax_id: usize,
    softmax: &Softmax,
    length: &TDim,
) -> Result<Attention, String> {
    let name = &model.node(softmax_id).name;
    let fact = |o: OutletId| model.outlet_fact(o).map_err(|e| e.to_string());
    let scores_fact = fact(OutletId::new(softmax_id, 0))?.clone();
    let rank = scores_fact.rank();
    if rank < 2
        || softmax.axes.as_slice() != [rank - 1]
        || scores_fact.shape[rank - 1] != *length
        || scores_fact.shape[rank - 2] != *length
    {
        return Err(format!(
            "{name}: a softmax that is not over the keys of a [.., length, length] score"
        ));
    }
    // Back from the softmax to the product of queries and keys.
    let mut between = vec![];
    let mut at = model.node(softmax_id).inputs[0];
    let scores = loop {
        let node = model.node(at.node);
        if node.op_is::<EinSum>() && node.inputs.len() == 2 {
            break node;
        }
        if between.len() == 4 || !node.op_is::<TypedBinOp>() || node.inputs.len() != 2 {
            return Err(format!(
                "{name}: {} ({}) between the scores and the softmax",
                node.name, node.op
            ));
        }
        let full = |slot: usize| {
            fact(node.inputs[slot]).map(|f| f.shape.to_tvec() == scores_fact.shape.to_tvec())
        };
        let slot = match (full(0)?, full(1)?) {
            (true, false) => 0,
            (false, true) => 1,
            _ => {
                // Both full-sized: the scores come from the product or an op before it.
                let from_product = |slot: usize| {
                    let n = model.node(node.inputs[slot].node);
                    n.op_is::<EinSum>() || n.op_is::<TypedBinOp>()
                };
                match (from_product(0), from_product(1)) {
                    (true, false) => 0,
                    (false, true) => 1,
                    _ => return Err(format!("{name}: cannot tell the scores in {}", node.name)),
                }
            }
        };
        let other = fact(node.inputs[1 - slot])?;
        let other_keys = other.shape.last().cloned().unwrap_or(1.into());
        let applies = if other_keys.is_one() {
            true
        } else if other_keys == *length && node.op.as_op().name() == "Add" {
            false
        } else {
            return Err(format!(
                "{name}: {} ({}) mixes the keys into the scores",
                node.name, node.op
            ));
        };
        between.push((node.id, slot, applies));
        at = node.inputs[slot];
    };
    between.reverse();
    let einsum = scores.op_as::<EinSum>().ok_or("not an einsum")?;
    let key_letter = einsum
        .axes
        .axis((InOut::Out(0), rank - 1))
        .map_err(|e| e.to_string())?;
    let key_slot = match (
        key_letter.inputs[0].is_empty(),
        key_letter.inputs[1].is_empty(),
    ) {
        (true, false) => 1,
        (false, true) => 0,
        _ => {
            return Err(format!(
                "{name}: the key axis is not in exactly one operand"
            ))
        }
    };
    let [key_axis] = key_letter.inputs[key_slot].as_slice() else {
        return Err(format!("{name}: the key axis repeats"));
    };
    // Forward from the softmax to the product of probabilities and values.
    let successors = &model.node(softmax_id).outputs[0].successors;
    let [to_mix] = successors.as_slice() else {
        return Err(format!(
            "{name}: the probabilities go to more than one place"
        ));
    };
    let mix = model.node(to_mix.node);
    let Some(mix_op) = mix.op_as::<EinSum>().filter(|_| mix.inputs.len() == 2) else {
        return Err(format!(
            "{name}: the probabilities go to {} ({})",
            mix.name, mix.op
        ));
    };
    let value_slot = 1 - to_mix.slot;
    let probability_keys = mix_op
        .axes
        .axis((InOut::In(to_mix.slot), rank - 1))
        .map_err(|e| e.to_string())?;
    let [value_axis] = probability_keys.inputs[value_slot].as_slice() else {
        return Err(format!("{name}: the values do not run along the keys"));
    };
    let attention = Attention {
        scores: scores.id,
        key_slot,
        between,
        softmax: softmax_id,
        mix: mix.id,
        value_slot,
        value_axis: *value_axis,
        key_axis: *key_axis,
    };
    for (what, outlet, axis) in [
        ("keys", attention.keys(model), attention.key_axis),
        ("values", attention.values(model), attention.value_axis),
    ] {
        if fact(outlet)?.shape[axis] != *length {
            return Err(format!("{name}: the {what} do not run along the sequence"));
        }
    }
    Ok(attention)
}

/// The tower with each attention's keys and values added as outputs after its own
/// (keys then values, attention by attention); before [`with_past_key_values`],
/// these are the keys and values of its own tokens.
pub fn with_key_value_outputs(
    mut model: TypedModel,
    attention: &[Attention],
) -> TractResult<TypedModel> {
    let mut outputs = model.output_outlets()?.to_vec();
    for a in attention {
        outputs.push(a.keys(&model));
        outputs.push(a.values(&model));
    }
    model.select_output_outlets(&outputs)?;
    Ok(model)
}

/// The tower taking the cached keys and values of a prefix as inputs after its own
/// (keys then values, attention by attention, each with the prefix length as the
/// symbol [`PREFIX_SYMBOL`] on its sequence axis): the suffix plan. Its token ids
/// are the tokens after the prefix, and its position embeddings are read from the
/// prefix length on.
pub fn with_past_key_values(
    mut model: TypedModel,
    attention: &[Attention],
    length: &TDim,
) -> TractResult<TypedModel> {
    let prefix: TDim = model.symbols.sym(PREFIX_SYMBOL).into();
    // Position embeddings (and the causal mask of OpenCLIP exports, which is the
    // same triangle from any diagonal offset) are slices of constants from 0 to the
    // length, one axis after another: read them from the prefix length on.
    let mut shifted: Vec<usize> = vec![];
    for id in model.eval_order()? {
        let of_constant = model
            .node(id)
            .inputs
            .first()
            .is_some_and(|i| model.node(i.node).op_is::<Const>() || shifted.contains(&i.node));
        let node = model.node_mut(id);
        if let Some(slice) = node.op_as::<Slice>() {
            if of_constant && slice.start == TDim::from(0) && slice.end == *length {
                let axis = slice.axis;
                node.op = Box::new(Slice {
                    axis,
                    start: prefix.clone(),
                    end: prefix.clone() + length,
                });
                shifted.push(id);
            }
        }
    }
    if shifted.is_empty() {
        return Err(TractError::msg(
            "no position embedding sliced to the length",
        ));
    }
    for (layer, a) in attention.iter().enumerate() {
        let with_prefix = |fact: &TypedFact, axis: usize| {
            let mut fact = fact.without_value();
            fact.shape.set(axis, prefix.clone());
            fact
        };
        let keys = a.keys(&model);
        let values = a.values(&model);
        let past_keys_fact = with_prefix(model.outlet_fact(keys)?, a.key_axis);
        let past_values_fact = with_prefix(model.outlet_fact(values)?, a.value_axis);
        let past_keys = model.add_source(format!("past_keys.{layer}"), past_keys_fact)?;
        let past_values = model.add_source(format!("past_values.{layer}"), past_values_fact)?;
        // Scores against the cached keys, through the same scale.
        let scores = model.node(a.scores);
        let mut inputs: TVec<OutletId> = scores.inputs.iter().copied().collect();
        inputs[a.key_slot] = past_keys;
        let (name, op) = (format!("{}.past", scores.name), scores.op.clone());
        let mut past_scores = model.wire_node(name, op, &inputs)?[0];
        let mut own_scores = OutletId::new(a.scores, 0);
        for &(id, slot, applies) in &a.between {
            own_scores = OutletId::new(id, 0);
            if !applies {
                continue;
            }
            let node = model.node(id);
            let mut inputs: TVec<OutletId> = node.inputs.iter().copied().collect();
            inputs[slot] = past_scores;
            let (name, op) = (format!("{}.past", node.name), node.op.clone());
            past_scores = model.wire_node(name, op, &inputs)?[0];
        }
        let rank = model.outlet_fact(own_scores)?.rank();
        let softmax_name = model.node(a.softmax).name.clone();
        let all_scores = model.wire_node(
            format!("{softmax_name}.with_past"),
            TypedConcat { axis: rank - 1 },
            &[past_scores, own_scores],
        )?[0];
        model.add_edge(all_scores, InletId::new(a.softmax, 0))?;
        let probabilities = model.outlet_fact(all_scores)?.without_value();
        model.set_outlet_fact(OutletId::new(a.softmax, 0), probabilities)?;
        let all_values = model.wire_node(
            format!("{}.with_past", model.node(a.mix).name),
            TypedConcat { axis: a.value_axis },
            &[past_values, values],
        )?[0];
        model.add_edge(all_values, InletId::new(a.mix, a.value_slot))?;
    }
    Ok(model)
}
