//! modsync's own settings in `/etc/modsync/config.toml`, each shown to
//! change what a real build does (so each would fail if it were read and
//! ignored): `parallel_jobs` bounds how many builds overlap, `debug_info`
//! keeps the compiler's debug information, `sign` and the MOK paths decide
//! whether and with which key modules are signed, `cache_max_mb` bounds the
//! build cache, and `update_initramfs` regenerates an image that holds a
//! changed module. (`cache` and `strict` are covered in `engine` and
//! `hostile`, `status_wording` by dkms's 3.4.3 suite in `upstream`.)

use crate::support::{modinfo, require_root, run, test_kernels, World};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Sets `key = value` lines in the world's config.toml, replacing the keys' old lines.
fn set(w: &World, lines: &str) {
    let p = w.p("etc/modsync/config.toml");
    let keys: Vec<&str> = lines
        .lines()
        .filter_map(|l| l.split('=').next())
        .map(str::trim)
        .collect();
    let mut kept: String = std::fs::read_to_string(&p)
        .unwrap()
        .lines()
        .filter(|l| !keys.contains(&l.split('=').next().unwrap_or("").trim()))
        .map(|l| format!("{l}\n"))
        .collect();
    kept.push_str(&format!("{lines}\n"));
    std::fs::write(&p, kept).unwrap();
}

/// Adds a one-file module `name/1.0` whose dkms.conf runs `pre` (shell) before make.
fn module(w: &World, name: &str, pre: &str, makefile_extra: &str) {
    let dir = w.p("src").join(format!("{name}-1.0"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("dkms.conf"),
        format!(
            "PACKAGE_NAME={name}\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]={name}\nDEST_MODULE_LOCATION[0]=/updates\n\
             AUTOINSTALL=yes\nMAKE[0]=\"{pre}make -C $kernel_source_dir M=$dkms_tree/{name}/1.0/build\"\n"
        ),
    )
    .unwrap();
    std::fs::write(dir.join("Makefile"), format!("obj-m := {name}.o\n{makefile_extra}")).unwrap();
    std::fs::write(
        dir.join(format!("{name}.c")),
        "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n",
    )
    .unwrap();
    w.ok(&["add", &format!("{name}/1.0")]);
}

/// The (start, end) times in nanoseconds that the build of each module wrote.
fn intervals(w: &World, names: &[&str]) -> Vec<(u128, u128)> {
    names
        .iter()
        .map(|n| {
            let t = std::fs::read_to_string(w.p(&format!("{n}.times"))).unwrap();
            let v: Vec<u128> = t.split_whitespace().map(|x| x.parse().unwrap()).collect();
            assert_eq!(v.len(), 2, "{n}: {t}");
            (v[0], v[1])
        })
        .collect()
}

#[test]
fn parallel_jobs_bounds_how_many_builds_overlap() {
    require_root("parallel_jobs");
    let ks = test_kernels();
    for (budget, overlap) in [(1, false), (2, true)] {
        let w = World::new(&ks[..1]);
        set(&w, &format!("parallel_jobs = {budget}"));
        for n in ["pa", "pb"] {
            // the build records when it starts and ends around a pause
            let times = w.p(&format!("{n}.times"));
            let pre = format!("date +%s%N > {t}; sleep 2; date +%s%N >> {t}; ", t = times.display());
            module(&w, n, &pre, "");
        }
        let o = w.ok(&["autoinstall", "-k", &ks[0]]);
        let i = intervals(&w, &["pa", "pb"]);
        let overlapped = i[0].0 < i[1].1 && i[1].0 < i[0].1;
        assert_eq!(
            overlapped,
            overlap,
            "parallel_jobs = {budget}: builds at {i:?}\n{}",
            o.show()
        );
    }
}

#[test]
fn debug_info_keeps_the_compilers_debug_information() {
    require_root("debug_info");
    let ks = test_kernels();
    let k = &ks[0];
    // the module's Makefile shows the KCFLAGS kbuild gets in the make.log
    let probe = "$(info modsync-kcflags=[$(KCFLAGS)])\n";
    for (setting, expected) in [
        (None, "modsync-kcflags=[-g0]"),
        (Some("debug_info = true"), "modsync-kcflags=[]"),
    ] {
        let w = World::new(&ks[..1]);
        if let Some(s) = setting {
            set(&w, s);
        }
        module(&w, "dbg", "", probe);
        w.ok(&["build", "dbg/1.0", "-k", k]);
        let log = std::fs::read_to_string(
            w.p("dkms")
                .join(format!("dbg/1.0/{k}/{}/log/make.log", crate::support::ARCH)),
        )
        .unwrap();
        assert!(
            log.contains(expected),
            "{setting:?}: expected {expected} in make.log:\n{log}"
        );
    }
}

#[test]
fn sign_and_the_mok_paths_decide_the_signature() {
    require_root("sign");
    let ks = test_kernels();
    let k = &ks[0];
    let w = World::new(&ks[..1]);
    module(&w, "msig", "", "");
    w.ok(&["install", "msig/1.0", "-k", k]);
    let ko = w.installed_ko(k, "msig").expect("installed");
    // the key is made where config.toml says, and the module carries its signature
    let cert = w.p("mok.pub");
    assert!(
        w.p("mok.key").is_file() && cert.is_file(),
        "no MOK at the configured paths"
    );
    let serial = run(Command::new("openssl")
        .args(["x509", "-inform", "DER", "-noout", "-serial", "-in"])
        .arg(&cert));
    assert_eq!(serial.code, 0, "{}", serial.show());
    let serial = serial
        .stdout
        .trim()
        .trim_start_matches("serial=")
        .trim_start_matches('0')
        .to_lowercase();
    let sig_key = modinfo("sig_key", &ko)
        .replace(':', "")
        .trim_start_matches('0')
        .to_lowercase();
    assert!(
        !sig_key.is_empty() && serial == sig_key,
        "module signed with key {sig_key}, certificate serial {serial}"
    );
    // sign = false: the same module, built again, carries no signature
    set(&w, "sign = false\ncache = false");
    w.ok(&["remove", "msig/1.0", "--all"]);
    w.ok(&["add", "msig/1.0"]);
    w.ok(&["install", "msig/1.0", "-k", k]);
    let ko = w.installed_ko(k, "msig").expect("installed");
    assert_eq!(modinfo("signer", &ko), "", "sign = false still signed");
}

#[test]
fn cache_max_mb_bounds_the_build_cache() {
    require_root("cache_max_mb");
    let ks = test_kernels();
    let k = &ks[0];
    for (limit, reused) in [(None, true), (Some("cache_max_mb = 0"), false)] {
        let w = World::new(&ks[..1]);
        if let Some(s) = limit {
            set(&w, s);
        }
        module(&w, "cm", "", "");
        w.ok(&["install", "cm/1.0", "-k", k]);
        w.ok(&["remove", "cm/1.0", "--all"]);
        w.ok(&["add", "cm/1.0"]);
        let o = w.ok(&["install", "cm/1.0", "-k", k]);
        assert_eq!(
            o.text().contains("reused the cached build"),
            reused,
            "{limit:?}:\n{}",
            o.show()
        );
        let show = w.ok(&["cache", "show"]);
        println!("{limit:?}: {}", show.stdout);
    }
}

/// Writes an `update-initramfs` into `bin` that records its arguments in `log`.
fn recording_tool(bin: &Path, log: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    let tool = bin.join("update-initramfs");
    std::fs::write(&tool, format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display())).unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn update_initramfs_regenerates_an_image_that_holds_a_changed_module() {
    require_root("update_initramfs");
    let ks = test_kernels();
    let k = &ks[0];
    for (setting, runs) in [("update_initramfs = true", true), ("update_initramfs = false", false)] {
        let w = World::new(&ks[..1]);
        set(&w, setting);
        // the world's kernel has an initramfs-tools image that asks for the module
        std::fs::create_dir_all(w.p("boot")).unwrap();
        std::fs::write(w.p("boot").join(format!("initrd.img-{k}")), b"").unwrap();
        std::fs::create_dir_all(w.p("etc/initramfs-tools")).unwrap();
        std::fs::write(w.p("etc/initramfs-tools/modules"), "ir\n").unwrap();
        module(&w, "ir", "", "");
        let bin = w.p("bin");
        let log = w.p("update-initramfs.log");
        recording_tool(&bin, &log);
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
        let o = run(w.cmd(&["install", "ir/1.0", "-k", k]).env("PATH", &path));
        assert_eq!(o.code, 0, "{}", o.show());
        let called = std::fs::read_to_string(&log).unwrap_or_default();
        assert_eq!(
            called.trim() == format!("-u -k {k}"),
            runs,
            "{setting}: update-initramfs called with {called:?}\n{}",
            o.show()
        );
    }
}
