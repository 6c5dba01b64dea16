//! Bad input, one test each: every case must end in a clear error that says
//! what to do (and the dkms exit code), with nothing lost or half-done.
//! The engine runs in an isolated world: `--dkmstree/--sourcetree/--installtree`
//! point into a temp dir and MODSYNC_SYSCONF_ROOT makes /etc/dkms and
//! /etc/modsync come from there too. Cases that build need real kernel
//! headers (installed by tests/setup.sh) and root (mount namespaces).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let w = World { dir: tempfile::tempdir().unwrap() };
        for d in ["dkms", "src", "lib/modules", "etc/dkms", "etc/modsync", "cache"] {
            fs::create_dir_all(w.p(d)).unwrap();
        }
        fs::copy("/etc/os-release", w.p("etc/os-release")).unwrap();
        fs::write(w.p("etc/modsync/config.toml"), format!("cache_dir = \"{}\"\n", w.p("cache").display())).unwrap();
        w
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_modsync"));
        c.arg("--dkmstree").arg(self.p("dkms"));
        c.arg("--sourcetree").arg(self.p("src"));
        c.arg("--installtree").arg(self.p("lib/modules"));
        c.env("MODSYNC_SYSCONF_ROOT", self.dir.path());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// A module source dir `src/<dir>` with this dkms.conf (and a trivial module).
    fn source(&self, dir: &str, conf: &str) -> PathBuf {
        let d = self.p(&format!("src/{dir}"));
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join("dkms.conf"), conf).unwrap();
        fs::write(d.join("Makefile"), "obj-m := hello.o\n").unwrap();
        fs::copy(fixture().join("hello.c"), d.join("hello.c")).unwrap();
        d
    }

    fn registered(&self) -> Vec<String> {
        fs::read_dir(self.p("dkms"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()
    }

    /// Sets up kernel K (real headers) in the world: lib/modules/K/build.
    fn kernel(&self, k: &str) {
        let m = self.p(&format!("lib/modules/{k}"));
        fs::create_dir_all(&m).unwrap();
        std::os::unix::fs::symlink(format!("/usr/src/linux-headers-{k}"), m.join("build")).unwrap();
    }
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-1.0")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A kernel with real headers, or None (the test then says it is skipped).
fn test_kernel() -> Option<String> {
    let from_env = std::env::var("MODSYNC_TEST_KERNELS").ok().or_else(|| fs::read_to_string("/var/cache/modsync-test/kernels").ok());
    let mut ks: Vec<String> = match from_env {
        Some(s) => s.split_whitespace().map(str::to_string).collect(),
        None => fs::read_dir("/usr/src")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_string_lossy().strip_prefix("linux-headers-").map(str::to_string))
            .filter(|k| k.ends_with("-amd64") && !k.contains("common"))
            .collect(),
    };
    ks.retain(|k| Path::new(&format!("/usr/src/linux-headers-{k}/include")).is_dir());
    ks.sort();
    ks.pop()
}

const GOOD: &str = "PACKAGE_NAME=hello\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=hello\nDEST_MODULE_LOCATION[0]=/updates\nAUTOINSTALL=yes\n";

#[test]
fn syntax_error_is_refused_and_nothing_is_registered() {
    let w = World::new();
    w.source("hello-1.0", "PACKAGE_NAME=hello\nif [ x ]; then\nPACKAGE_VERSION=1.0\n");
    let o = w.run(&["add", "hello/1.0"]);
    assert_eq!(o.status.code(), Some(8), "{}", text(&o));
    assert!(text(&o).contains("not valid shell"), "{}", text(&o));
    assert!(w.registered().is_empty());
}

#[test]
fn crlf_files_work_with_a_warning_or_get_a_dos2unix_hint() {
    let w = World::new();
    w.source("hello-1.0", &GOOD.replace('\n', "\r\n"));
    let o = w.run(&["add", "hello/1.0"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("CRLF"), "no CRLF warning: {}", text(&o));
    let w = World::new();
    w.source("hello-1.0", &format!("if true; then\n{GOOD}fi\n").replace('\n', "\r\n"));
    let o = w.run(&["add", "hello/1.0"]);
    assert_eq!(o.status.code(), Some(8), "{}", text(&o));
    assert!(text(&o).contains("dos2unix"), "{}", text(&o));
    assert!(w.registered().is_empty());
}

#[test]
fn missing_name_or_version_says_which() {
    let w = World::new();
    w.source("hello-1.0", "PACKAGE_VERSION=1.0\nDEST_MODULE_LOCATION=/updates\n");
    let o = w.run(&["add", "hello/1.0"]);
    assert_eq!(o.status.code(), Some(8));
    assert!(text(&o).contains("no PACKAGE_NAME directive; add PACKAGE_NAME="), "{}", text(&o));
    w.source("hello-1.0", "PACKAGE_NAME=hello\nDEST_MODULE_LOCATION=/updates\n");
    let o = w.run(&["add", "hello/1.0"]);
    assert!(text(&o).contains("no PACKAGE_VERSION directive"), "{}", text(&o));
    assert!(w.registered().is_empty());
}

#[test]
fn name_or_version_not_matching_the_directory_is_refused() {
    let w = World::new();
    w.source("hello-1.0", &GOOD.replace("PACKAGE_NAME=hello", "PACKAGE_NAME=other"));
    let o = w.run(&["add", "hello/1.0"]);
    assert_eq!(o.status.code(), Some(8), "{}", text(&o));
    assert!(text(&o).contains("declares other/1.0"), "{}", text(&o));
    w.source("hello-1.0", &GOOD.replace("PACKAGE_VERSION=1.0", "PACKAGE_VERSION=2.0"));
    let o = w.run(&["add", "hello/1.0"]);
    assert!(text(&o).contains("declares hello/2.0"), "{}", text(&o));
    assert!(w.registered().is_empty());
}

#[test]
fn paths_escaping_their_tree_are_refused() {
    for (bad, what) in [
        ("BUILT_MODULE_NAME[0]=../../evil", "BUILT_MODULE_NAME"),
        ("BUILT_MODULE_LOCATION[0]=/etc", "BUILT_MODULE_LOCATION"),
        ("BUILT_MODULE_LOCATION[0]=../..", "BUILT_MODULE_LOCATION"),
        ("DEST_MODULE_LOCATION[0]=/updates/../../../etc", "DEST_MODULE_LOCATION"),
        ("DEST_MODULE_LOCATION[0]=/etc", "DEST_MODULE_LOCATION"),
        ("PATCH[0]=../../../etc/passwd", "PATCH"),
        ("PATCH[0]=/etc/passwd", "PATCH"),
        ("PRE_BUILD=/bin/evil", "PRE_BUILD"),
    ] {
        let w = World::new();
        w.source("hello-1.0", &format!("{GOOD}{bad}\n"));
        let o = w.run(&["add", "hello/1.0"]);
        assert_eq!(o.status.code(), Some(8), "{bad}: {}", text(&o));
        assert!(text(&o).contains(what), "{bad}: {}", text(&o));
        assert!(w.registered().is_empty(), "{bad} registered");
    }
}

#[test]
fn names_with_spaces_or_shell_characters_are_refused() {
    let w = World::new();
    let o = w.run(&["add", "-m", "a b", "-v", "1.0"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("not a valid module name"), "{}", text(&o));
    for name in ["'x;touch /tmp/pwned'", "'$(reboot)'", "'a b'"] {
        let w = World::new();
        let d = w.source("weird", &GOOD.replace("PACKAGE_NAME=hello", &format!("PACKAGE_NAME={name}")));
        let o = w.run(&["add", d.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(8), "{name}: {}", text(&o));
        assert!(text(&o).contains("PACKAGE_NAME"), "{name}: {}", text(&o));
        assert!(w.registered().is_empty());
    }
}

#[test]
fn source_writable_by_other_users_needs_force() {
    if !is_root() {
        eprintln!("skipped: the ownership check applies to root only");
        return;
    }
    let w = World::new();
    let d = w.source("hello-1.0", GOOD);
    fs::set_permissions(d.join("Makefile"), fs::Permissions::from_mode(0o666)).unwrap();
    let o = w.run(&["add", "hello/1.0"]);
    assert_eq!(o.status.code(), Some(8), "{}", text(&o));
    assert!(text(&o).contains("can be changed by users other than root"), "{}", text(&o));
    assert!(text(&o).contains("--force"));
    assert!(w.registered().is_empty());
    let o = w.run(&["add", "hello/1.0", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn missing_headers_name_the_package() {
    let w = World::new();
    w.source("hello-1.0", GOOD);
    fs::create_dir_all(w.p("lib/modules/6.1.0-99-amd64")).unwrap();
    let o = w.run(&["install", "hello/1.0", "-k", "6.1.0-99-amd64"]);
    assert_eq!(o.status.code(), Some(21), "{}", text(&o));
    assert!(text(&o).contains("apt install linux-headers-6.1.0-99-amd64"), "{}", text(&o));
    assert!(!w.p("dkms/hello/1.0/6.1.0-99-amd64/x86_64/module").exists());
}

#[test]
fn unknown_kernel_is_explained() {
    let w = World::new();
    w.source("hello-1.0", GOOD);
    fs::create_dir_all(w.p("lib/modules/6.1.0-1-amd64")).unwrap();
    let o = w.run(&["build", "hello/1.0", "-k", "9.9.9-typo"]);
    assert_eq!(o.status.code(), Some(21), "{}", text(&o));
    let t = text(&o);
    assert!(t.contains("kernel 9.9.9-typo is unknown here") && t.contains("6.1.0-1-amd64"), "{t}");
}

#[test]
fn bad_config_toml_is_named() {
    let w = World::new();
    fs::write(w.p("etc/modsync/config.toml"), "strict = perhaps\n").unwrap();
    let o = w.run(&["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).contains("config.toml is not valid"), "{}", text(&o));
}

/// Runs `script` (bash) in a private mount namespace; `$B` is the engine
/// command line for the world.
fn in_namespace(w: &World, script: &str) -> Output {
    let b = format!(
        "env MODSYNC_SYSCONF_ROOT={} {} --dkmstree {} --sourcetree {} --installtree {}",
        w.dir.path().display(),
        env!("CARGO_BIN_EXE_modsync"),
        w.p("dkms").display(),
        w.p("src").display(),
        w.p("lib/modules").display()
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", script])
        .env("B", b)
        .env("W", w.dir.path())
        .output()
        .unwrap()
}

fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.contains("modsync-new") || n.starts_with(".tmp_") || n.starts_with(".build-") {
                out.push(e.path());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(e.path());
            }
        }
    }
    out
}

#[test]
fn full_disk_during_build_fails_cleanly() {
    let (Some(k), true) = (test_kernel(), is_root()) else {
        eprintln!("skipped: needs root and real kernel headers (tests/setup.sh)");
        return;
    };
    let w = World::new();
    w.kernel(&k);
    w.source("hello-1.0", GOOD);
    fs::write(w.p("etc/modsync/config.toml"), "cache = false\n").unwrap();
    // the state tree on a 600 KiB tmpfs: the source copy fits, the object files don't
    let o = in_namespace(
        &w,
        &format!("mount -t tmpfs -o size=600k tmpfs $W/dkms && $B add hello/1.0 && head -c 500k /dev/zero > $W/dkms/filler; $B build hello/1.0 -k {k}"),
    );
    let t = text(&o);
    assert_ne!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("No space left on device") || t.contains("make exited"), "{t}");
    assert!(t.contains(&format!("building hello/1.0 for kernel {k}")), "{t}");
}

#[test]
fn full_disk_during_install_leaves_nothing_half_installed() {
    let (Some(k), true) = (test_kernel(), is_root()) else {
        eprintln!("skipped: needs root and real kernel headers (tests/setup.sh)");
        return;
    };
    let w = World::new();
    w.kernel(&k);
    w.source("hello-1.0", GOOD);
    let o = w.run(&["build", "hello/1.0", "-k", &k]);
    assert!(o.status.success(), "{}", text(&o));
    let upd = format!("{}/lib/modules/{k}/updates", w.dir.path().display());
    fs::create_dir_all(&upd).unwrap();
    let o = in_namespace(&w, &format!("mount -t tmpfs -o size=4k tmpfs {upd} && head -c 4096 /dev/zero > {upd}/filler 2>/dev/null; $B install hello/1.0 -k {k}"));
    let t = text(&o);
    assert_ne!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("No space left on device"), "{t}");
    assert!(t.contains("nothing of it was left installed"), "{t}");
    let st = text(&w.run(&["status"]));
    assert!(st.contains(&format!("hello/1.0, {k}, x86_64: built")), "{st}");
    assert!(leftovers(w.dir.path()).is_empty(), "{:?}", leftovers(w.dir.path()));
    // with space again, the same command works
    let o = w.run(&["install", "hello/1.0", "-k", &k]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(w.p(&format!("lib/modules/{k}/updates/dkms/hello.ko")).is_file());
}

#[test]
fn read_only_module_tree_is_reported() {
    let (Some(k), true) = (test_kernel(), is_root()) else {
        eprintln!("skipped: needs root and real kernel headers (tests/setup.sh)");
        return;
    };
    let w = World::new();
    w.kernel(&k);
    w.source("hello-1.0", GOOD);
    let o = w.run(&["build", "hello/1.0", "-k", &k]);
    assert!(o.status.success(), "{}", text(&o));
    let lm = w.p("lib/modules");
    let o = in_namespace(
        &w,
        &format!("mount --bind {0} {0} && mount -o remount,bind,ro {0} && $B install hello/1.0 -k {k}", lm.display()),
    );
    let t = text(&o);
    assert_ne!(o.status.code(), Some(0), "{t}");
    assert!(t.contains("Read-only file system"), "{t}");
    let st = text(&w.run(&["status"]));
    assert!(st.contains(&format!("hello/1.0, {k}, x86_64: built")), "{st}");
    assert!(!w.p(&format!("lib/modules/{k}/updates")).exists());
}
