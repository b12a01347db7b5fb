//! The CLIP text encoder (fp32 ONNX, run with tract) and the label-embedding
//! recipe: each label through each template, embed, L2-normalise, average over the
//! templates, normalise again.

use std::path::{Path, PathBuf};

use clip_edge_core::scoring::l2_normalize;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::tokenizer::{ClipTokenizer, CONTEXT_LENGTH, EOT, SOT};
use crate::tower::{TowerError, TowerInputs};

/// Number of prompts run through the text encoder at once.
pub const BATCH: usize = 16;

/// What can go wrong with the text encoder. tract's own error, with its chain of
/// causes, is the [`source`](std::error::Error::source) where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TextEncoderError {
    /// tract could not parse, type or optimise the model.
    #[error("{}: {what}", path.display())]
    Load {
        /// The model file.
        path: PathBuf,
        /// The step that failed.
        what: String,
        /// tract's error.
        #[source]
        source: TractError,
    },
    /// The model loads but lacks the text-encoder interface.
    #[error("{}: {problem}", path.display())]
    Interface {
        /// The model file.
        path: PathBuf,
        /// What is wrong with its inputs or outputs.
        problem: String,
    },
    /// The file is unreadable, not ONNX, or not one text tower and cannot be cut
    /// down to one.
    #[error(transparent)]
    Tower(Box<TowerError>),
    /// Running the model failed.
    #[error("running the text encoder failed")]
    Run {
        /// tract's error.
        #[source]
        source: TractError,
    },
    /// The text encoder was asked for, or gave, something unusable.
    #[error("text encoder: {0}")]
    Output(String),
}

impl From<TowerError> for TextEncoderError {
    fn from(e: TowerError) -> Self {
        TextEncoderError::Tower(Box::new(e))
    }
}

/// A CLIP text encoder: `input_ids` `[batch, 77]` (and, in hub exports, an
/// `attention_mask` of the same shape) → `text_embeds` `[batch, dim]`.
pub struct TextEncoder {
    plan: std::sync::Arc<TypedRunnableModel>,
    input_type: DatumType,
    /// The attention mask's type and position among the inputs, when the model
    /// reads one.
    mask: Option<(DatumType, usize)>,
    /// Prompts per run: [`BATCH`], or 1 for models whose output depends on the rest
    /// of the batch (see [`crate::tower::TowerModel::batch_dependent`]).
    batch: usize,
    dim: usize,
}

impl TextEncoder {
    /// Loads the text tower of the ONNX file at `path` (one tower, a split
    /// `text_model.onnx` or a combined `model.onnx`: see [`crate::tower`]) with a
    /// fixed batch of [`BATCH`] and a sequence of [`CONTEXT_LENGTH`]; `output`
    /// names the embedding output when it has no known name.
    pub fn load(path: &Path, output: Option<&str>) -> Result<Self, TextEncoderError> {
        let tower = crate::tower::load(path, crate::tower::Tower::Text, output)?;
        let TowerInputs::Text { ids, mask } = &tower.inputs else {
            return Err(TextEncoderError::Output("not a text tower".into()));
        };
        let batch = if tower.batch_dependent {
            log::info!(
                "{}: dynamic int8 quantizes a whole batch with one scale: one prompt per run",
                path.display()
            );
            1
        } else {
            BATCH
        };
        Self::from_proto(&tower.model, path, ids, mask.as_deref(), batch)
    }

    /// Loads a model with one output whose inputs are `ids` and `mask`; `path`
    /// names the file in errors.
    fn from_proto(
        proto: &tract_onnx::pb::ModelProto,
        path: &Path,
        ids: &str,
        mask: Option<&str>,
        batch: usize,
    ) -> Result<Self, TextEncoderError> {
        let model_err = |problem: String| TextEncoderError::Interface {
            path: path.to_path_buf(),
            problem,
        };
        let load_err = |what: String| {
            move |source: TractError| TextEncoderError::Load {
                path: path.to_path_buf(),
                what,
                source,
            }
        };
        let mut model = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .map_err(load_err("cannot load the ONNX model".into()))?;
        let names: Vec<String> = model
            .input_outlets()
            .map_err(load_err("cannot list the inputs".into()))?
            .iter()
            .map(|o| model.node(o.node).name.clone())
            .collect();
        let position = |name: &str| {
            names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| model_err(format!("has no input {name:?} (inputs: {names:?})")))
        };
        let ids_at = position(ids)?;
        let mask_at = mask.map(position).transpose()?;
        if model.outputs.len() != 1 || names.len() != 1 + mask_at.is_some() as usize {
            return Err(model_err(format!(
                "expected token ids{} and one output (embedding), found inputs {names:?} and {} outputs",
                if mask.is_some() { ", an attention mask" } else { "" },
                model.outputs.len()
            )));
        }
        let integer_type = |at: usize, what: &str| {
            let declared = model
                .input_fact(at)
                .ok()
                .and_then(|f| f.datum_type.concretize());
            match declared {
                Some(dt) if dt == i32::datum_type() || dt == i64::datum_type() => Ok(dt),
                None => Ok(i64::datum_type()),
                Some(other) => Err(model_err(format!(
                    "{what} input is {other:?}, expected int64 (or int32)"
                ))),
            }
        };
        let input_type = integer_type(ids_at, "token ids")?;
        let mask = match mask_at {
            Some(at) => Some((integer_type(at, "attention mask")?, at)),
            None => None,
        };
        for (at, dt) in [(ids_at, input_type)]
            .into_iter()
            .chain(mask.map(|(dt, at)| (at, dt)))
        {
            model
                .set_input_fact(at, InferenceFact::dt_shape(dt, [batch, CONTEXT_LENGTH]))
                .map_err(load_err("cannot set the input".into()))?;
        }
        let typed = model.into_optimized().map_err(load_err(format!(
            "does not accept [{batch}, {CONTEXT_LENGTH}] token ids"
        )))?;
        let output = typed
            .output_fact(0)
            .map_err(load_err("cannot type the output".into()))?;
        let dim = match output.shape.as_concrete() {
            Some([b, dim]) if *b == batch && output.datum_type == f32::datum_type() => *dim,
            other => {
                return Err(model_err(format!(
                    "output is {:?} {:?}, expected f32 [batch, embedding_dim]",
                    output.datum_type,
                    other.map(|s| s.to_vec())
                )))
            }
        };
        let plan = typed
            .into_runnable()
            .map_err(load_err("cannot plan the model".into()))?;
        Ok(TextEncoder {
            plan,
            input_type,
            mask,
            batch,
            dim,
        })
    }

    /// Length of the text embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Raw embeddings of up to [`BATCH`] tokenized prompts.
    pub fn encode_batch(
        &self,
        rows: &[[i64; CONTEXT_LENGTH]],
    ) -> Result<Vec<Vec<f32>>, TextEncoderError> {
        if rows.is_empty() || rows.len() > BATCH {
            return Err(TextEncoderError::Output(format!(
                "batch of {} prompts, expected 1..={BATCH}",
                rows.len()
            )));
        }
        let mut embeddings = Vec::with_capacity(rows.len());
        for run_rows in rows.chunks(self.batch) {
            embeddings.extend(self.run(run_rows)?);
        }
        Ok(embeddings)
    }

    /// One run of the plan on up to `self.batch` prompts.
    fn run(&self, rows: &[[i64; CONTEXT_LENGTH]]) -> Result<Vec<Vec<f32>>, TextEncoderError> {
        let run = |source: TractError| TextEncoderError::Run { source };
        let batch = self.batch;
        // Pad the batch with an empty prompt; the padding rows' outputs are dropped.
        let mut ids = Vec::with_capacity(batch * CONTEXT_LENGTH);
        for i in 0..batch {
            match rows.get(i) {
                Some(row) => ids.extend_from_slice(row),
                None => {
                    let mut pad = [0i64; CONTEXT_LENGTH];
                    pad[0] = SOT;
                    pad[1] = EOT;
                    ids.extend_from_slice(&pad);
                }
            }
        }
        let tensor = Tensor::from_shape(&[batch, CONTEXT_LENGTH], &ids).map_err(run)?;
        let tensor = tensor
            .cast_to_dt(self.input_type)
            .map_err(run)?
            .into_owned();
        let mut inputs = tvec!(tensor.into_tvalue());
        if let Some((dt, at)) = self.mask {
            // 1 up to and including the EOT, 0 on the padding after it: the mask a
            // Hugging Face tokenizer gives with the same padding.
            let mask: Vec<i64> = ids
                .chunks_exact(CONTEXT_LENGTH)
                .flat_map(|row| {
                    let end = row
                        .iter()
                        .position(|&t| t == EOT)
                        .unwrap_or(CONTEXT_LENGTH - 1);
                    (0..CONTEXT_LENGTH).map(move |i| (i <= end) as i64)
                })
                .collect();
            let mask = Tensor::from_shape(&[batch, CONTEXT_LENGTH], &mask)
                .and_then(|t| Ok(t.cast_to_dt(dt)?.into_owned()))
                .map_err(run)?;
            inputs.insert(at, mask.into_tvalue());
        }
        let outputs = self.plan.run(inputs).map_err(run)?;
        let view = outputs[0].try_as_plain_ram().map_err(run)?;
        let out = view.as_slice::<f32>().map_err(run)?;
        Ok(out
            .chunks_exact(self.dim)
            .take(rows.len())
            .map(|r| r.to_vec())
            .collect())
    }
}

/// Embeds each label through each template and returns one normalised row per
/// label. `progress` is called with the number of prompts done after each batch.
pub fn embed_labels(
    encoder: &TextEncoder,
    tokenizer: &ClipTokenizer,
    labels: &[String],
    templates: &[String],
    mut progress: impl FnMut(usize),
) -> Result<Vec<Vec<f32>>, TextEncoderError> {
    let prompts: Vec<(usize, String)> = labels
        .iter()
        .enumerate()
        .flat_map(|(i, label)| {
            templates
                .iter()
                .map(move |t| (i, crate::prompts::fill(t, label)))
        })
        .collect();
    let mut sums = vec![vec![0.0f32; encoder.dim()]; labels.len()];
    let mut done = 0;
    for chunk in prompts.chunks(BATCH) {
        let rows: Vec<[i64; CONTEXT_LENGTH]> =
            chunk.iter().map(|(_, p)| tokenizer.tokenize(p)).collect();
        for ((label, prompt), mut emb) in chunk.iter().zip(encoder.encode_batch(&rows)?) {
            if !l2_normalize(&mut emb) {
                return Err(TextEncoderError::Output(format!(
                    "embedding of prompt {prompt:?} is zero or not finite"
                )));
            }
            sums[*label].iter_mut().zip(&emb).for_each(|(s, e)| *s += e);
        }
        done += chunk.len();
        progress(done);
    }
    for (label, sum) in labels.iter().zip(sums.iter_mut()) {
        if !l2_normalize(sum) {
            return Err(TextEncoderError::Output(format!(
                "templates of label {label:?} average to a zero embedding"
            )));
        }
    }
    Ok(sums)
}
