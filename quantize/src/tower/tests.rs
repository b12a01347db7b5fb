//! Tests of picking a tower on synthetic graphs shaped like the hub layouts.
use super::*;
use crate::onnx_graph::{attr_int, f32_tensor, node};
use tract_onnx::pb::{tensor_shape_proto, TensorProto, TensorShapeProto, TypeProto};

fn value(name: &str, elem: DataType, dims: &[&str]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d.parse::<i64>() {
                Ok(v) => dimension::Value::DimValue(v),
                Err(_) => dimension::Value::DimParam(d.to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The shape of optimum's combined export: two towers, their embeddings, and
/// logits that read both.
fn combined() -> ModelProto {
    let graph = GraphProto {
        input: vec![
            value("input_ids", DataType::Int64, &["text_batch", "sequence"]),
            value(
                "pixel_values",
                DataType::Float,
                &["image_batch", "3", "2", "2"],
            ),
            value(
                "attention_mask",
                DataType::Int64,
                &["text_batch", "sequence"],
            ),
        ],
        output: vec![
            value(
                "logits_per_image",
                DataType::Float,
                &["image_batch", "text_batch"],
            ),
            value("text_embeds", DataType::Float, &["text_batch", "4"]),
            value("image_embeds", DataType::Float, &["image_batch", "4"]),
        ],
        initializer: vec![
            f32_tensor("vision_w", &[4], &[1.0; 4]),
            f32_tensor("text_w", &[4], &[2.0; 4]),
        ],
        node: vec![
            node("Flatten", "v0", &["pixel_values"], &["v_flat"], vec![]),
            node(
                "Mul",
                "v1",
                &["v_flat", "vision_w"],
                &["image_embeds"],
                vec![],
            ),
            node(
                "Cast",
                "t0",
                &["input_ids"],
                &["ids_f"],
                vec![attr_int("to", DataType::Float as i64)],
            ),
            node(
                "Cast",
                "t1",
                &["attention_mask"],
                &["mask_f"],
                vec![attr_int("to", DataType::Float as i64)],
            ),
            node("Mul", "t2", &["ids_f", "mask_f"], &["masked"], vec![]),
            node("Mul", "t3", &["masked", "text_w"], &["text_embeds"], vec![]),
            node(
                "MatMul",
                "l0",
                &["image_embeds", "text_embeds"],
                &["logits_per_image"],
                vec![],
            ),
        ],
        ..Default::default()
    };
    ModelProto {
        graph: Some(graph),
        ..Default::default()
    }
}

fn names<'a>(it: impl Iterator<Item = &'a String>) -> Vec<&'a str> {
    it.map(|s| s.as_str()).collect()
}

#[test]
fn image_tower_of_a_combined_model_keeps_only_its_nodes_and_input() {
    let t = select(combined(), Path::new("model.onnx"), Tower::Image, None).unwrap();
    let g = t.model.graph.unwrap();
    assert_eq!(t.output, "image_embeds");
    assert_eq!(
        t.inputs,
        TowerInputs::Image {
            pixels: "pixel_values".into()
        }
    );
    assert_eq!(names(g.node.iter().map(|n| &n.name)), ["v0", "v1"]);
    assert_eq!(names(g.input.iter().map(|i| &i.name)), ["pixel_values"]);
    assert_eq!(names(g.output.iter().map(|o| &o.name)), ["image_embeds"]);
    assert_eq!(names(g.initializer.iter().map(|t| &t.name)), ["vision_w"]);
    assert_eq!(t.changes.len(), 3, "{:?}", t.changes);
}

#[test]
fn text_tower_finds_ids_and_mask_by_name() {
    let t = select(combined(), Path::new("model.onnx"), Tower::Text, None).unwrap();
    assert_eq!(
        t.inputs,
        TowerInputs::Text {
            ids: "input_ids".into(),
            mask: Some("attention_mask".into())
        }
    );
    let g = t.model.graph.unwrap();
    assert_eq!(
        names(g.node.iter().map(|n| &n.name)),
        ["t0", "t1", "t2", "t3"]
    );
}

#[test]
fn a_model_that_is_one_tower_is_unchanged() {
    let mut m = combined();
    let t = select(m.clone(), Path::new("m.onnx"), Tower::Image, None).unwrap();
    m = t.model;
    let again = select(m.clone(), Path::new("m.onnx"), Tower::Image, None).unwrap();
    assert!(again.changes.is_empty(), "{:?}", again.changes);
    assert_eq!(again.model, m);
}

#[test]
fn unknown_output_names_list_the_interface_and_the_flag() {
    let mut m = combined();
    let g = m.graph.as_mut().unwrap();
    g.output[1].name = "a".into();
    g.output[2].name = "b".into();
    g.node[1].output[0] = "b".into();
    g.node[5].output[0] = "a".into();
    let err = select(m.clone(), Path::new("m.onnx"), Tower::Image, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--image-output"), "{err}");
    assert!(
        err.contains("pixel_values float [image_batch, 3, 2, 2]"),
        "{err}"
    );
    assert!(err.contains("outputs: logits_per_image"), "{err}");
    let t = select(m.clone(), Path::new("m.onnx"), Tower::Image, Some("b")).unwrap();
    assert_eq!(t.output, "b");
    let err = select(m, Path::new("m.onnx"), Tower::Image, Some("c")).unwrap_err();
    assert!(matches!(err, TowerError::UnknownOutput { .. }), "{err}");
}

#[test]
fn the_wrong_tower_is_refused_with_its_inputs() {
    let err = select(
        combined(),
        Path::new("m.onnx"),
        Tower::Image,
        Some("text_embeds"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("reads 2 inputs (input_ids, attention_mask)"),
        "{err}"
    );
    let err = select(
        combined(),
        Path::new("m.onnx"),
        Tower::Text,
        Some("image_embeds"),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("expected int64 (or int32) token ids"), "{err}");
}

#[test]
fn f16_weights_casts_and_types_are_widened_exactly() {
    let mut m = combined();
    let g = m.graph.as_mut().unwrap();
    let halves = [half::f16::from_f32(1.5), half::f16::from_f32(-2.0)];
    g.initializer.push(TensorProto {
        name: "w16".into(),
        dims: vec![2],
        data_type: DataType::Float16 as i32,
        raw_data: halves
            .iter()
            .flat_map(|h| h.to_bits().to_le_bytes())
            .collect(),
        ..Default::default()
    });
    g.node[0].input[0] = "pixels16".into();
    g.node.insert(
        0,
        node(
            "Cast",
            "c16",
            &["pixel_values"],
            &["pixels16"],
            vec![attr_int("to", DataType::Float16 as i64)],
        ),
    );
    g.node.insert(
        1,
        node("Mul", "use16", &["pixels16", "w16"], &["unused16"], vec![]),
    );
    g.output[2] = value("image_embeds", DataType::Float16, &["b", "4"]);
    let widened = widen_f16(&mut m, Path::new("m.onnx")).unwrap();
    assert_eq!(widened, 3);
    let g = m.graph.unwrap();
    let w = g.initializer.iter().find(|t| t.name == "w16").unwrap();
    assert_eq!(w.data_type, DataType::Float as i32);
    assert_eq!(
        crate::onnx_graph::tensor_f32(w).unwrap().data,
        vec![1.5, -2.0]
    );
    assert_eq!(g.node[0].attribute[0].i, DataType::Float as i64);
    assert_eq!(elem_type(&g.output[2]), Some(DataType::Float as i32));
}

/// A one-node image model reading `input`.
fn image_model(input: ValueInfoProto) -> ModelProto {
    let name = input.name.clone();
    ModelProto {
        graph: Some(GraphProto {
            node: vec![node("Identity", "id", &[&name], &["image_embeds"], vec![])],
            input: vec![input],
            output: vec![value("image_embeds", DataType::Float, &["batch", "3"])],
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn the_image_input_size_is_read_and_other_layouts_are_refused() {
    let path = Path::new("m.onnx");
    let size = |dims: &[&str]| {
        select(
            image_model(value("pixel_values", DataType::Float, dims)),
            path,
            Tower::Image,
            None,
        )
        .map(|t| t.fixed_image_size)
    };
    assert_eq!(size(&["batch", "3", "256", "256"]).unwrap(), Some(256));
    assert_eq!(size(&["batch", "3", "height", "width"]).unwrap(), None);
    assert_eq!(
        size(&["batch", "channels", "height", "width"]).unwrap(),
        None
    );
    for dims in [
        &["batch", "224", "224", "3"][..], // channels last
        &["batch", "3", "224", "256"],     // not square
        &["batch", "1", "224", "224"],     // one channel
        &["batch", "3", "224"],            // rank 3
    ] {
        let e = size(dims).unwrap_err().to_string();
        assert!(e.contains("[batch, 3, S, S]"), "{dims:?}: {e}");
    }
}
