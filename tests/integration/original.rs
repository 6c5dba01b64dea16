//! A module that replaces an in-kernel one of the same name, as dkms treats
//! it: dummy/2.0 (the hello fixture renamed `dummy`, MODULE_VERSION "1.0",
//! meant for `/kernel/drivers/net`) against the real kernel's own
//! `kernel/drivers/net/dummy.ko` (unversioned, signed by the kernel's build
//! key) in a [`World`] for the newer test kernel.
//!
//! * dkms 3.4 (`dkms_compat = "3.4"`) archives the kernel's module on the
//!   first install (status says "Original modules exist") and puts it back,
//!   byte for byte, on uninstall;
//! * dkms 3.0.10, the release Debian 12 ships and modsync's default there,
//!   never archives on Debian: the kernel's module stays where it is, ours
//!   goes to updates/dkms, and uninstall leaves the kernel's module alone;
//! * dkms's version sanity check: when the kernel already has this very
//!   module, it is left in place and, with no module installed, the install
//!   fails with 6 (3.0 and 3.4 alike, as upstream's own suites check; the
//!   Ubuntu patch in Debian's package that counts it as installed is not
//!   followed). `--force-version-override` installs it (archiving the
//!   kernel's module on 3.4 only).

use crate::support::{image_dir, require_root, test_kernels, World};
use std::fs;
use std::path::PathBuf;

/// A world for the newer test kernel with the source of dummy/2.0 in its
/// source tree, and `extra` appended to its config.toml. Returns it, the
/// kernel, and the kernel's own dummy.ko in the world's module tree.
fn dummy_world(extra: &str) -> (World, String, PathBuf) {
    let k = test_kernels().pop().unwrap();
    let w = World::new(std::slice::from_ref(&k));
    let mut cfg = fs::read_to_string(w.p("etc/modsync/config.toml")).unwrap();
    cfg.push_str("sign = false\n");
    cfg.push_str(extra);
    fs::write(w.p("etc/modsync/config.toml"), cfg).unwrap();
    let src = w.p("src/dummy-2.0");
    fs::create_dir_all(&src).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-1.0");
    fs::copy(fixture.join("hello.c"), src.join("dummy.c")).unwrap();
    fs::write(src.join("Makefile"), "obj-m := dummy.o\n").unwrap();
    fs::write(
        src.join("dkms.conf"),
        "PACKAGE_NAME=dummy\nPACKAGE_VERSION=2.0\nBUILT_MODULE_NAME[0]=dummy\nDEST_MODULE_LOCATION[0]=/kernel/drivers/net\n",
    )
    .unwrap();
    let in_kernel = w.modules_dir(&k).join("kernel/drivers/net/dummy.ko");
    assert!(
        in_kernel.is_file(),
        "kernel {k} has no {}; the test needs the kernel's own dummy.ko",
        in_kernel.display()
    );
    (w, k, in_kernel)
}

/// The kernel's own dummy.ko as the image ships it.
fn pristine(k: &str) -> Vec<u8> {
    fs::read(image_dir(k).join(format!("lib/modules/{k}/kernel/drivers/net/dummy.ko"))).unwrap()
}

/// Puts our build of dummy where the kernel's own is, as a kernel shipping
/// this very module would have it (the hard link to the image is removed
/// first, so the image is never written).
fn kernel_ships_ours(w: &World, k: &str, in_kernel: &std::path::Path) -> Vec<u8> {
    let o = w.ok(&["build", "dummy/2.0", "-k", k]);
    let built = w.p(&format!("dkms/dummy/2.0/{k}/x86_64/module/dummy.ko"));
    assert!(built.is_file(), "no built module {}:\n{}", built.display(), o.show());
    fs::remove_file(in_kernel).unwrap();
    fs::copy(&built, in_kernel).unwrap();
    fs::read(in_kernel).unwrap()
}

#[test]
fn dkms_3_4_archives_the_in_kernel_module_and_restores_it() {
    require_root("dkms_3_4_archives_the_in_kernel_module_and_restores_it");
    let (w, k, orig) = dummy_world("dkms_compat = \"3.4\"\n");
    let kernels_own = pristine(&k);
    assert!(fs::read(&orig).unwrap() == kernels_own);

    let o = w.ok(&["install", "dummy/2.0", "-k", &k]);
    assert!(o.text().contains("archiving"), "{}", o.show());
    assert!(!orig.exists(), "the original should be moved away:\n{}", o.show());
    let ours = w
        .installed_ko(&k, "dummy")
        .expect("dummy is not installed under updates/dkms");
    assert!(fs::read(&ours).unwrap() != kernels_own);
    assert_eq!(
        w.status().trim(),
        format!("dummy/2.0, {k}, x86_64: installed (Original modules exist)")
    );
    let archived = w.p(&format!("dkms/dummy/original_module/{k}/x86_64/dummy.ko"));
    assert!(
        fs::read(&archived).unwrap() == kernels_own,
        "the archived copy is not the kernel's module"
    );

    w.ok(&["uninstall", "dummy/2.0", "-k", &k]);
    assert!(
        fs::read(&orig).unwrap() == kernels_own,
        "the kernel's module was not put back as it was"
    );
    assert!(!ours.exists());
    assert_eq!(w.status().trim(), format!("dummy/2.0, {k}, x86_64: built"));
    assert!(!w.p(&format!("dkms/dummy/original_module/{k}")).exists());
}

#[test]
fn dkms_3_0_on_debian_leaves_the_in_kernel_module_in_place() {
    require_root("dkms_3_0_on_debian_leaves_the_in_kernel_module_in_place");
    let (w, k, orig) = dummy_world("dkms_compat = \"3.0\"\n");
    let kernels_own = pristine(&k);

    let o = w.ok(&["install", "dummy/2.0", "-k", &k]);
    let ours = w
        .installed_ko(&k, "dummy")
        .expect("dummy is not installed under updates/dkms");
    assert!(
        fs::read(&orig).ok().as_ref() == Some(&kernels_own),
        "dkms 3.0 on Debian does not archive the kernel's module:\n{}",
        o.show()
    );
    assert!(
        !w.p(&format!("dkms/dummy/original_module/{k}")).exists(),
        "{}",
        o.show()
    );
    assert_eq!(w.status().trim(), format!("dummy/2.0, {k}, x86_64: installed"));

    w.ok(&["uninstall", "dummy/2.0", "-k", &k]);
    assert!(!ours.exists());
    assert!(
        fs::read(&orig).unwrap() == kernels_own,
        "uninstall touched the kernel's module"
    );
    assert_eq!(w.status().trim(), format!("dummy/2.0, {k}, x86_64: built"));
}

#[test]
fn dkms_3_0_refuses_the_same_version_and_force_version_override_installs_beside_it() {
    require_root("dkms_3_0_refuses_the_same_version_and_force_version_override_installs_beside_it");
    let (w, k, in_kernel) = dummy_world("dkms_compat = \"3.0\"\n");
    let kernels_own = kernel_ships_ours(&w, &k, &in_kernel);

    // upstream dkms 3.0.10 (its own suite's multiver section): a module the
    // version check keeps out is not installed, and with none installed the
    // install fails with 6, changing nothing
    let o = w.modsync(&["install", "dummy/2.0", "-k", &k]);
    assert_eq!(o.code, 6, "{}", o.show());
    assert!(w.installed_ko(&k, "dummy").is_none(), "{}", o.show());
    assert!(
        fs::read(&in_kernel).unwrap() == kernels_own,
        "the kernel's module was changed"
    );
    assert_eq!(w.status().trim(), format!("dummy/2.0, {k}, x86_64: built"));

    let o = w.ok(&["install", "dummy/2.0", "-k", &k, "--force-version-override"]);
    assert!(
        w.installed_ko(&k, "dummy").is_some(),
        "--force-version-override did not install:\n{}",
        o.show()
    );
    assert!(
        fs::read(&in_kernel).ok().as_ref() == Some(&kernels_own),
        "dkms 3.0 on Debian does not archive:\n{}",
        o.show()
    );
    assert_eq!(w.status().trim(), format!("dummy/2.0, {k}, x86_64: installed"));
}

#[test]
fn dkms_3_4_refuses_the_same_version_and_force_version_override_archives_it() {
    require_root("dkms_3_4_refuses_the_same_version_and_force_version_override_archives_it");
    let (w, k, in_kernel) = dummy_world("dkms_compat = \"3.4\"\n");
    let kernels_own = kernel_ships_ours(&w, &k, &in_kernel);

    let o = w.modsync(&["install", "dummy/2.0", "-k", &k]);
    assert_eq!(o.code, 6, "dkms 3.4 aborts the install (exit 6):\n{}", o.show());
    assert!(
        w.installed_ko(&k, "dummy").is_none(),
        "installed over the kernel's module of the same version:\n{}",
        o.show()
    );
    assert!(
        fs::read(&in_kernel).unwrap() == kernels_own,
        "the kernel's module was changed"
    );
    assert_eq!(w.status().trim(), format!("dummy/2.0, {k}, x86_64: built"));

    let o = w.ok(&["install", "dummy/2.0", "-k", &k, "--force-version-override"]);
    assert!(
        w.installed_ko(&k, "dummy").is_some(),
        "--force-version-override did not install:\n{}",
        o.show()
    );
    assert!(!in_kernel.exists() && o.text().contains("archiving"), "{}", o.show());
    assert_eq!(
        w.status().trim(),
        format!("dummy/2.0, {k}, x86_64: installed (Original modules exist)")
    );
    w.ok(&["uninstall", "dummy/2.0", "-k", &k]);
    assert!(
        fs::read(&in_kernel).unwrap() == kernels_own,
        "the kernel's module was not put back"
    );
}
