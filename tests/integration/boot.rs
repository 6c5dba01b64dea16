//! The boot-time safety net and dkms's autoinstaller path, against real
//! kernel headers in a [`World`]: `modsync boot` builds and installs a
//! registered module that no hook built (exit 11 when another one fails to
//! build), then, with nothing missing, decides so without reading a
//! dkms.conf or starting a process (traced with strace); neither a module
//! that is not AUTOINSTALL nor one whose build failed for the kernel
//! defeats that quick path; a newer version is looked at again; a kernel
//! without headers is reported and exits 0. `modsync autoinstaller` (what /usr/lib/dkms/dkms_autoinstaller runs)
//! behaves as dkms's script: headers missing -> dkms's message and 0,
//! /etc/dkms/no-autoinstall -> nothing built, a failed module -> 1 (not
//! 11), unknown actions -> usage and 2. (The installed unit and shim are
//! exercised in the Debian chroot by [`crate::apt`].)

use crate::overlay_root::which;
use crate::support::{require, require_root, run, run_ok, test_kernels, World};
use std::path::Path;
use std::process::Command;

/// Copies the hello fixture into the world's source tree and adds it.
fn add_hello(w: &World) {
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-1.0"))
            .arg(w.p("src")),
    );
    w.ok(&["add", "hello/1.0"]);
}

/// Adds `name/1.0`: AUTOINSTALL or not, a Makefile that builds or fails,
/// and a dkms.conf that leaves a mark in `T/reads` each time it is read.
fn add_module(w: &World, name: &str, autoinstall: bool, builds: bool) {
    let dir = w.p("src").join(format!("{name}-1.0"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("dkms.conf"),
        format!(
            "echo {name} >> {reads}\nPACKAGE_NAME={name}\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]={name}\n\
             DEST_MODULE_LOCATION[0]=/updates\nAUTOINSTALL={}\n",
            if autoinstall { "yes" } else { "" },
            reads = w.p("reads").display()
        ),
    )
    .unwrap();
    let body = if builds {
        "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n"
    } else {
        "#error this module does not compile\n"
    };
    std::fs::write(dir.join("Makefile"), format!("obj-m := {name}.o\n")).unwrap();
    std::fs::write(dir.join(format!("{name}.c")), body).unwrap();
    w.ok(&["add", &format!("{name}/1.0")]);
}

const SKIPPED: &str = "Automatic installation of modules for kernel {} was skipped since the kernel headers for this kernel do not seem to be installed.";

#[test]
fn dkms_autoinstaller_behaves_as_dkms_s() {
    require_root("autoinstaller");
    let ks = test_kernels();
    let k = &ks[0];
    let w = World::new(&ks[..1]);
    add_hello(&w);

    // no headers: dkms's message, exit 0, nothing done
    let missing = format!("{k}-noheaders");
    let o = w.modsync(&["autoinstaller", "start", &missing]);
    assert_eq!(
        (o.code, o.stdout.trim()),
        (0, SKIPPED.replace("{}", &missing).as_str()),
        "{}",
        o.show()
    );

    // /etc/dkms/no-autoinstall: disabled, nothing built
    std::fs::write(w.p("etc/dkms/no-autoinstall"), "").unwrap();
    let o = w.modsync(&["autoinstaller", "start", k]);
    assert_eq!(o.code, 0, "{}", o.show());
    assert!(o.stdout.contains("no-autoinstall"), "{}", o.show());
    assert!(w.installed_ko(k, "hello").is_none(), "built despite no-autoinstall");
    std::fs::remove_file(w.p("etc/dkms/no-autoinstall")).unwrap();

    // headers present: autoinstall for the kernel named
    let o = w.modsync(&["autoinstaller", "start", k]);
    assert_eq!(o.code, 0, "{}", o.show());
    assert!(w.installed_ko(k, "hello").is_some(), "{}", o.show());

    // a failing module: autoinstall's 11 becomes 1, as the script's `test $res = 0`
    add_module(&w, "broken", true, false);
    let o = w.modsync(&["autoinstall", "-k", k]);
    assert_eq!(o.code, 11, "{}", o.show());
    let o = w.modsync(&["autoinstaller", "start", k]);
    assert_eq!(o.code, 1, "{}", o.show());

    // the init script's other actions do nothing; anything else is a usage error
    for action in ["stop", "restart", "force-reload", "status", "reload"] {
        let o = w.modsync(&["autoinstaller", action]);
        assert_eq!((o.code, o.text().trim()), (0, ""), "{action}: {}", o.show());
    }
    let o = w.modsync(&["autoinstaller", "frobnicate"]);
    assert_eq!(o.code, 2, "{}", o.show());
    assert!(o.stdout.contains("Usage:"), "{}", o.show());
}

#[test]
fn boot_builds_what_is_missing_then_is_a_quick_no_op() {
    require_root("boot");
    require(
        "boot",
        which("strace"),
        "`strace` is not installed (it proves the no-op starts no process)",
    );
    let ks = test_kernels();
    let k = &ks[0];
    let w = World::new(&ks[..1]);
    add_hello(&w);
    add_module(&w, "manual", false, true);
    add_module(&w, "broken", true, false);
    let settled = w.p(&format!("dkms/.modsync/boot/{k}-{}", crate::support::ARCH));

    // registered, never built for k (no hook ran): boot builds and installs
    // it; the module that does not compile makes it exit 11, as autoinstall
    let o = w.modsync(&["boot", "-k", k, "--no-load"]);
    assert_eq!(o.code, 11, "{}", o.show());
    assert!(w.installed_ko(k, "hello").is_some(), "{}", o.show());
    assert!(o.stdout.contains("hello/1.0"), "names what is missing: {}", o.show());
    assert!(w.installed_ko(k, "manual").is_none(), "not AUTOINSTALL, must stay out");
    assert_eq!(std::fs::read_to_string(&settled).unwrap(), "manual/1.0\n");
    std::fs::remove_file(w.p("reads")).unwrap();

    // nothing missing: no output, no dkms.conf read, no process started
    let trace = w.p("boot.trace");
    let mut traced = Command::new("strace");
    traced
        .args(["-f", "-qq", "-e", "trace=execve,clone,clone3,fork,vfork", "-o"])
        .arg(&trace)
        .arg(w.cmd(&["boot", "-k", k, "--no-load"]).get_program())
        .args(w.cmd(&["boot", "-k", k, "--no-load"]).get_args())
        .env("MODSYNC_SYSCONF_ROOT", w.root());
    let o = run(&mut traced);
    assert_eq!((o.code, o.text().trim()), (0, ""), "{}", o.show());
    assert!(!w.p("reads").exists(), "the no-op read a dkms.conf");
    let calls = std::fs::read_to_string(&trace).unwrap();
    let spawned: Vec<&str> = calls
        .lines()
        .filter(|l| !l.contains("+++ exited"))
        .skip(1) // the execve of modsync itself
        .collect();
    assert!(spawned.is_empty(), "the no-op started processes or threads:\n{calls}");

    // a newer version of the settled module is looked at again
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(w.p("src/manual-1.0"))
            .arg(w.p("src/manual-2.0")),
    );
    let conf = w.p("src/manual-2.0/dkms.conf");
    let text = std::fs::read_to_string(&conf)
        .unwrap()
        .replace("VERSION=1.0", "VERSION=2.0");
    std::fs::write(&conf, text).unwrap();
    w.ok(&["add", "manual/2.0"]);
    let _ = std::fs::remove_file(w.p("reads"));
    let o = w.modsync(&["boot", "-k", k, "--no-load"]);
    // a boot that builds something retries the failed module too
    assert_eq!(o.code, 11, "{}", o.show());
    assert!(o.stdout.contains("manual/2.0"), "{}", o.show());
    assert!(w.p("reads").exists(), "manual/2.0 was not looked at");
    assert_eq!(std::fs::read_to_string(&settled).unwrap(), "manual/2.0\n");

    // the kernel goes: what the boot runs left out for it is forgotten
    let o = w.modsync(&["kernel_prerm", "-k", k]);
    assert_eq!(o.code, 0, "{}", o.show());
    assert!(!settled.exists(), "{} outlived its kernel", settled.display());

    // a kernel without headers: what is missing is named, exit 0, nothing built
    let o = w.modsync(&["boot", "-k", &format!("{k}-noheaders"), "--no-load"]);
    assert_eq!(o.code, 0, "{}", o.show());
    assert!(
        o.stdout.contains("hello/1.0") && o.stdout.contains("headers"),
        "{}",
        o.show()
    );
}
