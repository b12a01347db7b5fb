//! One AFL++ harness for every target: the target's name is the first argument
//! (`cargo afl fuzz -i ../corpus/NAME -o out/NAME target/release/fuzz_target NAME`).

#[global_allocator]
static ALLOCATOR: clip_edge_fuzz::CappedAllocator = clip_edge_fuzz::CappedAllocator;

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(&(_, target)) = clip_edge_fuzz::TARGETS.iter().find(|(n, _)| *n == name) else {
        let names: Vec<_> = clip_edge_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
        eprintln!("usage: fuzz_target TARGET (one of {})", names.join(", "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| target(data));
}
