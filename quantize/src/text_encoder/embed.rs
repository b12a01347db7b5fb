//! Label embeddings: every label through every template, in windows of prompts
//! sorted by length, run on worker threads.
//!
//! Memory stays flat however many labels there are: one window of token rows and
//! raw embeddings at a time, plus the output table. Each window's embeddings are
//! summed into their labels in prompt order, so the table does not depend on the
//! number of threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

use clip_edge_core::scoring::l2_normalize;

use super::{Prefix, TextEncoder, TextEncoderError};
use crate::tokenizer::{PromptTokenizer, TokenRow};

/// Runs per window: enough for prompts of a length to share runs, few enough that
/// a window's rows and embeddings stay small.
const RUNS_PER_WINDOW: usize = 64;

/// Runs per template from which [`PrefixUse::Auto`] caches prefixes: with fewer
/// labels, the half-empty last run of each template and the padding within runs
/// eat the saving (quantize/README.md, "Label tables at scale").
pub const PREFIX_MIN_RUNS: usize = 4;

/// Whether label embedding runs prompts after their template's cached prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixUse {
    /// When the tower can, and the labels fill at least [`PREFIX_MIN_RUNS`] runs
    /// per template.
    Auto,
    /// Whenever the tower can.
    Always,
    /// Never: whole prompts.
    Never,
}

impl PrefixUse {
    /// Whether embedding `labels` labels with `encoder` runs prompts after cached
    /// prefixes.
    pub fn applies(self, encoder: &TextEncoder, labels: usize) -> bool {
        encoder.caches_prefixes()
            && match self {
                PrefixUse::Auto => labels >= PREFIX_MIN_RUNS * encoder.max_batch(),
                PrefixUse::Always => true,
                PrefixUse::Never => false,
            }
    }
}

/// Embeds each label through each template and returns one normalised row per
/// label, using up to `threads` worker threads. `progress` is called with the
/// number of prompts done after each run.
pub fn embed_labels(
    encoder: &TextEncoder,
    tokenizer: &dyn PromptTokenizer,
    labels: &[String],
    templates: &[String],
    threads: usize,
    progress: impl FnMut(usize),
) -> Result<Vec<Vec<f32>>, TextEncoderError> {
    embed_labels_with(
        encoder,
        tokenizer,
        labels,
        templates,
        threads,
        PrefixUse::Auto,
        progress,
    )
}

/// [`embed_labels`], caching template prefixes as `prefixes` says.
///
/// With cached prefixes, templates are taken one at a time (each label's embeddings
/// are still summed in template order, so the table is the same either way up to
/// rounding): the template's prompts are tokenized in windows, the tokens all of a
/// window's prompts share go once through the suffix plan (after an empty prefix), and each prompt runs
/// only its tokens after them.
pub fn embed_labels_with(
    encoder: &TextEncoder,
    tokenizer: &dyn PromptTokenizer,
    labels: &[String],
    templates: &[String],
    threads: usize,
    prefixes: PrefixUse,
    mut progress: impl FnMut(usize),
) -> Result<Vec<Vec<f32>>, TextEncoderError> {
    if tokenizer.context_length() != encoder.context_length() {
        return Err(TextEncoderError::Output(format!(
            "the tokenizer gives rows of {} positions, the text tower takes {}",
            tokenizer.context_length(),
            encoder.context_length()
        )));
    }
    let dim = encoder.dim();
    let total = labels.len() * templates.len();
    let window = RUNS_PER_WINDOW * encoder.max_batch();
    let mut sums = vec![vec![0.0f32; dim]; labels.len()];
    let mut embeddings = vec![0.0f32; window.min(total) * dim];
    let mut done = 0;
    let add = |sums: &mut [Vec<f32>], label: usize, text: &str, emb: &mut [f32]| {
        if !l2_normalize(emb) {
            return Err(TextEncoderError::Output(format!(
                "embedding of prompt {text:?} is zero or not finite"
            )));
        }
        sums[label]
            .iter_mut()
            .zip(emb.iter())
            .for_each(|(s, e)| *s += e);
        Ok(())
    };
    let cached = prefixes.applies(encoder, labels.len());
    if cached {
        let mut state = encoder.state()?;
        for template in templates {
            for start in (0..labels.len()).step_by(window.max(1)) {
                let end = (start + window).min(labels.len());
                let texts: Vec<String> = labels[start..end]
                    .iter()
                    .map(|label| crate::prompts::fill(template, label))
                    .collect();
                let rows = texts
                    .iter()
                    .map(|t| tokenizer.tokenize_row(t))
                    .collect::<Result<Vec<_>, _>>()?;
                let prefix = encoder.prefix(&mut state, &rows[0].ids()[..shared_prefix(&rows)])?;
                let out = &mut embeddings[..rows.len() * dim];
                run_window(encoder, &rows, Some(&prefix), threads, out, |n| {
                    done += n;
                    progress(done)
                })?;
                for ((label, text), emb) in (start..end).zip(&texts).zip(out.chunks_exact_mut(dim))
                {
                    add(&mut sums, label, text, emb)?;
                }
            }
        }
    } else {
        for start in (0..total).step_by(window.max(1)) {
            let end = (start + window).min(total);
            let prompt = |k: usize| {
                let (label, template) = (k / templates.len(), k % templates.len());
                (
                    label,
                    crate::prompts::fill(&templates[template], &labels[label]),
                )
            };
            let rows = (start..end)
                .map(|k| tokenizer.tokenize_row(&prompt(k).1))
                .collect::<Result<Vec<_>, _>>()?;
            let out = &mut embeddings[..rows.len() * dim];
            run_window(encoder, &rows, None, threads, out, |n| {
                done += n;
                progress(done)
            })?;
            for (k, emb) in (start..end).zip(out.chunks_exact_mut(dim)) {
                let (label, text) = prompt(k);
                add(&mut sums, label, &text, emb)?;
            }
        }
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

/// How many leading tokens all `rows` share, leaving each at least its EOT.
fn shared_prefix(rows: &[TokenRow]) -> usize {
    let Some(first) = rows.first() else { return 1 };
    rows.iter()
        .map(|row| {
            let same = first
                .ids()
                .iter()
                .zip(row.ids())
                .take_while(|(a, b)| a == b)
                .count();
            same.min(row.len() - 1)
        })
        .min()
        .unwrap_or(1)
        .max(1)
}

/// Embeds `rows` into `out` (one row of `encoder.dim()` each, in order): sorted
/// by length into runs of up to `encoder.max_batch()`, which `threads` workers
/// take in turn; with a `prefix`, only the tokens after it run. `progress` gets the number of prompts each finished run held.
fn run_window(
    encoder: &TextEncoder,
    rows: &[TokenRow],
    prefix: Option<&Prefix>,
    threads: usize,
    out: &mut [f32],
    mut progress: impl FnMut(usize),
) -> Result<(), TextEncoderError> {
    let dim = encoder.dim();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].len());
    let runs: Vec<&[usize]> = order.chunks(encoder.max_batch()).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let workers = threads.clamp(1, runs.len().max(1));
    let (sender, receiver) = mpsc::channel::<Result<(usize, Vec<f32>), TextEncoderError>>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let sender = sender.clone();
            let (runs, next, failed) = (&runs, &next, &failed);
            scope.spawn(move || {
                let mut state = match encoder.state() {
                    Ok(state) => state,
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        let _ = sender.send(Err(e));
                        return;
                    }
                };
                while !failed.load(Ordering::Relaxed) {
                    let r = next.fetch_add(1, Ordering::Relaxed);
                    let Some(run) = runs.get(r) else { break };
                    let run_rows: Vec<&TokenRow> = run.iter().map(|&i| &rows[i]).collect();
                    let mut embeddings = vec![0.0; run.len() * dim];
                    let result = match prefix {
                        Some(prefix) => {
                            encoder.run_after(&mut state, prefix, &run_rows, &mut embeddings)
                        }
                        None => encoder.run(&mut state, &run_rows, &mut embeddings),
                    };
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if sender.send(result.map(|()| (r, embeddings))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        let mut first_error = None;
        for message in receiver {
            match message {
                Ok((r, embeddings)) => {
                    for (&i, emb) in runs[r].iter().zip(embeddings.chunks_exact(dim)) {
                        out[i * dim..(i + 1) * dim].copy_from_slice(emb);
                    }
                    progress(runs[r].len());
                }
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}
