//! The smaller subcommands: tokenize, preprocess, embed, and --help.

use clip_edge_e2e::{run, scratch, shapes_dir, shapes_samples, stderr, stdout};
use serde_json::Value;

#[test]
fn tokenize_json_prints_77_ids_per_text() {
    let out = run(
        "clip-quantize",
        &["tokenize", "--json", "a photo of a cat.", "Hello!"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: Vec<Vec<i64>> = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(rows.len(), 2);
    // From OpenAI's clip.tokenize.
    assert_eq!(
        &rows[0][..8],
        &[49406, 320, 1125, 539, 320, 2368, 269, 49407]
    );
    assert_eq!(&rows[1][..4], &[49406, 3306, 256, 49407]);
    assert!(rows.iter().all(|r| r.len() == 77));
    assert!(rows[0][8..].iter().all(|&id| id == 0));
}

#[test]
fn tokenize_plain_prints_one_line_per_text() {
    let out = run("clip-quantize", &["tokenize", "cat", "dog"]);
    assert!(out.status.success());
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(lines.iter().all(|l| l.split(' ').count() == 77));
}

#[test]
fn preprocess_writes_the_model_input_as_npy() {
    let dir = scratch("preprocess");
    let npy = dir.join("x.npy");
    let img = shapes_samples().remove(0);
    let out = run(
        "clip-edge",
        &[
            "preprocess",
            img.to_str().unwrap(),
            "--out",
            npy.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&npy).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]);
    assert!(header.contains("(1, 3, 224, 224"), "{header}");
    assert_eq!(bytes.len() - 10 - header_len, 3 * 224 * 224 * 4);
    // Normalised values of a real image lie in CLIP's range and are not constant.
    let values: Vec<f32> = bytes[10 + header_len..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    assert!(values.iter().all(|v| (-1.8..=2.2).contains(v)));
    let min = values.iter().cloned().fold(f32::MAX, f32::min);
    let max = values.iter().cloned().fold(f32::MIN, f32::max);
    assert!(max - min > 0.5);
}

#[test]
fn embed_writes_a_raw_embedding_of_the_bundle_dim() {
    let dir = scratch("embed");
    let npy = dir.join("e.npy");
    let bundle = shapes_dir().join("bundle");
    let img = shapes_samples().remove(0);
    let out = run(
        "clip-edge",
        &[
            "embed",
            "--bundle",
            bundle.to_str().unwrap(),
            img.to_str().unwrap(),
            "--out",
            npy.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let manifest: toml::Value =
        toml::from_str(&std::fs::read_to_string(bundle.join("bundle.toml")).unwrap()).unwrap();
    let dim = manifest["model"]["embedding_dim"].as_integer().unwrap() as usize;
    let bytes = std::fs::read(&npy).unwrap();
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]);
    assert!(header.contains(&format!("(1, {dim},")), "{header}");
    assert_eq!(bytes.len() - 10 - header_len, dim * 4);
}

#[test]
fn classify_json_lines_have_the_documented_keys() {
    let bundle = shapes_dir().join("bundle");
    let img = shapes_samples().remove(0);
    let out = run(
        "clip-edge",
        &[
            "classify",
            "--bundle",
            bundle.to_str().unwrap(),
            "--json",
            "--top-k",
            "2",
            img.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    for t in top {
        assert!(
            t["label"].is_string() && t["score"].is_f64() && t["prob"].is_f64(),
            "{t}"
        );
    }
}

#[test]
fn help_explains_every_subcommand() {
    for (bin, subs) in [
        (
            "clip-edge",
            &["demo", "classify", "preprocess", "embed", "bundle"][..],
        ),
        (
            "clip-quantize",
            &["tokenize", "labels", "bundle", "keygen", "sign"][..],
        ),
    ] {
        let out = run(bin, &["--help"]);
        assert!(out.status.success());
        let text = stdout(&out);
        for sub in subs {
            assert!(text.contains(sub), "{bin} --help lacks {sub}: {text}");
        }
    }
    let out = run(
        "clip-edge",
        &["classify", "--top-k", "99", "--bundle", "x", "y"],
    );
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("panicked"));
}

#[test]
fn threads_change_speed_not_answers() {
    let bundle = shapes_dir().join("bundle-int8");
    let img = shapes_dir().join("samples/red_triangle.png");
    let classify = |threads: &str| {
        let out = run(
            "clip-edge",
            &[
                "--threads",
                threads,
                "classify",
                "--bundle",
                bundle.to_str().unwrap(),
                "--json",
                "--top-k",
                "5",
                img.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    assert_eq!(classify("1"), classify("3"));
    let out = run(
        "clip-edge",
        &[
            "bench",
            "--threads",
            "2",
            "--bundle",
            bundle.to_str().unwrap(),
            "--frames",
            "2",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["threads"], 2);
    assert_eq!(v["allocs_per_frame"], 0.0);
    assert!(
        v["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k.as_str().unwrap().contains("i32")),
        "{v}"
    );
    let out = run("clip-edge", &["--threads", "0", "demo"]);
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("panicked"));
}
