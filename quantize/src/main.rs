//! `clip-quantize`: the workstation tool. Tokenizes, embeds labels, and packs
//! bundles for `clip-edge`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use clip_edge_bundle::{
    LabelTable, ModelFormat, Precision, ScoringRule, ScoringSection, SecretKey,
};
use clip_edge_core::encoder::ImageEncoder;
use clip_edge_core::scoring::DEFAULT_LOGIT_SCALE;
use clip_quantize::bundle_writer::{
    sign_bundle, write_bundle, write_key_pair, BundleSpec, BundleWriteError,
};
use clip_quantize::model_description::{describe, DescribeRequest, ModelDescription, Preset};
use clip_quantize::nnef_export::NnefExportError;
use clip_quantize::tower::{self, Tower};
use indicatif::{ProgressBar, ProgressStyle};
use tract_onnx::prelude::Framework;

use clip_quantize::calibrate::CalibrationMethod;

mod cmd_labels;
use cmd_labels::{LabelsArgs, TokenizeArgs};
mod cmd_quantize;
mod cmd_smooth;

/// Prompt counts above this get a progress bar.
pub(crate) const PROGRESS_THRESHOLD: usize = 64;

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
    /// Print the token ids of each text: CLIP's 77 (as OpenAI's clip.tokenize,
    /// truncate=True), or with --family blip|siglip and --tokenizer, the model's own
    /// tokenizer.json padded as its family's Python tokenizer pads.
    Tokenize(TokenizeArgs),
    /// Embed labels through prompt templates with the text encoder; write labels.safetensors.
    ///
    /// Prompts are sorted by length and each batch runs only as long as its longest
    /// prompt (CLIP's causal mask keeps the embedding blind to the padding; checked on
    /// probe prompts at load, else every prompt runs over all 77 tokens, with a
    /// warning), on one worker thread per core. With 128 labels or more, the tokens
    /// a template's prompts share ("a photo of a") run once per template
    /// and each prompt runs only its own tokens after them, against the cached keys
    /// and values (checked at load too). Speed and memory at ImageNet scale:
    /// quantize/README.md, "Label tables at scale". BLIP and SigLIP text towers take
    /// their prompts through the model's own tokenizer.json, padded as their Python
    /// tokenizer pads, each over all its positions (quantize/README.md, "Text towers
    /// other than CLIP").
    Labels(LabelsArgs),
    /// Rewrite a fp32 image encoder to int8 (MatMul/Gemm/patch Conv) that tract runs on
    /// its integer kernels.
    Quantize(QuantizeArgs),
    /// Compare an int8 image encoder with its fp32 original on images.
    Eval(EvalArgs),
    /// Pack an image encoder and a label table into a bundle directory.
    ///
    /// The bundle records how the board preprocesses frames and scores labels,
    /// taken from the export's config beside the model (model.json,
    /// preprocessor_config.json or open_clip_config.json), --model-config, or
    /// --family; a model at 224x224 with none of them gets CLIP's.
    Bundle(BundleArgs),
    /// Make a key pair for signing bundles: the secret key at --out (PEM, mode 0600)
    /// and the public key at --out.pub (PEM), the file boards trust (`clip-edge
    /// --trust`, or a board profile's `trusted_keys`). Keep the secret key off the
    /// boards; existing files are never overwritten.
    Keygen {
        /// Path of the secret key; the public key goes beside it, with `.pub` added.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a bundle with a secret key (writes bundle.sig, the ed25519 signature of
    /// bundle.toml, whose hashes cover the other files). The bundle is checked first:
    /// only a bundle that loads is signed.
    Sign {
        /// The bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// The secret key from `clip-quantize keygen`.
        #[arg(long)]
        key: PathBuf,
    },
}

/// Arguments of `clip-quantize bundle`.
#[derive(clap::Args)]
struct BundleArgs {
    /// The ONNX image encoder (pixel_values [batch,3,S,S] -> image_embeds
    /// [batch,dim]): our export, a hub's vision_model.onnx (fp32 or fp16; outputs
    /// other than the embedding are dropped), a combined model.onnx, whose image
    /// tower is used, an int8 file from `clip-quantize quantize`, or a QDQ int8
    /// file (bundled with its own arithmetic, its matmuls on int8).
    #[arg(long)]
    image_model: PathBuf,
    /// The output holding the image embedding, when the file has several and none
    /// is named image_embeds, image_features or image_embeddings.
    #[arg(long, value_name = "NAME")]
    image_output: Option<String>,
    /// The label table written by `clip-quantize labels`.
    #[arg(long)]
    labels: PathBuf,
    /// Output directory (created; its bundle files are replaced).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    describe: DescribeArgs,
    /// Softmax over the labels (CLIP, BLIP, MobileCLIP) or a sigmoid per label
    /// (SigLIP). Default: the model config's, else softmax.
    #[arg(long, value_enum)]
    scoring: Option<ScoringArg>,
    /// Multiplier of the cosines (the model's learned logit scale, exponentiated).
    /// Default: the model config's, else 100 (OpenAI CLIP's).
    #[arg(long, allow_hyphen_values = true)]
    logit_scale: Option<f32>,
    /// Added to the scaled cosine before the sigmoid (SigLIP's learned logit bias).
    /// Default: the model config's; needed with sigmoid scoring.
    #[arg(long, allow_hyphen_values = true)]
    logit_bias: Option<f32>,
    /// How the model is stored: nnef (tract's decluttered model, fixed input size;
    /// the board loads it faster and with half the memory) or onnx (the file as is).
    #[arg(long, value_enum, default_value_t = FormatArg::Nnef)]
    format: FormatArg,
    /// Sign the bundle with this secret key (from `clip-quantize keygen`), as
    /// `clip-quantize sign` does.
    #[arg(long, value_name = "KEY")]
    sign: Option<PathBuf>,
}

/// How the image model wants its images (`bundle`, `quantize`, `eval`).
#[derive(clap::Args, Clone, Default)]
pub(crate) struct DescribeArgs {
    /// The model's config: our export's model.json, Hugging Face's
    /// preprocessor_config.json or OpenCLIP's open_clip_config.json. Default: the
    /// first of these found beside the image model or one folder up.
    #[arg(long, value_name = "FILE", conflicts_with = "family")]
    model_config: Option<PathBuf>,
    /// Use a family's preprocessing and scoring instead of a config file (sized to
    /// the model's input when it is fixed).
    #[arg(long, value_enum)]
    family: Option<Preset>,
    /// The model's input side in pixels (for models whose input size is not fixed
    /// in the file, or to override the config's).
    #[arg(long, value_name = "PIXELS", value_parser = clap::value_parser!(u32).range(1..=8192))]
    image_size: Option<u32>,
}

impl DescribeArgs {
    /// The description of the image model at `model`, whose input is fixed at
    /// `fixed_size` when `Some` and which may carry its own description
    /// (`embedded`, see `model_description::METADATA_KEY`).
    pub(crate) fn describe(
        &self,
        model: &Path,
        fixed_size: Option<u32>,
        embedded: Option<&str>,
    ) -> Result<ModelDescription> {
        let description = describe(
            model,
            fixed_size,
            &DescribeRequest {
                config: self.model_config.as_deref(),
                preset: self.family,
                image_size: self.image_size,
                embedded,
            },
        )?;
        log::info!(
            "{}: {} model, preprocessing from {}: {:?}",
            model.display(),
            description.family.name(),
            description.origin,
            description.preprocess
        );
        Ok(description)
    }
}

/// `bundle --scoring` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ScoringArg {
    /// softmax(logit_scale x cosine) over the labels.
    Softmax,
    /// sigmoid(logit_scale x cosine + logit_bias) per label.
    Sigmoid,
}

/// `bundle --format` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum FormatArg {
    /// tract's NNEF tar of the decluttered model (model.nnef.tar).
    Nnef,
    /// The ONNX file as given (model.onnx).
    Onnx,
}

/// Arguments of `clip-quantize quantize`.
#[derive(clap::Args)]
struct QuantizeArgs {
    /// The fp32 ONNX image encoder, or a hub export holding one (see `bundle
    /// --image-model`), or a QDQ int8 file (taken back to its fp32 model first).
    #[arg(long)]
    model: PathBuf,
    /// The output holding the image embedding, when the file has several and none is
    /// named image_embeds, image_features or image_embeddings.
    #[arg(long, value_name = "NAME")]
    image_output: Option<String>,
    #[command(flatten)]
    describe: DescribeArgs,
    /// Output int8 ONNX file.
    #[arg(long, required_unless_present = "list")]
    out: Option<PathBuf>,
    /// How activations are handled: int8 with scales computed per frame (dynamic) or
    /// fixed from calibration (static), or left f32 with int8 weights only (weights).
    #[arg(long, value_enum, default_value_t = ModeArg::Dynamic)]
    mode: ModeArg,
    /// Dynamic mode: one activation scale per tensor, or one per token (each row of
    /// each matmul input gets its own; a token with large values no longer coarsens
    /// the others). Per token costs about 10% more instructions per frame
    /// (quantize/README.md).
    #[arg(long, value_enum, default_value_t = ScalesArg::Tensor)]
    activation_scales: ScalesArg,
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
    /// Do not smooth outlier channels. By default the channels of each LayerNorm
    /// output that feeds quantized matmuls are rescaled against those matmuls'
    /// weights (SmoothQuant: exact in fp32, free at run time), so that a few
    /// channels 10-100x larger than the rest (as trained CLIP models have) do not
    /// take the int8 range of all. Only LayerNorms with a channel over 8x their
    /// median range are smoothed. The channel ranges are measured on the
    /// --calibration images, or without them on two pseudo-random images.
    #[arg(long, conflicts_with = "smooth_alpha")]
    no_smooth: bool,
    /// Smoothing strength in [0, 1]: the share of each channel's range moved from
    /// the activations into the weights (1: every activation channel ends with the
    /// same range). Default: chosen among
    /// 0.3-0.7 (or no smoothing) by the mean cosine on the --calibration images;
    /// 0.5 without them.
    #[arg(long, value_name = "ALPHA")]
    smooth_alpha: Option<f32>,
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

/// `--activation-scales` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ScalesArg {
    /// One scale per tensor and frame.
    Tensor,
    /// One scale per token and frame.
    Token,
}

/// `--mode` values.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ModeArg {
    /// int8 activations, scale from each frame's max |x| (no calibration needed).
    Dynamic,
    /// int8 activations, scales fixed from --calibration images.
    Static,
    /// int8 weights only, widened to f32 at load: a file as small as int8, fp32
    /// speed. Best on CPUs without SDOT (Pi 4, Pi Zero 2 W, Jetson Nano).
    Weights,
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
    #[command(flatten)]
    describe: DescribeArgs,
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
    clip_edge_core::process::prologue();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Tokenize(args) => cmd_labels::tokenize(&args),
        Command::Labels(args) => cmd_labels::labels(&args),
        Command::Quantize(args) => cmd_quantize::run(&args),
        Command::Eval(args) => cmd_quantize::eval_cmd(&args),
        Command::Bundle(args) => bundle_cmd(&args),
        Command::Keygen { out } => keygen_cmd(&out),
        Command::Sign { bundle, key } => sign_cmd(&bundle, &key),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn keygen_cmd(out: &Path) -> Result<()> {
    let (key, public) = write_key_pair(out)?;
    eprintln!(
        "wrote secret key {} and public key {} (fingerprint {})",
        out.display(),
        public.display(),
        key.fingerprint()
    );
    Ok(())
}

fn sign_cmd(bundle: &Path, key: &Path) -> Result<()> {
    let key = SecretKey::from_pem_file(key)?;
    sign_bundle(bundle, &key)
        .with_context(|| format!("cannot sign bundle {}", bundle.display()))?;
    eprintln!(
        "signed bundle {} with key {}",
        bundle.display(),
        key.fingerprint()
    );
    Ok(())
}

fn bundle_cmd(args: &BundleArgs) -> Result<()> {
    let (image_model, labels_path, out) = (&args.image_model, &args.labels, &args.out);
    // Before the long work: a bad key fails at once.
    let signer = args
        .sign
        .as_deref()
        .map(SecretKey::from_pem_file)
        .transpose()?;
    let format = match args.format {
        FormatArg::Nnef => ModelFormat::Nnef,
        FormatArg::Onnx => ModelFormat::Onnx,
    };
    let labels = LabelTable::load(labels_path)?;
    // A hub export is cut down to its image tower first (a temporary file); the
    // bundle carries that.
    let tower = tower::prepare(image_model, Tower::Image, args.image_output.as_deref())?;
    let description = args.describe.describe(
        image_model,
        tower.fixed_image_size,
        tower.embedded_description.as_deref(),
    )?;
    let scoring = scoring_of(args, &description)?;
    let preprocess = description.preprocess;
    let size = preprocess.crop_size as usize;
    let model = tower.path();
    let mut encoder = ImageEncoder::load(model, size)
        .with_context(|| format!("cannot load the image tower of {}", image_model.display()))?;
    if encoder.dim() != labels.dim() {
        bail!(
            "{} outputs embeddings of dimension {}, but {} holds dimension {} (different CLIP models?)",
            image_model.display(),
            encoder.dim(),
            labels_path.display(),
            labels.dim()
        );
    }
    let precision = detect_precision(model)?;
    let manifest = write_bundle(
        out,
        &BundleSpec {
            model,
            format,
            precision,
            embedding_dim: encoder.dim(),
            labels: &labels,
            family: description.family,
            preprocess,
            scoring: scoring.clone(),
            signer: signer.as_ref(),
        },
    )
    .map_err(|e| match e {
        BundleWriteError::Model(e @ NnefExportError::Unsupported { .. }) => anyhow::anyhow!(
            "{} (`--format onnx` bundles the ONNX model instead: the board then parses it at every start)",
            clip_edge_core::ErrorChain(&e)
        ),
        e => e.into(),
    })
    .map_err(|e| match tower.adapted() {
        // The error names the temporary copy: say what it is.
        true => e.context(format!("the image tower of {}", image_model.display())),
        false => e,
    })?;
    // The board loads the bundle's copy: it must give the same embedding.
    let mut packed = ImageEncoder::load(&out.join(&manifest.model.file), size)?;
    let input: Vec<f32> = (0..encoder.input_len())
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect();
    let expected = encoder.encode(&input)?.to_vec();
    let actual = packed.encode(&input)?;
    let norm = expected
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(1e-12);
    let diff = expected
        .iter()
        .zip(actual)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    if diff > 1e-4 * norm {
        bail!(
            "{}: the bundle's model gives a different embedding than {} (max difference {diff:e}, norm {norm}); please report this, and use --format onnx meanwhile",
            out.join(&manifest.model.file).display(),
            image_model.display()
        );
    }
    eprintln!(
        "wrote {} bundle {}: {} {} {} model at {size}x{size}, {} labels, dim {}, {} scoring",
        match &signer {
            Some(key) => format!("signed ({})", key.fingerprint()),
            None => "unsigned".to_string(),
        },
        out.display(),
        manifest.model.family.name(),
        format!("{:?}", manifest.model.precision).to_lowercase(),
        format!("{:?}", manifest.model.format).to_lowercase(),
        manifest.labels.count,
        manifest.model.embedding_dim,
        format!("{:?}", manifest.scoring.rule).to_lowercase(),
    );
    Ok(())
}

/// The bundle's scoring: the flags, else the model description's, else CLIP's
/// softmax at 100; a sigmoid needs its learned scale and bias from one of them.
fn scoring_of(args: &BundleArgs, description: &ModelDescription) -> Result<ScoringSection> {
    let rule = match args.scoring {
        Some(ScoringArg::Softmax) => ScoringRule::Softmax,
        Some(ScoringArg::Sigmoid) => ScoringRule::Sigmoid,
        None => description.rule.unwrap_or(ScoringRule::Softmax),
    };
    let scale = args.logit_scale.or(description.logit_scale);
    let bias = args.logit_bias.or(description.logit_bias);
    let scoring = match rule {
        ScoringRule::Softmax => ScoringSection {
            rule,
            logit_scale: scale.unwrap_or(DEFAULT_LOGIT_SCALE),
            logit_bias: 0.0,
        },
        ScoringRule::Sigmoid => {
            let (Some(logit_scale), Some(logit_bias)) = (scale, bias) else {
                bail!(
                    "sigmoid scoring needs the model's learned logit scale and bias, and {} gives {}: pass --logit-scale S --logit-bias B (SigLIP: model.logit_scale.exp() and model.logit_bias; models/export/ writes both to model.json)",
                    description.origin,
                    match (scale, bias) {
                        (None, None) => "neither",
                        (None, Some(_)) => "no scale",
                        _ => "no bias",
                    }
                );
            };
            ScoringSection {
                rule,
                logit_scale,
                logit_bias,
            }
        }
    };
    if rule == ScoringRule::Softmax && args.logit_bias.is_some_and(|b| b != 0.0) {
        bail!("--logit-bias only applies to sigmoid scoring (--scoring sigmoid)");
    }
    scoring
        .validate()
        .map_err(|e| anyhow::anyhow!("{}", e.replace("scoring.logit_", "--logit-")))?;
    Ok(scoring)
}

/// int8 when the graph has integer matmul/conv operators, int8-weights when it only
/// stores int8 weights, fp32 otherwise.
fn detect_precision(model: &Path) -> Result<Precision> {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(model)
        .with_context(|| format!("{}: cannot read the ONNX file", model.display()))?;
    let graph = proto.graph.unwrap_or_default();
    let integer = graph.node.iter().any(|n| {
        matches!(
            n.op_type.as_str(),
            "MatMulInteger" | "ConvInteger" | "QLinearMatMul" | "QLinearConv"
        )
    });
    let int8_weights = graph
        .initializer
        .iter()
        .any(|t| t.data_type == tract_onnx::pb::tensor_proto::DataType::Int8 as i32);
    Ok(if integer {
        Precision::Int8
    } else if int8_weights {
        Precision::Int8Weights
    } else {
        Precision::Fp32
    })
}

/// Writes `bytes` to `out`, whole or not at all ([`clip_quantize::atomic_file`]).
pub(crate) fn write_atomically(out: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    clip_quantize::atomic_file::write_atomically(out, |file| file.write_all(bytes))
        .with_context(|| format!("cannot write {}", out.display()))
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
/// One thread per core the process may use.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

pub(crate) fn progress_bar(total: usize, message: &'static str, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{msg}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, {{eta}} left)"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}
