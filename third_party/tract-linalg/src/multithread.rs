use std::cell::RefCell;
#[cfg(feature = "multithread-mm")]
use std::sync::atomic::{AtomicUsize, Ordering};
#[allow(unused_imports)]
use std::sync::{Arc, Mutex};

#[cfg(feature = "multithread-mm")]
use rayon::{ThreadPool, ThreadPoolBuilder};

use tract_data::internal::num_integer::Integer;
use tract_data::internal::vector_size;
use tract_data::internal::{Tensor, TensorView, TractResult, ensure};

use crate::BinFn;

#[derive(Debug, Clone, Default)]
pub enum Executor {
    #[default]
    SingleThread,
    #[cfg(feature = "multithread-mm")]
    MultiThread(Arc<ThreadPool>),
    /// Use rayon's GLOBAL thread pool — the one set up by
    /// `wasm_bindgen_rayon::init_thread_pool` on `wasm32-unknown-unknown`,
    /// or rayon's auto-initialised default on native.
    ///
    /// Exists because `Arc<rayon::ThreadPool>` cannot be constructed on
    /// `wasm32-unknown-unknown`: rayon's default `spawn_handler` calls
    /// `std::thread::spawn`, which is unsupported there. The only working
    /// route is rayon's global pool, accessed via `into_par_iter` directly.
    #[cfg(feature = "multithread-mm")]
    RayonGlobal,
}

impl Executor {
    #[cfg(feature = "multithread-mm")]
    pub fn multithread(n: usize) -> Executor {
        Executor::multithread_with_name(n, "tract-default")
    }

    /// A private `n`-thread rayon pool.
    ///
    /// On wasm targets that cannot spawn threads (`wasm32-wasip1`,
    /// `wasm32-unknown-unknown`) this quietly returns [`Executor::RayonGlobal`]
    /// instead: the pool `wasm_bindgen_rayon` set up if there is one, else
    /// rayon's current-thread fallback, so callers need no wasm special case.
    #[cfg(feature = "multithread-mm")]
    pub fn multithread_with_name(n: usize, name: &str) -> Executor {
        let name = name.to_string();
        match ThreadPoolBuilder::new()
            .thread_name(move |n| format!("{name}-{n}"))
            .num_threads(n)
            .build()
        {
            Ok(pool) => Executor::MultiThread(Arc::new(pool)),
            Err(_) if cfg!(target_family = "wasm") => Executor::RayonGlobal,
            Err(e) => panic!("Failed to build a {n}-thread pool: {e}"),
        }
    }
}

static DEFAULT_EXECUTOR: Mutex<Executor> = Mutex::new(Executor::SingleThread);

thread_local! {
    static TLS_EXECUTOR_OVERRIDE: RefCell<Option<Executor>> = Default::default();
}

pub fn current_tract_executor() -> Executor {
    if let Some(over_ride) = TLS_EXECUTOR_OVERRIDE.with_borrow(|tls| tls.clone()) {
        over_ride
    } else {
        DEFAULT_EXECUTOR.lock().unwrap().clone()
    }
}

pub fn set_default_executor(executor: Executor) {
    *DEFAULT_EXECUTOR.lock().unwrap() = executor;
}

pub fn multithread_tract_scope<R, F: FnOnce() -> R>(pool: Executor, f: F) -> R {
    let previous = TLS_EXECUTOR_OVERRIDE.replace(Some(pool));
    let result = f();
    TLS_EXECUTOR_OVERRIDE.set(previous);
    result
}

/// Threshold (in panels) below which the rayon MMM dispatcher skips
/// parallelism and runs inline single-threaded. Below this size,
/// per-call dispatch overhead (~5 µs native, ~50 µs wasm-bindgen-rayon
/// worker) exceeds the parallel speedup.
///
/// Default `64`. Tune higher for many-small-MMM workloads (mobile vision,
/// streaming RNN) or lower for transformer-class workloads where every MMM
/// is large. `0` disables the gate entirely (always thread).
#[cfg(feature = "multithread-mm")]
static THREADING_PANEL_THRESHOLD: AtomicUsize = AtomicUsize::new(64);

/// Read the current MMM panel-count threshold for the rayon path.
#[cfg(feature = "multithread-mm")]
pub fn current_threading_panel_threshold() -> usize {
    THREADING_PANEL_THRESHOLD.load(Ordering::Relaxed)
}

/// Set the MMM panel-count threshold for the rayon path. Default is `64`.
/// Pass `0` to thread regardless of size.
#[cfg(feature = "multithread-mm")]
pub fn set_threading_panel_threshold(panels: usize) {
    THREADING_PANEL_THRESHOLD.store(panels, Ordering::Relaxed);
}

/// Multiply-accumulate count at or above which the rayon MMM dispatcher
/// threads a matrix-vector product even when it has fewer panels than
/// [`current_threading_panel_threshold`]: a long-`k` GEMV over few panels
/// carries enough work per panel to amortise the dispatch. It only ever adds
/// threading on top of the panel gate, and leaves matrix-matrix products to
/// the panel gate alone.
///
/// Default `2^21` on native targets; `usize::MAX` (off) on wasm, where the
/// per-dispatch cost is an order of magnitude higher.
#[cfg(feature = "multithread-mm")]
static THREADING_MAC_THRESHOLD: AtomicUsize =
    AtomicUsize::new(if cfg!(target_family = "wasm") { usize::MAX } else { 1 << 21 });

/// Read the current MMM multiply-accumulate threshold for the rayon path.
#[cfg(feature = "multithread-mm")]
pub fn current_threading_mac_threshold() -> usize {
    THREADING_MAC_THRESHOLD.load(Ordering::Relaxed)
}

/// Set the MMM multiply-accumulate threshold for the rayon path. Pass
/// `usize::MAX` to leave the decision to the panel gate alone.
#[cfg(feature = "multithread-mm")]
pub fn set_threading_mac_threshold(macs: usize) {
    THREADING_MAC_THRESHOLD.store(macs, Ordering::Relaxed);
}

/// Threshold (in tensor elements) below which [`par_chunks_mut`] skips
/// parallelism and runs its body inline single-threaded. Below this much work,
/// per-dispatch overhead exceeds the parallel speedup. Distinct from
/// `THREADING_PANEL_THRESHOLD`: this counts elements of work, not MMM panels.
///
/// Default `32768`. `0` disables the gate entirely (always thread).
#[cfg(feature = "multithread-mm")]
static THREADING_ELEMENT_THRESHOLD: AtomicUsize = AtomicUsize::new(32768);

/// Read the current element-count threshold for the row-parallel path.
#[cfg(feature = "multithread-mm")]
pub fn current_threading_element_threshold() -> usize {
    THREADING_ELEMENT_THRESHOLD.load(Ordering::Relaxed)
}

/// Set the element-count threshold for the row-parallel path. Default is
/// `32768`. Pass `0` to thread regardless of size.
#[cfg(feature = "multithread-mm")]
pub fn set_threading_element_threshold(elements: usize) {
    THREADING_ELEMENT_THRESHOLD.store(elements, Ordering::Relaxed);
}

/// Process `out` in parallel over its outer (row) axis, dispatching across the
/// executor installed by [`multithread_tract_scope`]. Falls back to a single
/// inline `f(0, out)` when the executor is single-threaded (including a
/// one-thread pool), when there are fewer than two rows, or when `total_elems`
/// is below [`current_threading_element_threshold`].
///
/// `out` is viewed as `out.len() / row_len` contiguous rows of `row_len`
/// elements (`row_len` must divide `out.len()`). Work is split only on row
/// boundaries, never inside a row, so any per-row reduction the closure runs
/// keeps its accumulation order and the output is bit-identical to the inline
/// path regardless of thread count.
///
/// The closure receives `(first_row, chunk)`: `chunk` is a contiguous block of
/// whole rows and `first_row` is the index of its first row within `out`, used
/// to index sibling buffers captured from the caller (e.g. an out-of-place
/// reduce whose input row is `reduced_dim` wide while `out` rows are width 1).
/// For such callers `total_elems` is the size of the data actually read, which
/// can exceed `out.len()`.
///
/// The signature is identical with or without the `multithread-mm` feature so
/// callers compile unchanged; without the feature the body is just `f(0, out)`.
pub fn par_chunks_mut<T: Send>(
    out: &mut [T],
    row_len: usize,
    total_elems: usize,
    f: impl Fn(usize, &mut [T]) -> TractResult<()> + Sync + Send,
) -> TractResult<()> {
    #[cfg(feature = "multithread-mm")]
    {
        par_chunks_mut_dyn(out, row_len, total_elems, &f)
    }
    #[cfg(not(feature = "multithread-mm"))]
    {
        let _ = (row_len, total_elems);
        f(0, out)
    }
}

/// [`par_chunks_mut`] with the closure as a trait object.
// clip-edge patch: generic over the closure, the rayon dispatch below (and rayon's
// splitting code under it) was compiled once per caller and datum type, some 470
// copies on aarch64; now once per `T`. The closure runs once per chunk, so the
// indirect call costs nothing measurable.
#[cfg(feature = "multithread-mm")]
fn par_chunks_mut_dyn<T: Send>(
    out: &mut [T],
    row_len: usize,
    total_elems: usize,
    f: &(dyn Fn(usize, &mut [T]) -> TractResult<()> + Sync),
) -> TractResult<()> {
    use rayon::prelude::*;
    debug_assert!(row_len >= 1 && out.len() % row_len == 0);
    let n_rows = out.len() / row_len;
    if n_rows < 2 || total_elems < current_threading_element_threshold() {
        return f(0, out);
    }
    let run = |out: &mut [T]| -> TractResult<()> {
        let n_chunks = (4 * rayon::current_num_threads()).min(n_rows);
        let chunk_rows = n_rows.div_ceil(n_chunks);
        out.par_chunks_mut(chunk_rows * row_len)
            .enumerate()
            .try_for_each(|(i, chunk)| f(i * chunk_rows, chunk))
    };
    match current_tract_executor() {
        Executor::MultiThread(pool) if pool.current_num_threads() > 1 => {
            pool.install(|| run(out))
        }
        Executor::RayonGlobal => run(out),
        // SingleThread, or a one-thread MultiThread pool, runs inline serially.
        _ => f(0, out),
    }
}

/// How `b` maps onto the blocks [`par_bin`] splits `a` into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BShare {
    /// `b` is one `period`-element row that every block of `a` consumes in
    /// lockstep, as the unicast kernels do. Requires `b.len() == period`.
    Lockstep,
    /// `b` holds one scalar per block of `a`, as the by-scalar kernels do:
    /// block `i` reads `b[i]`. Requires `b.len() == a.len() / period`.
    PerBlock,
}

/// Largest `t` dividing `q` with `t <= cap` (at least 1).
fn largest_divisor_at_most(q: usize, cap: usize) -> usize {
    let mut t = 1;
    let mut d = 1;
    while d * d <= q {
        if q % d == 0 {
            for cand in [d, q / d] {
                if cand <= cap {
                    t = t.max(cand);
                }
            }
        }
        d += 1;
    }
    t
}

/// The chunk of a multi-block [`par_bin_chain`] walk: a whole number of every
/// by-scalar step's blocks (the by-scalar kernels take one scalar per block) that
/// divides every unicast step's period, at most `max_chunk`. `None` without a
/// by-scalar step, or when no such chunk exists.
fn multi_block_chunk(
    steps: &[BinChainStep],
    a_len: usize,
    max_chunk: usize,
    period: impl Fn(usize) -> usize,
) -> Option<usize> {
    let mut blocks = 1usize;
    let mut outer = a_len;
    let mut per_block = false;
    for (ix, s) in steps.iter().enumerate() {
        let p = period(ix);
        match s.share {
            BShare::PerBlock => {
                per_block = true;
                blocks = blocks.lcm(&p);
            }
            // Chunks of a unicast step start `g % p` into its `b`: keep that congruent
            // with `g` modulo the kernel alignment, as the sub-block walk does.
            BShare::Lockstep if p != a_len && p % vector_size() != 0 => return None,
            BShare::Lockstep => outer = outer.gcd(&p),
        }
    }
    if !per_block || blocks > max_chunk || outer % blocks != 0 {
        return None;
    }
    Some(blocks * largest_divisor_at_most(outer / blocks, max_chunk / blocks))
}

/// The chunk of a sub-block [`par_bin_chain`] walk: `vector_size()` times a divisor of
/// every step's period, at most `max_chunk`. When there is no such chunk of at least
/// four vectors, runs the steps one after the other with [`par_bin`] and returns `None`.
fn sub_block_chunk(
    steps: &[BinChainStep],
    a: &mut Tensor,
    max_chunk: usize,
    period: impl Fn(usize) -> usize,
) -> TractResult<Option<usize>> {
    let unit = (0..steps.len()).fold(a.len(), |u, ix| u.gcd(&period(ix)));
    let chunk = if unit % vector_size() == 0 {
        vector_size() * largest_divisor_at_most(unit / vector_size(), max_chunk / vector_size())
    } else {
        0
    };
    if chunk < 4 * vector_size() {
        for s in steps {
            par_bin(s.eval_fn, a, s.b, s.period, s.share)?;
        }
        return Ok(None);
    }
    Ok(Some(chunk))
}

/// Apply the linalg binary kernel `eval_fn` to `a` in place, splitting the work
/// across the executor installed by [`multithread_tract_scope`].
///
/// `a` is `a.len() / period` blocks of `period` elements, `period` being how many
/// `a` elements one kernel call covers; `share` says how `b` lines up with those
/// blocks. A block is the coarsest unit a single call may span, because the
/// unicast kernels walk `b` in lockstep and index past its end once `a` runs
/// beyond one period. Inside a block the split lands on `vector_size()`-element
/// boundaries, which keeps `a`'s and `b`'s offsets congruent modulo the kernel
/// alignment — `unicast_with_alignment` hard-asserts that congruence.
/// `OptBinUnicast::check_b_alignement` is what guarantees `period` itself is such
/// a multiple whenever there is more than one block.
///
/// An empty `a` is a no-op: the kernels cannot take one, as `as_slice_mut` would
/// build a slice from the null data pointer.
///
/// Both tensors must have natural C-order strides, which the callers' stride
/// guards establish, and plain storage, which holds because no linalg binary
/// kernel is registered for a datum type that lacks it. The byte offsets computed
/// here are only correct under both.
///
/// These kernels are pure elementwise, so no chunk boundary can change a result:
/// the output is bit-identical to the serial path at any thread count.
pub fn par_bin(
    eval_fn: &BinFn,
    a: &mut Tensor,
    b: &Tensor,
    period: usize,
    share: BShare,
) -> TractResult<()> {
    if a.len() == 0 {
        return Ok(());
    }
    ensure!(
        a.len().is_multiple_of(period),
        "par_bin: period {period} does not divide a.len() {}",
        a.len()
    );
    let n_blocks = a.len() / period;
    match share {
        BShare::Lockstep => ensure!(
            b.len() == period,
            "par_bin: Lockstep wants b.len() {} == period {period}",
            b.len()
        ),
        BShare::PerBlock => ensure!(
            b.len() == n_blocks,
            "par_bin: PerBlock wants b.len() {} == {n_blocks} blocks",
            b.len()
        ),
    }

    let a_item = a.datum_type().size_of() as isize;
    let b_item = b.datum_type().size_of() as isize;
    let a = &*a;
    // `len` elements of block `block`, starting `offset` elements into it. Both
    // tensors are naturally strided, so a's flat element index is
    // `block * period + offset` and b's is `offset` (Lockstep) or `block`
    // (PerBlock).
    let call = |block: usize, offset: usize, len: usize| -> TractResult<()> {
        static STRIDES: [isize; 1] = [1];
        let a_shape = [len];
        let (b_offset, b_shape) = match share {
            BShare::Lockstep => (offset as isize * b_item, [len]),
            BShare::PerBlock => (block as isize * b_item, [1]),
        };
        let a_offset = (block * period + offset) as isize * a_item;
        // `offset + len <= period` and blocks are disjoint, so the byte range
        // `[a_offset, a_offset + len * a_item)` is disjoint across every
        // (block, offset) the dispatch below enumerates. That is what makes the
        // concurrent writes through these views non-aliasing; keep it true if the
        // chunk arithmetic changes.
        unsafe {
            let mut a_chunk = TensorView::from_bytes(a, a_offset, &a_shape, &STRIDES);
            let b_chunk = TensorView::from_bytes(b, b_offset, &b_shape, &STRIDES);
            eval_fn(&mut a_chunk, &b_chunk)
        }
    };

    #[cfg(feature = "multithread-mm")]
    {
        use rayon::prelude::*;
        // Threshold first: reading the executor takes a global lock, and a graph
        // has hundreds of these nodes sitting below the threshold.
        if a.len() >= current_threading_element_threshold() {
            let executor = current_tract_executor();
            let nth = match &executor {
                Executor::MultiThread(pool) => pool.current_num_threads(),
                Executor::RayonGlobal => rayon::current_num_threads(),
                Executor::SingleThread => 1,
            };
            if nth > 1 {
                let per_block = (4 * nth).div_ceil(n_blocks).max(1);
                let chunk = period.div_ceil(per_block).next_multiple_of(vector_size()).min(period);
                let per_block = period.div_ceil(chunk);
                if n_blocks * per_block > 1 {
                    let run = || {
                        (0..n_blocks * per_block).into_par_iter().try_for_each(|i| {
                            let offset = (i % per_block) * chunk;
                            call(i / per_block, offset, chunk.min(period - offset))
                        })
                    };
                    return match executor {
                        Executor::MultiThread(pool) => pool.install(run),
                        _ => run(),
                    };
                }
            }
        }
    }

    // A single block is the whole tensor, so hand the kernel the natural view
    // rather than a rank-1 one: fewer shapes for a future kernel to have to
    // tolerate on the overwhelmingly common path.
    if n_blocks == 1 {
        return eval_fn(&mut a.view(), &b.view());
    }
    match share {
        // The by-scalar kernels take a run of blocks with one scalar each, so the
        // whole tensor is one call rather than one per block: a channel-first
        // per-channel scale over an 8x8 map was thousands of calls of 64 elements.
        BShare::PerBlock => unsafe {
            let (a_shape, b_shape) = ([a.len()], [n_blocks]);
            let mut a_all = TensorView::from_bytes(a, 0, &a_shape, &[1]);
            let b_all = TensorView::from_bytes(b, 0, &b_shape, &[1]);
            eval_fn(&mut a_all, &b_all)
        },
        BShare::Lockstep => (0..n_blocks).try_for_each(|block| call(block, 0, period)),
    }
}

/// One kernel application inside a [`par_bin_chain`] walk, with `b`, `period`
/// and `share` carrying the same contract as the [`par_bin`] arguments.
pub struct BinChainStep<'a> {
    pub eval_fn: &'a BinFn,
    pub b: &'a Tensor,
    pub period: usize,
    pub share: BShare,
}

fn chain_workers(len: usize) -> usize {
    #[cfg(feature = "multithread-mm")]
    {
        // Threshold first: reading the executor takes a global lock.
        if len < current_threading_element_threshold() {
            return 1;
        }
        match current_tract_executor() {
            Executor::MultiThread(pool) => pool.current_num_threads(),
            Executor::RayonGlobal => rayon::current_num_threads(),
            Executor::SingleThread => 1,
        }
    }
    #[cfg(not(feature = "multithread-mm"))]
    {
        let _ = len;
        1
    }
}

/// Apply every step of `steps` to `a` in place, chunk by chunk, so each chunk
/// of `a` is still cache-hot when the next step's kernel runs over it instead
/// of streaming the whole tensor once per step. A chunk is either a whole
/// number of every by-scalar step's blocks, dividing every unicast step's
/// period (the by-scalar kernels take one scalar per block: a per-channel step
/// over a small channel-first map is then one call per chunk, not one per
/// channel), or, where no such chunk fits, a `vector_size()` multiple dividing
/// every step's period. The walk picks the largest chunk under `CHAIN_CHUNK`
/// elements that still splits `a` into `4 * threads` pieces — giving the same
/// operand mapping `par_bin` would produce and a bit-identical result.
///
/// Falls back to sequential `par_bin` calls when no usable chunk exists, and
/// launches like `par_bin` does, so a chain is never less parallel than the
/// steps it replaces.
pub fn par_bin_chain(steps: &[BinChainStep], a: &mut Tensor) -> TractResult<()> {
    /// Largest chunk that keeps `a` plus one operand slice inside L1/L2.
    const CHAIN_CHUNK: usize = 16384;
    if steps.is_empty() || a.len() == 0 {
        return Ok(());
    }
    let a_len = a.len();
    let a_item = a.datum_type().size_of() as isize;
    for s in steps {
        ensure!(
            a_len.is_multiple_of(s.period),
            "par_bin_chain: period {} does not divide a.len() {}",
            s.period,
            a_len
        );
        match s.share {
            BShare::Lockstep => ensure!(
                s.b.len() == s.period,
                "par_bin_chain: Lockstep wants b.len() {} == period {}",
                s.b.len(),
                s.period
            ),
            BShare::PerBlock => ensure!(
                s.b.len() == a_len / s.period,
                "par_bin_chain: PerBlock wants b.len() {} == {} blocks",
                s.b.len(),
                a_len / s.period
            ),
        }
    }
    let workers = chain_workers(a_len);
    let max_chunk = if workers > 1 { CHAIN_CHUNK.min(a_len / (4 * workers)) } else { CHAIN_CHUNK }
        .max(4 * vector_size());
    // A short Lockstep period (a per-channel operand over channel-last data)
    // would cap the chunk at one period; tile its `b` so the chunk can span
    // many periods.
    let tiled = steps
        .iter()
        .map(|s| {
            if s.share != BShare::Lockstep || s.period * 2 > max_chunk {
                return Ok(None);
            }
            let blocks = a_len / s.period;
            let k = (1..=blocks.min(max_chunk / s.period))
                .rev()
                .find(|k| blocks.is_multiple_of(*k))
                .unwrap_or(1);
            if k == 1 {
                return Ok(None);
            }
            Ok(Some(
                s.b.clone()
                    .into_shape(&[s.period])?
                    .broadcast_to_shape(&[k, s.period])?
                    .into_shape(&[k * s.period])?,
            ))
        })
        .collect::<TractResult<Vec<Option<Tensor>>>>()?;
    let chain_b = |ix: usize| tiled[ix].as_ref().unwrap_or(steps[ix].b);
    let chain_period = |ix: usize| tiled[ix].as_ref().map_or(steps[ix].period, |t| t.len());
    let chunk = match multi_block_chunk(steps, a_len, max_chunk, chain_period) {
        Some(chunk) => chunk,
        None => match sub_block_chunk(steps, a, max_chunk, chain_period)? {
            Some(chunk) => chunk,
            None => return Ok(()),
        },
    };
    let n_chunks = a_len / chunk;
    let a = &*a;
    static STRIDES: [isize; 1] = [1];
    let a_shape = [chunk];
    // Either `chunk` divides every step's period (each step's `g % period` offset
    // and its `chunk` neighbours stay inside one block), or it is a whole number of
    // every by-scalar step's blocks and divides every unicast period (the by-scalar
    // kernels take one scalar per block). Either way the disjoint chunks partition
    // `a`: concurrent writes through the views do not alias.
    let call = |ix: usize| -> TractResult<()> {
        let g = ix * chunk;
        unsafe {
            let mut a_chunk = TensorView::from_bytes(a, g as isize * a_item, &a_shape, &STRIDES);
            for (sx, s) in steps.iter().enumerate() {
                let (b, period) = (chain_b(sx), chain_period(sx));
                let b_item = b.datum_type().size_of() as isize;
                let (b_offset, b_shape) = match s.share {
                    BShare::Lockstep => ((g % period) as isize * b_item, [chunk]),
                    BShare::PerBlock => ((g / period) as isize * b_item, [chunk.div_ceil(period)]),
                };
                let b_chunk = TensorView::from_bytes(b, b_offset, &b_shape, &STRIDES);
                (s.eval_fn)(&mut a_chunk, &b_chunk)?;
            }
            Ok(())
        }
    };

    #[cfg(feature = "multithread-mm")]
    {
        use rayon::prelude::*;
        if a_len >= current_threading_element_threshold() && n_chunks > 1 {
            let executor = current_tract_executor();
            let nth = match &executor {
                Executor::MultiThread(pool) => pool.current_num_threads(),
                Executor::RayonGlobal => rayon::current_num_threads(),
                Executor::SingleThread => 1,
            };
            if nth > 1 {
                let per_worker = n_chunks.div_ceil(nth);
                let n_workers = n_chunks.div_ceil(per_worker);
                let run = || {
                    (0..n_workers).into_par_iter().try_for_each(|w| {
                        let first = w * per_worker;
                        (first..(first + per_worker).min(n_chunks)).try_for_each(&call)
                    })
                };
                return match executor {
                    Executor::MultiThread(pool) => pool.install(run),
                    _ => run(),
                };
            }
        }
    }
    (0..n_chunks).try_for_each(call)
}

// wasi has no thread spawning at all; other wasm targets run the shared rayon
// global pool instead of a private ThreadPool.
#[cfg(all(test, feature = "multithread-mm", not(target_os = "wasi")))]
mod chain_tests {
    use super::{BShare, BinChainStep, Executor, multithread_tract_scope, par_bin, par_bin_chain};
    use crate::BinFn;
    use tract_data::internal::{Tensor, TensorView, TractResult};

    fn add() -> impl Fn(&mut TensorView, &TensorView) -> TractResult<()> + Send + Sync {
        |a: &mut TensorView, b: &TensorView| {
            let av = a.as_slice_mut::<f32>()?;
            let bv = b.as_slice::<f32>()?;
            if bv.len() == 1 {
                av.iter_mut().for_each(|x| *x += bv[0]);
            } else {
                av.iter_mut().zip(bv).for_each(|(x, y)| *x += *y);
            }
            Ok(())
        }
    }

    fn mul() -> impl Fn(&mut TensorView, &TensorView) -> TractResult<()> + Send + Sync {
        |a: &mut TensorView, b: &TensorView| {
            let av = a.as_slice_mut::<f32>()?;
            let bv = b.as_slice::<f32>()?;
            if bv.len() == 1 {
                av.iter_mut().for_each(|x| *x *= bv[0]);
            } else {
                av.iter_mut().zip(bv).for_each(|(x, y)| *x *= *y);
            }
            Ok(())
        }
    }

    /// Mixed Lockstep and PerBlock steps must produce the same bytes through
    /// `par_bin_chain` as through sequential `par_bin` calls, inline or on a
    /// pool, including a gcd of periods that is not vector-aligned.
    #[test]
    fn chain_matches_sequential_par_bin() {
        let add = add();
        let mul = mul();
        let len = 12288usize;
        for periods in [[768usize, 256, 256], [768, 24, 768], [96, 96, 12288]] {
            let b0 = Tensor::from_shape(&[1, 1, periods[0]], &vec![2f32; periods[0]]).unwrap();
            let b1 = Tensor::from_shape(&[periods[1]], &vec![3f32; periods[1]]).unwrap();
            let b2 =
                Tensor::from_shape(&[len / periods[2]], &vec![0.5f32; len / periods[2]]).unwrap();
            let steps = vec![
                BinChainStep {
                    eval_fn: &add as &BinFn,
                    b: &b0,
                    period: periods[0],
                    share: BShare::Lockstep,
                },
                BinChainStep {
                    eval_fn: &mul as &BinFn,
                    b: &b1,
                    period: periods[1],
                    share: BShare::Lockstep,
                },
                BinChainStep {
                    eval_fn: &add as &BinFn,
                    b: &b2,
                    period: periods[2],
                    share: BShare::PerBlock,
                },
            ];
            let input = Tensor::from_shape(&[len], &(0..len).map(|i| i as f32).collect::<Vec<_>>())
                .unwrap();
            let mut reference = input.clone();
            for s in &steps {
                par_bin(s.eval_fn, &mut reference, s.b, s.period, s.share).unwrap();
            }
            for nth in [0usize, 4] {
                let mut a = input.clone();
                if nth == 0 {
                    par_bin_chain(&steps, &mut a).unwrap();
                } else {
                    #[cfg(target_family = "wasm")]
                    let pool = Executor::RayonGlobal;
                    #[cfg(not(target_family = "wasm"))]
                    let pool = Executor::multithread(nth);
                    multithread_tract_scope(pool, || par_bin_chain(&steps, &mut a).unwrap());
                }
                let got = a.view().as_slice::<f32>().unwrap();
                let want = reference.view().as_slice::<f32>().unwrap();
                assert_eq!(got, want, "len={len} periods={periods:?} nth={nth}");
            }
        }
    }
}

// clip-edge patch: the by-scalar kernels take a run of blocks with one scalar each, so
// `par_bin` and `par_bin_chain` hand a per-channel step over a channel-first map to one
// call instead of one per channel. These check the registered kernels against a plain
// loop, bit for bit, and that the calls are few.
#[cfg(all(test, not(target_family = "wasm")))]
mod multi_block_tests {
    use super::{BShare, BinChainStep, par_bin, par_bin_chain};
    use crate::routines::Func;
    use crate::{BinFn, BinOp};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tract_data::internal::{DatumType, Tensor, TensorView, TractResult};

    fn kernel(func: Func) -> Box<BinFn> {
        func.bin(DatumType::F32).expect("f32 kernel registered")
    }

    fn tensor(v: Vec<f32>) -> Tensor {
        let len = v.len();
        Tensor::from_shape(&[len], &v).unwrap()
    }

    /// `(x * scale[c] + bias[c]) + residual` over a `[c, hw]` map, as a channel-first
    /// convolution's dequantisation, bias and residual chain.
    fn case(c: usize, hw: usize) -> (Tensor, Tensor, Tensor, Tensor, Vec<f32>) {
        let len = c * hw;
        let x: Vec<f32> = (0..len).map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0).collect();
        let scale: Vec<f32> = (0..c).map(|i| 0.5 + i as f32 / 64.0).collect();
        let bias: Vec<f32> = (0..c).map(|i| i as f32 * 0.25 - 3.0).collect();
        let residual: Vec<f32> = (0..len).map(|i| (i % 13) as f32 * 0.1).collect();
        let want = (0..len).map(|i| (x[i] * scale[i / hw] + bias[i / hw]) + residual[i]).collect();
        (tensor(x), tensor(scale), tensor(bias), tensor(residual), want)
    }

    #[test]
    fn chain_of_kernels_matches_plain_loop() {
        let (mul, add, add_u) = (
            kernel(Func::BinByScalar(BinOp::Mul)),
            kernel(Func::BinByScalar(BinOp::Add)),
            kernel(Func::BinUnicast(BinOp::Add)),
        );
        for (c, hw) in [(512, 64), (24, 36), (7, 4096), (3, 5), (1536, 64), (5, 1)] {
            let (x, scale, bias, residual, want) = case(c, hw);
            let steps = [
                BinChainStep { eval_fn: &*mul, b: &scale, period: hw, share: BShare::PerBlock },
                BinChainStep { eval_fn: &*add, b: &bias, period: hw, share: BShare::PerBlock },
                BinChainStep {
                    eval_fn: &*add_u,
                    b: &residual,
                    period: c * hw,
                    share: BShare::Lockstep,
                },
            ];
            // Inline, and on a pool of 4 where the build has one.
            let pools: &[usize] = if cfg!(feature = "multithread-mm") { &[0, 4] } else { &[0] };
            for &nth in pools {
                let mut chained = x.clone();
                let mut sequential = x.clone();
                let run = |chained: &mut Tensor, sequential: &mut Tensor| {
                    par_bin_chain(&steps, chained).unwrap();
                    for s in &steps {
                        par_bin(s.eval_fn, sequential, s.b, s.period, s.share).unwrap();
                    }
                };
                #[cfg(feature = "multithread-mm")]
                if nth > 0 {
                    use super::{Executor, multithread_tract_scope};
                    multithread_tract_scope(Executor::multithread(nth), || {
                        run(&mut chained, &mut sequential)
                    });
                }
                if nth == 0 {
                    run(&mut chained, &mut sequential);
                }
                let bits = |t: &Tensor| {
                    t.view()
                        .as_slice::<f32>()
                        .unwrap()
                        .iter()
                        .map(|v| v.to_bits())
                        .collect::<Vec<_>>()
                };
                let want_bits: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                assert_eq!(bits(&chained), want_bits, "chain c={c} hw={hw} nth={nth}");
                assert_eq!(bits(&sequential), want_bits, "par_bin c={c} hw={hw} nth={nth}");
            }
        }
    }

    #[test]
    fn per_channel_steps_are_not_one_call_per_channel() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        let mul = kernel(Func::BinByScalar(BinOp::Mul));
        let counting = move |a: &mut TensorView, b: &TensorView| -> TractResult<()> {
            CALLS.fetch_add(1, Ordering::Relaxed);
            mul(a, b)
        };
        let (c, hw) = (512, 64);
        let (x, scale, ..) = case(c, hw);
        let mut a = x.clone();
        par_bin(&counting, &mut a, &scale, hw, BShare::PerBlock).unwrap();
        assert_eq!(CALLS.swap(0, Ordering::Relaxed), 1, "par_bin: calls for {c} channels");
        let step =
            BinChainStep { eval_fn: &counting, b: &scale, period: hw, share: BShare::PerBlock };
        par_bin_chain(&[step], &mut a).unwrap();
        let chain_calls = CALLS.load(Ordering::Relaxed);
        assert!(chain_calls <= 4, "par_bin_chain: {chain_calls} calls for {c} channels");
    }
}

// clip-edge patch: `par_chunks_mut` hands its closure on as a trait object; this checks
// that every row still reaches the closure once, with its own index, on a pool.
#[cfg(all(test, feature = "multithread-mm", not(target_family = "wasm")))]
mod par_chunks_tests {
    use super::{Executor, multithread_tract_scope, par_chunks_mut};

    #[test]
    fn every_row_once_with_its_index() {
        let (rows, row_len) = (1000usize, 64usize);
        for nth in [1usize, 4] {
            let mut out = vec![0u32; rows * row_len];
            let calls = std::sync::atomic::AtomicUsize::new(0);
            multithread_tract_scope(Executor::multithread(nth), || {
                par_chunks_mut(&mut out, row_len, rows * row_len, |first_row, chunk| {
                    calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    for (i, row) in chunk.chunks_mut(row_len).enumerate() {
                        row.iter_mut().for_each(|x| *x += (first_row + i) as u32 + 1);
                    }
                    Ok(())
                })
            })
            .unwrap();
            let want: Vec<u32> = (0..rows).flat_map(|r| [r as u32 + 1; 64]).collect();
            assert_eq!(out, want, "nth={nth}");
            assert_eq!(calls.into_inner() > 1, nth > 1, "nth={nth}: chunks dispatched");
        }
    }
}
