//! `modsync check -k KERNEL`, the preflight: what would build for a kernel,
//! decided by real builds in a scratch tree that changes nothing.
//!
//! * On a test kernel, with a module that builds, one that does not compile
//!   and one that is not AUTOINSTALL: the first builds, the second fails
//!   with its diagnosis, the third is not checked; exit 1; the world (state
//!   tree, kernel trees, sources) is exactly as before and no scratch tree
//!   is left behind.
//! * On the Debian 6.12 headers (extracted, not installed: the world's
//!   /lib/modules/K/build links to them) with the real 6.1-era Debian
//!   drivers: check lists exactly the drivers a real build then fails for
//!   (the kernel-install hook, run with the world's trees over /lib/modules
//!   so that Makefiles hard-coding it find the headers, as check arranges by
//!   itself), with the same diagnosis class.

use crate::explain::{add_source, failed, kernel_612, lib_modules, modsync_in_namespace};
use crate::support::{require_root, run_ok, snapshot, test_kernels, World};
use std::collections::BTreeMap;
use std::process::Command;

/// The world's settings send check's scratch tree to `T/tmp`.
fn scratch_in_world(w: &World) {
    std::fs::create_dir_all(w.p("tmp")).unwrap();
    std::fs::write(
        w.p("etc/dkms/framework.conf"),
        format!("tmp_location=\"{}\"\n", w.p("tmp").display()),
    )
    .unwrap();
}

/// `m/v` → what check said (`builds`, `fails (class)`, ...), from its output.
fn verdicts(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter(|l| !l.starts_with(' '))
        .filter_map(|l| l.split_once(": "))
        .filter(|(mv, _)| mv.contains('/') && !mv.contains(' '))
        .map(|(mv, what)| (mv.to_string(), what.split(':').next().unwrap().to_string()))
        .collect()
}

#[test]
fn check_reports_what_would_build_and_changes_nothing() {
    require_root("check");
    let ks = test_kernels();
    let k = &ks[0];
    let w = World::new(&ks[..1]);
    scratch_in_world(&w);
    w.add_fixture("hello-1.0");
    w.add_one_file_module("broken", "", "#error this module does not compile\n");
    w.add_one_file_module(
        "manual",
        "AUTOINSTALL=no\n",
        "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n",
    );
    let before = snapshot(w.root());
    let o = w.modsync(&["check", "-k", k]);
    assert_eq!(o.code, 1, "{}", o.show());
    let v = verdicts(&o.stdout);
    assert_eq!(v.get("hello/1.0").map(String::as_str), Some("builds"), "{}", o.show());
    assert_eq!(
        v.get("broken/1.0").map(String::as_str),
        Some("fails (kernel-unsupported)"),
        "{}",
        o.show()
    );
    assert_eq!(
        v.get("manual/1.0").map(String::as_str),
        Some("not checked"),
        "{}",
        o.show()
    );
    assert!(
        o.stdout.contains("#error this module does not compile"),
        "the diagnosis quotes the error: {}",
        o.show()
    );
    assert_eq!(snapshot(w.root()), before, "check changed the world");
    assert!(
        w.status()
            .lines()
            .all(|l| !l.contains("installed") && !l.contains("built")),
        "{}",
        w.status()
    );

    // without the failing module everything builds: exit 0
    w.ok(&["remove", "broken/1.0", "--all"]);
    let o = w.modsync(&["check", "-k", k]);
    assert_eq!(o.code, 0, "{}", o.show());
    // a kernel without headers is refused with what to do
    let o = w.modsync(&["check", "-k", &format!("{k}-noheaders")]);
    assert_ne!(o.code, 0, "{}", o.show());
    assert!(o.stderr.contains("--kernelsourcedir"), "{}", o.show());
}

#[test]
fn check_on_612_lists_the_failures_a_real_build_has() {
    require_root("check 6.12");
    let (k, headers) = kernel_612();
    let w = World::new(&[]);
    scratch_in_world(&w);
    std::fs::create_dir_all(w.modules_dir(&k)).unwrap();
    std::os::unix::fs::symlink(&headers, w.modules_dir(&k).join("build")).unwrap();
    let mvs: Vec<String> = ["v4l2loopback", "ddcci", "vpoll", "openrazer-driver"]
        .iter()
        .map(|p| add_source(&w, p))
        .collect();
    let before = snapshot(w.root());
    let o = w.modsync(&["check", "-k", &k]);
    assert_eq!(snapshot(w.root()), before, "check changed the world: {}", o.show());
    let said = verdicts(&o.stdout);
    // the real build, as a new kernel's installation runs it
    let real = modsync_in_namespace(&w, &lib_modules(&w), &["hook", "kernel-install", "add", &k]);
    let mut expected = BTreeMap::new();
    for mv in &mvs {
        let verdict = match failed(&w, mv).into_iter().find(|(fk, _)| *fk == k) {
            Some((_, d)) => format!("fails ({})", d["class"].as_str().unwrap()),
            None => "builds".to_string(),
        };
        expected.insert(mv.clone(), verdict);
    }
    assert_eq!(said, expected, "check:\n{}\nreal build:\n{}", o.show(), real.show());
    let failures = expected.values().filter(|v| v.starts_with("fails")).count();
    assert!(failures > 0, "nothing fails on {k}: the comparison proves little");
    assert_eq!(o.code, 1, "{}", o.show());
}

#[test]
fn check_candidate_fetches_the_next_kernels_headers_from_apt() {
    require_root("check --candidate");
    let w = World::new(&[]);
    scratch_in_world(&w);
    w.add_fixture("hello-1.0");
    let usr_src = || crate::support::sorted_dir("/usr/src");
    let (before, src_before) = (snapshot(w.root()), usr_src());
    let o = w.modsync(&["check", "--candidate"]);
    assert_eq!(o.code, 0, "{}", o.show());
    let k = o
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("The next kernel apt would install is "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no candidate named: {}", o.show()))
        .to_string();
    // what apt itself says the headers metapackage of this architecture pulls in
    let arch = run_ok(Command::new("dpkg").arg("--print-architecture"));
    let running = run_ok(Command::new("uname").arg("-r"));
    let flavour = modsync::kernel::candidate::flavour(running.trim())
        .unwrap_or(arch.trim())
        .to_string();
    let deps = run_ok(Command::new("apt-cache").args(["depends", &format!("linux-headers-{flavour}")]));
    assert!(
        deps.contains(&format!("Depends: linux-headers-{k}")),
        "{k} is not apt's candidate:\n{deps}"
    );
    assert!(
        o.stdout.contains(&format!("candidate/root/usr/src/linux-headers-{k})")),
        "{}",
        o.show()
    );
    assert_eq!(
        verdicts(&o.stdout).get("hello/1.0").map(String::as_str),
        Some("builds"),
        "{}",
        o.show()
    );
    assert_eq!(snapshot(w.root()), before, "check --candidate changed the world");
    assert_eq!(usr_src(), src_before, "check --candidate installed headers");
    let o = w.modsync(&["check", "--candidate", "-k", &k]);
    assert_ne!(o.code, 0, "{}", o.show());
}
