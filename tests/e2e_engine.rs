//! End-to-end tests of the engine: the release binary builds real modules
//! against the real headers of the test kernels (`tests/setup.sh` installs
//! them and writes their list; `MODSYNC_TEST_KERNELS` overrides it) in an
//! isolated world (see `support::World`): the bundled hello module, real
//! Debian *-dkms sources (v4l2loopback, ddcci, and openrazer-driver, which
//! no longer compiles on these kernels), dkms.conf edge cases and
//! BUILD_DEPENDS ordering.
//!
//! Root only (depmod trees, real builds); without root each test says
//! SKIPPED and passes. `MODSYNC_TEST_KEEP=1` keeps the worlds' files.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use support::{
    dkms_source, lines_about, modinfo, root_or_skip, run, run_ok, test_kernels, version_of, World,
    ARCH,
};

/// `install M/V -k K1 -k K2 ...`: every kernel in one command.
fn install_all(w: &World, mv: &str) -> support::Out {
    let ks = w.k_args();
    let mut args = vec!["install", mv];
    args.extend(ks.iter().map(String::as_str));
    w.modsync(&args)
}

fn status_line(mv: &str, k: &str, state: &str) -> String {
    format!("{mv}, {k}, {ARCH}: {state}")
}

fn assert_status_line(status: &str, mv: &str, k: &str, state: &str) {
    let want = status_line(mv, k, state);
    assert!(
        status.lines().any(|l| l == want),
        "status has no line {want:?}:\n{status}"
    );
}

/// Lines of `modules.dep` of kernel `k` that list module `name` (as a module or a dependency).
fn modules_dep_mentions(w: &World, k: &str, name: &str) -> bool {
    let dep = fs::read_to_string(w.modules_dir(k).join("modules.dep")).expect("modules.dep");
    dep.split_whitespace().any(|word| {
        let f = word.trim_end_matches(':').rsplit('/').next().unwrap_or("");
        f == format!("{name}.ko") || f.starts_with(&format!("{name}.ko."))
    })
}

/// The installed module, with its vermagic checked against the kernel.
fn assert_installed_for(w: &World, k: &str, name: &str) -> PathBuf {
    let ko = w.installed_ko(k, name).unwrap_or_else(|| {
        panic!(
            "{name}.ko is not installed under {}",
            w.modules_dir(k).join("updates/dkms").display()
        )
    });
    let vm = modinfo("vermagic", &ko);
    assert!(
        vm.starts_with(&format!("{k} ")),
        "{} has vermagic {vm:?}, not for {k}",
        ko.display()
    );
    assert!(
        modules_dep_mentions(w, k, name),
        "modules.dep of {k} does not list {name}"
    );
    ko
}

/// Every `.ko*` file under `dir` whose name starts with `name.ko`.
fn find_ko(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{name}.ko"))
            {
                found.push(p);
            }
        }
    }
    found
}

/// The serial of the signing certificate (DER or PEM), upper-case hex.
fn cert_serial(cert: &Path) -> String {
    let o = run(Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-serial", "-in"])
        .arg(cert));
    let out = if o.code == 0 {
        o.stdout
    } else {
        run_ok(
            Command::new("openssl")
                .args(["x509", "-noout", "-serial", "-in"])
                .arg(cert),
        )
    };
    out.trim().trim_start_matches("serial=").to_uppercase()
}

/// The public key (PEM) of a private key file.
fn public_key_of_private(key: &Path) -> String {
    run_ok(
        Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(key),
    )
}

/// The public key (PEM) in a certificate (DER or PEM).
fn public_key_of_cert(cert: &Path) -> String {
    let o = run(Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-pubkey", "-in"])
        .arg(cert));
    if o.code == 0 {
        return o.stdout;
    }
    run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-pubkey", "-in"])
            .arg(cert),
    )
}

fn kernel_signs_modules(k: &str) -> bool {
    fs::read_to_string(format!("/usr/src/linux-headers-{k}/.config"))
        .is_ok_and(|c| c.lines().any(|l| l == "CONFIG_MODULE_SIG=y"))
}

fn mtime(p: &Path) -> SystemTime {
    fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Absolute paths ending in make.log named in a command's output.
fn make_log_paths(text: &str) -> Vec<PathBuf> {
    text.split(|c: char| c.is_whitespace() || "()'\"`,;".contains(c))
        .map(|w| w.trim_end_matches(['.', ':']))
        .filter(|w| w.starts_with('/') && w.ends_with("make.log"))
        .map(PathBuf::from)
        .collect()
}

/// Writes a file, creating its directory; `exec` makes it executable.
fn write(path: &Path, text: &str, exec: bool) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
    if exec {
        fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A kernel module source file that does nothing but load; `extra` is
/// appended (e.g. MODULE_INFO lines).
fn module_c(name: &str, extra: &str) -> String {
    format!(
        "#include <linux/init.h>\n#include <linux/module.h>\n\
         static int __init {name}_init(void) {{ pr_info(\"{name}: loaded\\n\"); return 0; }}\n\
         static void __exit {name}_exit(void) {{ }}\n\
         module_init({name}_init);\nmodule_exit({name}_exit);\n\
         MODULE_LICENSE(\"GPL\");\n{extra}"
    )
}

fn regex_escape(s: &str) -> String {
    s.chars().fold(String::new(), |mut out, c| {
        if ".+*?()[]{}|^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
        out
    })
}

/// a. The bundled hello module through its whole life, for every test
/// kernel in one install command.
#[test]
fn hello_add_install_uninstall_remove() {
    if !root_or_skip("hello_add_install_uninstall_remove") {
        return;
    }
    let w = World::new(&test_kernels());
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-1.0");

    w.ok(&["add", fixture.to_str().unwrap()]);
    assert!(
        w.p("src/hello-1.0/dkms.conf").is_file(),
        "add did not copy the fixture to the source tree"
    );
    let st = w.status();
    assert!(
        st.lines().any(|l| l == "hello/1.0: added"),
        "status after add:\n{st}"
    );

    let o = install_all(&w, "hello/1.0");
    assert_eq!(o.code, 0, "{}", o.show());
    let st = w.status();
    assert_eq!(
        lines_about(&st, "hello/1.0").len(),
        w.kernels.len(),
        "one status line per kernel expected:\n{st}"
    );
    for k in &w.kernels {
        assert_status_line(&st, "hello/1.0", k, "installed");
        let ko = assert_installed_for(&w, k, "hello");
        assert_eq!(
            ko,
            w.modules_dir(k).join("updates/dkms/hello.ko"),
            "Debian's location is updates/dkms"
        );
        assert_eq!(modinfo("version", &ko), "1.0");
        assert!(
            !w.modules_dir(k).join("updates/hello.ko").exists(),
            "DEST_MODULE_LOCATION=/updates must be replaced by /updates/dkms on Debian"
        );
    }
    let mut args = vec!["uninstall", "hello/1.0"];
    let ks = w.k_args();
    args.extend(ks.iter().map(String::as_str));
    w.ok(&args);
    let st = w.status();
    for k in &w.kernels {
        assert_status_line(&st, "hello/1.0", k, "built");
        assert!(
            w.installed_ko(k, "hello").is_none(),
            "hello.ko still installed for {k} after uninstall"
        );
        assert!(
            !modules_dep_mentions(&w, k, "hello"),
            "modules.dep of {k} still lists hello after uninstall"
        );
    }

    w.ok(&["remove", "hello/1.0", "--all"]);
    let st = w.status();
    assert_eq!(
        st.trim(),
        "",
        "status after remove --all should be empty:\n{st}"
    );
    assert!(
        !w.p("dkms/hello").exists(),
        "remove --all left {}",
        w.p("dkms/hello").display()
    );
    let left = find_ko(&w.p("lib/modules"), "hello");
    assert!(
        left.is_empty(),
        "hello.ko files left after remove --all: {left:?}"
    );
}

/// The install jobs of one command run in parallel; the signing key they
/// create on first use must be created once, and every module signed with it.
#[test]
fn parallel_installs_share_one_signing_key() {
    if !root_or_skip("parallel_installs_share_one_signing_key") {
        return;
    }
    let w = World::new(&test_kernels());
    assert!(!w.p("mok.key").exists());
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-1.0");
    w.ok(&["add", fixture.to_str().unwrap()]);
    let o = install_all(&w, "hello/1.0");
    assert_eq!(o.code, 0, "{}", o.show());
    let created = o.text().matches("created the module signing key").count();
    let mut sig_keys = Vec::new();
    for k in &w.kernels {
        if kernel_signs_modules(k) {
            let ko = assert_installed_for(&w, k, "hello");
            sig_keys.push((
                k.clone(),
                modinfo("sig_key", &ko).replace(':', "").to_uppercase(),
            ));
        }
    }
    assert!(
        !sig_keys.is_empty(),
        "the test kernels do not sign modules (CONFIG_MODULE_SIG); nothing to check"
    );
    assert!(
        created <= 1,
        "the signing key was created {created} times in one command:\n{}",
        o.show()
    );
    let serial = cert_serial(&w.p("mok.pub"));
    assert_eq!(
        public_key_of_private(&w.p("mok.key")),
        public_key_of_cert(&w.p("mok.pub")),
        "{} and {} are not one key pair",
        w.p("mok.key").display(),
        w.p("mok.pub").display()
    );
    for (k, key) in &sig_keys {
        assert_eq!(
            key, &serial,
            "hello.ko for {k} is signed with key {key}, but the certificate on disk ({}) has serial {serial}: \
             parallel jobs must share one signing key",
            w.p("mok.pub").display()
        );
    }
}

/// `add` with a relative source path, as the README's example types it.
#[test]
fn add_accepts_a_relative_source_path() {
    if !root_or_skip("add_accepts_a_relative_source_path") {
        return;
    }
    let w = World::new(&[]);
    let mut cmd = w.cmd(&["add", "tests/fixtures/hello-1.0"]);
    let o = run(cmd.current_dir(env!("CARGO_MANIFEST_DIR")));
    assert_eq!(
        o.code,
        0,
        "relative source path (cwd {}):\n{}",
        env!("CARGO_MANIFEST_DIR"),
        o.show()
    );
    assert!(
        w.p("src/hello-1.0/hello.c").is_file(),
        "add did not copy the fixture to the source tree"
    );
    let st = w.status();
    assert!(
        st.lines().any(|l| l == "hello/1.0: added"),
        "status after add:\n{st}"
    );
}

/// A source directory added again after `remove` is copied over the existing
/// source tree, as dkms does (a re-add after editing the source); adding it
/// while it is still added fails (exit 3) and leaves the source tree alone.
#[test]
fn re_adding_a_directory_copies_over_the_source_tree() {
    if !root_or_skip("re_adding_a_directory_copies_over_the_source_tree") {
        return;
    }
    let w = World::new(&[]);
    let edit = tempfile::tempdir().unwrap();
    let dir = edit.path().join("hello");
    run_ok(Command::new("cp").arg("-a").arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hello-1.0")).arg(&dir));
    let dir_s = dir.to_str().unwrap();
    let edited = "/* edited */\n";
    let in_source_tree = || fs::read_to_string(w.p("src/hello-1.0/hello.c")).unwrap();
    run_ok(&mut w.cmd(&["add", dir_s]));
    fs::write(dir.join("hello.c"), edited).unwrap();
    let o = run(&mut w.cmd(&["add", dir_s]));
    assert_eq!(o.code, 3, "a second add while added must fail with dkms's exit 3:\n{}", o.show());
    assert_ne!(in_source_tree(), edited, "a failed add changed the source tree");
    run_ok(&mut w.cmd(&["remove", "hello/1.0", "--all"]));
    let o = run(&mut w.cmd(&["add", dir_s]));
    assert_eq!(o.code, 0, "re-adding after remove (the source tree still exists):\n{}", o.show());
    assert_eq!(in_source_tree(), edited, "the re-add did not copy the edited source over the source tree");
    assert!(w.status().lines().any(|l| l == "hello/1.0: added"), "status:\n{}", w.status());
}

/// b. Real Debian dkms sources, and a real driver that fails to compile.
#[test]
fn real_debian_drivers_and_a_broken_one() {
    if !root_or_skip("real_debian_drivers_and_a_broken_one") {
        return;
    }
    let w = World::new(&test_kernels());
    let v4l = dkms_source("v4l2loopback");
    let ddcci = dkms_source("ddcci");
    let razer = dkms_source("openrazer-driver");
    let v4l_mv = format!("v4l2loopback/{}", version_of(&v4l, "v4l2loopback"));
    let ddcci_mv = format!("ddcci/{}", version_of(&ddcci, "ddcci"));
    let razer_mv = format!(
        "openrazer-driver/{}",
        version_of(&razer, "openrazer-driver")
    );
    for src in [&v4l, &ddcci, &razer] {
        w.ok(&["add", src.to_str().unwrap()]);
    }

    for mv in [&v4l_mv, &ddcci_mv] {
        let o = install_all(&w, mv);
        assert_eq!(o.code, 0, "{}", o.show());
    }
    let st = w.status();
    for k in &w.kernels {
        assert_status_line(&st, &v4l_mv, k, "installed");
        assert_status_line(&st, &ddcci_mv, k, "installed");
        for m in ["v4l2loopback", "ddcci", "ddcci-backlight"] {
            assert_installed_for(&w, k, m);
        }
        // depmod resolved the dependencies: the dkms pair, and the kernel's own media core
        let deps = run_ok(Command::new("modprobe").arg("-d").arg(w.root()).args([
            "-S",
            k,
            "--show-depends",
            "ddcci-backlight",
        ]));
        assert!(
            deps.contains("/updates/dkms/ddcci.ko"),
            "ddcci-backlight should depend on ddcci:\n{deps}"
        );
        let deps = run_ok(Command::new("modprobe").arg("-d").arg(w.root()).args([
            "-S",
            k,
            "--show-depends",
            "v4l2loopback",
        ]));
        assert!(
            deps.contains("/videodev.ko"),
            "v4l2loopback should depend on the kernel's videodev:\n{deps}"
        );
    }
    let js = w.status_json();
    for k in &w.kernels {
        for mv in [&v4l_mv, &ddcci_mv] {
            let (m, v) = mv.split_once('/').unwrap();
            let e = js
                .iter()
                .find(|e| e["module"] == m && e["version"] == v && e["kernel"] == k.as_str())
                .unwrap_or_else(|| panic!("status --json has no entry for {mv} on {k}: {js:?}"));
            assert_eq!(e["state"], "installed", "{mv} on {k}: {e}");
            assert_eq!(e["arch"], ARCH);
        }
    }

    // openrazer-driver 3.5.1 does not compile against 6.1.0-53 and later
    let o = install_all(&w, &razer_mv);
    assert_eq!(
        o.code,
        10,
        "a failed make must give dkms's exit code 10\n{}",
        o.show()
    );
    let logs = make_log_paths(&o.text());
    assert!(
        !logs.is_empty(),
        "the error output does not name the make.log\n{}",
        o.show()
    );
    for log in &logs {
        let text = fs::read_to_string(log)
            .unwrap_or_else(|e| panic!("the named make.log {} is not kept: {e}", log.display()));
        assert!(
            text.contains("too few arguments"),
            "{} lacks the compiler error:\n{}",
            log.display(),
            support::tail(&text, 30)
        );
    }
    let st = w.status();
    for k in &w.kernels {
        let failed = status_line(&razer_mv, k, "failed");
        assert!(
            st.lines().any(|l| l.starts_with(&failed)),
            "status has no {failed:?} line:\n{st}"
        );
        assert!(
            !st.lines()
                .any(|l| l.starts_with(&status_line(&razer_mv, k, "installed"))),
            "the broken module shows as installed:\n{st}"
        );
        assert!(
            find_ko(&w.modules_dir(k), "razerkbd").is_empty(),
            "a razerkbd.ko was installed for {k}"
        );
        // the others are untouched
        assert_status_line(&st, &v4l_mv, k, "installed");
        assert_status_line(&st, &ddcci_mv, k, "installed");
        assert!(
            w.installed_ko(k, "v4l2loopback").is_some() && w.installed_ko(k, "ddcci").is_some()
        );
    }
    let js = w.status_json();
    for k in &w.kernels {
        let e = js
            .iter()
            .find(|e| e["module"] == "openrazer-driver" && e["kernel"] == k.as_str())
            .unwrap_or_else(|| {
                panic!("status --json has no openrazer-driver entry for {k}: {js:?}")
            });
        assert_eq!(e["state"], "failed", "{e}");
        let log = e["log"]
            .as_str()
            .unwrap_or_else(|| panic!("failed entry without its make.log: {e}"));
        assert!(
            Path::new(log).is_file(),
            "status --json names {log}, which does not exist"
        );
    }
}

/// c. dkms.conf edge cases: MAKE with a single-quoted `$kernelver`,
/// BUILT_MODULE_LOCATION, a per-module BUILD_EXCLUSIVE_KERNEL[1] and
/// PRE_BUILD/POST_BUILD scripts.
#[test]
fn dkms_conf_edge_cases() {
    if !root_or_skip("dkms_conf_edge_cases") {
        return;
    }
    let w = World::new(&test_kernels());
    let (k1, k2) = (w.kernels[0].clone(), w.kernels[1].clone());
    let fx = tempfile::tempdir().unwrap();
    let marks = fx.path().join("marks");
    fs::create_dir_all(&marks).unwrap();
    let src = fx.path().join("edge-2.0");
    write(
        &src.join("dkms.conf"),
        &format!(
            r#"PACKAGE_NAME="edge"
PACKAGE_VERSION="2.0"
# single quotes: $kernelver is expanded later, per kernel
MAKE[0]='make KDIR=$kernel_source_dir EDGE_KVER=$kernelver all'
BUILT_MODULE_NAME[0]="edge_main"
BUILT_MODULE_LOCATION[0]="src/"
DEST_MODULE_LOCATION[0]="/kernel/drivers/misc"
BUILT_MODULE_NAME[1]="edge_extra"
BUILT_MODULE_LOCATION[1]="src"
DEST_MODULE_LOCATION[1]="/extra"
# the second module only for the older kernel
BUILD_EXCLUSIVE_KERNEL[1]="^{k1re}$"
PRE_BUILD="pre-build.sh $kernelver"
POST_BUILD="post-build.sh $kernelver"
AUTOINSTALL="yes"
"#,
            k1re = regex_escape(&k1)
        ),
        false,
    );
    write(
        &src.join("Makefile"),
        "all:\n\t$(MAKE) -C $(KDIR) M=$(CURDIR)/src EDGE_KVER=$(EDGE_KVER) modules\n",
        false,
    );
    write(
        &src.join("src/Kbuild"),
        "obj-m := edge_main.o edge_extra.o\nccflags-y := -DEDGE_KVER='\"$(EDGE_KVER)\"'\n",
        false,
    );
    write(
        &src.join("src/edge_main.c"),
        &module_c("edge_main", "MODULE_INFO(edge_kver, EDGE_KVER);\n"),
        false,
    );
    write(
        &src.join("src/edge_extra.c"),
        &module_c("edge_extra", "MODULE_INFO(edge_kver, EDGE_KVER);\n"),
        false,
    );
    let m = marks.display();
    write(
        &src.join("pre-build.sh"),
        &format!("#!/bin/sh\n# runs in the build dir before make\nif ls src/*.ko >/dev/null 2>&1; then echo ko-exists; else echo no-ko; fi > {m}/pre-$1\n"),
        true,
    );
    write(
        &src.join("post-build.sh"),
        &format!(
            "#!/bin/sh\n# runs in the build dir after make\n(cd src && ls *.ko) > {m}/post-$1\n"
        ),
        true,
    );

    w.ok(&["add", src.to_str().unwrap()]);
    let o = install_all(&w, "edge/2.0");
    assert_eq!(o.code, 0, "{}", o.show());
    let st = w.status();
    for k in [&k1, &k2] {
        assert_status_line(&st, "edge/2.0", k, "installed");
        let pre = fs::read_to_string(marks.join(format!("pre-{k}")))
            .unwrap_or_else(|_| panic!("PRE_BUILD did not run for {k}\n{}", o.show()));
        assert_eq!(pre.trim(), "no-ko", "PRE_BUILD must run before make ({k})");
        let post = fs::read_to_string(marks.join(format!("post-{k}")))
            .unwrap_or_else(|_| panic!("POST_BUILD did not run for {k}\n{}", o.show()));
        let mut built: Vec<&str> = post.split_whitespace().collect();
        built.sort();
        assert_eq!(
            built,
            ["edge_extra.ko", "edge_main.ko"],
            "POST_BUILD saw the wrong build output for {k}"
        );

        let main = assert_installed_for(&w, k, "edge_main");
        assert_eq!(
            modinfo("edge_kver", &main),
            *k,
            "the single-quoted $kernelver in MAKE must reach make as this job's kernel"
        );
        assert!(
            find_ko(&w.modules_dir(k).join("kernel/drivers/misc"), "edge_main").is_empty(),
            "DEST_MODULE_LOCATION must be replaced by /updates/dkms on Debian"
        );
    }
    let extra = assert_installed_for(&w, &k1, "edge_extra");
    assert_eq!(modinfo("edge_kver", &extra), k1);
    assert!(
        w.installed_ko(&k2, "edge_extra").is_none()
            && find_ko(&w.modules_dir(&k2), "edge_extra").is_empty(),
        "BUILD_EXCLUSIVE_KERNEL[1] excludes edge_extra from {k2}, but it was installed"
    );
}

/// Two tiny modules in `fx`: "alpha" (sorts first) has BUILD_DEPENDS on
/// "omega", whose build is slow; alpha's PRE_BUILD fails unless omega is
/// already installed in the world. Both PRE_BUILDs log to `fx/marks`.
/// Returns (alpha, omega) source dirs, added to the world.
fn depends_fixture(w: &World, fx: &Path) -> (PathBuf, PathBuf) {
    let marks = fx.join("marks");
    fs::create_dir_all(&marks).unwrap();
    let m = marks.display();
    // "alpha" sorts first but depends on "omega", whose build is slow.
    let omega = fx.join("omega-1.0");
    write(
        &omega.join("dkms.conf"),
        "PACKAGE_NAME=\"omega\"\nPACKAGE_VERSION=\"1.0\"\nBUILT_MODULE_NAME[0]=\"omega\"\n\
         DEST_MODULE_LOCATION[0]=\"/extra\"\nPRE_BUILD=\"slow.sh $kernelver\"\nAUTOINSTALL=\"yes\"\n",
        false,
    );
    write(&omega.join("Makefile"), "obj-m := omega.o\n", false);
    write(&omega.join("omega.c"), &module_c("omega", ""), false);
    write(
        &omega.join("slow.sh"),
        &format!("#!/bin/sh\necho start >> {m}/omega-$1\nsleep 3\n"),
        true,
    );
    let alpha = fx.join("alpha-1.0");
    let dep_dir = w.p("lib/modules");
    write(
        &alpha.join("dkms.conf"),
        "PACKAGE_NAME=\"alpha\"\nPACKAGE_VERSION=\"1.0\"\nBUILT_MODULE_NAME[0]=\"alpha\"\n\
         DEST_MODULE_LOCATION[0]=\"/extra\"\nBUILD_DEPENDS[0]=\"omega\"\n\
         PRE_BUILD=\"check-omega.sh $kernelver\"\nAUTOINSTALL=\"yes\"\n",
        false,
    );
    write(&alpha.join("Makefile"), "obj-m := alpha.o\n", false);
    write(&alpha.join("alpha.c"), &module_c("alpha", ""), false);
    write(
        &alpha.join("check-omega.sh"),
        &format!(
            "#!/bin/sh\n# omega must be installed before alpha builds\n\
             if ls {d}/$1/updates/dkms/omega.ko* >/dev/null 2>&1; then echo omega-installed >> {m}/alpha-$1; \
             else echo omega-missing >> {m}/alpha-$1; echo 'omega is not installed yet' >&2; exit 1; fi\n",
            d = dep_dir.display()
        ),
        true,
    );
    w.ok(&["add", alpha.to_str().unwrap()]);
    w.ok(&["add", omega.to_str().unwrap()]);
    (alpha, omega)
}

/// d. BUILD_DEPENDS: autoinstall builds the dependency first and installs
/// it before the dependent module builds; a second autoinstall does nothing.
#[test]
fn build_depends_order_and_idempotent_autoinstall() {
    if !root_or_skip("build_depends_order_and_idempotent_autoinstall") {
        return;
    }
    let w = World::new(&test_kernels());
    let (k1, k2) = (w.kernels[0].clone(), w.kernels[1].clone());
    let fx = tempfile::tempdir().unwrap();
    depends_fixture(&w, fx.path());
    let marks = fx.path().join("marks");

    // an explicit install without the dependency is refused (dkms's exit 13)
    let o = w.modsync(&["install", "alpha/1.0", "-k", &k2]);
    assert_eq!(
        o.code,
        13,
        "install without its BUILD_DEPENDS installed must exit 13\n{}",
        o.show()
    );
    assert!(
        o.text().contains("omega"),
        "the refusal should name the missing dependency\n{}",
        o.show()
    );
    assert!(
        !marks.join(format!("alpha-{k2}")).exists(),
        "alpha was built although omega is missing"
    );

    let o = w.modsync(&["autoinstall", "-k", &k1]);
    assert_eq!(o.code, 0, "{}", o.show());
    let st = w.status();
    assert_status_line(&st, "omega/1.0", &k1, "installed");
    assert_status_line(&st, "alpha/1.0", &k1, "installed");
    let pre = fs::read_to_string(marks.join(format!("alpha-{k1}")))
        .expect("alpha's PRE_BUILD did not run");
    assert_eq!(
        pre.trim(),
        "omega-installed",
        "alpha was built before omega was installed"
    );
    let alpha_ko = assert_installed_for(&w, &k1, "alpha");
    let omega_ko = assert_installed_for(&w, &k1, "omega");
    assert!(
        w.installed_ko(&k2, "alpha").is_none(),
        "autoinstall -k {k1} installed for {k2} too"
    );

    // a second run is a no-op
    let (t_alpha, t_omega) = (mtime(&alpha_ko), mtime(&omega_ko));
    let o = w.modsync(&["autoinstall", "-k", &k1]);
    assert_eq!(o.code, 0, "{}", o.show());
    for mv in ["alpha/1.0", "omega/1.0"] {
        assert!(
            o.text().contains(mv),
            "the second autoinstall does not mention {mv}\n{}",
            o.show()
        );
    }
    assert_eq!(
        fs::read_to_string(marks.join(format!("omega-{k1}")))
            .unwrap()
            .lines()
            .count(),
        1,
        "omega was rebuilt"
    );
    assert_eq!(
        fs::read_to_string(marks.join(format!("alpha-{k1}")))
            .unwrap()
            .lines()
            .count(),
        1,
        "alpha was rebuilt"
    );
    assert_eq!(mtime(&alpha_ko), t_alpha, "alpha.ko was reinstalled");
    assert_eq!(mtime(&omega_ko), t_omega, "omega.ko was reinstalled");
}

/// A second autoinstall tells the user why it did nothing.
#[test]
fn second_autoinstall_says_already_installed() {
    if !root_or_skip("second_autoinstall_says_already_installed") {
        return;
    }
    let w = World::new(&test_kernels()[..1]);
    let k = w.kernels[0].clone();
    let fx = tempfile::tempdir().unwrap();
    depends_fixture(&w, fx.path());
    w.ok(&["autoinstall", "-k", &k]);
    let o = w.ok(&["autoinstall", "-k", &k]);
    let text = o.text();
    assert!(
        text.to_lowercase().contains("already installed")
            && text.contains("alpha/1.0")
            && text.contains("omega/1.0"),
        "a second autoinstall should say that alpha/1.0 and omega/1.0 are already installed\n{}",
        o.show()
    );
}

#[cfg(test)]
mod helpers {
    use super::*;

    #[test]
    fn finds_make_log_paths_in_messages() {
        let text = "Error! x\nmake.log: /var/lib/dkms/x/1/failed/6.1/x86_64/make.log\n\
                    Consult /var/lib/dkms/y/1/build/make.log for more information.\n(see '/tmp/a b/make.log')";
        assert_eq!(
            make_log_paths(text),
            vec![
                PathBuf::from("/var/lib/dkms/x/1/failed/6.1/x86_64/make.log"),
                PathBuf::from("/var/lib/dkms/y/1/build/make.log")
            ]
        );
    }

    #[test]
    fn escapes_kernel_versions_for_regexes() {
        assert_eq!(regex_escape("6.1.0-56-amd64"), "6\\.1\\.0-56-amd64");
    }
}
