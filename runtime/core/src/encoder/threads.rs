//! tract's matmul thread pool (`--threads`).

use super::EncoderError;

/// Smallest matmul, in kernel panels, worth spreading over threads.
const MIN_PANELS_PER_DISPATCH: usize = 8;

/// Sets how many threads tract's matrix multiplications use, process-wide (1: run
/// on the calling thread only). Takes effect for the next run of any plan.
pub fn set_threads(threads: usize) -> Result<(), EncoderError> {
    use tract_linalg::multithread::{set_default_executor, Executor};
    if threads <= 1 {
        set_default_executor(Executor::SingleThread);
        return Ok(());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .thread_name(|i| format!("clip-edge-mm-{i}"))
        .num_threads(threads)
        .build()
        .map_err(|source| EncoderError::Threads { threads, source })?;
    set_default_executor(Executor::MultiThread(std::sync::Arc::new(pool)));
    // A ViT's matmuls have few panels (50 tokens): tract's default gate of 64
    // panels would keep them all on one thread.
    tract_linalg::multithread::set_threading_panel_threshold(MIN_PANELS_PER_DISPATCH);
    log::info!("tract matmuls on {threads} threads");
    Ok(())
}

/// The number of CPUs this process may use (1 if unknown).
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
