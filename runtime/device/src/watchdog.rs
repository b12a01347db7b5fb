//! systemd readiness, status and watchdog notifications (`sd_notify(3)`).
//!
//! Under a `Type=notify` unit with `WatchdogSec=` (see `boards/systemd/clip-edge.service`)
//! systemd passes `NOTIFY_SOCKET` (where to send notifications) and `WATCHDOG_USEC` /
//! `WATCHDOG_PID` (how often it wants a keep-alive, and for which process). The run loop
//! then:
//!
//! - calls [`Watchdog::ready`] once the bundle is loaded and the first frame classified
//!   (`READY=1`: `systemctl start` returns, and units ordered after this one start);
//! - calls [`Watchdog::feed`] once per loop iteration: it sends `WATCHDOG=1` only when
//!   half the watchdog interval has passed since the last ping, so a hung loop (a
//!   camera read that never returns, a deadlock) gets the service killed and restarted
//!   (`Restart=on-failure`) within `WatchdogSec`;
//! - calls [`Watchdog::status`] with a short line for `systemctl status` (rate-limited);
//! - calls [`Watchdog::stopping`] on shutdown (`STOPPING=1`).
//!
//! Outside systemd (no `NOTIFY_SOCKET`) every call is a no-op. Sending never fails the
//! caller: the first error is logged with `log::warn!`, later ones are silent.
//!
//! The environment is read with the [`sd_notify`] crate (pure Rust, over `libc`), and the
//! message texts come from its [`sd_notify::NotifyState`]. The socket is our own, not
//! `sd_notify::notify`'s, because that function reads `NOTIFY_SOCKET` from the
//! environment, opens a new socket and builds a new `String` on every call, and does not
//! handle abstract socket names (`@...`, used by systemd in containers). Here the socket is
//! connected once (and again after an error, e.g. after `systemctl daemon-reexec`
//! re-created it), the messages are written into a reused buffer, and a `feed` that is
//! not due costs one monotonic clock read and no allocation.

use std::fmt::Write as _;
use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Default minimum time between two `STATUS=` messages sent by [`Watchdog::status`].
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

/// Longest status text sent; longer texts are cut (at a character boundary).
const MAX_STATUS_LEN: usize = 200;

/// A connection to systemd's notification socket, or nothing when not under systemd.
///
/// Create it with [`Watchdog::from_env`] at start-up; all methods are cheap no-ops when
/// [`Watchdog::is_active`] is false.
#[derive(Debug)]
pub struct Watchdog {
    /// Where systemd listens; `None`: inactive.
    addr: Option<SocketAddr>,
    /// The connected socket; `None` until first use and after a send error.
    sock: Option<UnixDatagram>,
    /// Half of `WATCHDOG_USEC`: the ping period. `None`: no watchdog configured.
    ping_every: Option<Duration>,
    /// When `WATCHDOG=1` was last sent (or tried).
    last_ping: Option<Instant>,
    /// Minimum time between two `STATUS=` messages.
    status_every: Duration,
    /// When `STATUS=` was last sent (or tried).
    last_status: Option<Instant>,
    /// Message buffer, reused.
    buf: String,
    /// A send error was logged already.
    warned: bool,
}

impl Watchdog {
    /// From the environment: `NOTIFY_SOCKET`, and `WATCHDOG_USEC` when `WATCHDOG_PID` is
    /// unset or is this process. Inactive (all calls no-ops) when not under systemd.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let interval = sd_notify::watchdog_enabled();
        let wd = Self::new(socket, interval);
        match (&wd.addr, interval) {
            (Some(_), Some(i)) => log::info!(
                "systemd: notify socket set, watchdog every {:.1} s (timeout {:.1} s)",
                i.as_secs_f64() / 2.0,
                i.as_secs_f64()
            ),
            (Some(_), None) => log::info!("systemd: notify socket set, no watchdog"),
            _ => log::debug!("systemd: not under a notify service (no NOTIFY_SOCKET)"),
        }
        wd
    }

    /// From explicit values (for tests, or a custom supervisor): `socket` is the
    /// notification socket's path (a leading `@` names a Linux abstract socket, as in
    /// `NOTIFY_SOCKET`), `interval` the watchdog timeout (`WATCHDOG_USEC`); pings are sent
    /// every half of it. `socket: None` gives an inactive watchdog.
    pub fn new(socket: Option<PathBuf>, interval: Option<Duration>) -> Self {
        let addr = socket.and_then(|path| match socket_addr(&path) {
            Ok(addr) => Some(addr),
            Err(e) => {
                log::warn!(
                    "systemd: notify socket {}: {e}; not notifying",
                    path.display()
                );
                None
            }
        });
        Self {
            addr,
            sock: None,
            ping_every: interval.filter(|i| !i.is_zero()).map(|i| i / 2),
            last_ping: None,
            status_every: STATUS_INTERVAL,
            last_status: None,
            buf: String::with_capacity(MAX_STATUS_LEN + 32),
            warned: false,
        }
    }

    /// Sets the minimum time between two `STATUS=` messages (default [`STATUS_INTERVAL`]).
    pub fn with_status_interval(mut self, every: Duration) -> Self {
        self.status_every = every;
        self
    }

    /// True when there is a notification socket to talk to.
    pub fn is_active(&self) -> bool {
        self.addr.is_some()
    }

    /// The watchdog timeout systemd asked for (`WATCHDOG_USEC`), if any and if active.
    pub fn interval(&self) -> Option<Duration> {
        self.addr.as_ref()?;
        self.ping_every.map(|p| p * 2)
    }

    /// Tells systemd start-up is done: `READY=1` and `STATUS=status`, in one message.
    /// Call it after the bundle is loaded and the first frame classified. Also counts as
    /// a watchdog ping (`WATCHDOG=1` is sent along when a watchdog is configured).
    pub fn ready(&mut self, status: &str) {
        if self.addr.is_none() {
            return;
        }
        self.buf.clear();
        push_state(&mut self.buf, NotifyState::Ready);
        push_status(&mut self.buf, status);
        let now = Instant::now();
        if self.ping_every.is_some() {
            push_state(&mut self.buf, NotifyState::Watchdog);
            self.last_ping = Some(now);
        }
        self.last_status = Some(now);
        self.send_buf();
    }

    /// Call once per loop iteration: sends `WATCHDOG=1` when half the watchdog interval
    /// has passed since the last ping (or on the first call). Otherwise it only reads the
    /// monotonic clock: no allocation, no system call besides that.
    pub fn feed(&mut self) {
        let Some(every) = self.ping_every else {
            return;
        };
        if self.addr.is_none() {
            return;
        }
        let now = Instant::now();
        if self
            .last_ping
            .is_some_and(|last| now.duration_since(last) < every)
        {
            return;
        }
        self.last_ping = Some(now);
        self.send(b"WATCHDOG=1\n");
    }

    /// Sends `STATUS=status` (shown by `systemctl status`, e.g. `"12.3 fps, seen: red
    /// circle"`), at most once per status interval (1 s by default): calls in between
    /// are dropped, so calling it every frame is fine. Newlines become spaces; the text
    /// is cut at 200 bytes.
    pub fn status(&mut self, status: &str) {
        if self.addr.is_none() {
            return;
        }
        let now = Instant::now();
        if self
            .last_status
            .is_some_and(|last| now.duration_since(last) < self.status_every)
        {
            return;
        }
        self.last_status = Some(now);
        self.buf.clear();
        push_status(&mut self.buf, status);
        self.send_buf();
    }

    /// Tells systemd the service is shutting down (`STOPPING=1`).
    pub fn stopping(&mut self) {
        if self.addr.is_none() {
            return;
        }
        self.buf.clear();
        push_state(&mut self.buf, NotifyState::Stopping);
        self.send_buf();
    }

    /// Sends the message in `self.buf`.
    fn send_buf(&mut self) {
        let msg = std::mem::take(&mut self.buf);
        self.send(msg.as_bytes());
        self.buf = msg;
    }

    /// Sends one datagram, connecting first if needed; logs the first failure.
    fn send(&mut self, msg: &[u8]) {
        let result = self.try_send(msg);
        if let Err(e) = result {
            // Reconnect next time (systemd may have re-created its socket), unless
            // the queue was merely full.
            if e.kind() != io::ErrorKind::WouldBlock {
                self.sock = None;
            }
            if !self.warned {
                self.warned = true;
                log::warn!(
                    "systemd: cannot notify ({}): {e} (further errors not shown)",
                    String::from_utf8_lossy(msg).trim_end().replace('\n', ", ")
                );
            }
        }
    }

    fn try_send(&mut self, msg: &[u8]) -> io::Result<()> {
        let Some(addr) = &self.addr else {
            return Ok(());
        };
        let sock = match &mut self.sock {
            Some(sock) => sock,
            none => {
                let sock = UnixDatagram::unbound()?;
                sock.connect_addr(addr)?;
                // Never stall the frame loop on a reader that is not reading: a full
                // queue drops this message (WouldBlock) instead of blocking.
                sock.set_nonblocking(true)?;
                none.insert(sock)
            }
        };
        let n = sock.send(msg)?;
        if n == msg.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("sent {n} of {} bytes", msg.len()),
            ))
        }
    }
}

/// Appends `state` and a newline.
fn push_state(buf: &mut String, state: NotifyState<'_>) {
    // Writing to a String cannot fail.
    let _ = writeln!(buf, "{state}");
}

/// Appends `STATUS=...` and a newline, with newlines in `status` made spaces and the
/// text cut at `MAX_STATUS_LEN` bytes; no allocation once `buf` has the capacity.
fn push_status(buf: &mut String, status: &str) {
    let start = buf.len();
    push_state(buf, NotifyState::Status(""));
    buf.truncate(buf.len() - 1); // the newline
    let mut len = 0;
    for c in status.chars() {
        len += c.len_utf8();
        if len > MAX_STATUS_LEN {
            break;
        }
        buf.push(if c == '\n' || c == '\r' { ' ' } else { c });
    }
    buf.push('\n');
    debug_assert!(buf[start..].starts_with("STATUS="));
}

/// `NOTIFY_SOCKET`'s value as a socket address: a path, or `@name` for an abstract socket.
fn socket_addr(path: &std::path::Path) -> io::Result<SocketAddr> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        abstract_addr(name)
    } else {
        SocketAddr::from_pathname(path)
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_addr(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_addr(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract socket names exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A bound datagram socket standing in for systemd, removed on drop.
    struct FakeSystemd {
        path: PathBuf,
        sock: UnixDatagram,
    }

    impl FakeSystemd {
        fn new(name: &str) -> Self {
            let path = std::env::temp_dir().join(format!(
                "clip-edge-watchdog-{}-{name}.sock",
                std::process::id()
            ));
            let _ = std::fs::remove_file(&path);
            let sock = UnixDatagram::bind(&path).unwrap();
            sock.set_nonblocking(true).unwrap();
            Self { path, sock }
        }

        /// Every datagram received so far.
        fn received(&self) -> Vec<String> {
            let mut out = Vec::new();
            let mut buf = [0u8; 1024];
            while let Ok(n) = self.sock.recv(&mut buf) {
                out.push(String::from_utf8(buf[..n].to_vec()).unwrap());
            }
            out
        }

        fn watchdog(&self, interval: Option<Duration>) -> Watchdog {
            Watchdog::new(Some(self.path.clone()), interval)
        }
    }

    impl Drop for FakeSystemd {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.path);
        }
    }

    #[test]
    fn watchdog_ready_sends_ready_and_status() {
        let sd = FakeSystemd::new("ready");
        let mut wd = sd.watchdog(None);
        assert!(wd.is_active());
        assert_eq!(wd.interval(), None);
        wd.ready("loaded shapes, 12 labels");
        assert_eq!(
            sd.received(),
            ["READY=1\nSTATUS=loaded shapes, 12 labels\n"]
        );
    }

    #[test]
    fn watchdog_ready_pings_too_when_a_watchdog_is_set() {
        let sd = FakeSystemd::new("ready-ping");
        let mut wd = sd.watchdog(Some(Duration::from_secs(30)));
        wd.ready("ok");
        wd.feed(); // just pinged by ready: not due
        assert_eq!(sd.received(), ["READY=1\nSTATUS=ok\nWATCHDOG=1\n"]);
    }

    #[test]
    fn watchdog_feed_is_rate_limited_to_half_the_interval() {
        let sd = FakeSystemd::new("feed");
        // Long enough that a stall of the (shared, busy) test machine between two calls
        // does not make a ping due.
        let interval = Duration::from_secs(1);
        let mut wd = sd.watchdog(Some(interval));
        assert_eq!(wd.interval(), Some(interval));
        wd.feed();
        wd.feed();
        wd.feed();
        assert_eq!(
            sd.received(),
            ["WATCHDOG=1\n"],
            "first feed pings, the next are not due"
        );
        std::thread::sleep(interval / 2 + Duration::from_millis(20));
        wd.feed();
        wd.feed();
        assert_eq!(
            sd.received(),
            ["WATCHDOG=1\n"],
            "due again after half the interval"
        );
    }

    #[test]
    fn watchdog_feed_without_interval_sends_nothing() {
        let sd = FakeSystemd::new("no-interval");
        let mut wd = sd.watchdog(None);
        wd.feed();
        wd.stopping();
        assert_eq!(sd.received(), ["STOPPING=1\n"]);
    }

    #[test]
    fn watchdog_status_is_rate_limited_and_sanitised() {
        let sd = FakeSystemd::new("status");
        let mut wd = sd
            .watchdog(Some(Duration::from_secs(30)))
            .with_status_interval(Duration::from_millis(500));
        wd.status("12.3 fps\nseen: red circle");
        wd.status("dropped: too soon");
        assert_eq!(sd.received(), ["STATUS=12.3 fps seen: red circle\n"]);
        std::thread::sleep(Duration::from_millis(520));
        let long = "é".repeat(150); // 300 bytes
        wd.status(&long);
        let got = sd.received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0], format!("STATUS={}\n", "é".repeat(100)));
    }

    #[test]
    fn watchdog_stopping_sends_stopping() {
        let sd = FakeSystemd::new("stopping");
        let mut wd = sd.watchdog(Some(Duration::from_secs(30)));
        wd.stopping();
        assert_eq!(sd.received(), ["STOPPING=1\n"]);
    }

    #[test]
    fn watchdog_inactive_sends_nothing_and_does_not_fail() {
        let mut wd = Watchdog::new(None, Some(Duration::from_millis(1)));
        assert!(!wd.is_active());
        assert_eq!(wd.interval(), None);
        wd.ready("x");
        wd.feed();
        wd.status("x");
        wd.stopping();
    }

    #[test]
    fn watchdog_send_errors_are_not_fatal_and_it_reconnects() {
        let sd = FakeSystemd::new("gone");
        let path = sd.path.clone();
        let mut wd = sd.watchdog(Some(Duration::from_millis(2)));
        drop(sd); // systemd's socket disappears
        wd.feed(); // error: logged once, not fatal
        assert!(wd.warned);
        std::thread::sleep(Duration::from_millis(5));
        wd.feed();
        // The socket comes back (as after `systemctl daemon-reexec`): pings arrive again.
        let back = UnixDatagram::bind(&path).unwrap();
        back.set_nonblocking(true).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        wd.feed();
        let mut buf = [0u8; 64];
        let n = back.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1\n");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn watchdog_from_env_is_inactive_without_notify_socket() {
        // Only reads the environment (cargo test does not run under a notify service).
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            assert!(!Watchdog::from_env().is_active());
        }
    }

    #[test]
    fn watchdog_abstract_socket_names() {
        let addr = socket_addr(Path::new("@clip-edge-test")).unwrap();
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            assert_eq!(addr.as_abstract_name(), Some(&b"clip-edge-test"[..]));
        }
        let _ = addr;
        assert!(socket_addr(Path::new("/run/systemd/notify")).is_ok());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn watchdog_notifies_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("clip-edge-watchdog-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sd = UnixDatagram::bind_addr(&addr).unwrap();
        let mut wd = Watchdog::new(Some(PathBuf::from(format!("@{name}"))), None);
        wd.ready("abstract");
        let mut buf = [0u8; 64];
        let n = sd.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=abstract\n");
    }
}
