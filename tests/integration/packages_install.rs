//! Packages of built modules installed for real, in an overlay root of
//! this machine ([`crate::overlay_root`]): a .deb installed with the real
//! dpkg takes over from a source-installed module (its preinst uninstalls
//! it), runs depmod, regenerates no initramfs the module is not in, shows
//! in `status`, keeps autoinstall from rebuilding it, and its removal leaves
//! nothing; an RPM installed with the real rpm does the same (and
//! regenerates an initramfs that lists the module), and so does a pacman
//! package with the real pacman (which checks file conflicts before its
//! pre_install runs, so it takes `--overwrite` over a source install).

use crate::overlay_root::{require_tools, Checks, Root};
use crate::packages::{named, written};
use crate::support::{require_root, run_ok, test_kernels, World, ARCH};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A stand-in `linux-image-K` .deb (these tests install no real kernel).
fn stand_in_kernel_deb(dir: &Path, k: &str) -> PathBuf {
    let root = dir.join("kimg");
    fs::create_dir_all(root.join("DEBIAN")).unwrap();
    fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: linux-image-{k}\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: stand-in\n"
        ),
    )
    .unwrap();
    let deb = dir.join("kimg.deb");
    run_ok(Command::new("dpkg-deb").arg("-b").arg(&root).arg(&deb));
    deb
}

#[test]
fn a_deb_installed_with_dpkg_takes_over_from_the_source_build_and_leaves_nothing() {
    require_root("packages dpkg");
    require_tools("packages dpkg", &["dpkg", "dpkg-deb", "rpm", "pacman", "depmod"]);
    let ks = test_kernels();
    let k = ks[ks.len() - 1].clone();
    let w = World::new(std::slice::from_ref(&k));
    w.add_fixture("hello-1.0");
    w.ok(&["build", "hello/1.0", "-k", &k]);
    let out = w.p("out");
    let os = out.display().to_string();
    let debs = written(&w.ok(&["mkdeb", "hello/1.0", "-k", &k, "--output-dir", &os]));
    let rpms = written(&w.ok(&["mkrpm", "hello/1.0", "-k", &k, "--output-dir", &os]));
    let pkgs = written(&w.ok(&[
        "mkpkg",
        "hello/1.0",
        "-k",
        &k,
        "--output-dir",
        &os,
        "--kernel-package",
        "linux",
    ]));
    let kimg = stand_in_kernel_deb(w.root(), &k);
    let mut ck = Checks::new("packages dpkg");
    let root = Root::new("packages-dpkg");
    root.put(&crate::overlay_root::modsync_bin(), "/usr/bin/modsync");
    root.put(&out, "/srv/pkgs");
    root.put(&kimg, "/srv/kimg.deb");
    root.put(&crate::overlay_root::hello_fixture(), "/usr/src/hello-1.0");
    let deb = format!(
        "/srv/pkgs/{}",
        named(&debs, &format!("hello-modules-{k}_"))
            .file_name()
            .unwrap()
            .to_string_lossy()
    );
    let meta = format!(
        "/srv/pkgs/{}",
        named(&debs, "hello-modules_").file_name().unwrap().to_string_lossy()
    );
    let pkg = format!(
        "/srv/pkgs/{}",
        named(&pkgs, "hello-modules-linux-")
            .file_name()
            .unwrap()
            .to_string_lossy()
    );
    let rpm = format!(
        "/srv/pkgs/{}",
        named(&rpms, &format!("kmod-hello-{k}-"))
            .file_name()
            .unwrap()
            .to_string_lossy()
    );
    root.must(
        "a clean root: modsync as dkms, no module trees but the headers' links",
        &format!(
            "rm -rf /var/lib/dkms; ln -sfn /usr/bin/modsync /usr/sbin/dkms
             find /usr/lib/modules/{k} -mindepth 1 -maxdepth 1 ! -name build ! -name source -exec rm -rf {{}} +
             dpkg -i /srv/kimg.deb
             mkdir -p /boot /etc/initramfs-tools; : > /boot/initrd.img-{k}; rm -f /tmp/initramfs.log
             printf '#!/bin/sh\necho \"$*\" >> /tmp/initramfs.log\n' > /usr/sbin/update-initramfs
             chmod +x /usr/sbin/update-initramfs"
        ),
    );
    let o = root.sh("dkms add hello/1.0 && dkms install hello/1.0 -k $K && dkms status"
        .replace("$K", &k)
        .as_str());
    ck.truth(
        "the module is source-installed first",
        o.ok && o.output.contains(&format!("hello/1.0, {k}, {ARCH}: installed")),
        &o.output,
    );
    let o = root.sh(&format!("dpkg -i {deb} {meta}"));
    ck.truth(
        "dpkg installs the package; its preinst uninstalls the source build",
        o.ok && o.output.contains("gives way to this package"),
        &o.output,
    );
    let o = root.sh("[ ! -e /tmp/initramfs.log ]");
    ck.truth(
        "no initramfs regeneration for a module that is not in the initramfs",
        o.ok,
        &o.output,
    );
    let o = root.sh(&format!(
        "ls /usr/lib/modules/{k}/updates/dkms/; {v}; dpkg -S /usr/lib/modsync/packaged/hello/{k}",
        v = crate::overlay_root::vermagic_is("hello", &k)
    ));
    ck.truth("the package's file is in place and depmod found it", o.ok, &o.output);
    let o = root.sh("dkms status");
    ck.truth(
        "status: installed from the package",
        o.ok && o.output.contains(&format!(
            "hello/1.0, {k}, {ARCH}: installed (package hello-modules-{k})"
        )) && !o.output.contains(&format!("hello/1.0, {k}, {ARCH}: installed\n")),
        &o.output,
    );
    let o = root.sh("modsync status --json");
    ck.truth(
        "status --json names the package",
        o.ok && o.output.contains(&format!("\"package\": \"hello-modules-{k}\"")),
        &o.output,
    );
    let o = root.sh(&format!(
        "before=$(md5sum /usr/lib/modules/{k}/updates/dkms/hello.ko); modsync autoinstall -k {k}; \
         [ \"$before\" = \"$(md5sum /usr/lib/modules/{k}/updates/dkms/hello.ko)\" ]; dkms status"
    ));
    ck.truth(
        "autoinstall leaves the packaged module alone",
        o.ok && o.output.contains("not built from source") && o.output.contains("(package hello-modules-"),
        &o.output,
    );
    let o = root.sh(&format!(
        "dpkg -r hello-modules hello-modules-{k}; {none}; [ ! -e /usr/lib/modsync/packaged/hello ]; \
         ! grep -q hello /usr/lib/modules/{k}/modules.dep; dkms status",
        none = crate::overlay_root::no_module_file("hello", &k)
    ));
    ck.truth(
        "removal leaves no file, no marker, and depmod forgets the module",
        o.ok && !o.output.contains("(package "),
        &o.output,
    );
    let o = root.sh(&format!(
        "echo hello >> /etc/initramfs-tools/modules; rpm -i --nodeps {rpm}; grep -x -- '-u -k {k}' /tmp/initramfs.log; {v}; modsync status; rpm -e kmod-hello-{k}; {none}; [ ! -e /usr/lib/modsync/packaged/hello/{k} ]; \
         ! grep -q hello /usr/lib/modules/{k}/modules.dep",
        v = crate::overlay_root::vermagic_is("hello", &k),
        none = crate::overlay_root::no_module_file("hello", &k)
    ));
    ck.truth(
        "rpm installs the RPM (depmod runs, the initramfs that lists the module is regenerated, status shows it) and erases it leaving nothing",
        o.ok && o.output.contains(&format!("installed (package kmod-hello-{k})")),
        &o.output,
    );
    let o = root.sh(&format!(
        "mkdir -p /var/lib/pacman; dkms install hello/1.0 -k {k}; \
         if pacman -U -dd --noconfirm {pkg}; then echo UNEXPECTED; fi; \
         pacman -U -dd --noconfirm --overwrite '/usr/lib/modules/{k}/updates/dkms/*' {pkg}"
    ));
    ck.truth(
        "pacman refuses a source-installed module's file; with --overwrite its pre_install uninstalls the source build",
        o.ok && !o.output.contains("UNEXPECTED")
            && o.output.contains("exists in filesystem")
            && o.output.contains("gives way to this package"),
        &o.output,
    );
    let o = root.sh(&format!(
        "{v}; modsync status; pacman -Qkk hello-modules-linux; \
         pacman -R --noconfirm hello-modules-linux; {none}; [ ! -e /usr/lib/modsync/packaged/hello/{k} ]; \
         ! grep -q hello /usr/lib/modules/{k}/modules.dep",
        v = crate::overlay_root::vermagic_is("hello", &k),
        none = crate::overlay_root::no_module_file("hello", &k)
    ));
    ck.truth(
        "the pacman package is in place (depmod ran, status shows it, -Qkk finds it intact); removal leaves nothing",
        o.ok && o.output.contains("installed (package hello-modules-linux)") && o.output.contains("0 altered files"),
        &o.output,
    );
    drop(root);
    ck.finish();
}
