//! Emitting the int8 form of one matmul: weight quantization, activation
//! quantization (dynamic or static), `MatMulInteger`, and the rescale.

use std::collections::HashMap;

use tract_onnx::pb::{tensor_proto::DataType, NodeProto, TensorProto};

use super::{quantize_weight, transpose, MIN_SCALE, ROUND_MAGIC};
use crate::onnx_graph::{attr_int, attr_ints, f32_tensor, i64_tensor, i8_tensor, node, Namer};

/// Appends the nodes and constants of one rewrite.
pub(super) struct Emitter<'a> {
    pub(super) namer: &'a mut Namer,
    pub(super) nodes: &'a mut Vec<NodeProto>,
    pub(super) inits: &'a mut Vec<TensorProto>,
    pub(super) prefix: String,
    /// Activations already quantized (dynamic mode): `input#tensor` or
    /// `input#token` (the granularity) → (int8 tensor, max |x| tensor). Q, K and V
    /// read one input: it is quantized once.
    pub(super) quantized: &'a mut HashMap<String, (String, String)>,
    /// Weight-only mode: int8 weights widened to f32 (`Cast` × scale, folded by
    /// the runtime at load), f32 matmul.
    pub(super) weights_only: bool,
    /// Dynamic mode: one scale per token (the last axis reduced) instead of one per
    /// tensor.
    pub(super) per_token: bool,
    /// The model's opset takes reduction axes as an input (18 and later), not an
    /// attribute.
    pub(super) axes_as_input: bool,
}

impl Emitter<'_> {
    fn constant(&mut self, suffix: &str, t: impl FnOnce(&str) -> TensorProto) -> String {
        let name = self.namer.fresh(&format!("{}/{suffix}", self.prefix));
        self.inits.push(t(&name));
        name
    }

    pub(super) fn constant_f32(&mut self, suffix: &str, dims: &[usize], data: &[f32]) -> String {
        self.constant(suffix, |n| f32_tensor(n, dims, data))
    }

    fn constant_i64(&mut self, suffix: &str, data: &[i64]) -> String {
        self.constant(suffix, |n| i64_tensor(n, &[data.len()], data))
    }

    /// Adds `op(inputs)` with a fresh output name and returns it.
    pub(super) fn op(
        &mut self,
        op: &str,
        inputs: &[&str],
        attrs: Vec<tract_onnx::pb::AttributeProto>,
    ) -> String {
        let out = self
            .namer
            .fresh(&format!("{}/{}", self.prefix, op.to_lowercase()));
        self.op_into(op, inputs, &out, attrs);
        out
    }

    /// Adds `op(inputs)` writing to `output`.
    pub(super) fn op_into(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attrs: Vec<tract_onnx::pb::AttributeProto>,
    ) {
        let name = self.namer.fresh(&format!("{}/{op}", self.prefix));
        self.nodes.push(node(op, &name, inputs, &[output], attrs));
    }

    /// `output = x · W` in int8, `W` given row-major `[k, n]`.
    pub(super) fn qmatmul(
        &mut self,
        x: &str,
        w: &[f32],
        k: usize,
        n: usize,
        static_scale: Option<f32>,
        output: &str,
    ) {
        let (wq, w_scale) = quantize_weight(w, k, n);
        let wq_name = self.constant("weight_int8", |name| i8_tensor(name, &[k, n], &wq));
        if self.weights_only {
            let wf = self.op(
                "Cast",
                &[&wq_name],
                vec![attr_int("to", DataType::Float as i64)],
            );
            let scale = self.constant_f32("w_scale", &[n], &w_scale);
            let w = self.op("Mul", &[&wf, &scale], vec![]);
            self.op_into("MatMul", &[x, &w], output, vec![]);
            return;
        }
        let (xq, out_scale) = self.quantize_activation(x, &w_scale, &[n], static_scale);
        let acc = self.op("MatMulInteger", &[&xq, &wq_name], vec![]);
        let accf = self.op(
            "Cast",
            &[&acc],
            vec![attr_int("to", DataType::Float as i64)],
        );
        self.op_into("Mul", &[&accf, &out_scale], output, vec![]);
    }

    /// The int8 activation of `x` and the scale of the integer result, shaped
    /// `scale_dims` (one per output channel, from the weights' `w_scale`): a fixed
    /// calibrated scale `static_scale` (values beyond it saturate), or one computed
    /// per frame ([`Emitter::quantize_dynamic`], shared by the matmuls reading `x`).
    fn quantize_activation(
        &mut self,
        x: &str,
        w_scale: &[f32],
        scale_dims: &[usize],
        static_scale: Option<f32>,
    ) -> (String, String) {
        match static_scale {
            Some(s) => {
                let s = s.max(MIN_SCALE);
                let inv = self.constant_f32("x_inv_scale", &[], &[1.0 / s]);
                let xs = self.op("Mul", &[x, &inv], vec![]);
                let lo = self.constant_f32("q_min", &[], &[-127.0]);
                let hi = self.constant_f32("q_max", &[], &[127.0]);
                let xs = self.op("Clip", &[&xs, &lo, &hi], vec![]);
                let combined: Vec<f32> = w_scale.iter().map(|ws| ws * s).collect();
                (
                    self.round_to_int8(&xs),
                    self.constant_f32("out_scale", scale_dims, &combined),
                )
            }
            None => {
                // A per-token quantization is kept apart from a per-tensor one of
                // the same tensor.
                let key = format!("{x}#{}", if self.per_token { "token" } else { "tensor" });
                let (xq, amax) = match self.quantized.get(&key) {
                    Some(done) => done.clone(),
                    None => {
                        let done = self.quantize_dynamic(x);
                        self.quantized.insert(key, done.clone());
                        done
                    }
                };
                let w_scale: Vec<f32> = w_scale.iter().map(|w| w / 127.0).collect();
                let w_scale = self.constant_f32("w_scale_over_127", scale_dims, &w_scale);
                (xq, self.op("Mul", &[&amax, &w_scale], vec![]))
            }
        }
    }

    /// Per-frame symmetric quantization of `x`: returns (int8 tensor, max |x|).
    ///
    /// max |x| is max(max x, −min x): two reductions that read `x`, where
    /// `ReduceMax(Abs(x))` would also write a copy of it (in tract 0.23.9, `Abs` cost
    /// ten times the reduction on x86).
    ///
    /// Per token, the reductions run over the last axis only and keep it: max |x| is
    /// `[.., tokens, 1]`, and the output scale `max |x| · w_scale` becomes
    /// `[.., tokens, n]`, which tract applies inside its matmul kernel.
    fn quantize_dynamic(&mut self, x: &str) -> (String, String) {
        let (hi, lo) = if !self.per_token {
            let keep = || vec![attr_int("keepdims", 0)];
            (
                self.op("ReduceMax", &[x], keep()),
                self.op("ReduceMin", &[x], keep()),
            )
        } else if self.axes_as_input {
            let axes = self.constant_i64("last_axis", &[-1]);
            let keep = || vec![attr_int("keepdims", 1)];
            (
                self.op("ReduceMax", &[x, &axes], keep()),
                self.op("ReduceMin", &[x, &axes], keep()),
            )
        } else {
            let keep = || vec![attr_int("keepdims", 1), attr_ints("axes", &[-1])];
            (
                self.op("ReduceMax", &[x], keep()),
                self.op("ReduceMin", &[x], keep()),
            )
        };
        let neg_lo = self.op("Neg", &[&lo], vec![]);
        let amax = self.op("Max", &[&hi, &neg_lo], vec![]);
        let eps = self.constant_f32("min_amax", &[], &[MIN_SCALE * 127.0]);
        let amax = self.op("Max", &[&amax, &eps], vec![]);
        let q127 = self.constant_f32("q127", &[], &[127.0]);
        let inv = self.op("Div", &[&q127, &amax], vec![]);
        let xs = self.op("Mul", &[x, &inv], vec![]);
        (self.round_to_int8(&xs), amax)
    }

    /// int8 of `v` (already within [-127, 127]), rounded half to even.
    ///
    /// Rounds by adding and removing 1.5·2^23 (exact for |v| < 2^22), then casts the
    /// whole-number f32 to i8, which is exact in any runtime and cheaper in tract than
    /// its `Round` or `QuantizeLinear` (docs/perf.md#round-to-int8).
    fn round_to_int8(&mut self, v: &str) -> String {
        let magic = self.constant_f32("round_magic", &[], &[ROUND_MAGIC]);
        let neg_magic = self.constant_f32("round_magic_neg", &[], &[-ROUND_MAGIC]);
        let r = self.op("Add", &[v, &magic], vec![]);
        let r = self.op("Add", &[&r, &neg_magic], vec![]);
        self.op("Cast", &[&r], vec![attr_int("to", DataType::Int8 as i64)])
    }

    /// The patch-embedding Conv as patches · Wᵀ, back to NCHW.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn patch_conv(
        &mut self,
        x: &str,
        wdims: &[usize],
        w: &[f32],
        (h, wd): (usize, usize),
        bias: Option<&str>,
        static_scale: Option<f32>,
        output: &str,
    ) -> Result<(), String> {
        let (oc, ic, kh, kw) = (wdims[0], wdims[1], wdims[2], wdims[3]);
        if h % kh != 0 || wd % kw != 0 {
            return Err(format!(
                "patch Conv: input {h}×{wd} is not a whole number of {kh}×{kw} patches"
            ));
        }
        let (gh, gw) = (h / kh, wd / kw);
        let k = ic * kh * kw;
        let s6 = self.constant_i64(
            "patch_shape",
            &[0, ic as i64, gh as i64, kh as i64, gw as i64, kw as i64],
        );
        let x6 = self.op("Reshape", &[x, &s6], vec![]);
        let xt = self.op(
            "Transpose",
            &[&x6],
            vec![attr_ints("perm", &[0, 2, 4, 1, 3, 5])],
        );
        let s3 = self.constant_i64("patches_shape", &[0, (gh * gw) as i64, k as i64]);
        let patches = self.op("Reshape", &[&xt, &s3], vec![]);
        // Conv weight [oc, k] → matmul weight [k, oc].
        let wt = transpose(w, oc, k);
        let mm = self.namer.fresh(&format!("{}/patch_embeds", self.prefix));
        self.qmatmul(&patches, &wt, k, oc, static_scale, &mm);
        let mm = match bias {
            Some(b) => self.op("Add", &[&mm, b], vec![]),
            None => mm,
        };
        let nchw = self.op("Transpose", &[&mm], vec![attr_ints("perm", &[0, 2, 1])]);
        let s4 = self.constant_i64("nchw_shape", &[0, oc as i64, gh as i64, gw as i64]);
        self.op_into("Reshape", &[&nchw, &s4], output, vec![]);
        Ok(())
    }

    /// A Conv as `ConvInteger` on the int8 activation and per-output-channel int8
    /// weights (`wdims` `[O, C, kh, kw]`), rescaled per output channel; `attributes`
    /// are the Conv's (strides, pads, dilations).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn qconv(
        &mut self,
        x: &str,
        wdims: &[usize],
        w: &[f32],
        attributes: Vec<tract_onnx::pb::AttributeProto>,
        bias: Option<&str>,
        static_scale: Option<f32>,
        output: &str,
    ) {
        let oc = wdims[0];
        let k = wdims[1] * wdims[2] * wdims[3];
        // The weight as [k, oc] for the per-column quantizer, back to [oc, k].
        let (wq_kn, w_scale) = quantize_weight(&transpose(w, oc, k), k, oc);
        let wq: Vec<i8> = (0..oc * k).map(|i| wq_kn[(i % k) * oc + i / k]).collect();
        let channel_dims = [oc, 1, 1];
        if self.weights_only {
            let wq_name = self.constant("weight_int8", |name| i8_tensor(name, wdims, &wq));
            let wf = self.op(
                "Cast",
                &[&wq_name],
                vec![attr_int("to", DataType::Float as i64)],
            );
            let scale = self.constant_f32("w_scale", &[oc, 1, 1, 1], &w_scale);
            let wf = self.op("Mul", &[&wf, &scale], vec![]);
            let mut inputs = vec![x, wf.as_str()];
            inputs.extend(bias);
            self.op_into("Conv", &inputs, output, attributes);
            return;
        }
        let wq_name = self.constant("weight_int8", |name| i8_tensor(name, wdims, &wq));
        // One scale per tensor: a convolution mixes neighbouring pixels, so per-token
        // scales do not apply (and a per-token quantization of the same tensor
        // cannot be shared).
        let per_token = std::mem::replace(&mut self.per_token, false);
        let (xq, out_scale) = self.quantize_activation(x, &w_scale, &channel_dims, static_scale);
        self.per_token = per_token;
        let acc = self.op("ConvInteger", &[&xq, &wq_name], attributes);
        let accf = self.op(
            "Cast",
            &[&acc],
            vec![attr_int("to", DataType::Float as i64)],
        );
        match bias {
            Some(b) => {
                let scaled = self.op("Mul", &[&accf, &out_scale], vec![]);
                let shape = self.constant_i64("bias_shape", &[oc as i64, 1, 1]);
                let b = self.op("Reshape", &[b, &shape], vec![]);
                self.op_into("Add", &[&scaled, &b], output, vec![]);
            }
            None => self.op_into("Mul", &[&accf, &out_scale], output, vec![]),
        }
    }
}
