//! An error printed with its causes, for log lines and JSON events.
//!
//! Library errors here keep the error they wrap as their
//! [`source`](std::error::Error::source) instead of copying its text into their own
//! message (tract's chain of causes, an I/O error). `{}` on such an error prints only
//! its own message; [`ErrorChain`] prints it and every cause, `a: b: c`, on one
//! line, the way `anyhow`'s `{:#}` does in the binaries. It writes straight to the
//! formatter, allocating nothing.

use std::error::Error;
use std::fmt;

/// Displays an error and its chain of sources as one line: `outer: cause: root`.
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = OneLine(f);
        let mut error: Option<&dyn Error> = Some(self.0);
        let mut first = true;
        while let Some(e) = error {
            if !first {
                fmt::Write::write_str(&mut out, ": ")?;
            }
            first = false;
            fmt::Write::write_fmt(&mut out, format_args!("{e}"))?;
            error = e.source();
        }
        Ok(())
    }
}

/// Writes through to a formatter with each line break turned into a space (a
/// cause's message may span several lines: tract's do).
struct OneLine<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for OneLine<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for (i, part) in s.split('\n').enumerate() {
            if i > 0 {
                self.0.write_str(" ")?;
            }
            self.0.write_str(part)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn prints_every_cause_on_one_line() {
        let e = Outer(std::io::Error::other("root\ncause"));
        assert_eq!(ErrorChain(&e).to_string(), "outer: root cause");
        assert_eq!(e.to_string(), "outer");
    }
}
