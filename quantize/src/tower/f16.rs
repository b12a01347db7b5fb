//! `*_fp16.onnx` files widened to f32: f16 weights, constants, casts and value
//! types all become f32 (exact for the weights; the boards' CPUs compute in f32).

use std::path::Path;

use tract_onnx::pb::{
    tensor_proto::DataType, type_proto, GraphProto, ModelProto, NodeProto, TensorProto,
    ValueInfoProto,
};

use super::TowerError;

/// Rewrites every f16 in the model as f32: initializers, `Constant` values, `Cast`
/// targets and the types of inputs, outputs and intermediate values. Returns how
/// many things changed.
pub fn widen_f16(model: &mut ModelProto, path: &Path) -> Result<usize, TowerError> {
    fn tensor(t: &mut TensorProto, path: &Path) -> Result<usize, TowerError> {
        if t.data_type != DataType::Float16 as i32 {
            return Ok(0);
        }
        let len: usize = t.dims.iter().map(|&d| d.max(0) as usize).product();
        let bits: Vec<u16> = if !t.raw_data.is_empty() {
            t.raw_data
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect()
        } else {
            // The proto stores f16 bit patterns in int32_data.
            t.int32_data.iter().map(|&b| b as u16).collect()
        };
        if bits.len() != len {
            return Err(TowerError::BadF16 {
                path: path.to_path_buf(),
                name: t.name.clone(),
                bytes: t.raw_data.len().max(t.int32_data.len() * 2),
                len,
            });
        }
        t.raw_data = bits
            .into_iter()
            .flat_map(|b| half::f16::from_bits(b).to_f32().to_le_bytes())
            .collect();
        t.int32_data.clear();
        t.data_type = DataType::Float as i32;
        Ok(1)
    }
    fn value_info(v: &mut ValueInfoProto) -> usize {
        match v.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            Some(type_proto::Value::TensorType(t)) if t.elem_type == DataType::Float16 as i32 => {
                t.elem_type = DataType::Float as i32;
                1
            }
            _ => 0,
        }
    }
    fn node(n: &mut NodeProto, path: &Path) -> Result<usize, TowerError> {
        let mut changed = 0;
        let casts = n.op_type == "Cast";
        for a in &mut n.attribute {
            if casts && a.name == "to" && a.i == DataType::Float16 as i64 {
                a.i = DataType::Float as i64;
                changed += 1;
            }
            if let Some(t) = a.t.as_mut() {
                changed += tensor(t, path)?;
            }
            for t in &mut a.tensors {
                changed += tensor(t, path)?;
            }
            if let Some(g) = a.g.as_mut() {
                changed += graph(g, path)?;
            }
            for g in &mut a.graphs {
                changed += graph(g, path)?;
            }
        }
        Ok(changed)
    }
    fn graph(g: &mut GraphProto, path: &Path) -> Result<usize, TowerError> {
        let mut changed = 0;
        for t in &mut g.initializer {
            changed += tensor(t, path)?;
        }
        for n in &mut g.node {
            changed += node(n, path)?;
        }
        for v in g
            .input
            .iter_mut()
            .chain(&mut g.output)
            .chain(&mut g.value_info)
        {
            changed += value_info(v);
        }
        Ok(changed)
    }
    match model.graph.as_mut() {
        Some(g) => graph(g, path),
        None => Ok(0),
    }
}
