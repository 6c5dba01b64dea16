//! The boot guard with the real GRUB, booted under qemu from a Debian 12
//! disk ([`crate::grub_disk`]) holding both test kernels K0 < K1 and
//! modsync, their headers and a fixture driver `guardtest` whose 1.0
//! refuses to build for K1 ("a newer version of the driver is needed"),
//! with `required = ["guardtest"]`:
//! - built for K0, then `modsync autoinstall -k K1` fails: the output ends
//!   with the guard's note (the module, the build's diagnosis, which kernel
//!   boots, how to override), its drop-in is in /etc/default/grub.d, and
//!   GRUB boots K0, where the boot run (`modsync boot`, from the init's
//!   hook) says so on the serial console;
//! - guardtest 1.1 (the fixed driver) added and `modsync autoinstall -k K1`:
//!   the drop-in is gone, and GRUB boots K1 with nothing said;
//! - with `GRUB_DEFAULT=saved` the hold is grubenv's `saved_entry` (no
//!   drop-in), GRUB boots K0, and lifting unsets it;
//! - `boot_guard = false` lifts a hold, then installs and uninstalls change
//!   nothing in /etc/default/grub*, grub.cfg or grubenv.
//!
//! The modsync binary is the one under test, with whatever shared libraries
//! it links that the disk's minbase lacks (libalpm with `--features alpm`)
//! copied beside it; the headers are this host's Debian packages' trees.

use crate::grub_disk::Disk;
use crate::overlay_root::{indent, tail};
use crate::support::{require_root, run_ok, test_kernels};
use std::fs;
use std::path::Path;
use std::process::Command;

const TEST: &str = "grub_guard::grub_boots_the_kernel_that_has_the_driver";

/// Writes guardtest VERSION into DIR; `refused` is a kernel it does not build for.
fn guardtest(dir: &Path, version: &str, refused: Option<&str>) {
    fs::create_dir_all(dir).unwrap();
    fs::write(
        dir.join("dkms.conf"),
        format!(
            "PACKAGE_NAME=guardtest\nPACKAGE_VERSION={version}\nBUILT_MODULE_NAME[0]=guardtest\n\
             DEST_MODULE_LOCATION[0]=/updates/dkms\nAUTOINSTALL=yes\n"
        ),
    )
    .unwrap();
    let refuse = refused
        .map(|k| {
            format!(
                "ifeq ($(KERNELRELEASE),{k})\n$(error guardtest {version} does not support kernel {k}: a newer version of the driver is needed)\nendif\n"
            )
        })
        .unwrap_or_default();
    fs::write(dir.join("Makefile"), format!("{refuse}obj-m := guardtest.o\n")).unwrap();
    fs::write(
        dir.join("guardtest.c"),
        "#include <linux/module.h>\nstatic int __init g_init(void) { return 0; }\nstatic void __exit g_exit(void) {}\n\
         module_init(g_init);\nmodule_exit(g_exit);\nMODULE_LICENSE(\"GPL\");\n",
    )
    .unwrap();
}

/// The binary under test and the libraries that it and kbuild's tools
/// (objtool wants libelf, which the headers packages pull in) link, under
/// their real paths, in a directory to copy onto the disk's root without
/// clobbering.
fn modsync_with_libs(into: &Path) {
    let bin = crate::overlay_root::modsync_bin();
    fs::create_dir_all(into.join("usr/sbin")).unwrap();
    fs::copy(&bin, into.join("usr/sbin/modsync")).unwrap();
    let mut ldd = run_ok(Command::new("ldd").arg(&bin));
    let tools = run_ok(Command::new("find").args(["/usr/lib/linux-kbuild-6.1", "-type", "f", "-perm", "-u+x"]));
    for t in tools.lines() {
        if let Ok(o) = Command::new("ldd").arg(t).output() {
            ldd.push_str(&String::from_utf8_lossy(&o.stdout));
        }
    }
    for lib in ldd
        .lines()
        .filter_map(|l| l.split("=> ").nth(1)?.split_whitespace().next())
    {
        let real = fs::canonicalize(lib).unwrap_or_else(|e| panic!("{lib}: {e}"));
        let name = Path::new(lib).file_name().unwrap();
        let dir = into.join(real.parent().unwrap().strip_prefix("/").unwrap());
        fs::create_dir_all(&dir).unwrap();
        fs::copy(&real, dir.join(name)).unwrap();
    }
}

fn state(disk: &Disk) -> String {
    disk.must(
        "the boot configuration",
        "cat /etc/default/grub /etc/default/grub.d/* /boot/grub/grub.cfg 2>/dev/null | md5sum; grub-editenv /boot/grub/grubenv list",
    )
}

#[test]
fn grub_boots_the_kernel_that_has_the_driver() {
    require_root(TEST);
    let ks = test_kernels();
    let (k0, k1) = (ks[0].as_str(), ks[ks.len() - 1].as_str());
    let disk = Disk::new(TEST);
    let stage = tempfile::tempdir().unwrap();
    let s = stage.path();
    modsync_with_libs(&s.join("root"));
    guardtest(&s.join("guardtest-1.0"), "1.0", Some(k1));
    guardtest(&s.join("guardtest-1.1"), "1.1", None);
    let hook = s.join("modsync-boot");
    fs::write(&hook, "#!/bin/sh\n/usr/sbin/modsync boot --no-load\n").unwrap();
    run_ok(Command::new("chmod").arg("755").arg(&hook));
    disk.put(&s.join("root"), "/srv/modsync-root");
    disk.put(&hook, "/usr/local/sbin/boot-report.d/modsync-boot");
    for k in [k0, k1] {
        let common = fs::read_link(format!("/lib/modules/{k}/source")).expect("the headers' common half");
        disk.put(
            Path::new(&format!("/usr/src/linux-headers-{k}")),
            &format!("/usr/src/linux-headers-{k}"),
        );
        disk.put(&common, &common.display().to_string());
    }
    disk.put(Path::new("/usr/lib/linux-kbuild-6.1"), "/usr/lib/linux-kbuild-6.1");
    disk.put(&s.join("guardtest-1.0"), "/usr/src/guardtest-1.0");
    disk.put(&s.join("guardtest-1.1"), "/srv/guardtest-1.1");
    disk.must(
        "modsync, its settings and the headers' links",
        &format!(
            "cp -rn /srv/modsync-root/. / && modsync --version
for k in {k0} {k1}; do ln -sfn /usr/src/linux-headers-$k /lib/modules/$k/build; done
mkdir -p /etc/modsync && echo 'required = [\"guardtest\"]' > /etc/modsync/config.toml
modsync add guardtest/1.0 && modsync install guardtest/1.0 -k {k0}"
        ),
    );

    // K1 fails: GRUB keeps K0
    let o = disk.sh(&format!("modsync autoinstall -k {k1}; echo \"@@RC $?\""));
    assert!(
        !o.output.contains("@@RC 0"),
        "autoinstall for K1 fails:\n{}",
        indent(&o.output)
    );
    let note = o
        .output
        .lines()
        .rev()
        .find(|l| l.starts_with("modsync boot guard:"))
        .unwrap_or_else(|| panic!("no guard note:\n{}", indent(&o.output)));
    for want in [
        format!("guardtest missing for kernel {k1}, so GRUB keeps booting {k0}"),
        "guardtest: guardtest/1.0 failed to build".to_string(),
        // the driver's own refusal, quoted from its Makefile
        format!("its own Makefile refuses to build: guardtest 1.0 does not support kernel {k1}"),
        "choose it in the boot menu".to_string(),
    ] {
        assert!(note.contains(&want), "{want:?} in {note}");
    }
    disk.must(
        "the drop-in names K0's entry",
        &format!("grep -q 'gnulinux-{k0}-advanced' /etc/default/grub.d/zz-modsync-boot-guard.cfg"),
    );
    let b = disk.boots(k0, "GRUB boots K0");
    assert!(
        b.console.contains(&format!("so GRUB keeps booting {k0}")),
        "the boot run says so on the console:\n{}",
        indent(&tail(&b.console, 40))
    );

    // the fixed driver: the newest kernel boots again by itself
    let o = disk.must(
        "guardtest 1.1 for K1",
        &format!("cp -r /srv/guardtest-1.1 /usr/src/ && modsync add guardtest/1.1 && modsync autoinstall -k {k1} 2>&1"),
    );
    assert!(
        o.contains(&format!("boots the newest kernel, {k1}, again")),
        "{}",
        indent(&o)
    );
    disk.must("no drop-in", "! test -e /etc/default/grub.d/zz-modsync-boot-guard.cfg");
    let b = disk.boots(k1, "GRUB boots K1");
    assert!(!b.console.contains("boot guard"), "{}", indent(&tail(&b.console, 40)));

    // GRUB_DEFAULT=saved: the hold is the saved entry
    let o = disk.must(
        "saved",
        &format!(
            "sed -i 's/^GRUB_DEFAULT=.*/GRUB_DEFAULT=saved/' /etc/default/grub && update-grub 2>/dev/null
modsync uninstall guardtest/1.1 -k {k1} 2>&1; grub-editenv /boot/grub/grubenv list"
        ),
    );
    assert!(
        o.contains("saved_entry=gnulinux-advanced-") && o.contains(&format!("gnulinux-{k0}-advanced-")),
        "{}",
        indent(&o)
    );
    disk.must("no drop-in", "! test -e /etc/default/grub.d/zz-modsync-boot-guard.cfg");
    disk.boots(k0, "GRUB boots the saved K0");
    let o = disk.must(
        "lifted",
        &format!("modsync install guardtest/1.1 -k {k1} 2>&1; grub-editenv /boot/grub/grubenv list"),
    );
    assert!(
        !o.contains("saved_entry="),
        "lifting unsets the saved entry:\n{}",
        indent(&o)
    );

    // boot_guard = false: lifts, then changes nothing
    disk.must(
        "hold again",
        &format!(
            "modsync uninstall guardtest/1.1 -k {k1}; grub-editenv /boot/grub/grubenv list | grep -q saved_entry="
        ),
    );
    let o = disk.must(
        "guard off",
        "echo 'boot_guard = false' >> /etc/modsync/config.toml && modsync boot-guard 2>&1",
    );
    assert!(o.contains("boot_guard = false"), "{}", indent(&o));
    let before = state(&disk);
    assert!(!before.contains("saved_entry="), "{before}");
    disk.must(
        "install and uninstall",
        &format!("modsync install guardtest/1.1 -k {k1} && modsync uninstall guardtest/1.1 -k {k1}"),
    );
    assert_eq!(
        state(&disk),
        before,
        "with the guard off the boot configuration does not change"
    );
}
