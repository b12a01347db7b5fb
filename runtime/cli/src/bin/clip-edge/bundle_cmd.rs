//! `clip-edge bundle install|rollback|status`: the board's installed bundles
//! (clip_edge_device::bundle_store).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use clip_edge_bundle::TrustedKeys;
use clip_edge_device::bundle_store::{self, InstallStep};

/// Where a deployed board keeps its bundles (`boards/deploy.sh`).
const DEFAULT_ROOT: &str = "/opt/clip-edge";

/// Names the install step at which to abort the process, as a power loss would stop
/// it: for the tests of `tests/tests/bundle_updates.rs`.
const ABORT_AT_ENV: &str = "CLIP_EDGE_ABORT_AT_STEP";

#[derive(Subcommand)]
pub enum BundleCmd {
    /// Install a bundle beside the current one, verify it, and switch to it atomically.
    ///
    /// The bundle is copied into ROOT/bundles/, loaded as the service loads it (its
    /// signature under --trust or the board profile's trusted_keys, its hashes) and
    /// run on one frame; only then does ROOT/bundle (a symlink) point at it, in one
    /// rename. The bundle it replaces becomes ROOT/bundle.previous, for `rollback`.
    /// A failure or a power loss at any step leaves ROOT/bundle the old bundle or the
    /// new one, whole. Restart the service afterwards (boards/deploy.sh does).
    Install {
        /// The bundle directory to install.
        bundle: PathBuf,
        /// Where the bundles live.
        #[arg(long, default_value = DEFAULT_ROOT)]
        root: PathBuf,
    },
    /// Make the previous bundle current again (and the current one previous).
    Rollback {
        /// Where the bundles live.
        #[arg(long, default_value = DEFAULT_ROOT)]
        root: PathBuf,
    },
    /// Print the current and previous bundles and every installed one.
    Status {
        /// Where the bundles live.
        #[arg(long, default_value = DEFAULT_ROOT)]
        root: PathBuf,
    },
}

/// Runs `clip-edge bundle ...`.
pub fn run(cmd: BundleCmd, trusted: Option<&TrustedKeys>) -> Result<()> {
    match cmd {
        BundleCmd::Install { bundle, root } => install(&bundle, &root, trusted),
        BundleCmd::Rollback { root } => {
            let id = bundle_store::rollback(&root)
                .with_context(|| format!("cannot roll back in {}", root.display()))?;
            println!("current bundle: {id} (rolled back); restart the service to load it");
            Ok(())
        }
        BundleCmd::Status { root } => {
            let s = bundle_store::status(&root)
                .with_context(|| format!("cannot read {}", root.display()))?;
            let none = || "none".to_string();
            println!("current   {}", s.current.unwrap_or_else(none));
            println!("previous  {}", s.previous.unwrap_or_else(none));
            println!("installed {}", s.installed.join(" "));
            Ok(())
        }
    }
}

fn install(bundle: &Path, root: &Path, trusted: Option<&TrustedKeys>) -> Result<()> {
    let abort_at = std::env::var(ABORT_AT_ENV).ok();
    let verify = |dir: &Path| -> Result<(), clip_edge_core::ClassifyError> {
        let mut classifier = clip_edge_core::Classifier::load_with(dir, trusted)?;
        classifier.classify(&clip_edge::bench::synthetic_frame(), 1)?;
        Ok(())
    };
    let id = bundle_store::install(root, bundle, verify, |step: InstallStep| {
        log::info!("install: {}", step.name());
        if abort_at.as_deref() == Some(step.name()) {
            std::process::abort();
        }
    })
    .with_context(|| {
        format!(
            "cannot install bundle {} in {}",
            bundle.display(),
            root.display()
        )
    })?;
    println!("current bundle: {id}; restart the service to load it");
    Ok(())
}
