//! The modules modsync builds load in the real kernel: hello (the bundled
//! example) and v4l2loopback (a real Debian dkms source, which needs the
//! kernel's own videodev) are built and installed with modsync into an
//! isolated tree for the newer test kernel, then the real Debian kernel
//! image boots under qemu (TCG) with a busybox initramfs whose /init
//! insmods them and their dependencies and reports what /proc/modules and
//! /sys say.
//!
//! Root only (real builds, depmod trees); needs what `tests/setup.sh`
//! prepares: headers, the extracted kernel image, qemu-system-x86_64 and a
//! static busybox. Without root it says SKIPPED and passes.

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use support::{dkms_source, image_dir, root_or_skip, run, run_ok, test_kernels, version_of, World};

const BUSYBOX: &str = "/bin/busybox";
const TIMEOUT_SECS: &str = "180";
const MARK: &str = "MODSYNC-RESULT";

/// The /init lines that insmod `module` and its dependencies (copied into
/// `initrd/m`, decompressed: busybox insmod cannot read compressed modules),
/// then report on it.
fn load_script(w: &World, k: &str, module: &str, initrd: &Path) -> String {
    let deps = run_ok(Command::new("modprobe").arg("-d").arg(w.root()).args([
        "-S",
        k,
        "--show-depends",
        module,
    ]));
    let mut script = String::new();
    for line in deps.lines() {
        let Some(path) = line
            .strip_prefix("insmod ")
            .and_then(|r| r.split_whitespace().next())
        else {
            continue; // "builtin x"
        };
        let name = Path::new(path)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let to = initrd.join("m").join(&name);
        fs::copy(path, &to).unwrap_or_else(|e| panic!("copying {path}: {e}"));
        let plain = match name.rsplit_once('.') {
            Some((base, "xz")) => {
                run_ok(Command::new("xz").arg("-d").arg(&to));
                base.to_string()
            }
            Some((base, "zst")) => {
                run_ok(Command::new("zstd").args(["-q", "-d", "--rm"]).arg(&to));
                base.to_string()
            }
            Some((base, "gz")) => {
                run_ok(Command::new("gzip").arg("-d").arg(&to));
                base.to_string()
            }
            _ => name,
        };
        script.push_str(&format!(
            "insmod /m/{plain} || echo \"{MARK} insmod-failed {plain}\"\n"
        ));
    }
    assert!(
        !script.is_empty(),
        "modprobe found no module file for {module}:\n{deps}"
    );
    let in_proc = module.replace('-', "_");
    script.push_str(&format!(
        "if grep -q '^{in_proc} ' /proc/modules; then echo \"{MARK} loaded {module}\"; else echo \"{MARK} failed {module}\"; fi\n"
    ));
    script
}

#[test]
fn built_modules_load_in_the_real_kernel() {
    if !root_or_skip("built_modules_load_in_the_real_kernel") {
        return;
    }
    let t0 = Instant::now();
    let k = test_kernels().pop().unwrap();
    let vmlinuz = image_dir(&k).join(format!("boot/vmlinuz-{k}"));
    assert!(
        vmlinuz.is_file(),
        "no kernel image {}; run `sudo tests/setup.sh`",
        vmlinuz.display()
    );
    assert!(
        Path::new(BUSYBOX).is_file(),
        "no {BUSYBOX}; install busybox-static (tests/setup.sh does)"
    );

    let w = World::new(std::slice::from_ref(&k));
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-1.0");
    let v4l = dkms_source("v4l2loopback");
    let v4l_mv = format!("v4l2loopback/{}", version_of(&v4l, "v4l2loopback"));
    w.ok(&["add", hello.to_str().unwrap()]);
    w.ok(&["add", v4l.to_str().unwrap()]);
    w.ok(&["install", "hello/1.0", "-k", &k]);
    w.ok(&["install", &v4l_mv, "-k", &k]);
    eprintln!(
        "[{:>3}s] built and installed hello and {v4l_mv} for {k}",
        t0.elapsed().as_secs()
    );

    let work = tempfile::tempdir().unwrap();
    let initrd = work.path().join("initrd");
    for d in ["bin", "proc", "sys", "dev", "m"] {
        fs::create_dir_all(initrd.join(d)).unwrap();
    }
    fs::copy(BUSYBOX, initrd.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "insmod", "mount", "poweroff", "cat", "echo", "grep", "dmesg", "ls",
    ] {
        std::os::unix::fs::symlink("busybox", initrd.join("bin").join(applet)).unwrap();
    }
    let mut init = String::from(
        "#!/bin/sh\nexport PATH=/bin\n\
         mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev\n",
    );
    for m in ["hello", "v4l2loopback"] {
        init.push_str(&load_script(&w, &k, m, &initrd));
    }
    init.push_str(&format!(
        "echo \"{MARK} hello-version $(cat /sys/module/hello/version)\"\n\
         dmesg | grep -q 'hello: modsync example module loaded' && echo \"{MARK} hello-said-hello\"\n\
         for d in /sys/class/video4linux/*; do echo \"{MARK} v4l-device $(cat $d/name)\"; done\n\
         echo \"{MARK} done\"\npoweroff -f\n"
    ));
    fs::write(initrd.join("init"), &init).unwrap();
    fs::set_permissions(initrd.join("init"), fs::Permissions::from_mode(0o755)).unwrap();
    let cpio = work.path().join("initrd.gz");
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "find . | cpio -o -H newc --quiet | gzip -1 > {}",
                cpio.display()
            ))
            .current_dir(&initrd),
    );

    let out = run(Command::new("timeout")
        .args(["--kill-after=10", TIMEOUT_SECS, "qemu-system-x86_64"])
        .args([
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-smp",
            "1",
            "-m",
            "768",
            "-nographic",
            "-no-reboot",
            "-kernel",
        ])
        .arg(&vmlinuz)
        .arg("-initrd")
        .arg(&cpio)
        .args(["-append", "console=ttyS0 quiet panic=-1"]));
    let console = out.text().replace('\r', "");
    eprintln!("[{:>3}s] qemu exited {}", t0.elapsed().as_secs(), out.code);
    let results: Vec<&str> = console
        .lines()
        .filter_map(|l| l.split_once(&format!("{MARK} ")).map(|(_, r)| r.trim()))
        .collect();
    let ctx = format!(
        "init script:\n{init}\nconsole (exit {}):\n{}",
        out.code,
        support::tail(&console, 80)
    );
    assert!(
        results.contains(&"done"),
        "the guest did not finish its /init within {TIMEOUT_SECS} s\n{ctx}"
    );
    for want in [
        "loaded hello",
        "loaded v4l2loopback",
        "hello-version 1.0",
        "hello-said-hello",
        "v4l-device Dummy video device (0x0000)",
    ] {
        assert!(
            results.contains(&want),
            "the guest did not report {want:?}; it reported {results:?}\n{ctx}"
        );
    }
    assert!(
        !results
            .iter()
            .any(|r| r.starts_with("insmod-failed") || r.starts_with("failed")),
        "{results:?}\n{ctx}"
    );
}
