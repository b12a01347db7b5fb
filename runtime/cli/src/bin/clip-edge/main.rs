//! `clip-edge`: the on-device program. Classifies images with a bundle made by
//! `clip-quantize`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use clip_edge::json::{json_str, write_top_k};
use clip_edge_bundle::{Bundle, PreprocessConfig, TrustedKeys};
use clip_edge_core::image_io::load_rgb8;
use clip_edge_core::preprocess::Preprocessor;
use clip_edge_core::scoring::MAX_TOP_K;
use clip_edge_core::{Classifier, TopK};

mod bundle_cmd;
mod run_cmd;

/// Counts heap allocations, for `bench`'s allocations-per-frame figures.
#[global_allocator]
static ALLOCATOR: clip_edge::alloc_count::CountingAllocator =
    clip_edge::alloc_count::CountingAllocator;

/// Where `demo` finds the bundled model and images when run from the source tree.
const SHAPES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/shapes");

#[derive(Parser)]
#[command(
    name = "clip-edge",
    version,
    about = "Zero-shot image classification with CLIP on ARM boards",
    long_about = "Zero-shot image classification with CLIP on ARM boards.\n\n\
        A bundle (made on a workstation by `clip-quantize bundle`) holds the image \
        encoder, the label embeddings and the preprocessing settings. clip-edge loads it, \
        verifies its hashes and dimensions, and ranks the labels for each image.\n\n\
        Set RUST_LOG=info (or debug) for diagnostics on stderr."
)]
struct Cli {
    /// Threads for tract's matrix multiplications (default: the board profile's, else
    /// every CPU available).
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Board profile: pi4, pi5, pi-zero-2w, jetson-nano, jetson-orin, or a .toml file.
    /// Gives the default threads, camera (`run --source`), GPIO chip and pin names
    /// (`run --on LABEL=led`) and memory budget. NAME.toml is looked up in
    /// $CLIP_EDGE_BOARDS_DIR, /etc/clip-edge/boards, boards/ beside the executable (and
    /// one level up) and in the current directory before the built-in profiles.
    #[arg(long, global = true, value_name = "NAME|FILE")]
    board: Option<String>,
    /// Load only bundles signed by this public key (PEM, from `clip-quantize keygen`):
    /// an unsigned bundle, one signed by another key, or one with any file changed
    /// after signing is refused before its model is read. Repeat to trust several keys.
    /// Default: the board profile's `trusted_keys`, else any bundle whose hashes match.
    #[arg(long, global = true, value_name = "PUBKEY")]
    trust: Vec<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Classify the bundled sample images with the bundled shapes model.
    Demo {
        /// Bundle to use instead of the bundled shapes model.
        #[arg(long)]
        bundle: Option<PathBuf>,
        /// Folder of images to classify instead of the bundled samples.
        #[arg(long)]
        images: Option<PathBuf>,
    },
    /// Rank the bundle's labels for each image.
    Classify {
        /// Bundle directory (bundle.toml, model.nnef.tar or model.onnx, labels.safetensors).
        #[arg(long)]
        bundle: PathBuf,
        /// How many labels to print per image (at most 16).
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=MAX_TOP_K as i64))]
        top_k: u16,
        /// One JSON object per line: {"image": PATH, "top": [{"label", "score", "prob"}, ...]}.
        #[arg(long)]
        json: bool,
        /// Image files (PNG, JPEG, BMP, TIFF, PNM, WebP).
        #[arg(required = true)]
        images: Vec<PathBuf>,
    },
    /// Measure load time, time to first result, per-stage latency, memory and kernels.
    Bench {
        /// Bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// Frames to time after the first.
        #[arg(long, default_value_t = 50)]
        frames: usize,
        /// Image to use as the frame (default: a synthetic 640x480 frame).
        #[arg(long)]
        image: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
        /// Instead, time every operator of the encoder and print a table.
        #[arg(long)]
        profile: bool,
    },
    /// Classify a stream of frames (camera, pipe, directory) and report what is seen.
    ///
    /// Prints one line per classified frame and one when a label becomes stable
    /// (seen) or stops being stable (lost); SIGINT/SIGTERM finish the current frame
    /// and exit 0.
    Run(run_cmd::RunArgs),
    /// Install, roll back or list the bundles of a deployed board (ROOT/bundle, the
    /// bundle the service runs, is switched atomically).
    #[command(subcommand)]
    Bundle(bundle_cmd::BundleCmd),
    /// Write the model input of an image ([1,3,224,224] f32, CLIP preprocessing) as .npy.
    Preprocess {
        /// The image file.
        image: PathBuf,
        /// Output .npy file.
        #[arg(long)]
        out: PathBuf,
        /// Use this bundle's preprocessing settings instead of CLIP's defaults.
        #[arg(long)]
        bundle: Option<PathBuf>,
    },
    /// Write the raw image embedding ([1, dim] f32, before normalisation) as .npy.
    Embed {
        /// Bundle directory.
        #[arg(long)]
        bundle: PathBuf,
        /// The image file.
        image: PathBuf,
        /// Output .npy file.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    clip_edge_core::process::prologue();
    let cli = Cli::parse();
    // `run` reports frames and decisions as log lines unless --json: show them.
    let default_level = match cli.command {
        Command::Run(_) => "warn,clip_edge=info",
        _ => "warn",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_level))
        .init();
    let board = match cli.board.as_deref().map(|name| {
        clip_edge_device::board::load(name, &clip_edge_device::board::default_search_dirs())
    }) {
        None => None,
        Some(Ok(profile)) => {
            log::info!(
                "board {} ({}) from {}",
                profile.name,
                profile.description,
                profile.origin
            );
            Some(profile)
        }
        Some(Err(err)) => {
            eprintln!("error: {err}");
            return ExitCode::FAILURE;
        }
    };
    let threads = match (cli.threads, &board) {
        (Some(t), _) => usize::from(t),
        (None, Some(profile)) => profile.threads as usize,
        (None, None) => clip_edge_core::encoder::available_threads(),
    };
    if let Err(err) = clip_edge_core::encoder::set_threads(threads) {
        eprintln!("error: {err}");
        return ExitCode::FAILURE;
    }
    let key_files = match (&cli.trust[..], &board) {
        ([], Some(profile)) => &profile.trusted_keys[..],
        (keys, _) => keys,
    };
    let trusted = match key_files {
        [] => None,
        files => match TrustedKeys::from_pem_files(files) {
            Ok(keys) => Some(keys),
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::FAILURE;
            }
        },
    };
    let trusted = trusted.as_ref();
    let result = match cli.command {
        Command::Demo { bundle, images } => demo(bundle, images, trusted),
        Command::Classify {
            bundle,
            top_k,
            json,
            images,
        } => classify(&bundle, trusted, top_k as usize, json, &images),
        Command::Preprocess { image, out, bundle } => {
            preprocess(&image, &out, bundle.as_deref(), trusted)
        }
        Command::Embed { bundle, image, out } => embed(&bundle, trusted, &image, &out),
        Command::Bench {
            bundle,
            frames,
            image,
            json,
            profile,
        } => bench(
            &bundle,
            trusted,
            frames,
            image.as_deref(),
            json,
            profile,
            threads,
        ),
        Command::Run(args) => run_cmd::run(args, board.as_ref(), trusted),
        Command::Bundle(cmd) => bundle_cmd::run(cmd, trusted),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads a bundle, checking its signature against `trusted` if given.
pub(crate) fn load_classifier(bundle: &Path, trusted: Option<&TrustedKeys>) -> Result<Classifier> {
    Classifier::load_with(bundle, trusted)
        .with_context(|| format!("cannot load bundle {}", bundle.display()))
}

fn classify(
    bundle: &Path,
    trusted: Option<&TrustedKeys>,
    k: usize,
    json: bool,
    images: &[PathBuf],
) -> Result<()> {
    let mut classifier = load_classifier(bundle, trusted)?;
    let mut failures = 0usize;
    for path in images {
        match classify_one(&mut classifier, path, k) {
            Ok(top) => print_result(&classifier, path, &top, json),
            Err(err) => {
                failures += 1;
                eprintln!("error: {err:#}");
            }
        }
    }
    if failures > 0 {
        bail!(
            "{failures} of {} images could not be classified",
            images.len()
        );
    }
    Ok(())
}

fn classify_one(classifier: &mut Classifier, path: &Path, k: usize) -> Result<TopK> {
    let rgb = load_rgb8(path)?;
    classifier
        .classify(&rgb, k)
        .with_context(|| format!("{}", path.display()))
}

fn print_result(classifier: &Classifier, path: &Path, top: &TopK, json: bool) {
    let labels = classifier.labels().labels();
    if json {
        // {"image":PATH,"top":[{"label":L,"score":S,"prob":P},...]}, as `run --json`.
        let mut out = std::io::stdout().lock();
        let line = out
            .write_all(br#"{"image":"#)
            .and_then(|()| json_str(&mut out, &path.display().to_string()))
            .and_then(|()| out.write_all(br#","top":"#))
            .and_then(|()| write_top_k(&mut out, top, labels))
            .and_then(|()| out.write_all(b"}\n"));
        if let Err(e) = line {
            log::warn!("cannot write to stdout: {e}");
        }
    } else {
        println!("{}", path.display());
        for (rank, p) in top.iter().enumerate() {
            println!(
                "  {}. {:<24} score {:.4}  prob {:.4}",
                rank + 1,
                labels[p.index],
                p.score,
                p.prob
            );
        }
    }
}

fn demo(
    bundle: Option<PathBuf>,
    images: Option<PathBuf>,
    trusted: Option<&TrustedKeys>,
) -> Result<()> {
    let shapes = Path::new(SHAPES_DIR);
    let shapes = shapes
        .canonicalize()
        .unwrap_or_else(|_| shapes.to_path_buf());
    let bundle = bundle.unwrap_or_else(|| shapes.join("bundle"));
    let images_dir = images.unwrap_or_else(|| shapes.join("samples"));
    let mut classifier = load_classifier(&bundle, trusted)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&images_dir)
        .with_context(|| format!("cannot list images in {}", images_dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no images to classify", images_dir.display());
    }
    println!(
        "clip-edge demo: {} labels from {}, {} images from {}\n",
        classifier.labels().len(),
        bundle.display(),
        files.len(),
        images_dir.display()
    );
    let mut named = 0;
    let mut correct = 0;
    for path in &files {
        let top = classify_one(&mut classifier, path, 3)?;
        let labels = classifier.labels().labels();
        let best = &labels[top[0].index];
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().replace('_', " "));
        let verdict = match stem.as_deref() {
            Some(stem) if labels.iter().any(|l| l == stem) => {
                named += 1;
                if stem == best {
                    correct += 1;
                    "ok"
                } else {
                    "WRONG"
                }
            }
            _ => "",
        };
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        println!(
            "{file:<28} -> {best:<20} ({:.1}%)  {verdict}",
            top[0].prob * 100.0
        );
        for p in top.iter().skip(1) {
            println!(
                "{:<28}    {:<20} ({:.1}%)",
                "",
                labels[p.index],
                p.prob * 100.0
            );
        }
    }
    if named > 0 {
        println!("\n{correct} of {named} images named after a label were classified as that label");
    }
    Ok(())
}

fn preprocess(
    image: &Path,
    out: &Path,
    bundle: Option<&Path>,
    trusted: Option<&TrustedKeys>,
) -> Result<()> {
    let config = match bundle {
        Some(dir) => {
            Bundle::load_with(dir, trusted)
                .with_context(|| format!("cannot load bundle {}", dir.display()))?
                .manifest
                .preprocess
        }
        None => PreprocessConfig::default(),
    };
    let size = config.crop_size as u64;
    let mut preprocessor = Preprocessor::new(config)?;
    let rgb = load_rgb8(image)?;
    let mut input = vec![0.0f32; (3 * size * size) as usize];
    preprocessor
        .preprocess_into(rgb.as_raw(), rgb.width(), rgb.height(), &mut input)
        .with_context(|| format!("{}", image.display()))?;
    clip_edge::npy::write_f32(out, &[1, 3, size, size], &input)
        .with_context(|| format!("cannot write {}", out.display()))
}

fn embed(bundle: &Path, trusted: Option<&TrustedKeys>, image: &Path, out: &Path) -> Result<()> {
    let mut classifier = load_classifier(bundle, trusted)?;
    let rgb = load_rgb8(image)?;
    let embedding = classifier
        .embed(&rgb)
        .with_context(|| format!("{}", image.display()))?;
    clip_edge::npy::write_f32(out, &[1, embedding.len() as u64], embedding)
        .with_context(|| format!("cannot write {}", out.display()))
}

fn bench(
    bundle: &Path,
    trusted: Option<&TrustedKeys>,
    frames: usize,
    image: Option<&Path>,
    json: bool,
    profile: bool,
    threads: usize,
) -> Result<()> {
    let frame = match image {
        Some(path) => load_rgb8(path)?,
        None => clip_edge::bench::synthetic_frame(),
    };
    if profile {
        let rows = clip_edge::bench::profile(bundle, trusted, &frame, frames)
            .with_context(|| format!("cannot profile bundle {}", bundle.display()))?;
        let total: f64 = rows.iter().map(|r| r.1).sum();
        println!(
            "{:<28} {:>10} {:>7} {:>6}",
            "operator", "ms/frame", "share", "calls"
        );
        for (op, ms, calls) in rows {
            println!(
                "{op:<28} {ms:>10.3} {:>6.1}% {calls:>6}",
                100.0 * ms / total
            );
        }
        println!("{:<28} {total:>10.3}", "total");
        return Ok(());
    }
    let r = clip_edge::bench::run(bundle, trusted, &frame, frames, threads)
        .with_context(|| format!("cannot benchmark bundle {}", bundle.display()))?;
    if json {
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    let p = |s: &clip_edge::bench::Percentiles| {
        format!("p50 {:8.2}  p90 {:8.2}  p99 {:8.2} ms", s.p50, s.p90, s.p99)
    };
    println!("bundle        {} ({})", r.bundle, r.precision);
    println!("load          {:.1} ms", r.load_ms);
    println!("first result  {:.1} ms", r.first_result_ms);
    println!("preprocess    {}", p(&r.preprocess_ms));
    println!("encode        {}", p(&r.encode_ms));
    println!("score         {}", p(&r.score_ms));
    println!(
        "throughput    {:.2} frames/s over {} frames, {} thread(s)",
        r.fps, r.frames, r.threads
    );
    if let Some(mb) = r.peak_rss_mb {
        println!("peak RSS      {mb:.1} MB");
    }
    if let (Some(ours), Some(tract)) = (r.allocs_per_frame, r.tract_allocs_per_frame) {
        println!(
            "allocations   {ours:.1} per frame outside tract, {tract:.1} in tract ({:.2} MB)",
            r.tract_alloc_bytes_per_frame.unwrap_or(0.0) / 1e6
        );
    }
    println!("kernels       {}", r.kernels.join(", "));
    Ok(())
}
