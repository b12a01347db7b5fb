//! `clip-quantize tokenize` and `clip-quantize labels`: prompts through the text
//! tower's own tokenizer (CLIP's, or the model's `tokenizer.json`), label tables.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clip_edge_bundle::{sha256_file, LabelTable};
use clip_quantize::model_description::Preset;
use clip_quantize::prompts::{load_templates, read_labels};
use clip_quantize::text_description::{
    describe_text, TextDescription, TextRequest, TokenizerChoice,
};
use clip_quantize::text_encoder::{embed_labels_with, PrefixUse, Schedule, TextEncoder};
use clip_quantize::tokenizer::{ClipTokenizer, HubTokenizer, PromptTokenizer};
use indicatif::ProgressBar;

use crate::{default_threads, progress_bar, write_atomically, PROGRESS_THRESHOLD};

/// Arguments of `clip-quantize tokenize`.
#[derive(clap::Args)]
pub(crate) struct TokenizeArgs {
    /// Print one JSON array of arrays instead of one line per text.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) text: TextArgs,
    /// Texts to tokenize.
    #[arg(required = true)]
    pub(crate) texts: Vec<String>,
}

/// Arguments of `clip-quantize labels`.
#[derive(clap::Args)]
pub(crate) struct LabelsArgs {
    /// The ONNX text encoder: our export's text_encoder.onnx, a hub's
    /// text_model.onnx (input_ids and attention_mask; fp32 or fp16), or a combined
    /// model.onnx, whose text tower is used.
    #[arg(long)]
    pub(crate) text_model: PathBuf,
    /// The output holding the text embedding, when the file has several and none
    /// is named text_embeds, text_features or text_embeddings.
    #[arg(long, value_name = "NAME")]
    pub(crate) text_output: Option<String>,
    /// Labels file: one label per line, no blank lines, no duplicates.
    #[arg(long)]
    pub(crate) labels: PathBuf,
    /// Templates: `photo` ("a photo of a {}."), `imagenet80` (OpenAI's 80), or a file
    /// with one template per line, each containing {}.
    #[arg(long, default_value = "photo")]
    pub(crate) templates: String,
    /// Output label table (.safetensors).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// Worker threads running the text encoder (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) threads: Option<u16>,
    /// Run every prompt whole, without caching its template's prefix (for
    /// comparison; the tables agree within 1e-5 either way).
    #[arg(long)]
    pub(crate) no_prefix_cache: bool,
    #[command(flatten)]
    pub(crate) text: TextArgs,
}

/// Which tokenizer a text tower takes (`labels`, `tokenize`).
#[derive(clap::Args, Clone, Default)]
pub(crate) struct TextArgs {
    /// The text tower's family: clip, openclip and mobileclip use CLIP's tokenizer;
    /// blip (35 positions, [PAD] padding, attention mask) and siglip (64 positions
    /// padded with </s>, text lower-cased and stripped of punctuation as
    /// SiglipTokenizer does) use the model's own tokenizer.json. Default: our
    /// model.json's, else CLIP.
    #[arg(long, value_enum)]
    family: Option<Preset>,
    /// The model's tokenizer.json (BLIP, SigLIP). Default: our model.json's, else
    /// tokenizer.json beside the text model or one folder up.
    #[arg(long, value_name = "FILE")]
    tokenizer: Option<PathBuf>,
    /// Positions per prompt, overriding the family's (BLIP 35, SigLIP 64).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(2..))]
    context_length: Option<u16>,
    /// The id prompts are padded with, overriding the family's (BLIP 0, SigLIP 1).
    #[arg(long, value_name = "ID")]
    pad_id: Option<u32>,
}

impl TextArgs {
    /// How the text tower at `model` wants its prompts.
    fn describe(&self, model: &Path) -> Result<TextDescription> {
        let description = describe_text(
            model,
            &TextRequest {
                family: self.family.map(|p| p.description().family),
                tokenizer: self.tokenizer.as_deref(),
                context_length: self.context_length.map(usize::from),
                pad_id: self.pad_id,
            },
        )?;
        log::info!(
            "{}: {} text tower, tokenizer from {}: {:?}",
            model.display(),
            description.family.name(),
            description.origin,
            description.tokenizer
        );
        Ok(description)
    }
}

/// The tokenizer a description names.
fn prompt_tokenizer(choice: &TokenizerChoice) -> Result<Box<dyn PromptTokenizer>> {
    Ok(match choice {
        TokenizerChoice::Clip => {
            Box::new(ClipTokenizer::new().context("cannot build the CLIP tokenizer")?)
        }
        TokenizerChoice::Hub { file, spec } => Box::new(HubTokenizer::load(file, spec.clone())?),
    })
}

/// `clip-quantize tokenize`.
pub(crate) fn tokenize(args: &TokenizeArgs) -> Result<()> {
    let (json, text, texts) = (args.json, &args.text, &args.texts);
    // Files are looked for beside the tokenizer, or in the current folder.
    let beside = text
        .tokenizer
        .clone()
        .unwrap_or_else(|| PathBuf::from("tokenizer.json"));
    let tokenizer = prompt_tokenizer(&text.describe(&beside)?.tokenizer)?;
    let rows: Vec<Vec<i64>> = texts
        .iter()
        .map(|t| Ok(tokenizer.tokenize_row(t)?.ids().to_vec()))
        .collect::<Result<_>>()?;
    if json {
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        for row in rows {
            let line: Vec<String> = row.iter().map(|id| id.to_string()).collect();
            println!("{}", line.join(" "));
        }
    }
    Ok(())
}

/// `clip-quantize labels`.
pub(crate) fn labels(args: &LabelsArgs) -> Result<()> {
    let (text_model, text_output, out) = (&args.text_model, args.text_output.as_deref(), &args.out);
    let threads = args.threads.map_or_else(default_threads, usize::from);
    let labels = read_labels(&args.labels)?;
    let templates = load_templates(&args.templates)?;
    let text = &args.text;
    let description = text.describe(text_model)?;
    let tokenizer = prompt_tokenizer(&description.tokenizer)?;
    let encoder = match &description.tokenizer {
        TokenizerChoice::Clip => TextEncoder::load(text_model, text_output)?,
        TokenizerChoice::Hub { spec, .. } => {
            TextEncoder::load_padded(text_model, text_output, spec.context_length)?
        }
    };
    let text_sha =
        sha256_file(text_model).with_context(|| format!("cannot read {}", text_model.display()))?;
    let total = labels.len() * templates.len();
    log::info!(
        "{} labels x {} templates = {total} prompts, embedding dim {}",
        labels.len(),
        templates.len(),
        encoder.dim()
    );
    let bar = if total > PROGRESS_THRESHOLD {
        progress_bar(total, "embedding labels", "prompts")
    } else {
        ProgressBar::hidden()
    };
    let started = std::time::Instant::now();
    let prefixes = if !args.no_prefix_cache {
        PrefixUse::Auto
    } else {
        PrefixUse::Never
    };
    let rows = embed_labels_with(
        &encoder,
        tokenizer.as_ref(),
        &labels,
        &templates,
        threads,
        prefixes,
        |done| bar.set_position(done as u64),
    )?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "embedded {total} prompts in {seconds:.1} s ({:.0} prompts/s; {threads} thread(s), {})",
        total as f64 / seconds.max(1e-9),
        match encoder.schedule() {
            _ if prefixes.applies(&encoder, labels.len()) => {
                "template prefixes cached, runs as long as their longest prompt after them"
            }
            Schedule::ByLength => "runs as long as their longest prompt",
            Schedule::FullLength => "every prompt over all its positions",
        }
    );
    let table = LabelTable::new(labels, templates, text_sha, rows)?;
    write_atomically(out, &table.to_bytes()?)?;
    eprintln!(
        "wrote {}: {} labels x {} dims, {} template(s)",
        out.display(),
        table.len(),
        table.dim(),
        table.templates().len()
    );
    Ok(())
}
