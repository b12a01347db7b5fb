//! `clip-edge bundle install|rollback|status` on a board's bundle store: the process
//! stopped at every install step (`abort()`, as a power loss stops it, with no
//! clean-up) leaves `ROOT/bundle` a bundle that loads, the old one or the new one; a
//! bundle that fails verification is never switched to.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clip_edge_e2e::{
    assert_clean_failure, bin, copy_dir, repo_root, run, scratch, shapes_dir, stderr, stdout,
};

/// `clip-edge ARGS` with `CLIP_EDGE_ABORT_AT_STEP=abort_at`.
fn clip_edge(args: &[&str], abort_at: Option<&str>) -> Output {
    let mut cmd = Command::new(bin("clip-edge"));
    cmd.args(args).current_dir(repo_root());
    if let Some(step) = abort_at {
        cmd.env("CLIP_EDGE_ABORT_AT_STEP", step);
    }
    cmd.output().expect("run clip-edge")
}

fn install(root: &Path, bundle: &Path, abort_at: Option<&str>) -> Output {
    clip_edge(
        &[
            "bundle",
            "install",
            bundle.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
        abort_at,
    )
}

/// (current, previous, installed) from `clip-edge bundle status`.
fn status(root: &Path) -> (String, String, String) {
    let out = clip_edge(
        &["bundle", "status", "--root", root.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    (field("current"), field("previous"), field("installed"))
}

/// The top-1 label `clip-edge classify` gives with `ROOT/bundle`.
fn classify_current(root: &Path) -> String {
    let img = shapes_dir().join("samples/red_triangle.png");
    let out = run(
        "clip-edge",
        &[
            "classify",
            "--json",
            "--top-k",
            "1",
            "--bundle",
            root.join("bundle").to_str().unwrap(),
            img.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "ROOT/bundle does not load: {}",
        stderr(&out)
    );
    stdout(&out)
}

fn shapes(name: &str) -> PathBuf {
    shapes_dir().join(name)
}

#[test]
fn a_stop_at_any_install_step_leaves_a_bundle_that_loads() {
    let steps = [
        "copy",
        "verify",
        "place",
        "keep-previous",
        "switch",
        "prune",
    ];
    for step in steps {
        let root = scratch(&format!("store-{step}"));
        let first = install(&root, &shapes("bundle"), None);
        assert!(first.status.success(), "{}", stderr(&first));
        let (old, _, _) = status(&root);

        let out = install(&root, &shapes("bundle-int8"), Some(step));
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{step}: {}",
            stderr(&out)
        );
        let (current, _, _) = status(&root);
        // Only a stop after the switch (at pruning) finds the new bundle current.
        if step == "prune" {
            assert_ne!(current, old, "stopped at {step}: the switch was done");
        } else {
            assert_eq!(current, old, "stopped at {step}: still the old bundle");
        }
        assert!(classify_current(&root).contains("red triangle"));

        // The next install finishes and leaves only the current and previous bundles.
        let again = install(&root, &shapes("bundle-int8"), None);
        assert!(again.status.success(), "{step}: {}", stderr(&again));
        let (current, previous, installed) = status(&root);
        assert_ne!(current, old);
        assert_eq!(previous, old, "after a stop at {step}");
        let mut both = [current.clone(), previous.clone()];
        both.sort();
        assert_eq!(installed, both.join(" "), "after a stop at {step}");
        let leftovers: Vec<_> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{step}: {leftovers:?}");
    }
}

/// A board deployed before the store has `ROOT/bundle` as a plain directory: the
/// first install moves it into `bundles/` and keeps it as previous.
#[test]
fn a_plain_bundle_directory_becomes_the_previous_bundle() {
    let root = scratch("store-plain");
    let plain = root.join("bundle");
    copy_dir(&shapes("bundle"), &plain);
    let before = classify_current(&root);
    let out = install(&root, &shapes("bundle-int8"), Some("copy"));
    assert_eq!(out.status.signal(), Some(libc::SIGABRT));
    assert_eq!(classify_current(&root), before);
    let out = install(&root, &shapes("bundle-int8"), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let (current, previous, _) = status(&root);
    assert!(!current.is_empty() && !previous.is_empty() && current != previous);
    let rolled = clip_edge(
        &["bundle", "rollback", "--root", root.to_str().unwrap()],
        None,
    );
    assert!(rolled.status.success(), "{}", stderr(&rolled));
    assert_eq!(status(&root).0, previous);
    assert_eq!(classify_current(&root), before);
}

#[test]
fn a_bundle_that_fails_verification_is_never_switched_to() {
    let root = scratch("store-rejected");
    assert!(install(&root, &shapes("bundle"), None).status.success());
    let (old, _, _) = status(&root);

    let corrupt = scratch("store-rejected-src").join("bundle");
    copy_dir(&shapes("bundle-int8"), &corrupt);
    let model = corrupt.join("model.nnef.tar");
    let mut bytes = std::fs::read(&model).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&model, bytes).unwrap();
    let out = install(&root, &corrupt, None);
    assert_clean_failure(&out, &["failed verification", "file changed or corrupt"]);
    assert_eq!(status(&root).0, old);

    // Under a trust list, an unsigned bundle is refused the same way.
    let keys = scratch("store-keys");
    let secret = keys.join("release");
    let made = run(
        "clip-quantize",
        &["keygen", "--out", secret.to_str().unwrap()],
    );
    assert!(made.status.success(), "{}", stderr(&made));
    let public = keys.join("release.pub");
    let out = clip_edge(
        &[
            "--trust",
            public.to_str().unwrap(),
            "bundle",
            "install",
            shapes("bundle-int8").to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ],
        None,
    );
    assert_clean_failure(&out, &["failed verification", "not signed"]);
    assert_eq!(status(&root).0, old);

    let out = clip_edge(
        &["bundle", "rollback", "--root", root.to_str().unwrap()],
        None,
    );
    assert_clean_failure(&out, &["no previous bundle"]);
}
