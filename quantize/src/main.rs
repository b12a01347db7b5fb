//! `clip-quantize`: the workstation tool. Tokenizes, embeds labels, and packs
//! bundles for `clip-edge`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use clip_edge::bundle::{sha256_file, write_bundle, BundleSpec, Precision};
use clip_edge::encoder::ImageEncoder;
use clip_edge::preprocess::PreprocessConfig;
use clip_edge::scoring::DEFAULT_LOGIT_SCALE;
use clip_edge::LabelTable;
use clip_quantize::prompts::{load_templates, read_labels};
use clip_quantize::text_encoder::{embed_labels, TextEncoder};
use clip_quantize::tokenizer::ClipTokenizer;
use indicatif::{ProgressBar, ProgressStyle};
use tract_onnx::prelude::Framework;

use clip_quantize::calibrate::CalibrationMethod;

mod cmd_quantize;

/// Prompt counts above this get a progress bar.
const PROGRESS_THRESHOLD: usize = 64;

#[derive(Parser)]
#[command(
    name = "clip-quantize",
    version,
    about = "Turn a CLIP export into a bundle for clip-edge",
    long_about = "Turn a CLIP export (fp32 ONNX image and text encoders) into a bundle for \
        clip-edge.\n\nTypical use:\n  clip-quantize labels --text-model text_encoder.onnx \
        --labels labels.txt --out labels.safetensors\n  clip-quantize bundle --image-model \
        image_encoder.onnx --labels labels.safetensors --out bundle/\n\nSet RUST_LOG=info \
        for diagnostics on stderr."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the 77 CLIP token ids of each text (as OpenAI's clip.tokenize, truncate=True).
    Tokenize {
        /// Print one JSON array of arrays instead of one line per text.
        #[arg(long)]
        json: bool,
        /// Texts to tokenize.
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Embed labels through prompt templates with the text encoder; write labels.safetensors.
    Labels {
        /// The fp32 ONNX text encoder (input_ids [batch,77] -> text_embeds [batch,dim]).
        #[arg(long)]
        text_model: PathBuf,
        /// Labels file: one label per line, no blank lines, no duplicates.
        #[arg(long)]
        labels: PathBuf,
        /// Templates: `photo` ("a photo of a {}."), `imagenet80` (OpenAI's 80), or a file
        /// with one template per line, each containing {}.
        #[arg(long, default_value = "photo")]
        templates: String,
        /// Output label table (.safetensors).
        #[arg(long)]
        out: PathBuf,
    },
    /// Rewrite a fp32 image encoder to int8 (MatMul/Gemm/patch Conv) that tract runs on
    /// its integer kernels.
    Quantize(QuantizeArgs),
    /// Compare an int8 image encoder with its fp32 original on images.
    Eval(EvalArgs),
    /// Pack an image encoder and a label table into a bundle directory.
    Bundle {
        /// The image encoder ONNX (pixel_values [batch,3,224,224] -> image_embeds [batch,dim]).
        #[arg(long)]
        image_model: PathBuf,
        /// The label table written by `clip-quantize labels`.
        #[arg(long)]
        labels: PathBuf,
        /// Output directory (created; its bundle files are replaced).
        #[arg(long)]
        out: PathBuf,
        /// Logit scale applied to cosines before the softmax.
        #[arg(long, default_value_t = DEFAULT_LOGIT_SCALE)]
        logit_scale: f32,
    },
}

/// Arguments of `clip-quantize quantize`.
#[derive(clap::Args)]
struct QuantizeArgs {
    /// The fp32 ONNX image encoder.
    #[arg(long)]
    model: PathBuf,
    /// Output int8 ONNX file.
    #[arg(long, required_unless_present = "list")]
    out: Option<PathBuf>,
    /// Activation scales: computed per frame (dynamic) or fixed from calibration (static).
    #[arg(long, value_enum, default_value_t = ModeArg::Dynamic)]
    mode: ModeArg,
    /// Folder of calibration images (recursive). Needed for static mode and
    /// --max-cosine-drop; when given, the int8 model is also evaluated on it.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// How static scales are chosen from the calibration statistics.
    #[arg(long, value_enum, default_value_t = CalibrationMethod::Percentile)]
    method: CalibrationMethod,
    /// Node names to keep in fp32 (see --list).
    #[arg(long, num_args = 1..)]
    exclude: Vec<String>,
    /// Keep the layers whose quantization hurts most in fp32 until the mean embedding
    /// cosine to fp32 on the calibration images is at least 1 - X.
    #[arg(long, value_name = "X")]
    max_cosine_drop: Option<f64>,
    /// Use at most this many calibration images.
    #[arg(long, default_value_t = 64)]
    max_images: usize,
    /// Write a JSON report (what was quantized, sizes, accuracy figures).
    #[arg(long)]
    report: Option<PathBuf>,
    /// List the quantizable nodes and exit.
    #[arg(long)]
    list: bool,
    /// Compute the last transformer layer for every token. By default the part of
    /// the last layer after attention (out projection, residual adds, LayerNorm, MLP)
    /// runs on the pooled (CLS) token only, the one token the embedding uses, once a
    /// check shows the fp32 embedding unchanged.
    #[arg(long)]
    keep_all_tokens: bool,
}

/// `--mode` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    Dynamic,
    Static,
}

/// Arguments of `clip-quantize eval`.
#[derive(clap::Args)]
struct EvalArgs {
    /// The fp32 reference image encoder.
    #[arg(long)]
    fp32: PathBuf,
    /// The int8 image encoder.
    #[arg(long)]
    int8: PathBuf,
    /// Label table: adds top-1 agreement, and accuracy for folders named after labels.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Folder of images (recursive; an ImageFolder tree for accuracy).
    #[arg(long)]
    images: PathBuf,
    /// Print the figures as one JSON object.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    // tract reports recoverable conditions as errors while loading; with
    // RUST_BACKTRACE set each one captures a backtrace (about a second of start-up on
    // a static ARM build). Keep error backtraces off unless asked for explicitly.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    // Die quietly on a closed pipe (`clip-edge ... | head`) like other Unix tools,
    // instead of panicking in println!.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tokenize { json, texts } => tokenize(json, &texts),
        Command::Labels {
            text_model,
            labels,
            templates,
            out,
        } => labels_cmd(&text_model, &labels, &templates, &out),
        Command::Quantize(args) => cmd_quantize::run(&args),
        Command::Eval(args) => cmd_quantize::eval_cmd(&args),
        Command::Bundle {
            image_model,
            labels,
            out,
            logit_scale,
        } => bundle_cmd(&image_model, &labels, &out, logit_scale),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn tokenize(json: bool, texts: &[String]) -> Result<()> {
    let tokenizer = ClipTokenizer::new().context("cannot build the CLIP tokenizer")?;
    let rows: Vec<Vec<i64>> = texts
        .iter()
        .map(|t| tokenizer.tokenize(t).to_vec())
        .collect();
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

fn labels_cmd(text_model: &Path, labels_path: &Path, templates: &str, out: &Path) -> Result<()> {
    let labels = read_labels(labels_path)?;
    let templates = load_templates(templates)?;
    let tokenizer = ClipTokenizer::new().context("cannot build the CLIP tokenizer")?;
    let encoder = TextEncoder::load(text_model)?;
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
    let rows = embed_labels(&encoder, &tokenizer, &labels, &templates, |done| {
        bar.set_position(done as u64)
    })?;
    bar.finish_and_clear();
    let table = LabelTable::new(labels, templates, text_sha, rows)?;
    write_atomically(out, |tmp| Ok(table.save(tmp)?))?;
    eprintln!(
        "wrote {}: {} labels x {} dims, {} template(s)",
        out.display(),
        table.len(),
        table.dim(),
        table.templates().len()
    );
    Ok(())
}

fn bundle_cmd(image_model: &Path, labels_path: &Path, out: &Path, logit_scale: f32) -> Result<()> {
    if !(logit_scale.is_finite() && logit_scale > 0.0) {
        bail!("--logit-scale must be a positive number, got {logit_scale}");
    }
    let preprocess = PreprocessConfig::default();
    let labels = LabelTable::load(labels_path)?;
    let encoder = ImageEncoder::load(image_model, preprocess.crop_size as usize)?;
    if encoder.dim() != labels.dim() {
        bail!(
            "{} outputs embeddings of dimension {}, but {} holds dimension {} (different CLIP models?)",
            image_model.display(),
            encoder.dim(),
            labels_path.display(),
            labels.dim()
        );
    }
    let precision = detect_precision(image_model)?;
    let manifest = write_bundle(
        out,
        &BundleSpec {
            model: image_model,
            precision,
            embedding_dim: encoder.dim(),
            labels: &labels,
            preprocess,
            logit_scale,
        },
    )?;
    eprintln!(
        "wrote bundle {}: {} model, {} labels, dim {}",
        out.display(),
        format!("{:?}", manifest.model.precision).to_lowercase(),
        manifest.labels.count,
        manifest.model.embedding_dim
    );
    Ok(())
}

/// int8 when the graph has integer matmul/conv operators, fp32 otherwise.
fn detect_precision(model: &Path) -> Result<Precision> {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(model)
        .map_err(|e| {
            anyhow::anyhow!("{}: {}", model.display(), clip_edge::encoder::one_line(&e))
        })?;
    let graph = proto.graph.unwrap_or_default();
    let integer = graph.node.iter().any(|n| {
        matches!(
            n.op_type.as_str(),
            "MatMulInteger" | "ConvInteger" | "QLinearMatMul" | "QLinearConv"
        )
    });
    Ok(if integer {
        Precision::Int8
    } else {
        Precision::Fp32
    })
}

/// Runs `write` on a temporary file beside `out`, then renames it into place, so a
/// failure never leaves a truncated output.
fn write_atomically(out: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a file path", out.display()))?;
    let tmp = out.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    write(&tmp).with_context(|| format!("cannot write {}", out.display()))?;
    std::fs::rename(&tmp, out).with_context(|| format!("cannot write {}", out.display()))
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub(crate) fn progress_bar(total: usize, message: &'static str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}
