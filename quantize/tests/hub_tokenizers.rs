//! BLIP's and SigLIP's text side: the model's own `tokenizer.json` with the
//! family's padding gives the ids and attention mask of the Python tokenizer a
//! user runs (`tests/fixtures/tokenizers/parity.json`, made by its
//! `make_parity.py`), and the tiny text towers embed those rows as ONNX Runtime
//! does (`models/fixtures/{blip,siglip}-tiny/ort_text_embeds.npy`, made by
//! `models/export/export_text.py`).

use std::path::{Path, PathBuf};

use clip_edge_bundle::ModelFamily;
use clip_quantize::model_description::DescribeError;
use clip_quantize::text_description::{describe_text, family_spec, TextRequest, TokenizerChoice};
use clip_quantize::text_encoder::TextEncoder;
use clip_quantize::tokenizer::{Canonicalize, HubTokenizer, PromptTokenizer, TokenRow};

mod common;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizers")
}

#[derive(serde::Deserialize)]
struct Case {
    family: String,
    tokenizer: String,
    max_length: usize,
    pad_id: u32,
    text: String,
    input_ids: Vec<u32>,
    attention_mask: Vec<u32>,
}

#[derive(serde::Deserialize)]
struct Parity {
    cases: Vec<Case>,
}

fn family(name: &str) -> ModelFamily {
    serde_json::from_value(serde_json::Value::String(name.into())).expect("a family")
}

/// Every case, tokenized with the family's spec (which must agree with the
/// fixture's length and pad id), against the Python tokenizer's ids and mask.
#[test]
fn hub_tokenizers_match_the_python_tokenizers() {
    let text = std::fs::read_to_string(fixtures().join("parity.json")).expect("parity.json");
    let parity: Parity = serde_json::from_str(&text).expect("parity.json parses");
    let mut checked = std::collections::BTreeMap::<String, usize>::new();
    let mut failures = Vec::new();
    for case in &parity.cases {
        let spec = family_spec(family(&case.family)).expect("a family with a tokenizer.json");
        assert_eq!(
            (spec.context_length, spec.pad_id),
            (case.max_length, case.pad_id),
            "{}: the family's length and pad id",
            case.family
        );
        let tokenizer = HubTokenizer::load(&fixtures().join(&case.tokenizer), spec).expect("loads");
        let row = tokenizer.tokenize_row(&case.text).expect("tokenizes");
        let ids: Vec<u32> = row.ids().iter().map(|&id| id as u32).collect();
        let mask: Vec<u32> = (0..row.ids().len())
            .map(|i| (i < row.len()) as u32)
            .collect();
        if ids != case.input_ids || mask != case.attention_mask {
            failures.push(format!(
                "{} {:?}:\n  expected {:?} {:?}\n  got      {ids:?} {mask:?}",
                case.family, case.text, case.input_ids, case.attention_mask
            ));
        }
        *checked.entry(case.family.clone()).or_default() += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for family in ["blip", "siglip"] {
        assert!(
            checked.get(family).copied().unwrap_or(0) >= 15,
            "{family}: only {checked:?} cases"
        );
    }
}

#[test]
fn siglip_canonicalizes_as_siglip_tokenizer_does() {
    let c = Canonicalize::SigLip;
    assert_eq!(
        c.apply("  A Photo,\tOf\n\nA \"Dog\"!  "),
        "a photo of a dog"
    );
    assert_eq!(c.apply("don't stop!!!"), "dont stop");
    assert_eq!(c.apply("Ångström — café"), "ångström — café");
    assert_eq!(c.apply("..."), "");
    assert_eq!(Canonicalize::None.apply(" A, b "), " A, b ");
}

fn npy_rows(path: &Path) -> Vec<Vec<f32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let npy = npyz::NpyFile::new(&bytes[..]).expect("an .npy file");
    let shape = npy.shape().to_vec();
    let values: Vec<f32> = npy.into_vec().expect("f32 values");
    values
        .chunks(shape[1] as usize)
        .map(<[f32]>::to_vec)
        .collect()
}

/// The tiny BLIP and SigLIP text towers, run by tract on rows from their own
/// tokenizer.json, give ONNX Runtime's embeddings; the description is read from
/// the fixture folder (its model.json's family, the tokenizer.json beside).
#[test]
fn blip_and_siglip_text_towers_embed_as_onnx_runtime() {
    #[derive(serde::Deserialize)]
    struct TextJson {
        prompts: Vec<String>,
        prompt_input_ids: Vec<Vec<i64>>,
    }
    for name in ["blip-tiny", "siglip-tiny"] {
        let dir = common::repo().join("models/fixtures").join(name);
        let model = dir.join("text_encoder.onnx");
        let description = describe_text(&model, &TextRequest::default()).expect("described");
        let TokenizerChoice::Hub { file, spec } = &description.tokenizer else {
            panic!("{name}: {description:?}");
        };
        let tokenizer = HubTokenizer::load(file, spec.clone()).expect("tokenizer");
        let meta: TextJson = serde_json::from_str(
            &std::fs::read_to_string(dir.join("text.json")).expect("text.json"),
        )
        .expect("text.json parses");
        let rows: Vec<TokenRow> = meta
            .prompts
            .iter()
            .map(|p| tokenizer.tokenize_row(p).expect("tokenizes"))
            .collect();
        for (row, ids) in rows.iter().zip(&meta.prompt_input_ids) {
            assert_eq!(row.ids(), &ids[..], "{name}: ids");
        }
        let encoder = TextEncoder::load_padded(&model, None, spec.context_length).expect("loads");
        let ours = encoder.encode(&rows).expect("embeds");
        let reference = npy_rows(&dir.join("ort_text_embeds.npy"));
        assert_eq!(ours.len(), reference.len(), "{name}");
        for (prompt, (a, b)) in meta.prompts.iter().zip(ours.iter().zip(&reference)) {
            let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                diff <= 1e-5 * scale.max(1.0),
                "{name} {prompt:?}: differs from ONNX Runtime by {diff:e} (scale {scale})"
            );
        }
    }
}

#[test]
fn text_towers_without_what_they_need_are_refused_by_name() {
    let blip = common::repo().join("models/fixtures/blip-tiny/text_encoder.onnx");
    // A CLIP family with a tokenizer.json asked for.
    let err = describe_text(
        &blip,
        &TextRequest {
            family: Some(ModelFamily::Clip),
            tokenizer: Some(Path::new("tokenizer.json")),
            ..TextRequest::default()
        },
    )
    .expect_err("refused");
    assert!(err.to_string().contains("--family blip or siglip"), "{err}");
    // A BLIP tower with no tokenizer.json anywhere near it.
    let dir = common::scratch("hub-tokenizers-bare");
    std::fs::create_dir_all(dir.join("onnx")).expect("mkdir");
    let bare = dir.join("onnx/text_encoder.onnx");
    std::fs::copy(&blip, &bare).expect("copy");
    let err = describe_text(
        &bare,
        &TextRequest {
            family: Some(ModelFamily::Blip),
            ..TextRequest::default()
        },
    )
    .expect_err("refused");
    assert!(
        matches!(err, DescribeError::Model { .. }) && err.to_string().contains("--tokenizer FILE"),
        "{err}"
    );
    // A non-CLIP tokenizer.json beside, and nothing saying the family: no silent
    // CLIP tokenizer.
    std::fs::copy(
        fixtures().join("blip/tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .expect("copy");
    let err = describe_text(&bare, &TextRequest::default()).expect_err("refused");
    assert!(err.to_string().contains("--family blip or siglip"), "{err}");
    // ... and said, it is found one folder up.
    let found = describe_text(
        &bare,
        &TextRequest {
            family: Some(ModelFamily::Blip),
            ..TextRequest::default()
        },
    )
    .expect("described");
    assert_eq!(
        found.tokenizer,
        TokenizerChoice::Hub {
            file: dir.join("tokenizer.json"),
            spec: family_spec(ModelFamily::Blip).expect("spec"),
        }
    );
}

/// tract's Gather does not check its indices (an id past the table panics, or
/// reads another row): ids a tower has no row for are refused by name, whatever
/// the tokenizer.
#[test]
fn ids_outside_the_towers_vocabulary_are_refused_not_run() {
    for (tower, context, vocab) in [
        ("models/fixtures/blip-tiny/text_encoder.onnx", 35, 30524),
        ("models/fixtures/siglip-tiny/text_encoder.onnx", 64, 32000),
        ("models/fixtures/hf-tiny/text_encoder.onnx", 77, 49408),
        ("models/fixtures/openclip-tiny/text_encoder.onnx", 77, 49408),
    ] {
        let path = common::repo().join(tower);
        let encoder = match context {
            77 => TextEncoder::load(&path, None),
            _ => TextEncoder::load_padded(&path, None, context),
        }
        .expect("loads");
        let mut ids = vec![1i64; context];
        ids[1] = vocab as i64;
        let err = encoder
            .encode(&[TokenRow::new(ids.clone(), 3)])
            .expect_err("refused");
        assert!(
            err.to_string()
                .contains(&format!("token id {vocab} is outside")),
            "{tower}: {err}"
        );
        ids[1] = vocab as i64 - 1;
        encoder
            .encode(&[TokenRow::new(ids, 3)])
            .unwrap_or_else(|e| panic!("{tower}: the last id: {e}"));
    }
}
