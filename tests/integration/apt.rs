//! The Debian package of modsync, in a throwaway Debian 12 chroot where real
//! packages run their real maintainer scripts: the modsync .deb (built here
//! with `packaging/build-deb` from the binary under test, or taken from
//! `$MODSYNC_DEB`), a dh_dkms vendor package from the archive
//! (v4l2loopback-dkms), the two test kernels (linux-image-K +
//! linux-headers-K), a driver that no longer compiles
//! (openrazer-driver-dkms 3.5.1 on these kernels) and systemd's
//! kernel-install.
//!
//! What it proves: the package replaces dkms for apt (`Provides: dkms`, no
//! archive dkms pulled in); its /etc/kernel/*.d hooks are picked up by
//! run-parts and run before the initramfs generator; a kernel upgrade builds
//! and installs the registered modules (status, vermagic, initramfs); a
//! module that fails to build is reported with its make.log and never leaves
//! dpkg half-configured; removing a kernel drops its modules; headers that
//! arrive after their kernel build the module and put it into that kernel's
//! initramfs; a broken /etc/modsync/config.toml does not fail a kernel
//! package; the kernel-install plugin adds and removes; the vendor package's
//! prerm (`dkms remove --all`) unregisters; removing modsync lifts a hold
//! of the boot guard (its own prerm); removing and purging modsync leaves a
//! working system (and no modsync.service enablement).
//!
//! Also what the package adds beside the hooks: `man dkms` and `man
//! modsync` resolve, bash-completion loads the completions of both names,
//! /usr/lib/dkms/dkms_autoinstaller skips a kernel without headers with
//! dkms's message, and modsync.service is enabled and passes `systemd-analyze
//! verify`. The boot safety net: with the modsync hooks moved aside, the
//! headers of a kernel are reinstalled and the module is not built (no hook
//! ran); the installed unit's ExecStart then builds and installs it, and a
//! second run is a silent no-op. The chroot's running kernel is the host's
//! (which has no headers here: ExecStart alone says so and exits 0), so
//! the test appends `-k K` to ExecStart to name the chroot's kernel.
//!
//! Needs root, debootstrap and a Debian mirror. The debootstrap base is made
//! once and cached as /var/cache/modsync-test/bookworm-minbase-2.tar; the
//! .debs apt downloads are kept in /var/cache/modsync-test/archives (the
//! kernel images `tests/setup.sh` downloaded are used too).
//!
//! Environment: `MODSYNC_DEB` (use this .deb), `MODSYNC_TEST_MIRROR`,
//! `MODSYNC_TEST_SECURITY_MIRROR` (default: the host's Debian sources, else
//! deb.debian.org), `MODSYNC_TEST_KEEP=1` (keep the chroot).

use crate::overlay_root::{appears_before, host, indent, q, tail, which, Checks, Outcome};
use crate::support::{require, require_root, test_kernels, CACHE};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TEST: &str = "apt::debian_package_in_a_chroot";
const SUITE: &str = "bookworm";
/// Bump the suffix when the package set below changes.
const BASE_TARBALL: &str = "bookworm-minbase-2.tar";
const BASE_PACKAGES: &str =
    "ca-certificates,make,gcc,libc6-dev,kmod,patch,bc,openssl,xz-utils,zstd,initramfs-tools,cpio,\
     man-db,bash-completion,systemd";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
const PATH_IN_CHROOT: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The working module and the broken one, both real Debian dh_dkms packages.
const GOOD_PKG: &str = "v4l2loopback-dkms";
const GOOD_MOD: &str = "v4l2loopback";
const BAD_PKG: &str = "openrazer-driver-dkms";
const BAD_MOD: &str = "openrazer";

const APT: &str = "apt-get install -y -q -o Dpkg::Use-Pty=0";
const REMOVE: &str = "apt-get remove -y -q -o Dpkg::Use-Pty=0";
const AUDIT_CLEAN: &str = "test -z \"$(dpkg --audit)\" || { dpkg --audit; false; }";

#[test]
fn debian_package_in_a_chroot() {
    require_root(TEST);
    for tool in ["debootstrap", "dpkg-deb", "tar", "chroot", "mount"] {
        require(TEST, which(tool), &format!("`{tool}` is not installed"));
    }
    let ks = test_kernels();
    // oldest first: installing k1 then k2 is a kernel upgrade
    let (k1, k2) = (ks[0].clone(), ks[ks.len() - 1].clone());
    let mut ck = Checks::new(TEST);
    let deb = modsync_deb();
    ck.progress(&format!("package: {}", deb.display()));
    let tarball = base_tarball(&ck);
    let c = Chroot::create(&tarball);
    ck.progress(&format!("chroot: {}; kernels: {k1} then {k2}", c.root.display()));
    scenario(&c, &deb, &k1, &k2, &mut ck);
    drop(c);
    ck.finish();
}

/// The user story, step by step. Later steps still run after a failure so one
/// run reports every problem; their own failures may be consequences.
fn scenario(c: &Chroot, deb: &Path, k1: &str, k2: &str, ck: &mut Checks) {
    // --- the package itself ---
    fs::copy(deb, c.host_path("/tmp/modsync.deb")).expect("copy the .deb into the chroot");
    ck.progress("installing the modsync package");
    let out = c.run(&format!("{APT} /tmp/modsync.deb"));
    ck.cmd("the modsync .deb installs", &out);
    ck.cmd(
        "the package is configured and provides dkms",
        &c.run(
            "dpkg-query -W -f='${db:Status-Abbrev}' modsync | grep -q '^ii' && \
             dpkg-query -W -f='${Provides}\\n' modsync | grep -qw dkms",
        ),
    );
    ck.cmd(
        "`dkms` in PATH is modsync",
        &c.run(
            "test \"$(command -v dkms)\" = /usr/sbin/dkms && \
             test \"$(readlink -f /usr/sbin/dkms)\" = /usr/sbin/modsync && dkms --version",
        ),
    );
    for ty in ["preinst", "postinst", "header_postinst", "prerm", "postrm"] {
        ck.cmd(
            &format!("run-parts picks up /etc/kernel/{ty}.d/50-modsync"),
            &c.run(&format!(
                "run-parts --test --arg=K --arg=/boot/vmlinuz-K /etc/kernel/{ty}.d \
                 | grep -qx /etc/kernel/{ty}.d/50-modsync && \
                 cmp /etc/kernel/{ty}.d/50-modsync /usr/share/kernel/{ty}.d/50-modsync"
            )),
        );
    }
    let order = c.run("run-parts --test --arg=K --arg=/boot/vmlinuz-K /etc/kernel/postinst.d");
    ck.truth(
        "postinst.d: modsync runs before the initramfs generator",
        appears_before(&order.output, "/50-modsync", "/initramfs-tools"),
        &order.output,
    );
    ck.cmd(
        "/usr/lib/dkms/common.postinst (called by dh_dkms postinsts) is installed",
        &c.run("test -x /usr/lib/dkms/common.postinst"),
    );
    package_extras(c, ck);

    // --- a vendor driver package that depends on dkms ---
    ck.progress(&format!("installing {GOOD_PKG}"));
    let out = c.run(&format!("{APT} {GOOD_PKG}"));
    ck.cmd(&format!("{GOOD_PKG} (Depends: dkms) installs"), &out);
    ck.cmd(
        "apt did not pull in the archive's dkms",
        &c.run("! dpkg-query -W -f='${db:Status-Abbrev}' dkms 2>/dev/null | grep -q '^i'"),
    );
    let version = c
        .run(&format!(
            "ls -d /usr/src/{GOOD_MOD}-* | sed -n 's|^/usr/src/{GOOD_MOD}-||p' | head -n1"
        ))
        .output
        .trim()
        .to_string();
    ck.truth(
        &format!("{GOOD_PKG} shipped its source in /usr/src"),
        !version.is_empty(),
        "",
    );
    let mv = format!("{GOOD_MOD}/{version}");
    let status = c.run("dkms status");
    ck.truth(
        &format!("`dkms status` lists {mv}"),
        status.ok && status.output.lines().any(|l| l.starts_with(&mv)),
        &status.output,
    );

    // --- first kernel ---
    ck.progress(&format!("installing linux-image-{k1} + headers"));
    let out = c.run(&format!("{APT} linux-image-{k1} linux-headers-{k1}"));
    ck.cmd(&format!("kernel {k1} (image + headers) installs"), &out);
    ck.cmd("dpkg --audit is clean after the kernel install", &c.run(AUDIT_CLEAN));
    ck.cmd(
        &format!("{GOOD_MOD} was built and installed for {k1} by the hooks"),
        &c.run(&vermagic_is(GOOD_MOD, k1)),
    );
    let status = c.run("dkms status");
    ck.truth(
        &format!("status: {mv}, {k1}, x86_64: installed"),
        status_says_installed(&status.output, &mv, k1),
        &status.output,
    );
    ck.cmd(
        &format!("the initramfs for {k1} was generated"),
        &c.run(&format!("test -s /boot/initrd.img-{k1}")),
    );

    // --- a driver that does not compile ---
    ck.progress(&format!("installing {BAD_PKG} (does not compile)"));
    let out = c.run(&format!("{APT} {BAD_PKG}"));
    ck.cmd(&format!("{BAD_PKG} installs although its module fails to build"), &out);
    ck.cmd("dpkg --audit is clean after the failed build", &c.run(AUDIT_CLEAN));
    check_failure_reported(c, ck, &format!("{BAD_PKG} install"), &out.output, false);

    // --- kernel upgrade, with the broken driver registered ---
    ck.progress(&format!("installing linux-image-{k2} + headers"));
    let out = c.run(&format!("{APT} linux-image-{k2} linux-headers-{k2}"));
    ck.cmd(&format!("kernel {k2} installs despite the broken driver"), &out);
    ck.cmd("dpkg --audit is clean after the second kernel", &c.run(AUDIT_CLEAN));
    ck.cmd(
        &format!("{GOOD_MOD} was built for {k2} too"),
        &c.run(&vermagic_is(GOOD_MOD, k2)),
    );
    check_failure_reported(c, ck, &format!("kernel {k2} install"), &out.output, true);
    let status = c.run("dkms status --json");
    ck.truth(
        &format!("status --json records the broken driver as failed for {k2}"),
        status.ok && json_failed_for(&status.output, k2),
        &status.output,
    );
    let log = c.run("modsync log --json");
    ck.truth(
        &format!("modsync log: the kernel hooks recorded {GOOD_MOD} installed and {BAD_MOD} failed for {k2}"),
        log.ok
            && history_has(&log.output, GOOD_MOD, k2, "installed")
            && history_has(&log.output, BAD_MOD, k2, "failed"),
        &log.output,
    );
    ck.cmd(
        "the package ships the history's logrotate configuration",
        &c.run("grep -q '^/var/log/modsync/history.log {' /etc/logrotate.d/modsync"),
    );

    // --- removing a kernel drops its modules ---
    ck.progress(&format!("removing kernel {k1}"));
    let out = c.run(&format!("{REMOVE} linux-image-{k1} linux-headers-{k1}"));
    ck.cmd(&format!("kernel {k1} is removed"), &out);
    ck.cmd("dpkg --audit is clean after the kernel removal", &c.run(AUDIT_CLEAN));
    ck.cmd(
        &format!("no {GOOD_MOD} module file is left for {k1}"),
        &c.run(&no_module_file(GOOD_MOD, k1)),
    );
    ck.cmd(
        &format!("no empty updates/dkms directory is left for {k1}"),
        &c.run(&format!("test ! -e /lib/modules/{k1}/updates/dkms")),
    );
    let status = c.run("dkms status");
    ck.truth(
        &format!("status no longer mentions {k1}, still has {mv} for {k2}"),
        status.ok && !status.output.contains(k1) && status_says_installed(&status.output, &mv, k2),
        &status.output,
    );

    // --- headers that arrive after the kernel (header_postinst.d) ---
    ck.progress(&format!("installing linux-image-{k1} alone, then its headers"));
    let out = c.run(&format!(
        "echo {GOOD_MOD} >> /etc/initramfs-tools/modules && {APT} linux-image-{k1}"
    ));
    ck.cmd(&format!("kernel {k1} installs without its headers"), &out);
    ck.truth(
        &format!("the missing headers are named (linux-headers-{k1})"),
        out.output.contains(&format!("linux-headers-{k1}")),
        &out.output,
    );
    let out = c.run(&format!("{APT} linux-headers-{k1}"));
    ck.cmd(&format!("linux-headers-{k1} installs later"), &out);
    ck.cmd(
        &format!("header_postinst.d built {GOOD_MOD} for {k1}"),
        &c.run(&vermagic_is(GOOD_MOD, k1)),
    );
    ck.cmd(
        &format!("... and put it into the initramfs of {k1}"),
        &c.run(&format!(
            "lsinitramfs /boot/initrd.img-{k1} | grep -q '/{GOOD_MOD}\\.ko'"
        )),
    );
    ck.cmd("dpkg --audit is clean after the headers", &c.run(AUDIT_CLEAN));

    // --- an error that is not a build failure must not fail a kernel package ---
    ck.progress("a broken /etc/modsync/config.toml");
    let out = c.run(&format!(
        "mkdir -p /etc/modsync && echo 'strict = maybe' > /etc/modsync/config.toml && \
         rc=0; {APT} --reinstall linux-image-{k1} || rc=$?; rm -f /etc/modsync/config.toml; \
         [ $rc = 0 ] && {AUDIT_CLEAN}"
    ));
    ck.cmd("a broken /etc/modsync/config.toml does not fail a kernel package", &out);

    boot_safety_net(c, ck, &mv, k1);

    // --- systemd kernel-install ---
    ck.progress("installing systemd for kernel-install");
    let out = c.run(&format!("{APT} systemd"));
    ck.cmd("systemd (kernel-install) installs", &out);
    let plugins = c.run("ls /usr/lib/kernel/install.d /etc/kernel/install.d 2>/dev/null | LC_ALL=C sort");
    ck.truth(
        "kernel-install: 40-modsync.install sorts before 50-depmod.install",
        appears_before(&plugins.output, "40-modsync.install", "50-depmod.install"),
        &plugins.output,
    );
    ck.cmd(
        &format!("`dkms remove {mv} -k {k2}` drops the module for {k2} only (still built for {k1})"),
        &c.run(&format!(
            "dkms remove {mv} -k {k2} && ! modinfo -k {k2} {GOOD_MOD} >/dev/null 2>&1 && \
             dkms status | grep -q '^{mv}, {k1}, .*: installed'"
        )),
    );
    ck.progress(&format!("kernel-install add {k2}"));
    ck.cmd(
        &format!("`kernel-install add {k2}` rebuilds {GOOD_MOD}"),
        &c.run(&format!(
            "kernel-install add {k2} /boot/vmlinuz-{k2} && {}",
            vermagic_is(GOOD_MOD, k2)
        )),
    );
    let out = c.run(&format!("kernel-install remove {k2}"));
    ck.cmd(&format!("`kernel-install remove {k2}` succeeds"), &out);
    ck.cmd(
        &format!("... and drops {GOOD_MOD} for {k2}"),
        &c.run(&format!(
            "{} && ! dkms status | grep -qF ', {k2},'",
            no_module_file(GOOD_MOD, k2)
        )),
    );

    // --- removing the vendor package (dh_dkms prerm: dkms remove --all) ---
    ck.progress(&format!("removing {GOOD_PKG}"));
    let out = c.run(&format!(
        "kernel-install add {k2} /boot/vmlinuz-{k2} && {}",
        vermagic_is(GOOD_MOD, k2)
    ));
    ck.cmd(&format!("`kernel-install add {k2}` again"), &out);
    let out = c.run(&format!("{REMOVE} {GOOD_PKG}"));
    ck.cmd(&format!("{GOOD_PKG} is removed"), &out);
    ck.cmd(
        &format!("{GOOD_MOD} is gone from the modules and from status"),
        &c.run(&format!(
            "test -z \"$(find /lib/modules -name '{GOOD_MOD}.ko*')\" && ! dkms status | grep -q '^{GOOD_MOD}/'"
        )),
    );

    // --- removing modsync leaves harmless conffile hooks behind ---
    ck.progress("removing modsync, then a kernel");
    // a hold of the boot guard in force (a systemd-boot default of its own)
    ck.cmd(
        "a boot guard hold is planted",
        &c.run(r#"mkdir -p /efi/loader/entries /var/lib/dkms/.modsync
printf 'timeout 3\n# modsync boot guard: x missing for kernel K1; removed when lifted\ndefault k0.conf\n' > /efi/loader/loader.conf
printf 'kernel = "K0"\nnewest = "K1"\nmissing = ["x"]\nloader = "systemd-boot"\nsince = 1\n[change]\nkind = "loader-conf"\npath = "/efi/loader/loader.conf"\n' \
    > /var/lib/dkms/.modsync/boot-guard.toml"#),
    );
    let out = c.run(&format!("{REMOVE} modsync"));
    ck.cmd("modsync is removed (its conffile hooks stay until purge)", &out);
    ck.cmd(
        "removing modsync lifts the boot guard's hold (its prerm)",
        &c.run(
            "[ \"$(cat /efi/loader/loader.conf)\" = 'timeout 3' ] && ! test -e /var/lib/dkms/.modsync/boot-guard.toml",
        ),
    );
    let out = c.run(&format!(
        "test -e /etc/kernel/prerm.d/50-modsync && {REMOVE} linux-image-{k2} linux-headers-{k2}"
    ));
    ck.cmd("a kernel is removed while only modsync's conffiles are left", &out);
    ck.cmd("dpkg --audit is clean at the end", &c.run(AUDIT_CLEAN));
    let out = c.run("apt-get purge -y -q modsync && test ! -e /etc/kernel/postinst.d/50-modsync");
    ck.cmd("purging modsync removes its hooks", &out);
    ck.cmd(
        "... and modsync.service's enablement",
        &c.run(&format!("test ! -e /etc/systemd/system/multi-user.target.wants/{UNIT}")),
    );
}

const UNIT: &str = "modsync.service";
const UNIT_FILE: &str = "/lib/systemd/system/modsync.service";

/// Man pages, completions, dkms's autoinstaller path and the boot unit, as installed.
fn package_extras(c: &Chroot, ck: &mut Checks) {
    for name in ["dkms", "modsync"] {
        let out = c.run(&format!("man -w {name} && man {name} | grep -q 'EXIT STATUS'"));
        ck.cmd(&format!("`man -w {name}` finds the page, which has EXIT STATUS"), &out);
        let out = c.run(&format!(
            "bash -ic '. /usr/share/bash-completion/bash_completion && __load_completion {name} && complete -p {name}'"
        ));
        ck.truth(
            &format!("bash-completion loads a completion for `{name}`"),
            out.ok && out.output.contains(&format!(" -F _{name} {name}")),
            &out.output,
        );
    }
    let out = c.run("/usr/lib/dkms/dkms_autoinstaller start 6.0.0-noheaders; echo rc=$?");
    ck.truth(
        "dkms_autoinstaller: a kernel without headers is skipped with dkms's message, exit 0",
        out.output.contains(
            "Automatic installation of modules for kernel 6.0.0-noheaders was skipped since the kernel headers for this kernel do not seem to be installed.",
        ) && out.output.trim_end().ends_with("rc=0"),
        &out.output,
    );
    let out = c.run(&format!("systemctl is-enabled {UNIT}"));
    ck.truth(
        &format!("{UNIT} is enabled by the package"),
        out.ok && out.output.trim() == "enabled",
        &out.output,
    );
    ck.cmd(
        &format!("`systemd-analyze verify` passes on {UNIT_FILE}"),
        &c.run(&format!("systemd-analyze verify {UNIT_FILE}")),
    );
}

/// Headers installed while no modsync hook ran leave the module unbuilt;
/// the unit's ExecStart (with `-k K`: the chroot runs the host's kernel)
/// builds and installs it, and a second run does nothing, silently.
fn boot_safety_net(c: &Chroot, ck: &mut Checks, mv: &str, k: &str) {
    ck.progress(&format!(
        "headers of {k} reinstalled with the hooks moved aside; then the boot unit"
    ));
    let aside = "/etc/kernel/header_postinst.d /usr/share/kernel/header_postinst.d";
    let out = c.run(&format!(
        "dkms remove {mv} -k {k} && \
         for d in {aside}; do mv $d/50-modsync $d/.50-modsync.aside; done && \
         {APT} --reinstall linux-headers-{k}; rc=$?; \
         for d in {aside}; do mv $d/.50-modsync.aside $d/50-modsync; done; \
         [ $rc = 0 ] && {}",
        no_module_file(GOOD_MOD, k)
    ));
    ck.cmd(
        &format!("with no hook, reinstalling linux-headers-{k} leaves {GOOD_MOD} unbuilt"),
        &out,
    );
    let exec_start = format!("$(sed -n 's/^ExecStart=//p' {UNIT_FILE})");
    let out = c.run(&format!("{exec_start}; echo rc=$?"));
    ck.truth(
        "ExecStart alone (the host's kernel, no headers in the chroot) names the headers and exits 0",
        out.output.contains("headers") && out.output.trim_end().ends_with("rc=0"),
        &out.output,
    );
    // the broken driver fails again for this kernel: exit 11, as autoinstall
    let out = c.run(&format!("{exec_start} -k {k}; echo rc=$?"));
    ck.truth(
        &format!("ExecStart -k {k} builds what is missing (exit 11: {BAD_MOD} still fails)"),
        out.output.contains(mv) && out.output.trim_end().ends_with("rc=11"),
        &out.output,
    );
    ck.cmd(
        &format!("... and {GOOD_MOD} is installed for {k}"),
        &c.run(&vermagic_is(GOOD_MOD, k)),
    );
    let out = c.run(&format!("{exec_start} -k {k}; echo rc=$?"));
    ck.truth(
        "a second run has nothing to do: no output, exit 0",
        out.output.trim() == "rc=0",
        &out.output,
    );
}

fn vermagic_is(module: &str, kver: &str) -> String {
    format!("modinfo -k {kver} -F vermagic {module} | grep '^{kver} '")
}

fn no_module_file(module: &str, kver: &str) -> String {
    format!("test -z \"$(find /lib/modules/{kver} -name '{module}.ko*' 2>/dev/null)\"")
}

/// A `dkms status` line `MV, KVER, ARCH: installed` is there.
fn status_says_installed(status: &str, mv: &str, kver: &str) -> bool {
    let prefix = format!("{mv}, {kver}, ");
    status
        .lines()
        .any(|l| l.starts_with(&prefix) && l.ends_with(": installed"))
}

/// `status --json` has a `failed` entry of the broken driver for KVER with
/// the path of its make.log.
fn json_failed_for(json: &str, kver: &str) -> bool {
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_str::<serde_json::Value>(json) else {
        return false;
    };
    entries.iter().any(|e| {
        e["module"].as_str().is_some_and(|m| m.starts_with(BAD_MOD))
            && e["kernel"].as_str() == Some(kver)
            && e["state"].as_str() == Some("failed")
            && e["make_log"].as_str().is_some_and(|l| l.ends_with("make.log"))
    })
}

/// `modsync log --json` has an entry of a kernel hook (apt's or kernel-install's) for `module` and `kver` with `result`.
fn history_has(json: &str, module: &str, kver: &str, result: &str) -> bool {
    let Ok(serde_json::Value::Array(entries)) = serde_json::from_str::<serde_json::Value>(json) else {
        return false;
    };
    entries.iter().any(|e| {
        e["module"].as_str().is_some_and(|m| m.starts_with(module))
            && e["kernel"].as_str() == Some(kver)
            && e["result"].as_str() == Some(result)
            && e["trigger"]
                .as_str()
                .is_some_and(|t| t.starts_with("apt ") || t.starts_with("kernel-install "))
    })
}

/// A build failure must point at a make.log that exists and, when apt itself
/// does not print the package name (a kernel install), name the module.
fn check_failure_reported(c: &Chroot, ck: &mut Checks, when: &str, output: &str, name_check: bool) {
    if name_check {
        ck.truth(
            &format!("{when}: the output names the failing module ({BAD_MOD})"),
            output.to_lowercase().contains(BAD_MOD),
            output,
        );
    }
    let logs = make_log_paths(output);
    let existing = logs.iter().any(|p| c.run(&format!("test -s {}", q(p))).ok);
    ck.truth(
        &format!("{when}: the output gives the path of an existing make.log"),
        existing,
        &format!("make.log paths found: {logs:?}\n{output}"),
    );
}

/// Absolute paths ending in make.log mentioned in `text`.
fn make_log_paths(text: &str) -> Vec<String> {
    text.split(|ch: char| ch.is_whitespace() || "'\"`()[]<>,;".contains(ch))
        .map(|w| w.trim_end_matches(['.', ':']))
        .filter(|w| w.starts_with('/') && w.ends_with("make.log"))
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------
// host side: the .deb, the base tarball

fn host_ok(cmd: &mut Command) -> String {
    let desc = format!("{cmd:?}");
    let out = host(cmd);
    assert!(out.ok, "{desc} failed:\n{}", tail(&out.output, 80));
    out.output
}

/// `$MODSYNC_DEB`, or a fresh package of the binary under test and the
/// checkout's hooks, made by packaging/build-deb (a few seconds; it is never
/// outdated).
fn modsync_deb() -> PathBuf {
    if let Some(p) = env::var_os("MODSYNC_DEB") {
        let p = PathBuf::from(p);
        require(TEST, p.is_file(), &format!("MODSYNC_DEB={} is not a file", p.display()));
        return p;
    }
    let out_dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("apt");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/build-deb");
    let mut cmd = Command::new(&script);
    cmd.arg("-o")
        .arg(&out_dir)
        .env("MODSYNC_BIN", env!("CARGO_BIN_EXE_modsync"));
    let out = host(&mut cmd);
    assert!(out.ok, "{} failed:\n{}", script.display(), tail(&out.output, 40));
    let path = out
        .output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".deb") && l.starts_with('/'))
        .unwrap_or("")
        .to_string();
    assert!(
        Path::new(&path).is_file(),
        "build-deb printed no .deb path:\n{}",
        out.output
    );
    PathBuf::from(path)
}

/// URIs of the host's Debian sources (deb822 and one-line formats).
fn host_debian_uris() -> Vec<String> {
    let os = fs::read_to_string("/etc/os-release").unwrap_or_default();
    if !os.lines().any(|l| l == "ID=debian") {
        return Vec::new();
    }
    let mut uris = Vec::new();
    for f in ["/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"] {
        for line in fs::read_to_string(f).unwrap_or_default().lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("URIs:") {
                uris.extend(rest.split_whitespace().map(str::to_string));
            } else if let Some(rest) = line.strip_prefix("deb ") {
                if let Some(uri) = rest.split_whitespace().find(|w| !w.starts_with('[')) {
                    uris.push(uri.to_string());
                }
            }
        }
    }
    uris
}

fn mirrors() -> (String, String) {
    let uris = host_debian_uris();
    let main = env::var("MODSYNC_TEST_MIRROR").ok().unwrap_or_else(|| {
        uris.iter()
            .find(|u| !u.contains("security"))
            .cloned()
            .unwrap_or_else(|| DEFAULT_MIRROR.into())
    });
    let security = env::var("MODSYNC_TEST_SECURITY_MIRROR").ok().unwrap_or_else(|| {
        uris.iter()
            .find(|u| u.contains("security"))
            .cloned()
            .unwrap_or_else(|| DEFAULT_SECURITY_MIRROR.into())
    });
    (main, security)
}

/// The debootstrap minbase tarball, made once and cached.
fn base_tarball(ck: &Checks) -> PathBuf {
    let cache = Path::new(CACHE);
    let tarball = cache.join(BASE_TARBALL);
    if fs::metadata(&tarball).map(|m| m.len() > 0).unwrap_or(false) {
        return tarball;
    }
    fs::create_dir_all(cache).expect("create the test cache dir");
    let (mirror, _) = mirrors();
    let build = cache.join(format!("build.{}", std::process::id()));
    let _ = fs::remove_dir_all(&build);
    ck.progress(&format!(
        "debootstrap {SUITE} from {mirror} (once; cached as {})",
        tarball.display()
    ));
    let out = host(
        Command::new("debootstrap")
            .arg("--variant=minbase")
            .arg(format!("--include={BASE_PACKAGES}"))
            .arg(SUITE)
            .arg(&build)
            .arg(&mirror),
    );
    require(
        TEST,
        out.ok,
        &format!(
            "debootstrap {SUITE} from {mirror} failed (no mirror?):\n{}",
            tail(&out.output, 30)
        ),
    );
    // Services must not start inside the chroot.
    let policy = build.join("usr/sbin/policy-rc.d");
    fs::write(&policy, "#!/bin/sh\nexit 101\n").expect("write policy-rc.d");
    host_ok(Command::new("chmod").arg("755").arg(&policy));
    let partial = cache.join(format!("{BASE_TARBALL}.{}", std::process::id()));
    host_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&build)
            .arg("-cf")
            .arg(&partial)
            .arg("."),
    );
    fs::rename(&partial, &tarball).expect("move the tarball into place");
    host_ok(Command::new("rm").args(["-rf", "--one-file-system"]).arg(&build));
    tarball
}

// ---------------------------------------------------------------------------
// the chroot

struct Chroot {
    root: PathBuf,
    mounts: Vec<PathBuf>,
}

impl Chroot {
    fn create(tarball: &Path) -> Chroot {
        let parent = Path::new(CACHE).join("tmp");
        fs::create_dir_all(&parent).expect("create the chroot's parent dir");
        let root = parent.join(format!("apt-chroot.{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).expect("create the chroot dir");
        let mut c = Chroot {
            root,
            mounts: Vec::new(),
        };
        host_ok(Command::new("tar").arg("-C").arg(&c.root).arg("-xf").arg(tarball));

        // apt: sources for this suite, the host's proxy/validity settings, DNS.
        let (mirror, security) = mirrors();
        let _ = fs::remove_file(c.host_path("/etc/apt/sources.list.d/debian.sources"));
        fs::write(
            c.host_path("/etc/apt/sources.list"),
            format!(
                "deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\ndeb {security} {SUITE}-security main\n"
            ),
        )
        .expect("write sources.list");
        let host_conf = host(Command::new("apt-config").arg("dump")).output;
        let keep: String = host_conf
            .lines()
            .filter(|l| {
                [
                    "Acquire::http::Proxy",
                    "Acquire::https::Proxy",
                    "Acquire::Check-Valid-Until",
                    "Acquire::Check-Date",
                ]
                .iter()
                .any(|k| l.starts_with(&format!("{k} ")))
            })
            .map(|l| format!("{l}\n"))
            .collect();
        fs::write(c.host_path("/etc/apt/apt.conf.d/00modsync-test-host"), keep).expect("write apt conf");
        if let Ok(resolv) = fs::read("/etc/resolv.conf") {
            let dst = c.host_path("/etc/resolv.conf");
            let _ = fs::remove_file(&dst);
            fs::write(dst, resolv).expect("write resolv.conf");
        }

        fs::create_dir_all(deb_cache()).expect("create the .deb cache");
        share_debs(&deb_cache(), &c.host_path(APT_ARCHIVES));
        // the kernel images tests/setup.sh downloaded
        share_debs(&Path::new(CACHE).join("debs"), &c.host_path(APT_ARCHIVES));
        c.mount(&["-t", "proc", "proc"], "/proc");
        c.mount(&["-t", "sysfs", "sys"], "/sys");
        c.mount(&["--bind", "/dev"], "/dev");
        c.mount(&["--bind", "/dev/pts"], "/dev/pts");

        let up = c.run("apt-get update -q");
        require(
            TEST,
            up.ok,
            &format!(
                "apt-get update in the chroot failed (no mirror?):\n{}",
                indent(&tail(&up.output, 40))
            ),
        );
        c
    }

    fn host_path(&self, p: &str) -> PathBuf {
        self.root.join(p.trim_start_matches('/'))
    }

    fn mount(&mut self, args: &[&str], inside: &str) {
        let target = self.host_path(inside);
        fs::create_dir_all(&target).expect("create a mount point");
        host_ok(Command::new("mount").args(args).arg(&target));
        self.mounts.push(target);
    }

    /// Runs a bash script as root in the chroot with a clean environment;
    /// stdout and stderr are captured together, stdin is /dev/null.
    fn run(&self, script: &str) -> Outcome {
        let mut cmd = Command::new("chroot");
        cmd.arg(&self.root)
            .args(["/usr/bin/env", "-i"])
            .arg(format!("PATH={PATH_IN_CHROOT}"))
            .args(["HOME=/root", "LC_ALL=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"]);
        for var in [
            "http_proxy",
            "https_proxy",
            "no_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "NO_PROXY",
        ] {
            if let Ok(v) = env::var(var) {
                cmd.arg(format!("{var}={v}"));
            }
        }
        cmd.args(["/bin/bash", "-c", &format!("exec 2>&1\n{script}")]);
        host(&mut cmd)
    }
}

const APT_ARCHIVES: &str = "/var/cache/apt/archives";

/// Where the .debs apt downloaded are kept between runs.
fn deb_cache() -> PathBuf {
    Path::new(CACHE).join("archives")
}

/// Adds the .debs of `from` that `to` lacks, as hard links when possible.
/// Each run has its own apt cache (seeded from, and harvested into, the
/// shared one), so concurrent runs never wait on apt's archives lock.
fn share_debs(from: &Path, to: &Path) {
    let Ok(entries) = fs::read_dir(from) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let dst = to.join(&name);
        if !name.ends_with(".deb") || name.starts_with("modsync_") || dst.exists() {
            continue;
        }
        let tmp = to.join(format!(".{name}.{}", std::process::id()));
        let placed = fs::hard_link(e.path(), &tmp).is_ok() || fs::copy(e.path(), &tmp).is_ok();
        if !placed || fs::rename(&tmp, &dst).is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }
}

impl Drop for Chroot {
    fn drop(&mut self) {
        share_debs(&self.host_path(APT_ARCHIVES), &deb_cache());
        for m in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
        let still_mounted: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
            .filter(|mp| Path::new(mp).starts_with(&self.root))
            .collect();
        if !still_mounted.is_empty() {
            eprintln!(
                "apt: not deleting {}: still mounted: {still_mounted:?}",
                self.root.display()
            );
        } else if env::var("MODSYNC_TEST_KEEP").is_ok_and(|v| v == "1") {
            eprintln!("apt: chroot kept in {}", self.root.display());
        } else {
            let _ = Command::new("rm")
                .args(["-rf", "--one-file-system"])
                .arg(&self.root)
                .status();
        }
    }
}

#[test]
fn output_helpers() {
    let out = "Error! Bad return status for module build on kernel: 6.1.0-56-amd64 (x86_64)\n\
               Consult /var/lib/dkms/openrazer-driver/3.5.1/build/make.log for more information.\n\
               log: '/var/lib/dkms/x/1/6.1.0-56-amd64/x86_64/log/make.log'";
    assert_eq!(
        make_log_paths(out),
        vec![
            "/var/lib/dkms/openrazer-driver/3.5.1/build/make.log",
            "/var/lib/dkms/x/1/6.1.0-56-amd64/x86_64/log/make.log"
        ]
    );
    assert!(make_log_paths("see make.log").is_empty());
    let status = "v4l2loopback/0.12.7, 6.1.0-56-amd64, x86_64: installed\nfoo/1: added\n";
    assert!(status_says_installed(status, "v4l2loopback/0.12.7", "6.1.0-56-amd64"));
    assert!(!status_says_installed(status, "v4l2loopback/0.12.7", "6.1.0-54-amd64"));
}
