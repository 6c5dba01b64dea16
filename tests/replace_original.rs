//! A module that replaces an in-kernel one of the same name: the original is
//! archived on the first install (status says so), and put back, byte for
//! byte, on uninstall. Needs real kernel headers (tests/setup.sh); the
//! engine runs against a temp world through the tree options.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn test_kernel() -> Option<String> {
    let list = std::env::var("MODSYNC_TEST_KERNELS").ok().or_else(|| fs::read_to_string("/var/cache/modsync-test/kernels").ok())?;
    list.split_whitespace().map(str::to_string).rfind(|k| Path::new(&format!("/usr/src/linux-headers-{k}/include")).is_dir())
}

fn run(t: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modsync"))
        .arg("--dkmstree")
        .arg(t.join("dkms"))
        .arg("--sourcetree")
        .arg(t.join("src"))
        .arg("--installtree")
        .arg(t.join("lib/modules"))
        .args(args)
        .env("MODSYNC_SYSCONF_ROOT", t)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// A world in a temp dir T for a test kernel K (headers linked, nothing else
/// in its module tree) with the source of dummy/2.0: the example module
/// (MODULE_VERSION "1.0") renamed `dummy`, meant for `/kernel/drivers/net`
/// like the kernel's own dummy.ko. Returns T, K and `T/lib/modules/K`, or
/// None (the test skips) without kernel headers.
fn dummy_world() -> Option<(tempfile::TempDir, String, PathBuf)> {
    let Some(k) = test_kernel() else {
        eprintln!("skipped: no kernel headers (run tests/setup.sh)");
        return None;
    };
    let d = tempfile::tempdir().unwrap();
    let t = d.path();
    for p in ["dkms", "src/dummy-2.0", "etc/modsync", "cache"] {
        fs::create_dir_all(t.join(p)).unwrap();
    }
    fs::copy("/etc/os-release", t.join("etc/os-release")).unwrap();
    fs::write(t.join("etc/modsync/config.toml"), format!("cache_dir = \"{}\"\nsign = false\nstatus_wording = \"dkms-3.1\"\n", t.join("cache").display())).unwrap();
    let kdir = t.join("lib/modules").join(&k);
    fs::create_dir_all(&kdir).unwrap();
    std::os::unix::fs::symlink(format!("/usr/src/linux-headers-{k}"), kdir.join("build")).unwrap();
    let src = t.join("src/dummy-2.0");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-1.0");
    fs::copy(fixture.join("hello.c"), src.join("dummy.c")).unwrap();
    fs::write(src.join("Makefile"), "obj-m := dummy.o\n").unwrap();
    fs::write(src.join("dkms.conf"), "PACKAGE_NAME=dummy\nPACKAGE_VERSION=2.0\nBUILT_MODULE_NAME[0]=dummy\nDEST_MODULE_LOCATION[0]=/kernel/drivers/net\n").unwrap();
    Some((d, k, kdir))
}

#[test]
fn in_kernel_module_is_archived_and_restored() {
    let Some((d, k, kdir)) = dummy_world() else { return };
    let t = d.path();
    let orig: PathBuf = kdir.join("kernel/drivers/net/dummy.ko");
    fs::create_dir_all(orig.parent().unwrap()).unwrap();
    fs::write(&orig, b"the in-kernel dummy module").unwrap();

    let o = run(t, &["install", "dummy/2.0", "-k", &k]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("archiving"), "{}", text(&o));
    assert!(!orig.exists(), "the original should be moved away");
    let ours = kdir.join("updates/dkms/dummy.ko");
    assert!(ours.is_file());
    let st = text(&run(t, &["status"]));
    assert_eq!(st.trim(), format!("dummy/2.0, {k}, x86_64: installed (Original modules exist)"));
    let archived = t.join(format!("dkms/dummy/original_module/{k}/x86_64/dummy.ko"));
    assert_eq!(fs::read(&archived).unwrap(), b"the in-kernel dummy module");

    let o = run(t, &["uninstall", "dummy/2.0", "-k", &k]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(fs::read(&orig).unwrap(), b"the in-kernel dummy module");
    assert!(!ours.exists());
    let st = text(&run(t, &["status"]));
    assert_eq!(st.trim(), format!("dummy/2.0, {k}, x86_64: built"));
    assert!(!t.join(format!("dkms/dummy/original_module/{k}")).exists());
}

/// dkms's version sanity check: a module the kernel already has in the same
/// version is left in place (status then notes the difference, as dkms's
/// does), and `--force-version-override` installs over it, archiving it.
#[test]
fn same_version_in_the_kernel_is_left_in_place() {
    let Some((d, k, kdir)) = dummy_world() else { return };
    let t = d.path();

    // a kernel that ships this very module: our own build, copied in-tree
    let o = run(t, &["install", "dummy/2.0", "-k", &k]);
    assert!(o.status.success(), "{}", text(&o));
    let ours = kdir.join("updates/dkms/dummy.ko");
    let in_kernel = kdir.join("kernel/drivers/net/dummy.ko");
    fs::create_dir_all(in_kernel.parent().unwrap()).unwrap();
    fs::copy(&ours, &in_kernel).unwrap();
    let kernels_own = fs::read(&in_kernel).unwrap();
    let o = run(t, &["uninstall", "dummy/2.0", "-k", &k]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!ours.exists());

    let o = run(t, &["install", "dummy/2.0", "-k", &k]);
    assert!(o.status.success(), "an install that leaves the kernel's module in place still succeeds:\n{}", text(&o));
    assert!(text(&o).contains("leaving it in place") && text(&o).contains(&in_kernel.display().to_string()), "{}", text(&o));
    assert!(!ours.exists(), "installed over the kernel's module of the same version");
    assert_eq!(fs::read(&in_kernel).unwrap(), kernels_own, "the kernel's module was changed");
    let st = text(&run(t, &["status"]));
    assert_eq!(st.trim(), format!("dummy/2.0, {k}, x86_64: installed (Differences between built and installed modules)"));

    let o = run(t, &["uninstall", "dummy/2.0", "-k", &k]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(fs::read(&in_kernel).unwrap(), kernels_own, "uninstall took the kernel's own module");
    let o = run(t, &["install", "dummy/2.0", "-k", &k, "--force-version-override"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(ours.is_file(), "--force-version-override did not install over it:\n{}", text(&o));
    assert!(!in_kernel.exists() && text(&o).contains("archiving"), "{}", text(&o));
    let st = text(&run(t, &["status"]));
    assert_eq!(st.trim(), format!("dummy/2.0, {k}, x86_64: installed (Original modules exist)"));
}
