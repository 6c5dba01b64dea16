//! Helpers shared by the integration tests: the test kernels prepared by
//! `tests/setup.sh`, running commands, the one rule for prerequisites
//! ([`require`]), and an isolated modsync world.
//!
//! A [`World`] is a temp dir `T` that the release binary is pointed at with
//! `--dkmstree T/dkms --sourcetree T/src --installtree T/lib/modules` and
//! `MODSYNC_SYSCONF_ROOT=T` (so /etc/dkms, /etc/modsync and /etc/os-release
//! come from `T/etc`). `T/lib/modules/K` is a hard-linked copy of the real
//! kernel image's modules plus `build -> /usr/src/linux-headers-K` (and
//! `source`, as the headers package links it), with
//! depmod run once, so modules are built against real headers and depmod,
//! modinfo and modprobe see a real kernel tree. The signing key, the build
//! cache and the state all live under `T`: the host's /var/lib/dkms,
//! /lib/modules and /usr/src are never written.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// What `tests/setup.sh` prepares.
pub const CACHE: &str = "/var/cache/modsync-test";
pub const ARCH: &str = std::env::consts::ARCH;

pub fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The one rule for prerequisites: true when `ok`; otherwise the test
/// fails with `why`. A test that cannot run never counts as passed.
pub fn require(test: &str, ok: bool, why: &str) {
    assert!(
        ok,
        "{test}: {why}; `sudo tests/ci.sh` prepares everything these tests need"
    );
}

/// Fails the test unless it runs as root; see [`require`].
pub fn require_root(test: &str) {
    require(
        test,
        running_as_root(),
        "it needs root (it builds kernel modules against real headers and runs depmod)",
    )
}

/// The test kernels, oldest first: `$MODSYNC_TEST_KERNELS`, else the list
/// `tests/setup.sh` wrote. Panics with the fix when they are not prepared
/// (headers in /usr/src, extracted image in the cache).
pub fn test_kernels() -> Vec<String> {
    let list = match std::env::var("MODSYNC_TEST_KERNELS") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => fs::read_to_string(Path::new(CACHE).join("kernels")).unwrap_or_else(|e| {
            panic!("no test kernels: MODSYNC_TEST_KERNELS is unset and {CACHE}/kernels is unreadable ({e}); run `sudo tests/setup.sh`")
        }),
    };
    let mut ks: Vec<String> = list.split_whitespace().map(str::to_string).collect();
    ks.sort_by(|a, b| modsync::kernel::version::compare(a, b));
    ks.dedup();
    assert!(
        ks.len() >= 2,
        "two test kernels are needed, got {ks:?}; run `sudo tests/setup.sh`"
    );
    for k in &ks {
        assert!(
            Path::new(&format!("/usr/src/linux-headers-{k}/Makefile")).is_file(),
            "kernel {k}: no headers in /usr/src/linux-headers-{k}; run `sudo tests/setup.sh`"
        );
        assert!(
            image_dir(k).join("lib/modules").join(k).join("kernel").is_dir(),
            "kernel {k}: no extracted image in {}; run `sudo tests/setup.sh`",
            image_dir(k).display()
        );
    }
    ks
}

/// The extracted linux-image-K package.
pub fn image_dir(k: &str) -> PathBuf {
    Path::new(CACHE).join(format!("img-{k}"))
}

/// The extracted source of a real Debian *-dkms package, e.g. "v4l2loopback-0.12.7".
pub fn dkms_source(prefix: &str) -> PathBuf {
    let dir = Path::new(CACHE).join("src");
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}; run `sudo tests/setup.sh`", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
                && p.join("dkms.conf").is_file()
        })
        .collect();
    found.sort_by(|a, b| modsync::kernel::version::compare(&a.to_string_lossy(), &b.to_string_lossy()));
    found.pop().unwrap_or_else(|| {
        panic!(
            "no {prefix}-<version> with a dkms.conf in {}; run `sudo tests/setup.sh`",
            dir.display()
        )
    })
}

/// PACKAGE_VERSION of an extracted source dir (its name is `<module>-<version>`).
pub fn version_of(src: &Path, module: &str) -> String {
    let n = src.file_name().unwrap().to_string_lossy().into_owned();
    n.strip_prefix(&format!("{module}-"))
        .unwrap_or_else(|| panic!("{n} is not {module}-<version>"))
        .to_string()
}

/// The result of one command.
pub struct Out {
    pub cmd: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    fn from(cmd: String, o: Output) -> Out {
        Out {
            cmd,
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// stdout then stderr.
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The command, its exit code and its output, for assertion messages.
    pub fn show(&self) -> String {
        format!(
            "`{}` exited {}\n--- stdout ---\n{}--- stderr ---\n{}",
            self.cmd,
            self.code,
            tail(&self.stdout, 60),
            tail(&self.stderr, 60)
        )
    }
}

/// The last `n` lines of a text.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut s = lines[lines.len().saturating_sub(n)..].join("\n");
    s.push('\n');
    s
}

/// Runs a command and returns its outcome; panics only when it cannot start.
pub fn run(cmd: &mut Command) -> Out {
    let shown = format!("{cmd:?}").replace('"', "");
    let o = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    Out::from(shown, o)
}

/// Runs a command that must succeed; returns its stdout.
pub fn run_ok(cmd: &mut Command) -> String {
    let o = run(cmd);
    assert_eq!(o.code, 0, "{}", o.show());
    o.stdout
}

/// An isolated modsync world in a temp dir (see the module docs).
pub struct World {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    pub kernels: Vec<String>,
}

impl World {
    /// A world where `kernels` are installed (modules + headers link) and
    /// nothing is added yet. The temp dir sits next to the cache, on the
    /// same file system, so the kernel trees can be hard-linked.
    pub fn new(kernels: &[String]) -> World {
        let base = Path::new(CACHE).join("tmp");
        fs::create_dir_all(&base).unwrap();
        let dir = tempfile::Builder::new().prefix("world.").tempdir_in(&base).unwrap();
        let root = dir.path().to_path_buf();
        let w = World {
            dir: Some(dir),
            root,
            kernels: kernels.to_vec(),
        };
        for d in ["dkms", "src", "lib/modules", "etc/dkms", "etc/modsync", "cache"] {
            fs::create_dir_all(w.p(d)).unwrap();
        }
        fs::copy("/etc/os-release", w.p("etc/os-release")).expect("copying /etc/os-release");
        fs::write(
            w.p("etc/modsync/config.toml"),
            format!(
                "cache_dir = \"{}\"\nmok_signing_key = \"{}\"\nmok_certificate = \"{}\"\nupdate_initramfs = false\n",
                w.p("cache").display(),
                w.p("mok.key").display(),
                w.p("mok.pub").display()
            ),
        )
        .unwrap();
        for k in kernels {
            let from = image_dir(k).join("lib/modules").join(k);
            let to = w.p("lib/modules").join(k);
            // hard links (fast, nothing here is rewritten in place); a plain copy across file systems
            let linked = run(Command::new("cp").arg("-al").arg(&from).arg(&to)).code == 0;
            if !linked {
                let _ = fs::remove_dir_all(&to);
                run_ok(Command::new("cp").arg("-a").arg(&from).arg(&to));
            }
            std::os::unix::fs::symlink(format!("/usr/src/linux-headers-{k}"), to.join("build")).unwrap();
            // Debian's headers package also links the common half as `source`
            if let Ok(common) = fs::read_link(Path::new("/lib/modules").join(k).join("source")) {
                std::os::unix::fs::symlink(common, to.join("source")).unwrap();
            }
            run_ok(Command::new("depmod").arg("-b").arg(&w.root).arg(k));
        }
        w
    }

    /// Keeps the world's files after the test when MODSYNC_TEST_KEEP=1.
    fn keep_requested() -> bool {
        std::env::var("MODSYNC_TEST_KEEP").is_ok_and(|v| v == "1")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A path inside the world.
    pub fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// `T/lib/modules/K`.
    pub fn modules_dir(&self, k: &str) -> PathBuf {
        self.p("lib/modules").join(k)
    }

    /// The modsync command with the world's trees.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_modsync"));
        c.args(args)
            .arg("--dkmstree")
            .arg(self.p("dkms"))
            .arg("--sourcetree")
            .arg(self.p("src"))
            .arg("--installtree")
            .arg(self.p("lib/modules"))
            .env("MODSYNC_SYSCONF_ROOT", &self.root)
            .env_remove("parallel_jobs");
        c
    }

    /// Runs `modsync hook ARGS...`, which must exit 0, with the world's
    /// trees given before `hook` (a hook takes everything after its event
    /// as the package manager's arguments).
    pub fn hook(&self, args: &[&str]) -> Out {
        let mut c = Command::new(env!("CARGO_BIN_EXE_modsync"));
        c.arg("--dkmstree")
            .arg(self.p("dkms"))
            .arg("--sourcetree")
            .arg(self.p("src"))
            .arg("--installtree")
            .arg(self.p("lib/modules"))
            .arg("hook")
            .args(args)
            .env("MODSYNC_SYSCONF_ROOT", &self.root)
            .env_remove("parallel_jobs");
        let mut o = run(&mut c);
        o.cmd = format!("modsync hook {}", args.join(" "));
        assert_eq!(o.code, 0, "{}", o.show());
        o
    }

    /// Runs modsync with `args`.
    pub fn modsync(&self, args: &[&str]) -> Out {
        let mut o = run(&mut self.cmd(args));
        o.cmd = format!("modsync {}", args.join(" "));
        o
    }

    /// Runs modsync with `args`, which must succeed.
    pub fn ok(&self, args: &[&str]) -> Out {
        let o = self.modsync(args);
        assert_eq!(o.code, 0, "{}", o.show());
        o
    }

    /// `modsync status` output.
    pub fn status(&self) -> String {
        self.ok(&["status"]).stdout
    }

    /// `modsync status --json`, parsed.
    pub fn status_json(&self) -> Vec<serde_json::Value> {
        let out = self.ok(&["status", "--json"]).stdout;
        let v: serde_json::Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("status --json is not JSON ({e}):\n{out}"));
        v.as_array()
            .unwrap_or_else(|| panic!("status --json is not an array:\n{out}"))
            .clone()
    }

    /// The installed file of module `name` for kernel `k` under `updates/dkms`
    /// (any compression suffix), if present.
    pub fn installed_ko(&self, k: &str, name: &str) -> Option<PathBuf> {
        let dir = self.modules_dir(k).join("updates/dkms");
        ["", ".xz", ".zst", ".gz"]
            .iter()
            .map(|sfx| dir.join(format!("{name}.ko{sfx}")))
            .find(|p| p.is_file())
    }

    /// Copies `tests/fixtures/<dir>` into the world's source tree and adds it
    /// (`dir` is `<module>-<version>`).
    pub fn add_fixture(&self, dir: &str) {
        let (m, v) = dir.rsplit_once('-').expect("a fixture dir is <module>-<version>");
        run_ok(
            Command::new("cp")
                .arg("-a")
                .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(dir))
                .arg(self.p("src")),
        );
        self.ok(&["add", &format!("{m}/{v}")]);
    }

    /// Writes a one-file AUTOINSTALL module `name/1.0` (its `name.c` is
    /// `c_source`; `conf_extra` is appended to its dkms.conf) and adds it.
    pub fn add_one_file_module(&self, name: &str, conf_extra: &str, c_source: &str) {
        let dir = self.p("src").join(format!("{name}-1.0"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("dkms.conf"),
            format!(
                "PACKAGE_NAME={name}\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]={name}\n\
                 DEST_MODULE_LOCATION[0]=/updates\nAUTOINSTALL=yes\n{conf_extra}"
            ),
        )
        .unwrap();
        fs::write(dir.join("Makefile"), format!("obj-m := {name}.o\n")).unwrap();
        fs::write(dir.join(format!("{name}.c")), c_source).unwrap();
        self.ok(&["add", &format!("{name}/1.0")]);
    }

    /// `-k K1 -k K2 ...` for all the world's kernels.
    pub fn k_args(&self) -> Vec<String> {
        self.kernels
            .iter()
            .flat_map(|k| ["-k".to_string(), k.clone()])
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if World::keep_requested() {
            if let Some(d) = self.dir.take() {
                eprintln!("kept the test world {}", d.keep().display());
            }
        }
    }
}

/// `modinfo -F FIELD FILE`, trimmed.
pub fn modinfo(field: &str, file: &Path) -> String {
    run_ok(Command::new("modinfo").arg("-F").arg(field).arg(file))
        .trim()
        .to_string()
}

/// The status lines of `status` text that are about `module/version`.
pub fn lines_about<'a>(status: &'a str, mv: &str) -> Vec<&'a str> {
    status
        .lines()
        .filter(|l| l.starts_with(&format!("{mv},")) || l.starts_with(&format!("{mv}:")))
        .collect()
}

/// Every path under `root` with its type, mode, size, content and link
/// target (but the lock file, which every run that takes it rewrites).
pub fn snapshot(root: &Path) -> std::collections::BTreeMap<PathBuf, String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter(|e| !e.path().ends_with(".modsync/lock"))
        .map(|e| {
            let md = e.path().symlink_metadata().unwrap();
            let what = if md.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(e.path()).unwrap().display())
            } else if md.is_file() {
                let data = std::fs::read(e.path()).unwrap();
                format!(
                    "file {:o} {} {:x}",
                    std::os::unix::fs::MetadataExt::mode(&md),
                    data.len(),
                    data.iter()
                        .fold(0u64, |h, b| h.wrapping_mul(1099511628211).wrapping_add(*b as u64))
                )
            } else {
                format!("dir {:o}", std::os::unix::fs::MetadataExt::mode(&md))
            };
            (e.path().strip_prefix(root).unwrap().to_path_buf(), what)
        })
        .collect()
}

/// The names in a directory, sorted.
pub fn sorted_dir(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|r| {
            r.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
