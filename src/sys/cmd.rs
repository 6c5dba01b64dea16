//! Running commands with the command line in every error, the way cargo's
//! `ProcessBuilder` reports what failed.

use anyhow::{bail, Context, Result};
use std::process::{Command, Output};

/// `prog arg1 arg2 ...` as a user would type it (for messages).
pub fn line(c: &Command) -> String {
    let mut s = c.get_program().to_string_lossy().into_owned();
    for a in c.get_args() {
        let a = a.to_string_lossy();
        s.push(' ');
        if a.is_empty() || a.contains(|ch: char| ch.is_whitespace() || "'\"$`\\".contains(ch)) {
            s.push('\'');
            s.push_str(&a.replace('\'', "'\\''"));
            s.push('\'');
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Runs the command (inheriting stdio) and fails unless it exits 0.
pub fn status_ok(c: &mut Command) -> Result<()> {
    let st = c.status().with_context(|| format!("running `{}`", line(c)))?;
    if !st.success() {
        bail!("`{}` failed ({st})", line(c));
    }
    Ok(())
}

/// Runs the command capturing its output; fails unless it exits 0, quoting its stderr.
pub fn output_ok(c: &mut Command) -> Result<Output> {
    let out = c.output().with_context(|| format!("running `{}`", line(c)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed ({}): {}",
            line(c),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// The exit code of a finished process (128 + signal when killed).
pub fn code_of(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// True when `prog` is an executable found on PATH (or a path to one).
pub fn on_path(prog: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let exec =
        |p: &std::path::Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if prog.contains('/') {
        return exec(std::path::Path::new(prog));
    }
    std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|d| exec(&d.join(prog))))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_are_quoted_for_humans() {
        let mut c = Command::new("cp");
        c.arg("-a").arg("a b").arg("it's");
        assert_eq!(line(&c), "cp -a 'a b' 'it'\\''s'");
        let e = status_ok(Command::new("false").arg("x")).unwrap_err().to_string();
        assert!(e.contains("`false x` failed"), "{e}");
        let e = output_ok(Command::new("sh").args(["-c", "echo oops >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("oops"), "{e}");
        assert!(on_path("sh") && !on_path("no-such-program-modsync"));
    }
}
