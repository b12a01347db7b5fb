//! Runs by prompt length against runs over all 77 positions, on every committed
//! text tower: the label tables must agree within [`BY_LENGTH_TOLERANCE`].

use std::path::PathBuf;

use super::sequence_axis::{free_sequence_axis, SequenceAxisRewrite};
use super::*;
use crate::prompts::{load_templates, read_labels};
use crate::tokenizer::ClipTokenizer;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(path)
}

/// Every committed text tower that runs in batches (the hub's dynamic int8 towers
/// run one prompt over 77 positions either way).
const TOWERS: &[&str] = &[
    "models/shapes/text_encoder.onnx",
    "models/fixtures/hf-tiny/text_encoder.onnx",
    "models/fixtures/openclip-tiny/text_encoder.onnx",
    "models/fixtures/hub-split/text_model.onnx",
    "models/fixtures/hub-split/text_model_fp16.onnx",
    "models/fixtures/hub-combined/model.onnx",
];

/// The shapes labels, and two that make prompts of 20-odd tokens and of more than
/// 77 (truncated, so a run by length covers all 77 positions too).
fn labels() -> Vec<String> {
    let mut labels = read_labels(&repo("models/shapes/labels.txt")).expect("labels");
    labels.push("small red triangle on a large blue square next to a green circle".into());
    labels.push(["very"; 90].join(" ") + " long label");
    labels
}

fn table(encoder: &TextEncoder, threads: usize) -> Vec<Vec<f32>> {
    table_with(encoder, threads, PrefixUse::Auto)
}

fn table_with(encoder: &TextEncoder, threads: usize, prefixes: PrefixUse) -> Vec<Vec<f32>> {
    let tokenizer = ClipTokenizer::new().expect("tokenizer");
    let templates = load_templates("imagenet80").expect("templates");
    embed_labels_with(
        encoder,
        &tokenizer,
        &labels(),
        &templates,
        threads,
        prefixes,
        |_| {},
    )
    .expect("embed")
}

fn max_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0, f32::max)
}

#[test]
fn runs_by_length_embed_labels_as_runs_over_77_positions_on_every_tower() {
    for tower in TOWERS {
        let path = repo(tower);
        let by_length = TextEncoder::load(&path, None).expect("load");
        assert_eq!(
            by_length.schedule(),
            Schedule::ByLength,
            "{tower}: fell back to 77 positions (see the warning above)"
        );
        assert!(
            by_length.caches_prefixes(),
            "{tower}: template prefixes are not cached (see the log above)"
        );
        let full = TextEncoder::load_with(&path, None, Schedule::FullLength).expect("load");
        assert_eq!(full.schedule(), Schedule::FullLength);
        let reference = table_with(&full, 2, PrefixUse::Never);
        for prefixes in [PrefixUse::Never, PrefixUse::Always] {
            let diff = max_difference(&table_with(&by_length, 2, prefixes), &reference);
            eprintln!("{tower}: {prefixes:?}: label tables differ by at most {diff:.2e}");
            assert!(
                diff <= BY_LENGTH_TOLERANCE,
                "{tower}: runs by length ({prefixes:?} cached prefixes) differ from runs over \
                 77 positions by {diff:e}"
            );
        }
    }
}

#[test]
fn single_prompts_embed_as_over_77_positions() {
    let tokenizer = ClipTokenizer::new().expect("tokenizer");
    let rows: Vec<_> = ["a", "a photo of a red circle.", &labels()[31]]
        .iter()
        .map(|t| tokenizer.tokenize_row(t))
        .collect();
    for tower in [
        "models/fixtures/hf-tiny/text_encoder.onnx",
        "models/fixtures/openclip-tiny/text_encoder.onnx",
    ] {
        let path = repo(tower);
        let by_length = TextEncoder::load(&path, None).expect("load");
        let full = TextEncoder::load_with(&path, None, Schedule::FullLength).expect("load");
        let mut state = by_length.state().expect("state");
        for row in &rows {
            // One prompt per run: each at exactly its own length.
            let a = by_length.encode(std::slice::from_ref(row)).expect("encode");
            let b = full.encode(std::slice::from_ref(row)).expect("encode");
            let diff = max_normalized_difference(&a[0], &b[0], by_length.dim());
            let count = row.len();
            assert!(
                diff <= BY_LENGTH_TOLERANCE,
                "{tower}: {count} tokens: {diff:e}"
            );
            // After the shortest and the longest prefix (the 77-token prompt, cut
            // without an EOT, then runs its last position alone).
            for start in [1, count - 1] {
                let prefix = by_length
                    .prefix(&mut state, &row.ids()[..start])
                    .expect("prefix");
                let mut after = vec![0.0; by_length.dim()];
                by_length
                    .run_after(&mut state, &prefix, &[row], &mut after)
                    .expect("run after the prefix");
                let diff = max_normalized_difference(&after, &b[0], by_length.dim());
                assert!(
                    diff <= BY_LENGTH_TOLERANCE,
                    "{tower}: {count} tokens after {start}: {diff:e}"
                );
            }
        }
        // A prompt that does not continue the prefix is refused, not mis-embedded.
        let prefix = by_length
            .prefix(&mut state, &rows[1].ids()[..3])
            .expect("prefix");
        let mut out = vec![0.0; by_length.dim()];
        let refused = by_length.run_after(&mut state, &prefix, &[&rows[0]], &mut out);
        assert!(
            matches!(refused, Err(TextEncoderError::Output(ref m)) if m.contains("does not continue")),
            "{tower}: {refused:?}"
        );
    }
}

#[test]
fn the_table_does_not_depend_on_the_number_of_threads() {
    let encoder = TextEncoder::load(
        &repo("models/fixtures/openclip-tiny/text_encoder.onnx"),
        None,
    )
    .expect("load");
    for prefixes in [PrefixUse::Never, PrefixUse::Always] {
        let one = table_with(&encoder, 1, prefixes);
        assert_eq!(one, table_with(&encoder, 3, prefixes), "{prefixes:?}");
    }
}

#[test]
fn openclip_constants_follow_the_length_and_hugging_face_needs_nothing() {
    let mut openclip =
        crate::onnx_graph::load_model(&repo("models/fixtures/openclip-tiny/text_encoder.onnx"))
            .expect("load");
    let done = free_sequence_axis(openclip.graph.as_mut().expect("graph"), "input_ids");
    // The position embedding and one causal mask per block (two blocks); the
    // attention reshapes' 77 twice per block.
    assert_eq!(
        done,
        SequenceAxisRewrite {
            sliced: 3,
            shapes: 4
        }
    );
    let mut hf = crate::onnx_graph::load_model(&repo("models/fixtures/hf-tiny/text_encoder.onnx"))
        .expect("load");
    let done = free_sequence_axis(hf.graph.as_mut().expect("graph"), "input_ids");
    assert!(!done.changed(), "{done:?}");
}

/// OpenCLIP's tiny tower without its causal mask reads every position: the probe
/// check must catch it and fall back to 77 positions, so the table is the one a
/// full-length run gives.
#[test]
fn a_tower_that_reads_past_the_prompt_runs_over_77_positions() {
    use tract_onnx::pb::tensor_proto::DataType;
    let mut model =
        crate::onnx_graph::load_model(&repo("models/fixtures/openclip-tiny/text_encoder.onnx"))
            .expect("load");
    let graph = model.graph.as_mut().expect("graph");
    let mut masks = 0;
    for node in graph.node.iter_mut().filter(|n| n.op_type == "Constant") {
        for attr in &mut node.attribute {
            if let Some(t) = attr.t.as_mut() {
                if t.dims == [1, 1, 77, 77] && t.data_type == DataType::Float as i32 {
                    t.raw_data = vec![0; 77 * 77 * 4];
                    t.float_data.clear();
                    masks += 1;
                }
            }
        }
    }
    assert_eq!(masks, 2, "the fixture's causal masks");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bidirectional.onnx");
    crate::onnx_graph::save_model(&model, &path).expect("save");
    let encoder = TextEncoder::load(&path, None).expect("load");
    assert_eq!(encoder.schedule(), Schedule::FullLength);
    assert!(!encoder.caches_prefixes());
    let full = TextEncoder::load_with(&path, None, Schedule::FullLength).expect("load");
    assert!(max_difference(&table(&encoder, 2), &table(&full, 2)) <= BY_LENGTH_TOLERANCE);
}

#[test]
fn dynamic_int8_towers_run_one_prompt_over_77_positions() {
    let path = repo("models/fixtures/hub-split/text_model_quantized.onnx");
    let encoder = TextEncoder::load(&path, None).expect("load");
    assert_eq!(
        (encoder.schedule(), encoder.max_batch()),
        (Schedule::FullLength, 1)
    );
}
