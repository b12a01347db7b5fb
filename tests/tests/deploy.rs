//! `boards/deploy.sh` in `STAGE_ONLY` mode (no ssh, no board): the staged layout, the
//! systemd unit against it (and `systemd-analyze verify` when installed), `install.sh`
//! into a scratch root, and the error messages. Needs no built binary: a fake one is
//! staged, with fake board profiles.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clip_edge_e2e::{repo_root, scratch, shapes_dir, stderr, stdout};

/// A scratch dir with fake board profiles and a fake `clip-edge`.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Self {
        let dir = scratch(&format!("deploy-{name}"));
        let boards = dir.join("boards");
        fs::create_dir_all(&boards).unwrap();
        fs::write(
            boards.join("pi4.toml"),
            "name = \"Raspberry Pi 4\"\ntarget = \"aarch64-unknown-linux-musl\"\nthreads = 4\n",
        )
        .unwrap();
        fs::write(
            boards.join("jetson-orin.toml"),
            "# Jetson Orin\ntarget = \"aarch64-unknown-linux-musl\" # static: any JetPack\n\n[gpio]\nchip = \"/dev/gpiochip0\"\n",
        )
        .unwrap();
        let bin = dir.join("fake-clip-edge");
        fs::write(&bin, "#!/bin/sh\necho fake clip-edge\n").unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        Self { dir }
    }

    /// Runs `boards/deploy.sh ARGS` with this fixture's boards and binary.
    fn deploy(&self, stage: Option<&Path>, args: &[&str]) -> Output {
        let mut cmd = Command::new("bash");
        cmd.arg(repo_root().join("boards/deploy.sh"))
            .args(args)
            .env("BOARDS_DIR", self.dir.join("boards"))
            .env("CLIP_EDGE_BIN", self.dir.join("fake-clip-edge"))
            .env_remove("STAGE_ONLY")
            .current_dir(repo_root());
        if let Some(stage) = stage {
            cmd.env("STAGE_ONLY", stage);
        }
        cmd.output().expect("run boards/deploy.sh")
    }

    /// Stages for `board` into a fresh `stage-<board>` dir; returns it.
    fn stage(&self, board: &str) -> PathBuf {
        let stage = self.dir.join(format!("stage-{board}"));
        let bundle = shapes_dir().join("bundle-int8");
        let out = self.deploy(Some(&stage), &["-", board, bundle.to_str().unwrap()]);
        assert!(out.status.success(), "deploy.sh failed: {}", stderr(&out));
        stage
    }
}

/// Files under `dir`, relative, sorted.
fn files(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Absolute paths under /opt/clip-edge or /etc/clip-edge in the unit's settings
/// (comments skipped), with a `file://` prefix removed.
fn unit_paths(unit: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('#') || !line.contains('=') {
            continue;
        }
        for word in line.split(|c: char| c.is_whitespace() || c == '=') {
            let word = word.trim_start_matches('-').trim_start_matches("file://");
            if word.starts_with("/opt/clip-edge") || word.starts_with("/etc/clip-edge") {
                paths.push(word.to_string());
            }
        }
    }
    paths
}

#[test]
fn deploy_stage_only_lays_out_the_board_files() {
    let fx = Fixture::new("layout");
    let stage = fx.stage("jetson-orin");
    let bundle = shapes_dir().join("bundle-int8");
    let mut expected: Vec<String> = vec![
        "etc/clip-edge/clip-edge.env".into(),
        "etc/systemd/system/clip-edge.service".into(),
        "etc/udev/rules.d/60-clip-edge-gpio.rules".into(),
        "install.sh".into(),
        "opt/clip-edge/README.md".into(),
        "opt/clip-edge/bin/clip-edge".into(),
        "opt/clip-edge/boards/jetson-orin.toml".into(),
        "opt/clip-edge/boards/pi4.toml".into(),
    ];
    for f in files(&bundle) {
        expected.push(format!("opt/clip-edge/bundle/{f}"));
    }
    expected.sort();
    assert_eq!(files(&stage), expected);

    // The binary (a script: not stripped), executable; the bundle byte for byte.
    let bin = stage.join("opt/clip-edge/bin/clip-edge");
    assert_eq!(
        fs::read(&bin).unwrap(),
        fs::read(fx.dir.join("fake-clip-edge")).unwrap()
    );
    assert_eq!(
        fs::metadata(&bin).unwrap().permissions().mode() & 0o755,
        0o755
    );
    for f in files(&bundle) {
        assert_eq!(
            fs::read(stage.join("opt/clip-edge/bundle").join(&f)).unwrap(),
            fs::read(bundle.join(&f)).unwrap(),
            "{f}"
        );
    }

    // The env file names the board deployed; the rest is the template.
    let env = fs::read_to_string(stage.join("etc/clip-edge/clip-edge.env")).unwrap();
    assert!(
        env.lines().any(|l| l == "CLIP_EDGE_BOARD=jetson-orin"),
        "{env}"
    );
    assert!(
        env.lines().any(|l| l.starts_with("CLIP_EDGE_ARGS=")),
        "{env}"
    );
    assert!(env.lines().any(|l| l.starts_with("RUST_LOG=")), "{env}");
}

#[test]
fn deploy_unit_references_paths_that_exist_in_the_stage() {
    let fx = Fixture::new("unit");
    let stage = fx.stage("pi4");
    let unit = fs::read_to_string(stage.join("etc/systemd/system/clip-edge.service")).unwrap();
    let paths = unit_paths(&unit);
    for needed in [
        "/opt/clip-edge/bin/clip-edge",
        "/opt/clip-edge/bundle",
        "/etc/clip-edge/clip-edge.env",
        "/opt/clip-edge",
    ] {
        assert!(
            paths.iter().any(|p| p == needed),
            "unit lacks {needed}: {paths:?}"
        );
    }
    for p in &paths {
        let staged = stage.join(p.trim_start_matches('/'));
        assert!(staged.exists(), "unit names {p}, not in the stage");
    }
    // The settings the deploy relies on.
    let exec = unit
        .lines()
        .find(|l| l.starts_with("ExecStart="))
        .expect("ExecStart=");
    assert!(
        exec.contains("--board ${CLIP_EDGE_BOARD} run --bundle /opt/clip-edge/bundle"),
        "{exec}"
    );
    assert!(exec.ends_with(" $CLIP_EDGE_ARGS"), "{exec}");
    for setting in [
        "Type=notify",
        "NotifyAccess=main",
        "WatchdogSec=30s",
        "Restart=on-failure",
        "DynamicUser=yes",
        "DevicePolicy=closed",
        "CapabilityBoundingSet=",
        "EnvironmentFile=/etc/clip-edge/clip-edge.env",
    ] {
        assert!(unit.lines().any(|l| l == setting), "unit lacks {setting}");
    }
    // The board profiles the unit's --board looks up (WorkingDirectory/boards).
    assert!(stage.join("opt/clip-edge/boards/pi4.toml").is_file());
}

#[test]
fn deploy_unit_passes_systemd_analyze_verify() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed: skipping (apt-get install systemd)");
        return;
    }
    let fx = Fixture::new("verify");
    let stage = fx.stage("pi4");
    // A root with the stage and the host's system units (for multi-user.target etc.).
    let root = fx.dir.join("verify-root");
    let cp = |from: &Path, to: &Path| {
        let ok = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(to)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cp {} {}", from.display(), to.display());
    };
    cp(&stage, &root);
    fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
    cp(
        Path::new("/usr/lib/systemd/system"),
        &root.join("usr/lib/systemd/system"),
    );
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("/etc/systemd/system/clip-edge.service")
        .output()
        .unwrap();
    // verify exits 0 on unknown keys and bad values too, with a warning: none allowed.
    assert!(
        out.status.success() && stderr(&out).trim().is_empty(),
        "systemd-analyze verify: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn deploy_install_sh_keeps_an_existing_env_file() {
    let fx = Fixture::new("install");
    let stage = fx.stage("pi4");
    let root = fx.dir.join("root");
    let install = |stage: &Path| {
        let out = Command::new("sh")
            .arg(stage.join("install.sh"))
            .arg(&root)
            .output()
            .unwrap();
        assert!(out.status.success(), "install.sh: {}", stderr(&out));
        stdout(&out)
    };
    let said = install(&stage);
    assert!(said.contains("wrote"), "{said}");
    let env = root.join("etc/clip-edge/clip-edge.env");
    assert!(root.join("opt/clip-edge/bin/clip-edge").is_file());
    assert!(root.join("opt/clip-edge/bundle/bundle.toml").is_file());
    assert!(root.join("etc/systemd/system/clip-edge.service").is_file());

    // The user edits the settings; a deploy of another board keeps them.
    let mine = fs::read_to_string(&env).unwrap().replace(
        "CLIP_EDGE_ARGS=\"--json\"",
        "CLIP_EDGE_ARGS=\"--json --on 'red circle=led'\"",
    );
    assert!(mine.contains("red circle"), "template changed? {mine}");
    fs::write(&env, &mine).unwrap();
    let stale = root.join("opt/clip-edge/bundle/stale.onnx");
    fs::write(&stale, b"old").unwrap();
    let said = install(&fx.stage("jetson-orin"));
    assert!(said.contains("kept"), "{said}");
    let now = fs::read_to_string(&env).unwrap();
    assert_eq!(
        now,
        mine.replace("CLIP_EDGE_BOARD=pi4", "CLIP_EDGE_BOARD=jetson-orin")
    );
    assert!(root.join("etc/clip-edge/clip-edge.env.new").is_file());
    assert!(!stale.exists(), "/opt/clip-edge is replaced whole");
}

#[test]
fn deploy_bad_board_fails_listing_the_boards() {
    let fx = Fixture::new("bad-board");
    let stage = fx.dir.join("stage");
    let out = fx.deploy(Some(&stage), &["-", "pi3"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown board 'pi3'"), "{err}");
    assert!(err.contains("boards: jetson-orin pi4"), "{err}");
    assert!(!stage.exists() || fs::read_dir(&stage).unwrap().next().is_none());

    let out = fx.deploy(None, &["--target", "nano"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("unknown board 'nano'"));
    let out = fx.deploy(None, &["--target", "pi4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "aarch64-unknown-linux-musl");
}

#[test]
fn deploy_usage_and_other_errors_are_clear() {
    let fx = Fixture::new("usage");
    let out = fx.deploy(None, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("usage: boards/deploy.sh HOST [BOARD] [BUNDLE]"));

    // No binary built for the board's target: says how to build it.
    let mut cmd = Command::new("bash");
    let out = cmd
        .arg(repo_root().join("boards/deploy.sh"))
        .args(["-", "pi4"])
        .env("BOARDS_DIR", fx.dir.join("boards"))
        .env("CLIP_EDGE_BIN", fx.dir.join("missing"))
        .env("STAGE_ONLY", fx.dir.join("stage"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("just cross aarch64-unknown-linux-musl"),
        "{}",
        stderr(&out)
    );

    // Not a bundle.
    let out = fx.deploy(Some(&fx.dir.join("stage2")), &["-", "pi4", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not a bundle"), "{}", stderr(&out));

    // A non-empty STAGE_ONLY dir is not overwritten.
    let full = fx.dir.join("full");
    fs::create_dir_all(&full).unwrap();
    fs::write(full.join("keep"), b"x").unwrap();
    let out = fx.deploy(Some(&full), &["-", "pi4"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
}

#[test]
fn deploy_target_of_every_real_profile() {
    // The repository's own profiles (boards/*.toml), once they exist.
    let boards = repo_root().join("boards");
    let targets = [
        "aarch64-unknown-linux-musl",
        "aarch64-unknown-linux-gnu",
        "armv7-unknown-linux-gnueabihf",
    ];
    for entry in fs::read_dir(&boards).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let name = path.file_stem().unwrap().to_str().unwrap().to_string();
        let out = Command::new("bash")
            .arg(boards.join("deploy.sh"))
            .args(["--target", &name])
            .env_remove("BOARDS_DIR")
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let target = stdout(&out).trim().to_string();
        assert!(targets.contains(&target.as_str()), "{name}: {target}");
        assert!(
            !stderr(&out).contains("has no target"),
            "{name}: {}",
            stderr(&out)
        );
    }
}
