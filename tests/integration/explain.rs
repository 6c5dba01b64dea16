//! Failed builds that explain themselves, on real cases: real Debian
//! `*-dkms` sources against real kernel headers, in an isolated world (see
//! [`crate::support::World`]). A driver that no longer compiles for a
//! kernel (openrazer 3.5.1 on the 6.1 test kernels; the 6.1-era drivers on
//! Debian's newest 6.12 ABI) is classed "kernel-unsupported" naming a
//! source file of the driver; iptables-netflow's configure without the
//! libxtables-dev headers is quoted in its own words; a build where gcc does
//! not exist names the compiler package to install. Each diagnosis shows in
//! the failing command's and the package-manager hook's stderr, in `status
//! --json` (which starts no process) and in `modsync explain`, while
//! `status` keeps dkms's lines. `explain` also names the BUILD_EXCLUSIVE
//! rule that keeps a kernel out and the headers package of a kernel
//! without headers, also when a driver's Makefile wants them at
//! `/lib/modules/K/build`; a module that cannot be signed (a key sign-file
//! rejects) is built unsigned with a warning that says why.
//!
//! Drivers whose Makefiles use `/lib/modules/K/build` (openrazer, ddcci)
//! run in a private mount namespace where the world's `lib/modules` is
//! bound over `/lib/modules`; "gcc not installed" is a private mount
//! namespace in which `/usr/bin` is a copy (symbolic links) of the real one
//! without the C compilers, so the host is never changed.

use crate::support::{
    dkms_source, lines_about, require, require_root, run, run_ok, test_kernels, version_of, Out, World, CACHE,
};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn add_source(w: &World, prefix: &str) -> String {
    let src = dkms_source(prefix);
    let v = version_of(&src, prefix);
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(w.p("src")));
    w.ok(&["add", &format!("{prefix}/{v}")]);
    format!("{prefix}/{v}")
}

/// `outer` running the command `inner` (its program, arguments and environment).
fn wrapping(mut outer: Command, inner: &Command) -> Command {
    outer.arg(inner.get_program()).args(inner.get_args());
    for (k, v) in inner.get_envs() {
        match v {
            Some(v) => outer.env(k, v),
            None => outer.env_remove(k),
        };
    }
    outer
}

/// The world's modsync with its tree options first: a hook's arguments
/// after its event are all the hook's.
fn options_first(w: &World, args: &[&str]) -> Command {
    let options = w.cmd(&[]);
    let mut c = Command::new(options.get_program());
    c.args(options.get_args()).args(args);
    for (k, v) in options.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

/// Runs modsync in a private mount namespace with `binds` (from, onto) in place.
pub(crate) fn modsync_in_namespace(w: &World, binds: &[(PathBuf, PathBuf)], args: &[&str]) -> Out {
    let mut script = String::from("set -e; ");
    for (from, onto) in binds {
        script.push_str(&format!("mount --bind '{}' '{}'; ", from.display(), onto.display()));
    }
    script.push_str("exec \"$@\"");
    let mut unshare = Command::new("unshare");
    unshare.args(["--mount", "--propagation", "private", "sh", "-c", &script, "sh"]);
    let mut o = run(&mut wrapping(unshare, &options_first(w, args)));
    o.cmd = format!("modsync {} (in a mount namespace)", args.join(" "));
    o
}

/// The world's kernel trees over /lib/modules, for Makefiles that hard-code it.
pub(crate) fn lib_modules(w: &World) -> Vec<(PathBuf, PathBuf)> {
    vec![(w.p("lib/modules"), PathBuf::from("/lib/modules"))]
}

/// The failed entries of `status --json` for m/v, by kernel.
pub(crate) fn failed(w: &World, mv: &str) -> Vec<(String, Value)> {
    let (m, v) = mv.split_once('/').unwrap();
    w.status_json()
        .into_iter()
        .filter(|l| l["module"] == m && l["version"] == v && l["state"] == "failed")
        .map(|l| (l["kernel"].as_str().unwrap().to_string(), l["diagnosis"].clone()))
        .collect()
}

/// Asserts a kernel-unsupported diagnosis naming a file of the driver
/// whose error is the first error of that file in the kept make.log.
fn assert_unsupported(w: &World, mv: &str, k: &str, d: &Value) {
    assert_eq!(d["class"], "kernel-unsupported", "{mv} for {k}: {d:#}");
    let file = d["file"]
        .as_str()
        .unwrap_or_else(|| panic!("{mv} for {k}: no file named: {d:#}"));
    let src = w.p("src").join(mv.replace('/', "-"));
    assert!(
        src.join(file).is_file(),
        "{mv} for {k}: {file} is not a file of {}",
        src.display()
    );
    let (m, v) = mv.split_once('/').unwrap();
    let log = w
        .p("dkms")
        .join(m)
        .join(v)
        .join(format!(".modsync/failed/{k}-{}/make.log", crate::support::ARCH));
    let text = std::fs::read_to_string(&log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let quoted = d["quote"][0].as_str().unwrap_or_default();
    assert!(
        quoted.contains(&format!("{file}:")) && quoted.contains("error") && text.contains(quoted),
        "{mv} for {k}: the quote is not the log's error line in {file}: {d:#}"
    );
    assert!(
        d["advice"].as_str().unwrap_or_default().contains(&format!(
            "this driver version does not build for kernel {k}; a newer version of the driver is needed"
        )),
        "{d:#}"
    );
}

#[test]
fn openrazer_on_the_61_kernels_is_a_driver_that_does_not_support_them() {
    require_root("explain openrazer");
    let ks = test_kernels();
    let w = World::new(&ks);
    let mv = add_source(&w, "openrazer-driver");
    let mut args = vec!["build", mv.as_str()];
    let kargs = w.k_args();
    args.extend(kargs.iter().map(String::as_str));
    let o = modsync_in_namespace(&w, &lib_modules(&w), &args);
    assert_eq!(o.code, 10, "dkms's exit code stays: {}", o.show());
    let f = failed(&w, &mv);
    assert_eq!(f.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), ks, "{:?}", f);
    for (k, d) in &f {
        assert_unsupported(&w, &mv, k, d);
        assert!(d["file"].as_str().unwrap().starts_with("driver/"), "{d:#}");
        assert!(
            o.stderr.contains(&format!(
                "Why: {mv} does not support kernel {k}: its own source fails to compile: {}",
                d["file"].as_str().unwrap()
            )),
            "the command's error output explains {k}:\n{}",
            o.show()
        );
    }
    assert!(
        o.stdout.lines().all(|l| !l.starts_with("Why:")),
        "explanations go to stderr:\n{}",
        o.show()
    );
    // dkms's status lines are unchanged
    assert_eq!(lines_about(&w.status(), &mv), vec![format!("{mv}: added")]);
    // explain without -k: every failed kernel
    let e = w.ok(&["explain", "openrazer-driver"]);
    for k in &ks {
        assert!(
            e.stdout
                .contains(&format!("{mv}, {k}, {}: kernel-unsupported", crate::support::ARCH)),
            "{}",
            e.show()
        );
    }
    assert!(
        e.stdout.contains("a newer version of the driver is needed"),
        "{}",
        e.show()
    );
    // status --json reads the recorded diagnosis without starting a process
    let trace = w.p("trace");
    let mut strace = Command::new("strace");
    strace.args(["-f", "-qq", "-e", "trace=execve", "-o"]).arg(&trace);
    let o = run(&mut wrapping(strace, &w.cmd(&["status", "--json"])));
    assert_eq!(o.code, 0, "{}", o.show());
    assert!(o.stdout.contains("\"kernel-unsupported\""), "{}", o.show());
    let execs = std::fs::read_to_string(&trace).unwrap();
    assert_eq!(
        execs.lines().filter(|l| l.contains("execve(")).count(),
        1,
        "status --json started a process:\n{execs}"
    );
}

/// The newest Debian 6.12 ABI `tests/setup.sh` extracted (not installed).
pub(crate) fn kernel_612() -> (String, PathBuf) {
    let k = std::fs::read_to_string(Path::new(CACHE).join("kernel-6.12"))
        .unwrap_or_default()
        .trim()
        .to_string();
    let headers = Path::new(CACHE).join(format!("hdr-{k}/usr/src/linux-headers-{k}"));
    require(
        "explain 6.12",
        !k.is_empty() && headers.join("Makefile").is_file(),
        &format!("no 6.12 headers ({CACHE}/kernel-6.12, {})", headers.display()),
    );
    (k, headers)
}

#[test]
fn the_61_era_drivers_on_612_fail_as_kernel_api_changes() {
    require_root("explain 6.12");
    let (k, headers) = kernel_612();
    let w = World::new(&[]);
    std::fs::create_dir_all(w.modules_dir(&k)).unwrap();
    std::os::unix::fs::symlink(&headers, w.modules_dir(&k).join("build")).unwrap();
    let mvs: Vec<String> = ["v4l2loopback", "ddcci", "vpoll", "openrazer-driver"]
        .iter()
        .map(|p| add_source(&w, p))
        .collect();
    // the kernel-install hook builds them all at once, as a new kernel would
    let o = modsync_in_namespace(&w, &lib_modules(&w), &["hook", "kernel-install", "add", &k]);
    let status = w.status();
    let mut failures = 0;
    for mv in &mvs {
        let f: Vec<(String, Value)> = failed(&w, mv).into_iter().filter(|(fk, _)| *fk == k).collect();
        let line = format!("{mv}, {k}, {}: installed", crate::support::ARCH);
        match f.first() {
            Some((_, d)) => {
                failures += 1;
                assert_unsupported(&w, mv, &k, d);
                assert!(
                    o.stderr.contains(&format!("Why: {mv} does not support kernel {k}")),
                    "{}",
                    o.show()
                );
                assert!(!status.contains(&line), "{status}");
            }
            None => assert!(
                status.lines().any(|l| l == line),
                "{mv} neither failed nor installed:\n{status}\n{}",
                o.show()
            ),
        }
    }
    assert!(
        failures > 0,
        "every 6.1-era driver built for {k}; this test has nothing to explain:\n{}",
        o.show()
    );
    assert_eq!(
        o.code,
        0,
        "a hook does not fail the kernel's installation: {}",
        o.show()
    );
    assert!(
        o.stderr.contains(&format!(
            "modsync: {failures} module build(s) failed (why and what to do: above, and `modsync explain MODULE`)"
        )),
        "{}",
        o.show()
    );
    let e = w.ok(&["explain", "vpoll", "-k", &k]);
    assert!(e.stdout.starts_with(&format!("{}, {k}, ", mvs[2])), "{}", e.show());
}

#[test]
fn iptables_netflow_without_libxtables_dev_quotes_its_configure() {
    require_root("explain ipt-netflow");
    let absent = !Path::new("/usr/include/xtables.h").exists()
        && run(Command::new("pkg-config").args(["--exists", "xtables"])).code != 0;
    require(
        "explain ipt-netflow",
        absent,
        "the libxtables-dev headers must be absent (/usr/include/xtables.h, pkg-config xtables): `apt-get remove libxtables-dev`",
    );
    require(
        "explain ipt-netflow",
        Path::new("/usr/sbin/iptables-legacy").is_file(),
        "its configure needs /usr/sbin/iptables-legacy (package iptables) to reach its check of the headers",
    );
    let ks = test_kernels();
    let w = World::new(&ks);
    let mv = add_source(&w, "ipt-netflow");
    // two kernels at once: each build runs in its own mount namespace, where
    // its PRE_BUILD must be found and run too
    let mut args = vec!["build", mv.as_str()];
    let kargs = w.k_args();
    args.extend(kargs.iter().map(String::as_str));
    let o = w.modsync(&args);
    assert_eq!(o.code, 10, "{}", o.show());
    let f = failed(&w, &mv);
    assert_eq!(f.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(), ks, "{}", o.show());
    for (k, d) in &f {
        assert_eq!(d["class"], "pre-build-failed", "{k}: {d:#}");
        assert_eq!(d["package"], "libxtables-dev", "{d:#}");
        let quote: Vec<&str> = d["quote"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q.as_str().unwrap())
            .collect();
        assert!(
            quote.iter().any(|q| q.contains("apt-get install libxtables-dev")),
            "{d:#}"
        );
        let log = std::fs::read_to_string(
            w.p("dkms")
                .join(format!("{mv}/.modsync/failed/{k}-{}/make.log", crate::support::ARCH)),
        )
        .unwrap();
        for q in &quote {
            assert!(
                log.lines().any(|l| l.trim() == *q),
                "`{q}` is not configure's own line:\n{log}"
            );
        }
    }
    assert!(o.stderr.contains("apt-get install libxtables-dev"), "{}", o.show());
    let e = w.ok(&["explain", &mv, "-k", &ks[1]]);
    assert!(
        e.stdout.contains("pre-build-failed") && e.stdout.contains("| !   root# apt-get install libxtables-dev"),
        "{}",
        e.show()
    );
}

#[test]
fn a_build_without_gcc_names_the_compiler_package() {
    require_root("explain no gcc");
    let ks = test_kernels();
    let k = &ks[1];
    let w = World::new(&ks);
    let mv = add_source(&w, "vpoll");
    // /usr/bin without the C compilers: links into the real one, bound elsewhere
    let (real, farm) = (w.p("usr-bin-real"), w.p("usr-bin-without-gcc"));
    std::fs::create_dir_all(&real).unwrap();
    std::fs::create_dir_all(&farm).unwrap();
    let compiler = |n: &str| n.contains("gcc") || n.contains("cpp") || ["cc", "c89", "c99"].contains(&n);
    for e in std::fs::read_dir("/usr/bin").unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if !compiler(&n) {
            std::os::unix::fs::symlink(real.join(&n), farm.join(&n)).unwrap();
        }
    }
    let binds = [
        (PathBuf::from("/usr/bin"), real.clone()),
        (farm.clone(), PathBuf::from("/usr/bin")),
    ];
    // the namespace really has no gcc
    let mut check = String::from("set -e; ");
    for (from, onto) in &binds {
        check.push_str(&format!("mount --bind '{}' '{}'; ", from.display(), onto.display()));
    }
    check.push_str("for c in gcc cc gcc-12 x86_64-linux-gnu-gcc-12; do if command -v $c; then exit 1; fi; done; make --version >/dev/null");
    let c = run(Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &check]));
    assert_eq!(c.code, 0, "a compiler is still there, or make is not: {}", c.show());
    let o = modsync_in_namespace(&w, &binds, &["build", &mv, "-k", k]);
    assert_eq!(o.code, 10, "{}", o.show());
    // the package of the compiler the kernel was built with (Debian: gcc-N)
    let config = std::fs::read_to_string(format!("/usr/src/linux-headers-{k}/.config")).unwrap();
    let cc = config
        .lines()
        .find_map(|l| l.strip_prefix("CONFIG_CC_VERSION_TEXT="))
        .and_then(|t| t.trim_matches('"').split_whitespace().next())
        .unwrap();
    let package = &cc[cc.rfind("gcc").unwrap()..];
    let d = &failed(&w, &mv)
        .first()
        .unwrap_or_else(|| panic!("no failure recorded:\n{}", o.show()))
        .1
        .clone();
    assert_eq!(d["class"], "compiler-missing", "{d:#}");
    assert_eq!(d["package"], package, "{d:#}");
    assert!(o.stderr.contains(&format!("apt install {package}")), "{}", o.show());
    // the same build with gcc there succeeds: the compiler was the only cause
    w.ok(&["build", &mv, "-k", k]);
    assert!(failed(&w, &mv).is_empty(), "{:?}", failed(&w, &mv));
    assert!(w.ok(&["explain", &mv, "-k", k]).stdout.contains(": built"));
}

#[test]
fn the_package_that_ships_a_file_comes_from_the_package_manager() {
    // dkms, installed by tests/setup.sh, owns /usr/sbin/dkms; the test
    // sources live in a world and belong to no package
    require(
        "explain owner",
        Path::new("/usr/sbin/dkms").is_file(),
        "Debian's dkms is not installed",
    );
    use modsync::diagnose::facts::owner_package;
    use modsync::kernel::distro::Family;
    assert_eq!(
        owner_package(Family::Debian, Path::new("/usr/sbin/dkms")).as_deref(),
        Some("dkms")
    );
    let conf = dkms_source("vpoll").join("dkms.conf");
    assert_eq!(owner_package(Family::Debian, &conf), None, "{}", conf.display());
}

#[test]
fn explain_names_the_exclusion_rule_and_the_missing_headers() {
    require_root("explain excluded");
    let ks = test_kernels();
    let k = &ks[0];
    let w = World::new(&ks[..1]);
    w.add_one_file_module("old", "BUILD_EXCLUSIVE_KERNEL=\"^4\\.\"\n", "");
    w.add_fixture("hello-1.0");
    // an installed kernel without headers
    let bare = "6.1.0-999-amd64";
    std::fs::create_dir_all(w.modules_dir(bare).join("kernel")).unwrap();
    let e = w.ok(&["explain", "old", "-k", k]);
    assert!(
        e.stdout
            .starts_with(&format!("old/1.0, {k}, {}: excluded\n", crate::support::ARCH))
            && e.stdout
                .contains(&format!("BUILD_EXCLUSIVE_KERNEL=\"^4\\.\" does not match {k}"))
            && e.stdout.contains("it is not a failure"),
        "{}",
        e.show()
    );
    let e = w.ok(&["explain", "hello/1.0", "-k", bare]);
    assert!(
        e.stdout.contains(": headers-missing") && e.stdout.contains(&format!("`apt install linux-headers-{bare}`")),
        "{}",
        e.show()
    );
    // no failed build: nothing to explain without -k
    let e = w.ok(&["explain", "hello"]);
    assert!(
        e.stdout.starts_with("hello: no failed build is recorded"),
        "{}",
        e.show()
    );
    assert_eq!(
        w.modsync(&["explain", "absent"]).code,
        3,
        "an unknown module is dkms's 'not in tree'"
    );
}

#[test]
fn a_makefile_that_wants_lib_modules_build_names_the_headers_package() {
    // ddcci's Makefile builds against /lib/modules/K/build whatever
    // --kernelsourcedir says: with the 6.12 headers only in the world and
    // an empty /lib/modules (a private mount), that directory is missing
    require_root("explain lib/modules");
    let (k, headers) = kernel_612();
    let w = World::new(&[]);
    std::fs::create_dir_all(w.modules_dir(&k)).unwrap();
    std::os::unix::fs::symlink(&headers, w.modules_dir(&k).join("build")).unwrap();
    let mv = add_source(&w, "ddcci");
    let empty = w.p("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = modsync_in_namespace(&w, &[(empty, PathBuf::from("/lib/modules"))], &["build", &mv, "-k", &k]);
    assert_eq!(o.code, 10, "{}", o.show());
    let d = &failed(&w, &mv)
        .first()
        .unwrap_or_else(|| panic!("no failure recorded:\n{}", o.show()))
        .1
        .clone();
    assert_eq!(d["class"], "headers-missing", "{d:#}");
    assert_eq!(d["package"], format!("linux-headers-{k}"), "{d:#}");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("/lib/modules/{k}/build, which does not exist")),
        "{d:#}"
    );
}

#[test]
fn a_signing_key_sign_file_rejects_is_explained() {
    // a build whose signing fails goes on unsigned (as dkms does); the
    // warning says why and what to do
    require_root("explain signing");
    let ks = test_kernels();
    let k = &ks[0];
    let w = World::new(&ks[..1]);
    w.add_fixture("hello-1.0");
    std::fs::write(w.p("mok.key"), "not a key\n").unwrap();
    std::fs::write(w.p("mok.pub"), "not a certificate\n").unwrap();
    let o = w.modsync(&["build", "hello/1.0", "-k", k]);
    assert_eq!(o.code, 0, "{}", o.show());
    assert!(
        o.stderr.contains("the module stays unsigned")
            && o.stderr.contains(&format!(
                "Why: hello/1.0 was built for kernel {k}, but signing its modules failed"
            ))
            && o.stderr.contains("mok_signing_key"),
        "{}",
        o.show()
    );
}
