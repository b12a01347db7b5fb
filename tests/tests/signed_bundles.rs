//! Signed bundles end to end: `clip-quantize keygen`, `bundle --sign` and `sign` on the
//! workstation; `clip-edge --trust` and a board profile's `trusted_keys` on the board,
//! refusing an unsigned bundle, another key's, and any file changed after signing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use clip_edge_e2e::{
    assert_clean_failure, copy_dir, make_bundle, run, scratch, shapes_dir, stderr, stdout,
};

/// `clip-quantize keygen --out DIR/NAME`; returns (secret, public) key paths.
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let secret = dir.join(name);
    let out = run(
        "clip-quantize",
        &["keygen", "--out", secret.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    (secret.clone(), dir.join(format!("{name}.pub")))
}

/// `clip-edge [PRE...] classify --json --top-k 1 --bundle BUNDLE red_triangle.png`.
fn classify(pre: &[&str], bundle: &Path) -> std::process::Output {
    let img = shapes_dir().join("samples/red_triangle.png");
    let mut args = pre.to_vec();
    args.extend([
        "classify",
        "--json",
        "--top-k",
        "1",
        "--bundle",
        bundle.to_str().unwrap(),
        img.to_str().unwrap(),
    ]);
    run("clip-edge", &args)
}

#[test]
fn keygen_writes_a_private_secret_key_and_never_overwrites_one() {
    let dir = scratch("keygen");
    let (secret, public) = keygen(&dir, "release");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "secret key mode {mode:o}");
    let pem = std::fs::read_to_string(&secret).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    assert!(std::fs::read_to_string(&public)
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));

    let again = run(
        "clip-quantize",
        &["keygen", "--out", secret.to_str().unwrap()],
    );
    assert_clean_failure(&again, &["already exists"]);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), pem);
}

#[test]
fn only_a_bundle_signed_by_a_trusted_key_classifies() {
    let dir = scratch("signed");
    let (release, release_pub) = keygen(&dir, "release");
    let (other, other_pub) = keygen(&dir, "other");
    let trust = ["--trust", release_pub.to_str().unwrap()];
    let shapes = shapes_dir();
    let expected = stdout(&classify(&[], &shapes.join("bundle")));
    assert!(expected.contains("red triangle"), "{expected}");

    // `bundle --sign`: the same answers as the committed (unsigned) bundle.
    let signed = dir.join("signed");
    make_bundle(
        &shapes.join("image_encoder.onnx"),
        &shapes.join("bundle/labels.safetensors"),
        &signed,
        &["--sign", release.to_str().unwrap()],
    );
    let out = classify(&trust, &signed);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), expected);

    // Unsigned: refused under --trust, loads without.
    let unsigned = dir.join("unsigned");
    copy_dir(&shapes.join("bundle"), &unsigned);
    assert_clean_failure(&classify(&trust, &unsigned), &["not signed"]);
    assert!(classify(&[], &unsigned).status.success());

    // Signed by a key the board does not trust; then trusted among several.
    let by_other = dir.join("by-other");
    copy_dir(&unsigned, &by_other);
    let out = run(
        "clip-quantize",
        &[
            "sign",
            "--bundle",
            by_other.to_str().unwrap(),
            "--key",
            other.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_clean_failure(&classify(&trust, &by_other), &["none of the trusted keys"]);
    let both = [trust[0], trust[1], "--trust", other_pub.to_str().unwrap()];
    assert_eq!(stdout(&classify(&both, &by_other)), expected);

    // Any file changed after signing.
    for (file, needle) in [
        ("bundle.toml", "none of the trusted keys"),
        ("model.nnef.tar", "file changed or corrupt"),
        ("labels.safetensors", "file changed or corrupt"),
    ] {
        let changed = dir.join(format!("changed-{file}"));
        copy_dir(&signed, &changed);
        let path = changed.join(file);
        let mut bytes = std::fs::read(&path).unwrap();
        if file == "bundle.toml" {
            bytes = String::from_utf8(bytes)
                .unwrap()
                .replace("logit_scale = ", "logit_scale = 1")
                .into_bytes();
        } else {
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
        }
        std::fs::write(&path, bytes).unwrap();
        assert_clean_failure(&classify(&trust, &changed), &[needle]);
    }

    // A public key that is not one: a clear error, not a panic.
    assert_clean_failure(
        &classify(&["--trust", release.to_str().unwrap()], &signed),
        &["not an ed25519 public key"],
    );
}

#[test]
fn a_board_profile_trusts_its_keys_and_rebundling_unsigned_drops_the_signature() {
    let dir = scratch("board-trust");
    let (release, release_pub) = keygen(&dir, "release");
    let profile = dir.join("board.toml");
    let pi4 = std::fs::read_to_string(clip_edge_e2e::repo_root().join("boards/pi4.toml")).unwrap();
    let (head, gpio) = pi4.split_once("[gpio]").unwrap();
    std::fs::write(
        &profile,
        format!(
            "{head}trusted_keys = [{:?}]\n\n[gpio]{gpio}",
            release_pub.to_str().unwrap()
        ),
    )
    .unwrap();
    let board = ["--board", profile.to_str().unwrap()];
    let shapes = shapes_dir();
    let bundle = dir.join("bundle");
    let (model, labels) = (
        shapes.join("image_encoder.onnx"),
        shapes.join("bundle/labels.safetensors"),
    );
    make_bundle(
        &model,
        &labels,
        &bundle,
        &["--sign", release.to_str().unwrap()],
    );
    let out = classify(&board, &bundle);
    assert!(out.status.success(), "{}", stderr(&out));

    // Rewritten without --sign: the old signature must not stay behind.
    make_bundle(&model, &labels, &bundle, &[]);
    assert!(!bundle.join("bundle.sig").exists());
    assert_clean_failure(&classify(&board, &bundle), &["not signed"]);

    // A relative key path in a profile is refused when the profile loads.
    std::fs::write(
        &profile,
        format!("{head}trusted_keys = [\"release.pub\"]\n\n[gpio]{gpio}"),
    )
    .unwrap();
    assert_clean_failure(&classify(&board, &bundle), &["not an absolute path"]);
}
