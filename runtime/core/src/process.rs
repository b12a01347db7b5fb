//! The start of every clip-edge program (`clip-edge`, `clip-quantize`): process
//! settings that must be made before any thread starts.

/// Call first thing in `main`, before any thread starts:
///
/// - error backtraces off unless `RUST_LIB_BACKTRACE` asks for them: tract reports
///   recoverable conditions as errors while loading a model, and with
///   `RUST_BACKTRACE` set each one would capture a backtrace (about a second of
///   start-up on a static ARM build);
/// - on Unix, the default `SIGPIPE` disposition, so `clip-edge ... | head` ends
///   quietly like other Unix tools instead of panicking in `println!`.
pub fn prologue() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    #[cfg(unix)]
    // SAFETY: restores the default disposition of SIGPIPE; called before any thread
    // starts, so nothing else is installing handlers concurrently.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
