//! Support for the package-manager end-to-end tests (`e2e_pacman`, `e2e_dnf`):
//! a throwaway copy of this machine to run real package managers in.
//!
//! [`Root`] is an overlay of the host's `/` with a private upper layer:
//! every command runs as
//! `unshare --mount` → `mount -t overlay (lower /, upper TMP/upper)` → bind
//! `/dev`, fresh `/proc`, `/sys` → `chroot`, so the host's tools (pacman, dnf,
//! rpm, gcc, make, the Debian kernel headers) are all there, and whatever the
//! command writes (`/usr/lib/modules`, `/var/lib/dkms`, the package
//! databases, `/usr/bin/modsync`) lands in the upper layer only. The mounts
//! live in a private mount namespace that dies with the command, so nothing
//! is left mounted on the host whatever happens, and the host's real trees
//! are never touched. Dropping the [`Root`] deletes the layer
//! (`MODSYNC_TEST_KEEP=1` keeps it).

#![allow(dead_code)]

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const PATH_IN_ROOT: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Mounts the overlay in the (private) namespace of the `sh` running this,
/// then runs `$4` with bash inside it. Arguments: MERGED UPPER WORK SCRIPT.
const ENTER: &str = r#"set -e
r=$1 u=$2 w=$3
mount -t overlay modsync-e2e -o "lowerdir=/,upperdir=$u,workdir=$w" "$r"
mount --bind /dev "$r/dev"
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount -t tmpfs tmpfs "$r/run"
exec chroot "$r" /usr/bin/env -i PATH="$PATH_IN_ROOT" HOME=/root LC_ALL=C.UTF-8 \
    TERM=dumb /bin/bash -o pipefail -ec "$4"
"#;

/// The result of one command in the root.
pub struct Outcome {
    pub ok: bool,
    /// stdout and stderr, interleaved as the command wrote them.
    pub output: String,
}

pub struct Root {
    base: PathBuf,
    upper: PathBuf,
    work: PathBuf,
    merged: PathBuf,
}

impl Root {
    /// A new, empty upper layer over the host's `/`.
    pub fn new(name: &str) -> Root {
        let base = env::temp_dir().join(format!("modsync-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("root"));
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
        let root = Root { base, upper, work, merged };
        let probe = root.run("true");
        assert!(probe.ok, "cannot enter an overlay root of / (needs root, unshare, overlayfs):\n{}", probe.output);
        root
    }

    /// Copies a host file or directory to PATH inside the root (written into
    /// the upper layer; parents are created).
    pub fn put(&self, src: &Path, path: &str) {
        let dest = self.upper.join(path.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        let st = Command::new("cp").arg("-a").arg("--no-preserve=ownership").arg(src).arg(&dest).status().expect("run cp");
        assert!(st.success(), "cp -a {} {}", src.display(), dest.display());
    }

    /// Runs a bash script (`-e -o pipefail`) as root inside the root.
    pub fn run(&self, script: &str) -> Outcome {
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(ENTER)
            .arg("modsync-e2e-enter")
            .arg(&self.merged)
            .arg(&self.upper)
            .arg(&self.work)
            .arg(script)
            .env("PATH_IN_ROOT", PATH_IN_ROOT)
            .output()
            .expect("run unshare");
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Outcome { ok: out.status.success(), output }
    }

    /// Like [`run`](Self::run) with both streams merged in order (`2>&1`).
    pub fn sh(&self, script: &str) -> Outcome {
        self.run(&format!("exec 2>&1\n{script}"))
    }

    /// Runs a set-up step that must work; panics with its output otherwise.
    pub fn must(&self, what: &str, script: &str) -> String {
        let out = self.sh(script);
        assert!(out.ok, "set-up step failed: {what}\n{}", indent(&tail(&out.output, 80)));
        out.output
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if env::var_os("MODSYNC_TEST_KEEP").is_some() {
            eprintln!("keeping the root's layer in {}", self.base.display());
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.base) {
            eprintln!("warning: could not remove {}: {e}", self.base.display());
        }
    }
}

/// Collects check results so one run reports every failure.
#[derive(Default)]
pub struct Checks {
    pub passed: usize,
    pub failures: Vec<String>,
}

impl Checks {
    /// Passes when the command succeeded.
    pub fn cmd(&mut self, what: &str, out: &Outcome) -> bool {
        self.truth(what, out.ok, &out.output)
    }

    pub fn truth(&mut self, what: &str, ok: bool, detail: &str) -> bool {
        if ok {
            self.passed += 1;
            eprintln!("  ok    {what}");
        } else {
            eprintln!("  FAIL  {what}");
            self.failures.push(format!("FAIL: {what}\n{}", indent(&tail(detail, 60))));
        }
        ok
    }

    /// Panics with every failure, if there was one.
    pub fn finish(self, t0: &Instant) {
        let total = self.passed + self.failures.len();
        progress(t0, &format!("{}/{} checks passed", self.passed, total));
        if !self.failures.is_empty() {
            panic!("{} of {} checks failed:\n\n{}", self.failures.len(), total, self.failures.join("\n\n"));
        }
    }
}

pub fn progress(t0: &Instant, msg: &str) {
    eprintln!("[{:>5.1}s] {msg}", t0.elapsed().as_secs_f64());
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}\n")).collect()
}

pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Why the test cannot run here (not root, a tool missing), or None.
/// `MODSYNC_E2E_REQUIRE=1` turns a skip into a failure (for CI).
pub fn skip_reason(tools: &[&str]) -> Option<String> {
    let reason = if !running_as_root() {
        Some("needs root (overlay mounts, chroot, package managers)".to_string())
    } else {
        tools
            .iter()
            .find(|t| !which(t))
            .map(|t| format!("`{t}` is not installed"))
    };
    if let (Some(r), Some(_)) = (&reason, env::var_os("MODSYNC_E2E_REQUIRE")) {
        panic!("MODSYNC_E2E_REQUIRE is set but this test cannot run: {r}");
    }
    reason
}

fn which(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).exists();
    }
    env::var_os("PATH")
        .map(|p| env::split_paths(&p).chain(["/usr/sbin".into(), "/usr/bin".into()]).any(|d| d.join(tool).is_file()))
        .unwrap_or(false)
}

/// Kernel releases to test with: `MODSYNC_TEST_KERNELS` (space-separated),
/// else every `/usr/src/linux-headers-*-amd64` on the host, newest first.
/// Only releases whose headers are installed are returned.
pub fn test_kernels() -> Vec<String> {
    let wanted: Vec<String> = match env::var("MODSYNC_TEST_KERNELS") {
        Ok(v) if !v.trim().is_empty() => v.split_whitespace().map(str::to_owned).collect(),
        _ => {
            let mut found: Vec<String> = fs::read_dir("/usr/src")
                .map(|rd| {
                    rd.filter_map(|e| e.ok())
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter_map(|n| n.strip_prefix("linux-headers-").map(str::to_owned))
                        .filter(|k| k.ends_with("-amd64"))
                        .collect()
                })
                .unwrap_or_default();
            found.sort_by(|a, b| natural_cmp(b, a));
            found
        }
    };
    wanted
        .into_iter()
        .filter(|k| Path::new(&format!("/usr/src/linux-headers-{k}/include")).is_dir())
        .collect()
}

/// Compares digit runs as numbers (6.1.0-9 < 6.1.0-10).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, String)> {
        let mut v: Vec<(bool, String)> = Vec::new();
        for c in s.chars() {
            let d = c.is_ascii_digit();
            match v.last_mut() {
                Some((ld, cur)) if *ld == d => cur.push(c),
                _ => v.push((d, c.to_string())),
            }
        }
        v
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(cb.iter()) {
        let o = if x.0 && y.0 {
            let (xn, yn) = (x.1.trim_start_matches('0'), y.1.trim_start_matches('0'));
            xn.len().cmp(&yn.len()).then_with(|| xn.cmp(yn))
        } else {
            x.1.cmp(&y.1)
        };
        if o.is_ne() {
            return o;
        }
    }
    ca.len().cmp(&cb.len())
}

/// The test module's source (tests/fixtures/hello-1.0).
pub fn hello_fixture() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-1.0");
    assert!(p.join("dkms.conf").is_file(), "missing test fixture {}", p.display());
    p
}

/// The modsync binary under test.
pub fn modsync_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_modsync"))
}

/// Shell: fails unless MODULE's file for KVER carries KVER's vermagic
/// (`modinfo -k`, i.e. found through depmod's index).
pub fn vermagic_is(module: &str, kver: &str) -> String {
    format!("modinfo -k {kver} -F vermagic {module} | grep -q '^{kver} '")
}

/// Shell: fails if a file of MODULE exists anywhere under KVER's modules tree.
pub fn no_module_file(module: &str, kver: &str) -> String {
    format!("[ -z \"$(find /usr/lib/modules/{kver} -name '{module}.ko*' 2>/dev/null)\" ]")
}

/// Shell: quotes a string for bash.
pub fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order() {
        let mut v = vec!["6.1.0-9-amd64", "6.1.0-56-amd64", "6.12.117+deb12-amd64", "6.1.0-10-amd64"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["6.1.0-9-amd64", "6.1.0-10-amd64", "6.1.0-56-amd64", "6.12.117+deb12-amd64"]);
    }

    #[test]
    fn quoting() {
        assert_eq!(q("a b"), "'a b'");
        assert_eq!(q("it's"), r"'it'\''s'");
    }
}
