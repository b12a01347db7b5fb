//! The fuzz smoke CI runs: every target over its seed corpus and deterministic
//! mutations of each seed (bit flips, byte changes, truncations, insertions, splices
//! of two seeds). It has no coverage feedback, so it finds what is near the seeds;
//! the long coverage-guided runs are fuzz/README.md's recipe. An allocation of more
//! than [`clip_edge_fuzz::ALLOC_CAP`] bytes aborts the run, as a crash does.

use std::path::{Path, PathBuf};

/// Mutations per seed.
const MUTATIONS: usize = 300;

#[global_allocator]
static ALLOCATOR: clip_edge_fuzz::CappedAllocator = clip_edge_fuzz::CappedAllocator;

/// xorshift64*: the same mutations on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(seed: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = [0, 0xff, 0x7f, 0x80, b'0', b'9', b'"', b'['][rng.below(8)];
            }
            2 => data.truncate(rng.below(len + 1)),
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let byte = rng.next() as u8;
                data.splice(i..i, std::iter::repeat_n(byte, n));
            }
            4 if len > 4 => {
                // A 32-bit little-endian field set to an extreme (sizes, counts, offsets).
                let i = rng.below(len - 4);
                let v = [0u32, 1, 0x7fff_ffff, 0xffff_ffff, 0x10000][rng.below(5)];
                data[i..i + 4].copy_from_slice(&v.to_le_bytes());
            }
            5 if !other.is_empty() => {
                let i = rng.below(len + 1);
                let j = rng.below(other.len());
                data.truncate(i);
                data.extend_from_slice(&other[j..]);
            }
            _ if len > 1 => {
                let (a, b) = (rng.below(len), rng.below(len));
                data.swap(a, b);
            }
            _ => {}
        }
    }
    data
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    seeds.sort();
    if target == "nnef" {
        let nnef = tiny_nnef();
        // `just fuzz nnef` gives AFL++ this generated seed too.
        if let Some(dir) = std::env::var_os("CLIP_EDGE_FUZZ_SEEDS_OUT") {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(Path::new(&dir).join("tiny_encoder.nnef.tar"), &nnef).unwrap();
        }
        seeds.push((PathBuf::from("tiny_encoder.nnef.tar"), nnef));
    }
    assert!(!seeds.is_empty(), "no seeds for {target}");
    seeds
}

fn seed_onnx() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/nnef/tiny_encoder.onnx")
}

/// The NNEF tar of seeds/tiny_encoder.onnx, as `clip-quantize bundle` writes it.
fn tiny_nnef() -> Vec<u8> {
    let out = std::env::temp_dir().join(format!(
        "clip-edge-fuzz-seed-{}.nnef.tar",
        std::process::id()
    ));
    let mut file = std::fs::File::create(&out).unwrap();
    clip_quantize::nnef_export::write_nnef(&seed_onnx(), 224, &mut file, &out).unwrap();
    drop(file);
    let bytes = std::fs::read(&out).unwrap();
    // The seed is valid: it loads as a bundle's model would.
    clip_edge_core::ImageEncoder::load(&out, 224).expect("the NNEF seed loads");
    std::fs::remove_file(&out).unwrap();
    bytes
}

fn smoke(name: &str) {
    let target = clip_edge_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap();
    let seeds = corpus(name);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let mut runs = 0;
    for (i, (path, seed)) in seeds.iter().enumerate() {
        target(seed);
        let other = &seeds[(i + 1) % seeds.len()].1;
        for m in 0..MUTATIONS {
            let input = mutate(seed, other, &mut rng);
            let caught = std::panic::catch_unwind(|| target(&input));
            if caught.is_err() {
                let keep = std::env::temp_dir().join(format!("clip-edge-fuzz-crash-{name}-{m}"));
                std::fs::write(&keep, &input).unwrap();
                panic!(
                    "{name}: mutation {m} of {} panicked; input saved as {}",
                    path.display(),
                    keep.display()
                );
            }
            runs += 1;
        }
    }
    eprintln!("{name}: {} seeds, {runs} mutations", seeds.len());
}

#[test]
fn manifest() {
    smoke("manifest");
}
#[test]
fn labels() {
    smoke("labels");
}
#[test]
fn nnef() {
    smoke("nnef");
}
#[test]
fn mjpeg() {
    smoke("mjpeg");
}
#[test]
fn raw_frames() {
    smoke("raw_frames");
}
#[test]
fn board() {
    smoke("board");
}
#[test]
fn image() {
    smoke("image");
}
#[test]
fn tokenizer() {
    smoke("tokenizer");
}
#[test]
fn signature() {
    smoke("signature");
}

/// Every target has a test above and a corpus.
#[test]
fn every_target_is_smoked() {
    let here = include_str!("smoke.rs");
    for (name, _) in clip_edge_fuzz::TARGETS {
        assert!(
            here.contains(&format!("fn {name}()")),
            "no smoke test for {name}"
        );
        assert!(!corpus(name).is_empty());
    }
}
