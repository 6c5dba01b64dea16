//! A throwaway copy of this machine to run real package managers in, for the
//! [`pacman`](crate::pacman) and [`dnf`](crate::dnf) tests, and the check
//! list all the package-manager tests ([`apt`](crate::apt) too) report with.
//!
//! What it proves by itself: nothing; it makes sure the host is never
//! written. [`Root`] is an overlay of the host's `/` with a private upper
//! layer: every command runs as `unshare --mount` → `mount -t overlay (lower
//! /, upper TMP/upper)` → bind `/dev`, fresh `/proc`, `/sys`, `/run` →
//! `chroot`, so the host's tools (pacman, dnf, rpm, gcc, make, the Debian
//! kernel headers) are all there, and whatever the command writes
//! (`/usr/lib/modules`, `/var/lib/dkms`, the package databases,
//! `/usr/bin/modsync`) lands in the upper layer only. The mounts live in a
//! private mount namespace that dies with the command, so nothing is left
//! mounted on the host whatever happens. Dropping the [`Root`] deletes the
//! layer (`MODSYNC_TEST_KEEP=1` keeps it).

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const PATH_IN_ROOT: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Mounts the overlay in the (private) namespace of the `sh` running this,
/// then runs `$4` with bash inside it. Arguments: MERGED UPPER WORK SCRIPT.
const ENTER: &str = r#"set -e
r=$1 u=$2 w=$3
mount -t overlay modsync-test -o "lowerdir=/,upperdir=$u,workdir=$w" "$r"
mount --bind /dev "$r/dev"
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount -t tmpfs tmpfs "$r/run"
exec chroot "$r" /usr/bin/env -i PATH="$PATH_IN_ROOT" HOME=/root LC_ALL=C.UTF-8 \
    TERM=dumb /bin/bash -o pipefail -ec "$4"
"#;

/// The result of one command (in a root or a chroot).
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
    /// A new, empty upper layer over the host's `/`. The layer lives under
    /// /var/cache/modsync-test/tmp (the upper dir must not be on an overlay
    /// or tmpfs that the lower `/` hides).
    pub fn new(name: &str) -> Root {
        let parent = Path::new(crate::support::CACHE).join("tmp");
        fs::create_dir_all(&parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        let base = parent.join(format!("{name}.{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("root"));
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        }
        let root = Root {
            base,
            upper,
            work,
            merged,
        };
        let probe = root.run("true");
        crate::support::require(
            name,
            probe.ok,
            &format!(
                "cannot enter an overlay root of / (needs unshare and overlayfs):\n{}",
                probe.output
            ),
        );
        root
    }

    /// Copies a host file or directory to PATH inside the root (written into
    /// the upper layer; parents are created).
    pub fn put(&self, src: &Path, path: &str) {
        let dest = self.upper.join(path.trim_start_matches('/'));
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        let st = Command::new("cp")
            .arg("-a")
            .arg("--no-preserve=ownership")
            .arg(src)
            .arg(&dest)
            .status()
            .expect("run cp");
        assert!(st.success(), "cp -a {} {}", src.display(), dest.display());
    }

    /// Where PATH inside the root is on the host, for a file the root
    /// wrote (files of the host itself that the root only read are not there).
    pub fn written(&self, path: &str) -> PathBuf {
        self.upper.join(path.trim_start_matches('/'))
    }

    /// Runs a bash script (`-e -o pipefail`) as root inside the root.
    pub fn run(&self, script: &str) -> Outcome {
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "/bin/sh", "-c"])
            .arg(ENTER)
            .arg("modsync-test-enter")
            .arg(&self.merged)
            .arg(&self.upper)
            .arg(&self.work)
            .arg(script)
            .env("PATH_IN_ROOT", PATH_IN_ROOT)
            .stdin(Stdio::null())
            .output()
            .expect("run unshare");
        let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        Outcome {
            ok: out.status.success(),
            output,
        }
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
        if env::var("MODSYNC_TEST_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("keeping the root's layer in {}", self.base.display());
            return;
        }
        if let Err(e) = fs::remove_dir_all(&self.base) {
            eprintln!("warning: could not remove {}: {e}", self.base.display());
        }
    }
}

/// Collects check results so one run reports every failure; later checks
/// still run after a failure (their own failures may be consequences).
pub struct Checks {
    test: String,
    t0: Instant,
    passed: usize,
    failures: Vec<String>,
}

impl Checks {
    pub fn new(test: &str) -> Checks {
        Checks {
            test: test.to_string(),
            t0: Instant::now(),
            passed: 0,
            failures: Vec::new(),
        }
    }

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
            self.failures
                .push(format!("FAIL: {what}\n{}", indent(&tail(detail, 60))));
        }
        ok
    }

    /// Prints a time-stamped progress line.
    pub fn progress(&self, msg: &str) {
        eprintln!("[{} {:>5.0}s] {msg}", self.test, self.t0.elapsed().as_secs_f64());
    }

    /// Panics with every failure, if there was one.
    pub fn finish(self) {
        let total = self.passed + self.failures.len();
        self.progress(&format!("{}/{} checks passed", self.passed, total));
        assert!(total > 0, "{}: no checks ran", self.test);
        if !self.failures.is_empty() {
            panic!(
                "{}: {} of {} checks failed:\n\n{}",
                self.test,
                self.failures.len(),
                total,
                self.failures.join("\n\n")
            );
        }
    }
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    let mut s = String::new();
    if skip > 0 {
        s.push_str(&format!("[... {skip} lines ...]\n"));
    }
    s.push_str(&lines[skip..].join("\n"));
    s
}

pub fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}\n")).collect()
}

/// True when `tool` is an executable in PATH (or /usr/sbin, /usr/bin).
pub fn which(tool: &str) -> bool {
    if tool.contains('/') {
        return Path::new(tool).exists();
    }
    env::var_os("PATH")
        .map(|p| {
            env::split_paths(&p)
                .chain(["/usr/sbin".into(), "/usr/bin".into(), "/sbin".into()])
                .any(|d| d.join(tool).is_file())
        })
        .unwrap_or(false)
}

/// Fails the test (see [`crate::support::require`]) unless every tool is installed.
pub fn require_tools(test: &str, tools: &[&str]) {
    for t in tools {
        crate::support::require(test, which(t), &format!("`{t}` is not installed"));
    }
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

/// Shell: copies the Debian headers of kernel `$K` to `$b`, the `build`
/// directory of an Arch kernel (`.../usr/lib/modules/K/build` in a package
/// tree); Debian's links two levels up from /usr/src/X are made absolute.
pub const DEBIAN_HEADERS_TO_B: &str = r#"
mkdir -p "${b%/build}"
cp -a "/usr/src/linux-headers-$K" "$b"
find "$b" -maxdepth 1 -type l | while read -r l; do
    t=$(readlink "$l")
    case $t in ../../*) ln -sfn "/usr/${t#../../}" "$l" ;; esac
done
test -d "$b/include"
"#;

/// Shell: an rpm distribution's database location (Debian's rpm defaults
/// to ~/.rpmdb), initialised, and dnf with one repository, the RPMs in
/// /srv/rpms published with createrepo_c; dnf's release version `releasever`.
pub fn rpm_and_dnf(releasever: &str) -> String {
    format!(
        r#"
mkdir -p /etc/rpm /var/lib/rpm /etc/dnf/vars /etc/dnf/plugins /etc/yum.repos.d
echo '%_dbpath /var/lib/rpm' > /etc/rpm/macros
rpm --initdb
echo {releasever} > /etc/dnf/vars/releasever
rm -f /etc/yum.repos.d/*
printf '[local]\nname=local test RPMs\nbaseurl=file:///srv/rpms\ngpgcheck=0\nmetadata_expire=0\n' \
    > /etc/yum.repos.d/local.repo
createrepo_c -q /srv/rpms
"#
    )
}

/// Runs a command on the host (not in a root), stdout and stderr captured
/// together.
pub fn host(cmd: &mut Command) -> Outcome {
    let desc = format!("{cmd:?}");
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {desc}: {e}"));
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Outcome {
        ok: out.status.success(),
        output,
    }
}

/// Shell: quotes a string for bash.
pub fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// True when a line containing `first` comes before a line containing `second`.
pub fn appears_before(text: &str, first: &str, second: &str) -> bool {
    let pos = |needle: &str| text.lines().position(|l| l.contains(needle));
    matches!((pos(first), pos(second)), (Some(a), Some(b)) if a < b)
}

#[test]
fn helpers() {
    assert_eq!(q("a b"), "'a b'");
    assert_eq!(q("it's"), r"'it'\''s'");
    let list = "/etc/kernel/postinst.d/50-modsync\n/etc/kernel/postinst.d/initramfs-tools\n";
    assert!(appears_before(list, "/50-modsync", "/initramfs-tools"));
    assert!(!appears_before(list, "/initramfs-tools", "/50-modsync"));
    assert!(!appears_before(list, "/50-modsync", "/dracut"));
    assert_eq!(tail("a\nb\nc", 2), "[... 1 lines ...]\nb\nc");
}
