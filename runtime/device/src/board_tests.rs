//! Tests of the board profiles: the built-in ones, overrides, and bad files.

use std::path::PathBuf;

use super::*;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("clip-edge-board-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_builtin_profile_parses_and_validates() {
    let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, builtin_names());
    for name in builtin_names() {
        let p = load(name, &[]).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(p.name, *name);
        assert_eq!(p.origin, format!("built-in {name}"));
        assert!(p.threads >= 1 && p.threads <= p.cores, "{name}");
        assert!(TARGETS.contains(&p.target.as_str()), "{name}");
        let g = p.gpio.as_ref().unwrap();
        assert_eq!(g.board, *name);
        let mut lines: Vec<u32> = g.pins.values().copied().collect();
        lines.sort_unstable();
        lines.dedup();
        assert_eq!(lines.len(), g.pins.len(), "{name}: pins unique");
    }
}

#[test]
fn builtin_facts() {
    let kernel = |n: &str| load(n, &[]).unwrap().int8_kernel;
    assert_eq!(kernel("pi4"), Int8Kernel::Sadalp);
    assert_eq!(kernel("pi5"), Int8Kernel::Sdot);
    assert_eq!(kernel("pi-zero-2w"), Int8Kernel::Sadalp);
    assert_eq!(kernel("jetson-nano"), Int8Kernel::Sadalp);
    assert_eq!(kernel("jetson-orin"), Int8Kernel::Sdot);
    assert_eq!(Int8Kernel::Sdot.tract_kernel(), "arm64simd_mmm_i32_8x8_dot");
    assert_eq!(
        Int8Kernel::Sadalp.tract_kernel(),
        "arm64simd_mmm_i32_4x4_sadalp"
    );
    assert_eq!(
        Int8Kernel::Neon.tract_kernel(),
        "armv7neon_mmm_i32_4x2_sadalp"
    );
    let pi4 = load("pi4", &[]).unwrap();
    assert_eq!((pi4.cpu.as_str(), pi4.cores), ("cortex-a72", 4));
    let g = pi4.gpio.unwrap();
    assert_eq!((g.pins["led"], g.pins["button"]), (17, 27));
    assert!(load("pi-zero-2w", &[]).unwrap().memory_budget_mb <= 512);
}

#[test]
fn a_user_file_overrides_the_builtin() {
    let first = temp_dir("first");
    let second = temp_dir("second");
    let text = include_str!("../../../boards/pi5.toml").replace("/dev/gpiochip0", "/dev/gpiochip4");
    std::fs::write(first.join("pi5.toml"), &text).unwrap();
    std::fs::write(second.join("pi5.toml"), "garbage").unwrap();
    let p = load("pi5", &[first.clone(), second.clone()]).unwrap();
    assert_eq!(p.gpio.unwrap().chip, PathBuf::from("/dev/gpiochip4"));
    assert_eq!(p.origin, first.join("pi5.toml").display().to_string());
    // By path, too.
    let path = first.join("pi5.toml");
    assert_eq!(load(path.to_str().unwrap(), &[]).unwrap().name, "pi5");
    // A new board in a search dir is listed when a name is unknown.
    let mine = text.replace("name = \"pi5\"", "name = \"my-board\"");
    std::fs::write(second.join("my-board.toml"), mine).unwrap();
    assert_eq!(
        load("my-board", std::slice::from_ref(&second))
            .unwrap()
            .name,
        "my-board"
    );
    let e = load("nope", std::slice::from_ref(&second)).unwrap_err();
    assert!(e.to_string().contains("my-board"), "{e}");
    let _ = std::fs::remove_dir_all(first);
    let _ = std::fs::remove_dir_all(second);
}

#[test]
fn unknown_fields_are_rejected_naming_field_and_file() {
    let dir = temp_dir("unknown-field");
    let path = dir.join("x.toml");
    let text =
        include_str!("../../../boards/pi4.toml").replace("cores = 4", "cores = 4\ncoars = 4");
    std::fs::write(&path, text).unwrap();
    let e = load(path.to_str().unwrap(), &[]).unwrap_err();
    assert_eq!(e.kind(), BoardErrorKind::Invalid);
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("coars") && msg.contains("x.toml"), "{msg}");
    let text = include_str!("../../../boards/pi4.toml")
        .replace("led = 17", "led = 17\nflavour = 3\n[gpio.extra]");
    let e = BoardProfile::parse(&text, "t.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("extra"), "{e}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn invalid_values_are_rejected() {
    let base = include_str!("../../../boards/pi4.toml");
    for (from, to, expect) in [
        ("threads = 4", "threads = 5", "threads"),
        ("threads = 4", "threads = 0", "threads"),
        (
            "int8_kernel = \"sadalp\"",
            "int8_kernel = \"neon\"",
            "int8_kernel",
        ),
        ("int8_kernel = \"sadalp\"", "int8_kernel = \"avx\"", "avx"),
        (
            "target = \"aarch64-unknown-linux-musl\"",
            "target = \"x86_64\"",
            "x86_64",
        ),
        ("button = 27", "button = 17", "both line 17"),
        (
            "memory_budget_mb = 512",
            "memory_budget_mb = 0",
            "memory_budget_mb",
        ),
    ] {
        let text = base.replace(from, to);
        assert_ne!(text, base, "{from}");
        let e = BoardProfile::parse(&text, "pi4.toml").unwrap_err();
        assert_eq!(e.kind(), BoardErrorKind::Invalid);
        assert!(e.to_string().contains(expect), "{to}: {e}");
    }
}

#[test]
fn unknown_board_lists_the_names() {
    let e = load("pi3", &[]).unwrap_err();
    assert_eq!(e.kind(), BoardErrorKind::Unknown);
    let msg = e.to_string();
    for name in builtin_names() {
        assert!(msg.contains(name), "{msg}");
    }
    let e = load("missing/dir/pi4.toml", &[]).unwrap_err();
    assert_eq!(e.kind(), BoardErrorKind::Io);
    assert!(default_search_dirs().contains(&PathBuf::from("/etc/clip-edge/boards")));
}
