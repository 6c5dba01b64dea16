//! The classifier on excerpts of real make.logs (Debian 12, the 6.1 and
//! 6.12 kernels' headers, Debian's *-dkms sources), one test per class.

use super::*;

const GCC12: &str = "x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0";
const HOST12: &str = "gcc (Debian 12.2.0-14+deb12u1) 12.2.0";

fn facts<'a>(m: &'a str, k: &'a str, code: i32, log: &'a str) -> Facts<'a> {
    Facts {
        module: m,
        version: "1.0",
        kernel: k,
        code,
        message: "building failed: `make` exited with status 2.",
        log,
        log_path: "/var/lib/dkms/m/1.0/build/make.log",
        build_dir: "/var/lib/dkms/m/1.0/build",
        kernel_cc: Some(GCC12),
        host_cc: Some(HOST12),
        family: Some(Family::Debian),
        headers_hint: Some("apt install linux-headers-6.12.118+deb12-amd64"),
    }
}

fn section(description: &str, command: &str, output: &str, exit: i32) -> String {
    format!(
        "\n{description}\n# command: {command}\n{output}\n\n# exit code: {exit}\n# elapsed time: 00:00:01\n{}\n",
        crate::build::makelog::RULE
    )
}

/// openrazer-driver 3.5.1 against 6.1.0-56 (hid_report_raw_event gained an argument).
const OPENRAZER: &str = "  CC [M]  /var/lib/dkms/m/1.0/build/driver/razerkbd_driver.o
In file included from /usr/src/linux-headers-6.1.0-56-common/include/linux/hid.h:29,
                 from /var/lib/dkms/m/1.0/build/driver/razerkbd_driver.c:13:
/var/lib/dkms/m/1.0/build/driver/razerkbd_driver.c: In function 'razer_raw_event':
/var/lib/dkms/m/1.0/build/driver/razerkbd_driver.c:3124:29: error: too few arguments to function 'hid_report_raw_event'
 3124 |                             hid_report_raw_event(hdev, HID_INPUT_REPORT, data, size, 0);
/usr/src/linux-headers-6.1.0-56-common/include/linux/hid.h:1210:5: note: declared here
/var/lib/dkms/m/1.0/build/driver/razerkbd_driver.c:3128:29: error: too few arguments to function 'hid_report_raw_event'
make[2]: *** [/usr/src/linux-headers-6.1.0-56-common/scripts/Makefile.build:255: /var/lib/dkms/m/1.0/build/driver/razerkbd_driver.o] Error 1";

#[test]
fn a_driver_error_in_its_own_source_is_a_kernel_it_does_not_support() {
    let log = section("Building module(s)", "make driver", OPENRAZER, 2);
    let d = classify(&facts("openrazer-driver", "6.1.0-56-amd64", 10, &log));
    assert_eq!(d.class, Class::KernelUnsupported);
    assert_eq!(d.file.as_deref(), Some("driver/razerkbd_driver.c"));
    assert!(
        d.reason
            .contains("driver/razerkbd_driver.c:3124: too few arguments to function 'hid_report_raw_event'"),
        "{}",
        d.reason
    );
    assert!(d.advice.contains(
        "this driver version does not build for kernel 6.1.0-56-amd64; a newer version of the driver is needed"
    ));
    assert_eq!(d.quote.len(), 1);
    assert!(!d.advice.contains("Note:"), "same compiler: no note");
    let owned = d.clone().with_owner(Some("openrazer-driver-dkms"), Family::Debian);
    assert_eq!(owned.package.as_deref(), Some("openrazer-driver-dkms"));
    assert!(owned.advice.contains("package openrazer-driver-dkms"));
    assert_eq!(d.clone().with_owner(None, Family::Debian), d);
}

#[test]
fn errors_in_the_kernel_headers_are_not_the_drivers_file() {
    // vpoll 0.1 against 6.12: a header's line comes first, the driver's error after it
    let log = section(
        "Building module(s)",
        "make -C /lib/modules/6.12.118+deb12-amd64/build M=/var/lib/dkms/m/1.0/build",
        "./include/linux/device/class.h:228:29: error: conflicting types for 'class_create'
/var/lib/dkms/m/1.0/build/vpoll.c:112:31: error: too many arguments to function 'class_create'
cc1: some warnings being treated as errors",
        2,
    );
    let d = classify(&facts("vpoll", "6.12.118+deb12-amd64", 10, &log));
    assert_eq!(d.class, Class::KernelUnsupported);
    assert_eq!(d.file.as_deref(), Some("vpoll.c"));
    // a driver built from its own directory logs relative paths
    let log = "ddcci.c:42:34: error: macro \"DEFINE_SEMAPHORE\" requires 2 arguments, but only 1 given\n";
    let d = classify(&facts("ddcci", "6.12.118+deb12-amd64", 10, log));
    assert_eq!(
        (d.class, d.file.as_deref()),
        (Class::KernelUnsupported, Some("ddcci.c"))
    );
    // a symbol the kernel no longer exports
    let log = "ERROR: modpost: \"strlcpy\" [/var/lib/dkms/m/1.0/build/v4l2loopback.ko] undefined!\n";
    let d = classify(&facts("v4l2loopback", "6.12.118+deb12-amd64", 10, log));
    assert_eq!((d.class, d.file), (Class::KernelUnsupported, None));
    assert!(d.reason.contains("does not export"));
}

#[test]
fn a_missing_compiler_or_make_names_its_package() {
    // a 6.1 build where gcc-12 is not installed (the kernel's CC is gcc-12)
    let log = section(
        "Building module(s)",
        "make KERNELRELEASE=6.1.0-56-amd64 -C /lib/modules/6.1.0-56-amd64/build M=/var/lib/dkms/m/1.0/build",
        "  CC [M]  /var/lib/dkms/m/1.0/build/vpoll.o\n/bin/sh: 1: gcc-12: not found\nmake[1]: *** [/usr/src/linux-headers-6.1.0-56-common/scripts/Makefile.build:255: /var/lib/dkms/m/1.0/build/vpoll.o] Error 127",
        2,
    );
    let mut f = facts("vpoll", "6.1.0-56-amd64", 10, &log);
    f.host_cc = None;
    let d = classify(&f);
    assert_eq!(
        (d.class, d.package.as_deref()),
        (Class::CompilerMissing, Some("gcc-12"))
    );
    assert!(d.advice.contains("apt install gcc-12"), "{}", d.advice);
    f.family = Some(Family::Arch);
    let log = "make[2]: x86_64-pc-linux-gnu-gcc-14: No such file or directory\n";
    f.log = log;
    let d = classify(&f);
    assert_eq!((d.class, d.package.as_deref()), (Class::CompilerMissing, Some("gcc")));
    assert!(d.advice.contains("pacman -S gcc"));
    f.log = "bash: line 1: make: command not found\n";
    f.family = Some(Family::RedHat);
    let d = classify(&f);
    assert_eq!((d.class, d.package.as_deref()), (Class::MakeMissing, Some("make")));
    assert!(d.advice.contains("dnf install make"));
    // kbuild's other programs: pahole makes the BTF of 6.12's modules
    f.log = "  BTF [M] /var/lib/dkms/m/1.0/build/hello.ko\n/bin/sh: 1: pahole: not found\nmake[2]: *** [/usr/src/linux-headers-6.12.118+deb12-common/scripts/Makefile.modfinal:64: hello.ko] Error 127\n";
    f.family = Some(Family::Debian);
    let d = classify(&f);
    assert_eq!((d.class, d.package.as_deref()), (Class::ToolMissing, Some("pahole")));
    assert!(d.advice.contains("apt install pahole"), "{}", d.advice);
    f.family = Some(Family::RedHat);
    assert_eq!(classify(&f).package.as_deref(), Some("dwarves"));
    assert_eq!(Class::ToolMissing.name(), "tool-missing");
    // a missing header of the driver is not a missing program
    f.log = "/var/lib/dkms/m/1.0/build/x.c:1:10: fatal error: xtables.h: No such file or directory\n";
    assert_eq!(classify(&f).class, Class::KernelUnsupported);
}

#[test]
fn a_makefile_looking_for_absent_headers_names_their_package() {
    // ddcci 0.4.2 (its Makefile uses /lib/modules/K/build) for a kernel whose headers are elsewhere
    let log = section(
        "Building module(s)",
        "make KERNELRELEASE=6.12.118+deb12-amd64 KVER=6.12.118+deb12-amd64 -C /var/lib/dkms/ddcci/0.4.2/build",
        "make -C \"/lib/modules/6.12.118+deb12-amd64/build\" M=\"/var/lib/dkms/ddcci/0.4.2/build/ddcci\" modules
make[2]: Entering directory '/var/lib/dkms/ddcci/0.4.2/build/ddcci'
make[2]: *** /lib/modules/6.12.118+deb12-amd64/build: No such file or directory.  Stop.
make[1]: *** [Makefile:38: ddcci.ko] Error 2",
        2,
    );
    let d = classify(&facts("ddcci", "6.12.118+deb12-amd64", 10, &log));
    assert_eq!(d.class, Class::HeadersMissing);
    assert_eq!(d.package.as_deref(), Some("linux-headers-6.12.118+deb12-amd64"));
    assert!(
        d.reason
            .contains("in /lib/modules/6.12.118+deb12-amd64/build, which does not exist"),
        "{}",
        d.reason
    );
    assert!(
        d.advice.contains("`apt install linux-headers-6.12.118+deb12-amd64`"),
        "{}",
        d.advice
    );
}

#[test]
fn a_failed_pre_build_is_quoted_in_its_own_words() {
    // iptables-netflow 2.6's configure without libxtables-dev (its real output)
    let log = section(
        "Running the pre_build script",
        "cd /var/lib/dkms/ipt-netflow/2.6/build/ && /var/lib/dkms/ipt-netflow/2.6/build/./configure --from-dkms-conf=/lib/modules/6.1.0-56-amd64/build --prefix=/usr",
        "Module version: 2.6
Iptables binary version: 1.8.9 (legacy) (detected from /usr/sbin/iptables-legacy)
pkg-config for version 1.8.9 (legacy) exists: No
Check for working gcc: Yes (x86_64-linux-gnu-gcc-12)
Checking for presence of xtables.h... No
Checking for presence of iptables.h... No
! Iptables headers not found. You may need to specify --ipt-inc=...
! 
! Under Debian simply run this:
!   root# apt-get install libxtables-dev pkg-config",
        1,
    ) + &section(
        "Building module(s)",
        "make KERNELRELEASE=6.1.0-56-amd64 ipt_NETFLOW.ko",
        "make: *** No rule to make target 'ipt_NETFLOW.ko'.  Stop.",
        2,
    );
    let d = classify(&facts("ipt-netflow", "6.1.0-56-amd64", 10, &log));
    assert_eq!(d.class, Class::PreBuildFailed);
    assert!(
        d.reason.contains("(configure) failed with exit status 1"),
        "{}",
        d.reason
    );
    assert_eq!(
        d.quote,
        vec![
            "! Iptables headers not found. You may need to specify --ipt-inc=...",
            "! Under Debian simply run this:",
            "!   root# apt-get install libxtables-dev pkg-config",
        ]
    );
    assert_eq!(d.package.as_deref(), Some("libxtables-dev"));
    // a script that says nothing marked: its last lines
    let log = section("Running the pre_build script", "cd /b/ && /b/prep.sh", "one\ntwo", 3);
    let d = classify(&facts("m", "6.1", 10, &log));
    assert_eq!(
        (d.class, d.quote.clone(), d.package),
        (Class::PreBuildFailed, vec!["one".to_string(), "two".to_string()], None)
    );
}

#[test]
fn disk_full_signing_and_missing_modules() {
    let log = "/var/lib/dkms/m/1.0/build/vpoll.c:120:1: fatal error: error writing to /tmp/ccQ2bX.s: No space left on device\n";
    let d = classify(&facts("vpoll", "6.1", 10, log));
    assert_eq!(
        d.class,
        Class::DiskFull,
        "disk full wins over the error line in the driver's file"
    );
    assert!(d.advice.contains("free space"));
    let mut f = facts("m", "6.1", 1, "");
    f.message = "copying /var/lib/dkms/m/1.0/build/m.ko to /var/lib/dkms/m/1.0/6.1/x86_64.tmp: No space left on device (os error 28)";
    assert_eq!(classify(&f).class, Class::DiskFull);
    // before make.log existed: the message alone, and nothing but a full disk
    assert_eq!(classify_message(&f).map(|d| d.class), Some(Class::DiskFull));
    f.message = "the headers of kernel 6.1 are not installed";
    f.host_cc = Some("gcc (GCC) 14.1.1");
    assert_eq!(
        classify(&f).class,
        Class::CompilerMismatch,
        "with a log, a differing gcc explains"
    );
    assert_eq!(classify_message(&f), None, "without one, it does not");
    let log = "At main.c:298:\n- SSL error:FFFFFFFF80000002:system library::No such file or directory: crypto/bio/bss_file.c:67\nsign-file: /var/lib/dkms/mok.key: No such file or directory\n";
    let d = classify(&facts("m", "6.1", 10, log));
    assert_eq!(d.class, Class::SigningFailed);
    assert!(d.advice.contains("mok_signing_key"));
    let mut f = facts("m", "6.1", 7, "  LD [M]  /var/lib/dkms/m/1.0/build/other.ko\n");
    f.message = "make succeeded but did not produce m.ko for kernel 6.1 (x86_64); check BUILT_MODULE_NAME";
    let d = classify(&f);
    assert_eq!(d.class, Class::ModuleMissing);
    assert!(d.reason.contains("did not produce m.ko"));
}

#[test]
fn a_compiler_other_than_the_kernels() {
    // an Arch kernel built with gcc 14, a machine with gcc 13
    let mut f = facts(
        "m",
        "6.10.0-arch1-1",
        10,
        "cc1: error: unrecognized command-line option '-fmin-function-alignment=16'\n",
    );
    f.kernel_cc = Some("gcc (GCC) 14.1.1 20240522");
    f.host_cc = Some("gcc (GCC) 13.2.1 20230801");
    f.family = Some(Family::Arch);
    let d = classify(&f);
    assert_eq!((d.class, d.package.as_deref()), (Class::CompilerMismatch, Some("gcc")));
    assert!(
        d.reason.contains("gcc (GCC) 14.1.1") && d.reason.contains("gcc (GCC) 13.2.1"),
        "{}",
        d.reason
    );
    assert!(d.advice.contains("pacman -S gcc"));
    // nothing else explains the failure: still the compiler
    f.log = "make: *** [Makefile:10: all] Error 2\n";
    assert_eq!(classify(&f).class, Class::CompilerMismatch);
    // an error in the driver's source: unsupported, with a note on the compiler
    f.log = "/var/lib/dkms/m/1.0/build/a.c:1:2: error: x\n";
    let d = classify(&f);
    assert_eq!(d.class, Class::KernelUnsupported);
    assert!(d.advice.contains("Note: the kernel was built with gcc (GCC) 14.1.1"));
    // Debian names the versioned package
    let mut f = facts("m", "6.1", 10, "cc1: error: unrecognized command-line option '-mfoo'\n");
    f.kernel_cc = Some("x86_64-linux-gnu-gcc-13 (Debian 13.2.0-25) 13.2.0");
    let d = classify(&f);
    assert_eq!(
        (d.class, d.package.as_deref()),
        (Class::CompilerMismatch, Some("gcc-13"))
    );
    // the same compiler and nothing known: unknown, quoting the errors
    let d = classify(&facts("m", "6.1", 10, "make: *** [Makefile:10: all] Error 2\n"));
    assert_eq!(d.class, Class::Unknown);
    assert_eq!(d.quote, vec!["make: *** [Makefile:10: all] Error 2"]);
    assert!(d.advice.contains("/var/lib/dkms/m/1.0/build/make.log"));
}

#[test]
fn exclusions_and_missing_headers_are_explained() {
    let d = excluded("m", "1.0", "6.12", "BUILD_EXCLUSIVE_KERNEL=\"^6\\.1\\.\"");
    assert_eq!(d.class, Class::Excluded);
    assert!(d.reason.contains("BUILD_EXCLUSIVE_KERNEL"));
    assert!(d.advice.contains("not a failure"));
    let d = headers_missing("m", "1.0", "6.12", "apt install linux-headers-6.12");
    assert_eq!(
        (d.class, d.package.as_deref()),
        (Class::HeadersMissing, Some("linux-headers-6.12"))
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["class"], "headers-missing");
    assert_eq!(Class::KernelUnsupported.name(), "kernel-unsupported");
    assert!(json.get("file").is_none(), "absent fields are left out");
    assert!(d.render().starts_with("Why: the headers of kernel 6.12"));
    assert!(d
        .render()
        .contains("\nWhat to do: install them (`apt install linux-headers-6.12`)"));
}

#[test]
fn tool_packages_per_distribution() {
    assert_eq!(tool_package(Family::Debian, "x86_64-linux-gnu-gcc-12"), "gcc-12");
    assert_eq!(tool_package(Family::Ubuntu, "cc"), "gcc");
    assert_eq!(tool_package(Family::Debian, "clang-16"), "clang-16");
    assert_eq!(tool_package(Family::RedHat, "gcc-13"), "gcc");
    assert_eq!(tool_package(Family::Arch, "make"), "make");
    assert_eq!(Family::Suse.install_command("gcc"), "zypper install gcc");
}

/// A driver whose own Makefile refuses the kernel with `$(error ...)`:
/// the refusal is quoted, the class is the kernel's; the kernel's own
/// makefiles refusing are not the driver's.
#[test]
fn a_makefile_refusing_the_kernel_is_quoted() {
    let log = "make[1]: Entering directory '/usr/src/linux-headers-6.12.118+deb12-amd64'
/var/lib/dkms/m/1.0/build/Makefile:4: *** m 1.0 does not support kernel 6.12: a newer version of the driver is needed.  Stop.
make[1]: *** [/usr/src/linux-headers-6.12.118+deb12-common/Makefile:1970: /var/lib/dkms/m/1.0/build] Error 2
make: *** [Makefile:10: all] Error 2
";
    let d = classify(&facts("m", "6.12", 10, log));
    assert_eq!(d.class, Class::KernelUnsupported);
    assert!(
        d.reason
            .contains("its own Makefile refuses to build: m 1.0 does not support kernel 6.12"),
        "{}",
        d.reason
    );
    assert_eq!(d.file.as_deref(), Some("Makefile"));
    assert!(d.quote[0].starts_with("/var/lib/dkms/m/1.0/build/Makefile:4: ***"));
    let kernel = "/usr/src/linux-headers-6.12.118+deb12-common/Makefile:700: *** compiler too old.  Stop.\n";
    assert_eq!(classify(&facts("m", "6.12", 10, kernel)).class, Class::Unknown);
}
