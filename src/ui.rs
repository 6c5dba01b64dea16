//! Where messages for the user go. A command running one job writes them
//! straight out; one running several jobs at once collects each job's
//! messages (and its scripts' output) and prints them as one block when the
//! job ends, so that parallel jobs do not interleave. Errors go to stderr in
//! dkms's shape (`Error! ...`, `Warning: ...`).

use std::io::Write;
use std::sync::Mutex;

/// A destination for one job's (or one command's) messages.
pub trait Sink: Sync {
    fn out(&self, line: &str);
    fn err(&self, line: &str);
    /// True when the output of child processes must be captured (buffered)
    /// instead of inherited.
    fn captures(&self) -> bool;

    fn error(&self, msg: &str) {
        self.err(&format!("\nError! {msg}"));
    }
    fn warn(&self, msg: &str) {
        self.err(&format!("Warning: {msg}"));
    }
}

/// Writes immediately.
pub struct Direct;

impl Sink for Direct {
    fn out(&self, line: &str) {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    }
    fn err(&self, line: &str) {
        let _ = std::io::stdout().flush();
        eprintln!("{line}");
    }
    fn captures(&self) -> bool {
        false
    }
}

/// Collects lines until [`Buffered::flush`].
#[derive(Default)]
pub struct Buffered {
    lines: Mutex<Vec<(bool, String)>>,
}

impl Sink for Buffered {
    fn out(&self, line: &str) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((false, line.to_string()));
    }
    fn err(&self, line: &str) {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((true, line.to_string()));
    }
    fn captures(&self) -> bool {
        true
    }
}

impl Buffered {
    /// Writes the collected lines to `to` in order, and forgets them.
    pub fn flush(&self, to: &dyn Sink) {
        for (is_err, line) in std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner())) {
            if is_err {
                to.err(&line);
            } else {
                to.out(&line);
            }
        }
    }

    /// The collected text (for tests and summaries).
    pub fn text(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, l)| format!("{l}\n"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_keeps_order_until_flushed() {
        let b = Buffered::default();
        b.out("one");
        b.warn("two");
        b.error("three");
        assert_eq!(b.text(), "one\nWarning: two\n\nError! three\n");
        let to = Buffered::default();
        b.flush(&to);
        assert_eq!(b.text(), "");
        assert_eq!(to.text(), "one\nWarning: two\n\nError! three\n");
    }
}
