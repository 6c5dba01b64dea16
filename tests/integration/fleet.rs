//! Build once, install everywhere: a build host with a compiler and kernel
//! headers exports module packages (`modsync mkdeb`, `mkrpm`, `mkpkg`) into
//! local repositories made with the distributions' own tools, and hosts
//! without compiler or headers install them with their usual package
//! manager; the modules they got load in the real kernel under qemu.
//!
//! The build host is an overlay root of this machine (gcc, the Debian
//! kernel headers of the two test kernels K0 < K1); the stage is set by
//! [`fleet_support`](crate::fleet_support). The sources: the hello fixture
//! and Debian's vpoll-dkms. Four targets, each a Debian minbase tree with
//! the toolchain purged:
//! - apt: `apt-get install hello-modules vpoll-modules` inside the target,
//!   its only source `deb [trusted=yes] file:/srv/repo/deb ./`
//!   (dpkg-scanpackages), later `apt-get dist-upgrade`, `apt-get purge`;
//! - dnf: `dnf --installroot` with the createrepo_c repository only, later
//!   `dnf upgrade`, `dnf remove`;
//! - rpm: `rpm --root -i` of the produced files themselves, `rpm -e`;
//! - pacman: `pacman --root -Sy` with a pacman.conf naming only the repo-add
//!   repository, later `pacman -Syu` (the kernel package holds one kernel:
//!   K1's packages replace K0's), `pacman -R`.
//!
//! What it proves: each module package pulls in its kernel's package;
//! installed, the signed .ko is at its path, depmod ran in the target
//! (modules.dep names it) and the marker is there; the copies from every
//! target load in the real K0 kernel under qemu (and unload); after the
//! build host exports for K1, the apt and dnf targets' usual upgrade brings
//! K1's packages and keeps K0's, the pacman target's replaces K0 (nothing of
//! it left), and the K1 copies load in the real K1 kernel; removal leaves no module file, no marker and no modules.dep line;
//! `dpkg-deb -c`, `rpm -qpl`, `pacman -Qlp` list exactly the module file and
//! the marker (and nothing for the meta packages).
//!
//! Needs root, the test kernels and images, dpkg-dev, createrepo_c, dnf,
//! rpm, pacman (repo-add), zstd, busybox-static and qemu (`tests/setup.sh`).

use crate::fleet_support::*;
use crate::guest::{boot, load_then_unload, plain_module, section, BUSYBOX};
use crate::overlay_root::{hello_fixture, indent, require_tools, Checks, Root};
use crate::support::{dkms_source, image_dir, require, require_root, test_kernels, version_of};
use std::path::Path;

const TEST: &str = "fleet::build_once_install_everywhere";
/// The modules: name, version.
const MODS: [(&str, &str); 2] = [("hello", "1.0"), ("vpoll", "0.1")];
/// The targets: name (its root is /targets/NAME) and the format it takes.
const TARGETS: [(&str, &str); 4] = [("apt", "deb"), ("dnf", "rpm"), ("rpm", "rpm"), ("pacman", "pkg")];
/// Where the pacman target's K0 modules are kept once its upgrade replaced them.
const SAVED: &str = "/srv/fleet/pacman-k0";

#[test]
fn build_once_install_everywhere() {
    require_root(TEST);
    require_tools(
        TEST,
        &[
            "unshare",
            "dpkg-deb",
            "dpkg-scanpackages",
            "createrepo_c",
            "dnf",
            "rpm",
            "pacman",
            "repo-add",
            "zstd",
            "qemu-system-x86_64",
        ],
    );
    require(TEST, Path::new(BUSYBOX).is_file(), "no /bin/busybox (busybox-static)");
    let ks = test_kernels();
    let (k0, k1) = (ks[0].clone(), ks[ks.len() - 1].clone());
    let vpoll = dkms_source("vpoll");
    assert_eq!(
        version_of(&vpoll, "vpoll"),
        MODS[1].1,
        "the vpoll source changed version"
    );
    let mut ck = Checks::new(TEST);
    let root = Root::new("fleet");
    let names: Vec<&str> = TARGETS.iter().map(|t| t.0).collect();
    stage(&root, &hello_fixture(), &vpoll, &names);
    ck.progress(&format!("build host and targets staged; kernels {k0} then {k1}"));
    for (m, v) in MODS {
        ck.cmd(
            &format!("modsync add {m}/{v}"),
            &root.sh(&format!("modsync add {m}/{v}")),
        );
    }
    for (t, _) in TARGETS {
        ck.cmd(
            &format!("target {t} has no compiler, binutils, make or kernel headers"),
            &root.sh(&no_toolchain(&format!("/targets/{t}"))),
        );
    }

    // --- K0: export, install, check ---
    let made = export(&root, &mut ck, &k0, 1);
    root.must(
        "point the targets at their repositories",
        &configure_targets("/targets/apt", &["/targets/dnf", "/targets/rpm"], "/targets/pacman"),
    );
    install(&root, &mut ck, &k0, &made);
    for (t, fmt) in TARGETS {
        check_installed(&root, &mut ck, t, fmt, &k0);
    }
    // the pacman target's upgrade replaces K0: keep its copies for the boot
    root.must(
        "keep the pacman target's K0 modules",
        &format!("mkdir -p {SAVED} && cp -a /targets/pacman/usr/lib/modules/{k0} {SAVED}/"),
    );

    // --- K1: the build host exports first, the targets upgrade ---
    export(&root, &mut ck, &k1, 2);
    upgrade(&root, &mut ck, &k0, &k1);

    // --- both kernels boot with the targets' copies ---
    boot_both(&root, &mut ck, &k0, &k1);

    // --- removal ---
    remove(&root, &mut ck, &k0, &k1);
    let state = root.sh("ls /srv/repo/*; find /targets/*/usr/lib/modules /targets/*/usr/lib/modsync 2>/dev/null");
    eprintln!("final state:\n{}", indent(&state.output));
    drop(root);
    ck.finish();
}

/// Build host: builds every module for K, makes the fake kernel packages of
/// generation N and the module packages of all three formats, publishes
/// them, reindexes; checks what the packages list. Returns the files made
/// with their package names.
fn export(root: &Root, ck: &mut Checks, k: &str, n: u32) -> Vec<(String, String)> {
    let mut made = Vec::new();
    ck.progress(&format!("build host: build and export for {k}"));
    fake_kernels(root, k, n);
    for (m, v) in MODS {
        ck.cmd(
            &format!("build host: modsync build {m}/{v} -k {k}"),
            &root.sh(&format!("modsync build {m}/{v} -k {k}")),
        );
        for fmt in FORMATS {
            let kpkg = if fmt == "pkg" {
                format!(" --kernel-package linux-e2e={n}-1")
            } else {
                String::new()
            };
            let out = root.sh(&format!(
                "mkdir -p /srv/out/{fmt}; modsync mk{fmt} {m}/{v} -k {k} --output-dir /srv/out/{fmt}{kpkg}"
            ));
            let files: Vec<String> = out
                .output
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("/srv/out/") && !l.contains(' '))
                .map(str::to_string)
                .collect();
            let ok = ck.cmd(&format!("build host: modsync mk{fmt} {m}/{v} -k {k}"), &out)
                && ck.truth(
                    &format!("mk{fmt} {m} for {k} printed the paths of two packages (per kernel, meta)"),
                    files.len() == 2,
                    &out.output,
                );
            if ok {
                made.extend(check_listings(root, ck, fmt, m, k, &files));
                root.must("publish", &format!("cp {} /srv/repo/{fmt}/", files.join(" ")));
            }
        }
    }
    root.must("index the repositories", INDEX);
    made
}

/// Each target installs the module packages for K0 (pulling in the
/// kernel); the rpm target the per-kernel files of MADE.
fn install(root: &Root, ck: &mut Checks, k: &str, made: &[(String, String)]) {
    ck.progress("targets: install");
    let metas = |fmt: &str| {
        MODS.iter()
            .map(|(m, _)| package_names(fmt, m, k).1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    ck.cmd(
        "apt target: apt-get install hello-modules vpoll-modules pulls linux-image-K0",
        &root.sh(&in_target(
            "/targets/apt",
            &format!(
                "apt-get update -q && apt-get install -y -q {} && dpkg -s linux-image-{k} | grep -qx 'Status: install ok installed' \
                 && apt-get install -y -q linux-image-e2e",
                metas("deb")
            ),
        )),
    );
    let dnf_t = dnf("/targets/dnf");
    ck.cmd(
        "dnf target: dnf --installroot install kmod-hello kmod-vpoll pulls kernel-core",
        &root.sh(&format!(
            "{dnf_t} install {} && rpm --root /targets/dnf -q --provides kernel-core | grep -qx 'kernel-uname-r = {k}'",
            metas("rpm")
        )),
    );
    let files: Vec<&str> = made
        .iter()
        .filter(|(name, _)| MODS.iter().any(|(m, _)| *name == package_names("rpm", m, k).0))
        .map(|(_, f)| f.as_str())
        .collect();
    ck.cmd(
        "rpm target: rpm --root -i the kernel and the per-kernel packages' files",
        &root.sh(&format!(
            "rpm --root /targets/rpm -i /srv/repo/rpm/e2e-shell-*.rpm /srv/repo/rpm/kernel-core-*.rpm {}",
            files.join(" ")
        )),
    );
    ck.cmd(
        "pacman target: pacman --root -Sy hello-modules vpoll-modules pulls linux-e2e",
        &root.sh(&format!(
            "{p} -Sy {} && {q} -Q linux-e2e",
            metas("pkg"),
            p = pacman("/targets/pacman"),
            q = pacman_q("/targets/pacman")
        )),
    );
}

/// Shell: the modules of K are installed in TARGET (exactly one file each,
/// under updates/dkms for Debian), modules.dep names them, markers there.
fn check_installed(root: &Root, ck: &mut Checks, t: &str, fmt: &str, k: &str) {
    let under = if fmt == "deb" { "updates/dkms/" } else { "" };
    let script = format!(
        r#"t=/targets/{t} k={k}; d=$t/usr/lib/modules/$k
for m in {mods}; do
    n=$(find "$d" -path "$d/{under}*" -name "$m.ko*" | wc -l)
    [ "$n" = 1 ] || {{ echo "$m: $n module files in $d/{under}"; find "$d"; exit 1; }}
    grep -qE "(^|/)$m\.ko(\.[a-z]+)?:" "$d/modules.dep" || {{ echo "modules.dep lacks $m:"; cat "$d/modules.dep"; exit 1; }}
    test -f "$t/usr/lib/modsync/packaged/$m/$k" || {{ echo "no marker for $m"; exit 1; }}
done"#,
        mods = MODS.map(|m| m.0).join(" ")
    );
    ck.cmd(
        &format!("{t} target: modules of {k} installed, in modules.dep, markers present"),
        &root.sh(&script),
    );
}

/// Each target's usual upgrade after the K1 export: both kernels' packages.
fn upgrade(root: &Root, ck: &mut Checks, k0: &str, k1: &str) {
    ck.progress("targets: upgrade");
    ck.cmd(
        "apt target: apt-get dist-upgrade brings linux-image-K1 and the K1 module packages",
        &root.sh(&in_target(
            "/targets/apt",
            &format!("apt-get update -q && apt-get dist-upgrade -y -q && dpkg -s linux-image-{k1} >/dev/null"),
        )),
    );
    ck.cmd(
        "dnf target: dnf upgrade brings kernel-core K1 and the K1 module packages",
        &root.sh(&format!(
            "{} upgrade && rpm --root /targets/dnf -q --provides kernel-core | grep -qx 'kernel-uname-r = {k1}'",
            dnf("/targets/dnf")
        )),
    );
    ck.cmd(
        "pacman target: pacman -Syu brings linux-e2e for K1 and the K1 module packages",
        &root.sh(&format!(
            "{p} -Syu && {q} -Q linux-e2e | grep -qx 'linux-e2e 2-1'",
            p = pacman("/targets/pacman"),
            q = pacman_q("/targets/pacman")
        )),
    );
    for (t, fmt) in [TARGETS[0], TARGETS[1], TARGETS[3]] {
        check_installed(root, ck, t, fmt, k1);
    }
    for (t, fmt) in [TARGETS[0], TARGETS[1]] {
        check_installed(root, ck, t, fmt, k0);
    }
    ck.cmd(
        "pacman target: nothing of K0 is left (its kernel package gave way to K1's, the module packages too)",
        &root.sh(&format!(
            "t=/targets/pacman; ! [ -e $t/usr/lib/modules/{k0} ] && ! [ -e $t/usr/lib/modsync/packaged/hello/{k0} ] || \
             {{ find $t/usr/lib/modules/{k0} $t/usr/lib/modsync; exit 1; }}"
        )),
    );
}

/// Boots K0 with every target's K0 copies (the pacman target's as kept
/// before its upgrade) and K1 with the upgraded targets' K1 copies (at once, one vCPU each); each copy loads and unloads.
fn boot_both(root: &Root, ck: &mut Checks, k0: &str, k1: &str) {
    ck.progress("qemu: booting both kernels");
    let work = tempfile::tempdir().expect("tempdir");
    let plan = |k: &str, targets: &[&str]| {
        let (mut files, mut loads) = (Vec::new(), Vec::new());
        for t in targets {
            for (m, _) in MODS {
                let dir = if *t == "pacman" && k == k0 {
                    format!("{SAVED}/{k}")
                } else {
                    format!("/targets/{t}/usr/lib/modules/{k}")
                };
                let found = root.run(&format!("find {dir} -name '{m}.ko*' 2>/dev/null | head -1"));
                let path = found.output.trim();
                if !path.starts_with('/') {
                    continue;
                }
                let label = format!("{t}-{m}");
                files.push((format!("{label}.ko"), plain_module(&root.written(path))));
                loads.push(load_then_unload(&label, &label, m));
            }
        }
        (files, loads)
    };
    let (f0, l0) = plan(k0, &["apt", "dnf", "rpm", "pacman"]);
    let (f1, l1) = plan(k1, &["apt", "dnf", "pacman"]);
    let vmlinuz = |k: &str| image_dir(k).join(format!("boot/vmlinuz-{k}"));
    let (v0, v1) = (vmlinuz(k0), vmlinuz(k1));
    let (b0, b1) = std::thread::scope(|s| {
        let a = s.spawn(|| boot(&v0, work.path(), "k0", &f0, &l0, "", ""));
        let b = s.spawn(|| boot(&v1, work.path(), "k1", &f1, &l1, "", ""));
        (a.join().unwrap(), b.join().unwrap())
    });
    for (k, b, targets) in [
        (k0, b0, ["apt", "dnf", "rpm", "pacman"].as_slice()),
        (k1, b1, &["apt", "dnf", "pacman"]),
    ] {
        let b = match b {
            Ok(b) => b,
            Err(e) => {
                ck.truth(&format!("qemu boots {k}"), false, &e);
                continue;
            }
        };
        for t in targets {
            for (m, _) in MODS {
                let label = format!("{t}-{m}");
                let s = if b.1.contains(&format!("@@BEGIN {label}\n")) {
                    section(&b, &label).to_string()
                } else {
                    format!("no copy of {m} for {k} in the {t} target")
                };
                let greeted = m != "hello" || s.contains("hello: modsync example module loaded");
                ck.truth(
                    &format!("{k} under qemu: the {t} target's {m} loads and unloads"),
                    s.contains("@@RC 0") && s.contains("@@LOADED yes") && s.contains("@@UNLOADED yes") && greeted,
                    &s,
                );
            }
        }
    }
}

/// Removing the module packages leaves no module file, marker or
/// modules.dep line; the kernels stay.
fn remove(root: &Root, ck: &mut Checks, k0: &str, k1: &str) {
    ck.progress("targets: removal");
    ck.cmd(
        "apt target: apt-get purge of the module packages",
        &root.sh(&in_target(
            "/targets/apt",
            "apt-get purge -y -q $(dpkg-query -W -f='${Package}\\n' | grep -E '^(hello|vpoll)-modules')",
        )),
    );
    ck.cmd(
        "dnf target: dnf remove of the module packages",
        &root.sh(&format!("{} remove 'kmod-hello*' 'kmod-vpoll*'", dnf("/targets/dnf"))),
    );
    ck.cmd(
        "rpm target: rpm -e of the module packages",
        &root.sh("rpm --root /targets/rpm -e $(rpm --root /targets/rpm -qa 'kmod-*')"),
    );
    ck.cmd(
        "pacman target: pacman -R of the module packages",
        &root.sh(&format!(
            "{p} -R $({q} -Qq | grep -E '^(hello|vpoll)-modules')",
            p = pacman("/targets/pacman"),
            q = pacman_q("/targets/pacman")
        )),
    );
    for (t, _) in TARGETS {
        ck.cmd(
            &format!("{t} target: no module file, marker or modules.dep line left; the kernel stays"),
            &root.sh(&format!(
                r#"t=/targets/{t}
left=$(find $t/usr/lib/modules $t/usr/lib/modsync \( -name 'hello.ko*' -o -name 'vpoll.ko*' -o -path '*/packaged/*' \) 2>/dev/null || true)
[ -z "$left" ] || {{ echo "left behind: $left"; exit 1; }}
for k in {k0} {k1}; do
    f=$t/usr/lib/modules/$k/modules.dep
    [ ! -e $f ] || ! grep -E '(hello|vpoll)\.ko' $f
done
ls $t/usr/lib/modules/*/modules.order"#
            )),
        );
    }
}
