//! The CLIP text encoder (fp32 ONNX, run with tract) and the label-embedding
//! recipe: each label through each template, embed, L2-normalise, average over the
//! templates, normalise again.

use std::path::{Path, PathBuf};

use clip_edge_core::scoring::l2_normalize;
use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::tokenizer::{ClipTokenizer, CONTEXT_LENGTH, EOT, SOT};

/// Number of prompts run through the text encoder at once.
pub const BATCH: usize = 16;

/// What can go wrong with the text encoder. tract's own error, with its chain of
/// causes, is the [`source`](std::error::Error::source) where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TextEncoderError {
    /// The file is missing or unreadable.
    #[error("{}: {source}", path.display())]
    Io {
        /// The model file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
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

/// A CLIP text encoder: `input_ids` `[batch, 77]` → `text_embeds` `[batch, dim]`.
pub struct TextEncoder {
    plan: std::sync::Arc<TypedRunnableModel>,
    input_type: DatumType,
    dim: usize,
}

impl TextEncoder {
    /// Loads the ONNX text encoder at `path` with a fixed batch of [`BATCH`].
    pub fn load(path: &Path) -> Result<Self, TextEncoderError> {
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
        let bytes = std::fs::read(path).map_err(|source| TextEncoderError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut bytes.as_slice())
            .map_err(load_err("cannot load the ONNX model".into()))?;
        if model.inputs.len() != 1 || model.outputs.len() != 1 {
            return Err(model_err(format!(
                "expected one input (token ids) and one output (embedding), found {} and {}",
                model.inputs.len(),
                model.outputs.len()
            )));
        }
        let declared = model
            .input_fact(0)
            .ok()
            .and_then(|f| f.datum_type.concretize());
        let input_type = match declared {
            Some(dt) if dt == i32::datum_type() => dt,
            Some(dt) if dt == i64::datum_type() => dt,
            None => i64::datum_type(),
            Some(other) => {
                return Err(model_err(format!(
                    "input is {other:?}, expected int64 (or int32) token ids"
                )))
            }
        };
        model
            .set_input_fact(
                0,
                InferenceFact::dt_shape(input_type, [BATCH, CONTEXT_LENGTH]),
            )
            .map_err(load_err("cannot set the input".into()))?;
        let typed = model.into_optimized().map_err(load_err(format!(
            "does not accept [{BATCH}, {CONTEXT_LENGTH}] token ids"
        )))?;
        let output = typed
            .output_fact(0)
            .map_err(load_err("cannot type the output".into()))?;
        let dim = match output.shape.as_concrete() {
            Some([b, dim]) if *b == BATCH && output.datum_type == f32::datum_type() => *dim,
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
        let run = |source: TractError| TextEncoderError::Run { source };
        if rows.is_empty() || rows.len() > BATCH {
            return Err(TextEncoderError::Output(format!(
                "batch of {} prompts, expected 1..={BATCH}",
                rows.len()
            )));
        }
        // Pad the batch with an empty prompt; the padding rows' outputs are dropped.
        let mut ids = Vec::with_capacity(BATCH * CONTEXT_LENGTH);
        for i in 0..BATCH {
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
        let tensor = Tensor::from_shape(&[BATCH, CONTEXT_LENGTH], &ids).map_err(run)?;
        let tensor = tensor
            .cast_to_dt(self.input_type)
            .map_err(run)?
            .into_owned();
        let outputs = self.plan.run(tvec!(tensor.into_tvalue())).map_err(run)?;
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
