//! The CLIP text encoder (fp32 ONNX, run with tract) and the label-embedding
//! recipe: each label through each template, embed, L2-normalise, average over the
//! templates, normalise again.
//!
//! Most prompts end (EOT) within 20 tokens, and a CLIP text tower's embedding is
//! read at the EOT, which its causal mask keeps blind to the positions after it. So
//! the encoder is loaded once with its batch and sequence axes symbolic
//! ([`sequence_axis`] frees the axis in exports traced at 77), prompts are sorted by
//! length, and each run covers only its longest prompt: [`Schedule::ByLength`].
//! The tokens a template's prompts share (`SOT a photo of a`) can go through once:
//! [`prefix_cache`] makes the tower give, and take, the keys and values of a prefix,
//! and [`TextEncoder::run_after`] runs only the tokens after it.
//! Runs go to worker threads, each with its own tract state ([`embed`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_hir::infer::Factoid;

use crate::tokenizer::{TokenRow, TokenizerError, CONTEXT_LENGTH, EOT, SOT};
use crate::tower::{TowerError, TowerInputs};

mod embed;
pub mod prefix_cache;
mod probe;
pub mod sequence_axis;
#[cfg(test)]
mod tests;

pub use embed::{embed_labels, embed_labels_with, PrefixUse};

/// Most prompts in one run of the text encoder.
pub const BATCH: usize = 32;

/// Largest difference allowed between an embedding computed on its own length and
/// on all 77 positions (L2-normalised, per component) before a run by length is
/// trusted; the label table's promise.
pub const BY_LENGTH_TOLERANCE: f32 = 1e-5;

/// How the text encoder lays prompts out into runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Each run covers only as many positions as its longest prompt (EOT included):
    /// exact for towers whose embedding depends only on the positions up to the
    /// EOT (a causal mask, or an attention mask), which [`TextEncoder::load`]
    /// checks on probe prompts before it chooses this.
    ByLength,
    /// Every run covers all 77 positions.
    FullLength,
}

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
    /// A prompt could not be tokenized.
    #[error(transparent)]
    Tokenize(#[from] TokenizerError),
}

impl From<TowerError> for TextEncoderError {
    fn from(e: TowerError) -> Self {
        TextEncoderError::Tower(Box::new(e))
    }
}

/// The shape a plan is built for: a fixed batch (short runs are padded with empty
/// prompts), and a sequence of any length or of the whole context.
#[derive(Debug, Clone, Copy)]
struct RunShape {
    batch: usize,
    any_length: bool,
    /// Positions of a whole row (CLIP: 77).
    context: usize,
}

/// A CLIP text encoder: `input_ids` `[batch, length]` (and, in hub exports, an
/// `attention_mask` of the same shape) → `text_embeds` `[batch, dim]`.
pub struct TextEncoder {
    plan: Arc<TypedRunnableModel>,
    input_type: DatumType,
    /// The attention mask's type and position among the inputs, when the model
    /// reads one.
    mask: Option<(DatumType, usize)>,
    shape: RunShape,
    schedule: Schedule,
    dim: usize,
    /// Rows of the token-embedding table the ids index, when found: an id beyond
    /// it is refused before tract sees it (tract's Gather does not check).
    vocab: Option<usize>,
    /// The plan for prompts after a cached prefix, when the tower has one
    /// ([`prefix_cache`]); it gives each attention's keys and values of its own
    /// tokens after the embedding.
    suffix: Option<SuffixPlan>,
}

/// The plan for prompts after a cached prefix, with the inputs that stand for an
/// empty prefix (keys and values of length 0).
struct SuffixPlan {
    plan: Arc<TypedRunnableModel>,
    empty_past: Vec<Arc<Tensor>>,
}

/// Per-thread run state: tract's buffers, kept from one run to the next.
pub struct RunState {
    main: TypedSimpleState,
    suffix: Option<TypedSimpleState>,
}

/// The keys and values of a prompt prefix at every attention, computed once by
/// [`TextEncoder::prefix`] and shared by the runs of the prompts that start with it.
pub struct Prefix {
    tokens: Vec<i64>,
    past: Vec<Arc<Tensor>>,
}

impl Prefix {
    /// The prefix's tokens, SOT included.
    pub fn tokens(&self) -> &[i64] {
        &self.tokens
    }
}

impl TextEncoder {
    /// Loads the text tower of the ONNX file at `path` (one tower, a split
    /// `text_model.onnx` or a combined `model.onnx`: see [`crate::tower`]); `output`
    /// names the embedding output when it has no known name.
    ///
    /// The tower runs [`Schedule::ByLength`] when its sequence axis can be freed and
    /// probe prompts embed the same (within [`BY_LENGTH_TOLERANCE`]) on their own
    /// length as on 77 positions; otherwise [`Schedule::FullLength`], with a warning
    /// saying why. It [caches prefixes](Self::caches_prefixes) when, besides, its
    /// attention is found and the probe prompts embed the same run after their
    /// shared prefix. Dynamic int8 towers run one prompt at a time over all 77
    /// positions, as their activation scale is taken over the whole input.
    pub fn load(path: &Path, output: Option<&str>) -> Result<Self, TextEncoderError> {
        Self::load_with(path, output, Schedule::ByLength)
    }

    /// [`load`](Self::load), choosing [`Schedule::FullLength`] when `schedule` says
    /// so: every prompt over all 77 positions in fixed batches of [`BATCH`], as
    /// `clip-quantize` did before runs by length (the reference they are tested
    /// against).
    pub fn load_with(
        path: &Path,
        output: Option<&str>,
        schedule: Schedule,
    ) -> Result<Self, TextEncoderError> {
        Self::load_tower(path, output, CONTEXT_LENGTH, schedule)
    }

    /// Loads the text tower of a family whose tokenizer pads every prompt to
    /// `context_length` positions itself (BLIP's 35, SigLIP's 64): each run covers
    /// them all ([`Schedule::FullLength`]; SigLIP reads its embedding at the last
    /// position, padding included) and no prefixes are cached (BLIP's BERT attends
    /// both ways).
    pub fn load_padded(
        path: &Path,
        output: Option<&str>,
        context_length: usize,
    ) -> Result<Self, TextEncoderError> {
        Self::load_tower(path, output, context_length, Schedule::FullLength)
    }

    /// [`load_with`](Self::load_with) on rows of `context` positions (runs by
    /// length are for CLIP's 77 only: the probe prompts are CLIP's ids).
    fn load_tower(
        path: &Path,
        output: Option<&str>,
        context: usize,
        schedule: Schedule,
    ) -> Result<Self, TextEncoderError> {
        let mut tower = crate::tower::load(path, crate::tower::Tower::Text, output)?;
        let TowerInputs::Text { ids, mask } = tower.inputs.clone() else {
            return Err(TextEncoderError::Output("not a text tower".into()));
        };
        let mask = mask.as_deref();
        if tower.batch_dependent {
            log::info!(
                "{}: dynamic int8 takes one activation scale over a whole run: one prompt \
                 per run, over all {context} positions",
                path.display()
            );
            let shape = RunShape {
                batch: 1,
                any_length: false,
                context,
            };
            return Self::from_proto(&tower.model, path, &ids, mask, shape, Schedule::FullLength);
        }
        let fixed = RunShape {
            batch: BATCH,
            any_length: false,
            context,
        };
        if schedule == Schedule::FullLength {
            let shape = fixed;
            return Self::from_proto(&tower.model, path, &ids, mask, shape, Schedule::FullLength);
        }
        // At 77 tokens the rewritten graph computes what the original does (every
        // slice it adds is whole), so the fallback below loads it too.
        if let Some(graph) = tower.model.graph.as_mut() {
            let rewrite = sequence_axis::free_sequence_axis(graph, &ids);
            if rewrite.changed() {
                log::info!(
                    "{}: sequence axis freed ({} constants sliced to the prompt length, {} \
                     shapes made to follow it)",
                    path.display(),
                    rewrite.sliced,
                    rewrite.shapes
                );
            }
        }
        let symbolic = Self::from_proto(
            &tower.model,
            path,
            &ids,
            mask,
            RunShape {
                batch: BATCH,
                any_length: true,
                context,
            },
            Schedule::ByLength,
        );
        let why =
            match symbolic.map(|encoder| (encoder.check_probe(probe::Probe::ByLength), encoder)) {
                Ok((Ok(()), mut encoder)) => {
                    if encoder.caches_prefixes() {
                        if let Err(why) = encoder.check_probe(probe::Probe::AfterPrefix) {
                            log::warn!(
                                "{}: {why}; template prefixes are not cached (slower)",
                                path.display()
                            );
                            encoder.suffix = None;
                        }
                    }
                    return Ok(encoder);
                }
                Ok((Err(why), _)) => why,
                Err(e) => format!("cannot run on fewer than 77 tokens ({})", error_chain(&e)),
            };
        log::warn!(
            "{}: {why}; every prompt runs over all 77 positions (slower)",
            path.display()
        );
        Self::from_proto(&tower.model, path, &ids, mask, fixed, Schedule::FullLength)
    }

    /// Loads a model with one output whose inputs are `ids` and `mask`; `path`
    /// names the file in errors.
    fn from_proto(
        proto: &tract_onnx::pb::ModelProto,
        path: &Path,
        ids: &str,
        mask: Option<&str>,
        shape: RunShape,
        schedule: Schedule,
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
        // The batch stays fixed: tract-hir's Flatten (in the EOT pooling of Hugging
        // Face exports) refuses a shape with two symbols.
        let batch_dim = TDim::from(shape.batch);
        let length_dim: TDim = if shape.any_length {
            model.symbols.sym("length").into()
        } else {
            shape.context.into()
        };
        for (at, dt) in [(ids_at, input_type)]
            .into_iter()
            .chain(mask.map(|(dt, at)| (at, dt)))
        {
            model
                .set_input_fact(
                    at,
                    InferenceFact::dt_shape(dt, [batch_dim.clone(), length_dim.clone()]),
                )
                .map_err(load_err("cannot set the input".into()))?;
        }
        let typed = model
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .map_err(load_err(format!(
                "does not accept [{batch_dim}, {length_dim}] token ids"
            )))?;
        // Runs by length can also cache template prefixes when the attention is
        // found: a second plan takes (and gives) the keys and values of a prefix.
        let suffix = match shape.any_length {
            true => match Self::suffix_plan(&typed, &length_dim) {
                Ok(suffix) => Some(suffix),
                Err(why) => {
                    log::info!(
                        "{}: template prefixes are not cached: {why}",
                        path.display()
                    );
                    None
                }
            },
            false => None,
        };
        let vocab = vocabulary_size(&typed, ids_at);
        let typed = typed.into_optimized().map_err(load_err(format!(
            "does not accept [{batch_dim}, {length_dim}] token ids"
        )))?;
        let output = typed
            .output_fact(0)
            .map_err(load_err("cannot type the output".into()))?;
        let dims: &[TDim] = &output.shape;
        let dim = match dims {
            [b, dim] if *b == batch_dim && output.datum_type == f32::datum_type() => {
                dim.as_i64().and_then(|d| usize::try_from(d).ok())
            }
            _ => None,
        };
        let Some(dim) = dim else {
            return Err(model_err(format!(
                "output is {:?} {:?}, expected f32 [batch, embedding_dim]",
                output.datum_type, output.shape
            )));
        };
        let plan = typed
            .into_runnable()
            .map_err(load_err("cannot plan the model".into()))?;
        Ok(TextEncoder {
            plan,
            input_type,
            mask,
            shape,
            schedule,
            dim,
            vocab,
            suffix,
        })
    }

    /// The optimised suffix plan, or why there is none.
    fn suffix_plan(typed: &TypedModel, length: &TDim) -> Result<SuffixPlan, String> {
        let attention = prefix_cache::find_attention(typed, length)?;
        let model = prefix_cache::with_key_value_outputs(typed.clone(), &attention)
            .and_then(|m| prefix_cache::with_past_key_values(m, &attention, length))
            .and_then(|m| m.into_optimized())
            .map_err(|e| format!("{e:#}"))?;
        // The cached inputs come after the token ids (and the attention mask).
        let empty_prefix =
            SymbolValues::default().with(&model.symbols.sym(prefix_cache::PREFIX_SYMBOL), 0);
        let cached = model.inputs.len() - 2 * attention.len();
        let empty_past = model.inputs[cached..]
            .iter()
            .map(|&outlet| {
                let fact = model.outlet_fact(outlet)?;
                let shape = fact
                    .shape
                    .iter()
                    .map(|d| {
                        let d = d.eval(&empty_prefix);
                        d.as_i64()
                            .and_then(|d| usize::try_from(d).ok())
                            .ok_or_else(|| {
                                TractError::msg(format!("cached keys or values of shape {d}"))
                            })
                    })
                    .collect::<TractResult<Vec<usize>>>()?;
                Ok(Arc::new(Tensor::zero_dt(fact.datum_type, &shape)?))
            })
            .collect::<TractResult<_>>()
            .map_err(|e| format!("{e:#}"))?;
        let plan = model.into_runnable().map_err(|e| format!("{e:#}"))?;
        Ok(SuffixPlan { plan, empty_past })
    }

    /// Length of the text embedding.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// How prompts are laid out into runs.
    pub fn schedule(&self) -> Schedule {
        self.schedule
    }

    /// Most prompts in one run.
    pub fn max_batch(&self) -> usize {
        self.shape.batch
    }

    /// Positions of every row the tower takes.
    pub fn context_length(&self) -> usize {
        self.shape.context
    }

    /// A fresh run state, one per thread.
    pub fn state(&self) -> Result<RunState, TextEncoderError> {
        let run = |source: TractError| TextEncoderError::Run { source };
        Ok(RunState {
            main: TypedSimpleState::new(&self.plan).map_err(run)?,
            suffix: match &self.suffix {
                Some(suffix) => Some(TypedSimpleState::new(&suffix.plan).map_err(run)?),
                None => None,
            },
        })
    }

    /// Raw (not normalised) embeddings of tokenized prompts, in order.
    pub fn encode(&self, rows: &[TokenRow]) -> Result<Vec<Vec<f32>>, TextEncoderError> {
        let mut state = self.state()?;
        let mut out = vec![0.0; rows.len() * self.dim];
        for (run, out) in rows
            .chunks(self.max_batch())
            .zip(out.chunks_mut(self.max_batch() * self.dim))
        {
            let run: Vec<&TokenRow> = run.iter().collect();
            self.run(&mut state, &run, out)?;
        }
        Ok(out.chunks_exact(self.dim).map(<[f32]>::to_vec).collect())
    }

    /// One run of the plan on up to [`max_batch`](Self::max_batch) prompts; writes
    /// their raw embeddings, one row of [`dim`](Self::dim) each, to `out`.
    pub fn run(
        &self,
        state: &mut RunState,
        rows: &[&TokenRow],
        out: &mut [f32],
    ) -> Result<(), TextEncoderError> {
        self.run_with(state, rows, out, self.schedule)
    }

    /// [`run`](Self::run) with the given schedule.
    fn run_with(
        &self,
        state: &mut RunState,
        rows: &[&TokenRow],
        out: &mut [f32],
        schedule: Schedule,
    ) -> Result<(), TextEncoderError> {
        let run = |source: TractError| TextEncoderError::Run { source };
        self.check_run(rows, out)?;
        let length = match schedule {
            Schedule::ByLength if self.shape.any_length => rows
                .iter()
                .map(|r| r.len())
                .max()
                .unwrap_or(self.shape.context),
            _ => self.shape.context,
        };
        let inputs = self.inputs(rows, 0, length, &[])?;
        let outputs = state.main.run(inputs).map_err(run)?;
        self.write_embeddings(&outputs[0], rows.len(), out)
    }

    /// Whether template prefixes can be cached: [`prefix`](Self::prefix) and
    /// [`run_after`](Self::run_after) work.
    pub fn caches_prefixes(&self) -> bool {
        self.suffix.is_some()
    }

    /// Computes the keys and values of `tokens` (a prompt prefix, SOT first, EOT
    /// not included) for [`run_after`](Self::run_after).
    pub fn prefix(&self, state: &mut RunState, tokens: &[i64]) -> Result<Prefix, TextEncoderError> {
        let run = |source: TractError| TextEncoderError::Run { source };
        let (Some(suffix), Some(suffix_state)) = (&self.suffix, state.suffix.as_mut()) else {
            return Err(TextEncoderError::Output(
                "the tower cannot cache prefixes".into(),
            ));
        };
        if tokens.is_empty() || tokens.len() >= self.shape.context {
            return Err(TextEncoderError::Output(format!(
                "a prefix of {} tokens",
                tokens.len()
            )));
        }
        // The suffix plan after an empty prefix gives the prefix's own keys and
        // values.
        let mut ids = vec![0i64; self.shape.context];
        ids[..tokens.len()].copy_from_slice(tokens);
        let row = TokenRow::new(ids, tokens.len());
        let inputs = self.inputs(&[&row], 0, tokens.len(), &suffix.empty_past)?;
        let outputs = suffix_state.run(inputs).map_err(run)?;
        Ok(Prefix {
            tokens: tokens.to_vec(),
            past: outputs
                .into_iter()
                .skip(1)
                .map(|v| v.into_arc_tensor())
                .collect(),
        })
    }

    /// [`run`](Self::run) on prompts that all start with `prefix`, running only
    /// their tokens after it.
    pub fn run_after(
        &self,
        state: &mut RunState,
        prefix: &Prefix,
        rows: &[&TokenRow],
        out: &mut [f32],
    ) -> Result<(), TextEncoderError> {
        let run = |source: TractError| TextEncoderError::Run { source };
        self.check_run(rows, out)?;
        let start = prefix.tokens.len();
        if let Some(row) = rows
            .iter()
            .find(|r| r.len() <= start || r.ids()[..start] != prefix.tokens[..])
        {
            return Err(TextEncoderError::Output(format!(
                "prompt {:?} does not continue the prefix {:?}",
                row.tokens(),
                prefix.tokens
            )));
        }
        let Some(suffix_state) = state.suffix.as_mut() else {
            return Err(TextEncoderError::Output(
                "the tower cannot cache prefixes".into(),
            ));
        };
        let length = rows.iter().map(|r| r.len()).max().unwrap_or(start + 1) - start;
        let inputs = self.inputs(rows, start, length, &prefix.past)?;
        let outputs = suffix_state.run(inputs).map_err(run)?;
        self.write_embeddings(&outputs[0], rows.len(), out)
    }

    /// Errors unless `rows` fit one run, each of the tower's context length, and
    /// `out` holds their embeddings.
    fn check_run(&self, rows: &[&TokenRow], out: &[f32]) -> Result<(), TextEncoderError> {
        if let Some(row) = rows.iter().find(|r| r.ids().len() != self.shape.context) {
            return Err(TextEncoderError::Output(format!(
                "a prompt of {} positions for a tower of {}",
                row.ids().len(),
                self.shape.context
            )));
        }
        if let Some(vocab) = self.vocab {
            let outside = rows
                .iter()
                .flat_map(|r| r.ids())
                .find(|&&id| usize::try_from(id).map_or(true, |id| id >= vocab));
            if let Some(id) = outside {
                return Err(TextEncoderError::Output(format!(
                    "token id {id} is outside the tower's vocabulary of {vocab}: the \
                     tokenizer is not the model's (is --family right?)"
                )));
            }
        }
        if rows.is_empty() || rows.len() > self.max_batch() || out.len() != rows.len() * self.dim {
            return Err(TextEncoderError::Output(format!(
                "a run of {} prompts into {} values, expected 1..={} prompts of {} values",
                rows.len(),
                out.len(),
                self.max_batch(),
                self.dim
            )));
        }
        Ok(())
    }

    /// The inputs of one run: the tokens at positions `start..start + length` of
    /// each row, the batch filled up with copies of the first row (their outputs
    /// are dropped); the attention mask when the tower reads one (1 on each row's
    /// own positions, up to and including CLIP's EOT, 0 on the padding after
    /// them: the mask a Hugging Face tokenizer gives with the same padding); then
    /// `past`.
    fn inputs(
        &self,
        rows: &[&TokenRow],
        start: usize,
        length: usize,
        past: &[Arc<Tensor>],
    ) -> Result<TVec<TValue>, TextEncoderError> {
        let run = |source: TractError| TextEncoderError::Run { source };
        let Some(first) = rows.first() else {
            return Err(TextEncoderError::Output("a run of no prompts".into()));
        };
        let batch = self.shape.batch;
        let padded = || (0..batch).map(|i| rows.get(i).unwrap_or(first));
        let to_input = |values: Vec<i64>, dt: DatumType| -> TractResult<TValue> {
            let tensor = Tensor::from_shape(&[batch, length], &values)?;
            Ok(tensor.cast_to_dt(dt)?.into_owned().into_tvalue())
        };
        let ids = padded()
            .flat_map(|r| &r.ids()[start..start + length])
            .copied()
            .collect();
        let mut inputs = tvec!(to_input(ids, self.input_type).map_err(run)?);
        if let Some((dt, at)) = self.mask {
            let mask = padded()
                .flat_map(|r| {
                    let count = r.len().saturating_sub(start);
                    (0..length).map(move |i| (i < count) as i64)
                })
                .collect();
            inputs.insert(at, to_input(mask, dt).map_err(run)?);
        }
        inputs.extend(past.iter().cloned().map(TValue::from_const));
        Ok(inputs)
    }

    /// Copies the embeddings of the first `count` prompts of a run's output to `out`.
    fn write_embeddings(
        &self,
        output: &TValue,
        count: usize,
        out: &mut [f32],
    ) -> Result<(), TextEncoderError> {
        let run = |source: TractError| TextEncoderError::Run { source };
        let view = output.try_as_plain_ram().map_err(run)?;
        let values = view.as_slice::<f32>().map_err(run)?;
        let wanted = &values[..out.len().min(values.len())];
        if wanted.len() != out.len() {
            return Err(TextEncoderError::Output(format!(
                "{} values out for {} prompts of {}",
                values.len(),
                count,
                self.dim
            )));
        }
        out.copy_from_slice(wanted);
        Ok(())
    }
}

/// Rows of the table the token ids index: the first Gather on a constant table
/// that the ids input (through casts) feeds as indices.
fn vocabulary_size(model: &TypedModel, ids_at: usize) -> Option<usize> {
    use tract_onnx::tract_core::ops::array::Gather;
    use tract_onnx::tract_core::ops::cast::Cast;
    let mut outlet = *model.inputs.get(ids_at)?;
    for _ in 0..4 {
        let next = model.outlet_successors(outlet).first()?;
        let node = model.node(next.node);
        if node.op_is::<Gather>() && next.slot == 1 {
            let table = model.outlet_fact(node.inputs[0]).ok()?;
            table.konst.as_ref()?;
            return table
                .shape
                .first()?
                .as_i64()
                .and_then(|n| usize::try_from(n).ok());
        }
        if !node.op_is::<Cast>() {
            return None;
        }
        outlet = OutletId::new(node.id, 0);
    }
    None
}

/// The largest difference between two sets of `dim`-long embeddings, per component,
/// after L2-normalising each.
pub fn max_normalized_difference(a: &[f32], b: &[f32], dim: usize) -> f32 {
    fn norm(v: &[f32]) -> f32 {
        v.iter().map(|x| x * x).sum::<f32>().sqrt()
    }
    a.chunks_exact(dim)
        .zip(b.chunks_exact(dim))
        .flat_map(|(x, y)| {
            let (nx, ny) = (norm(x), norm(y));
            x.iter().zip(y).map(move |(x, y)| (x / nx - y / ny).abs())
        })
        .fold(
            0.0,
            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
        )
}

/// An error and its sources, joined with `: `.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
