//! modsync.toml against real Debian `*-dkms` sources: each dkms.conf is
//! converted (`modsync convert -o`), the dkms.conf removed, and the module
//! added and installed from the manifest alone in one world, from its
//! dkms.conf in another; both must install the same files with the same
//! modinfo, and remove takes them out again. Then the injection probe:
//! shell syntax in a manifest's values is passed literally or refused, and
//! no marker file ever appears; a dkms.conf beside the manifest is not even
//! sourced.

use crate::support::{dkms_source, modinfo, require_root, run_ok, test_kernels, version_of, World, ARCH};
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

const SOURCES: &[&str] = &["v4l2loopback", "ddcci", "vpoll"];

/// Every installed module file of kernel `k` under its `updates` directory,
/// with the modinfo fields that identify a build.
fn installed(w: &World, k: &str) -> BTreeMap<String, Vec<String>> {
    let dir = w.modules_dir(k).join("updates");
    walkdir::WalkDir::new(&dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(&dir).unwrap().display().to_string();
            let info = ["name", "vermagic", "srcversion", "depends", "license"]
                .iter()
                .map(|f| format!("{f}={}", modinfo(f, e.path())))
                .collect();
            (rel, info)
        })
        .collect()
}

/// Copies a real source into the world's source tree; returns (module, version, dir).
fn copy_source(w: &World, module: &str) -> (String, String, std::path::PathBuf) {
    let src = dkms_source(module);
    let v = version_of(&src, module);
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(w.p("src")));
    let dir = w.p("src").join(src.file_name().unwrap());
    (module.to_string(), v, dir)
}

#[test]
fn converted_manifests_install_what_the_dkms_conf_installs() {
    require_root("manifest against dkms.conf");
    let ks = test_kernels();
    let k = ks.last().unwrap().clone();
    let (from_conf, from_manifest) = (
        World::new(std::slice::from_ref(&k)),
        World::new(std::slice::from_ref(&k)),
    );
    for module in SOURCES {
        let (m, v, _) = copy_source(&from_conf, module);
        from_conf.ok(&["add", &format!("{m}/{v}")]);
        from_conf.ok(&["install", &format!("{m}/{v}"), "-k", &k]);

        let (m, v, dir) = copy_source(&from_manifest, module);
        let dir_s = dir.display().to_string();
        let o = from_manifest.ok(&["convert", &dir_s, "-k", &k, "-o"]);
        let manifest = fs::read_to_string(dir.join("modsync.toml")).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{m}\"")) && manifest.contains("[[module]]"),
            "{manifest}\n{}",
            o.show()
        );
        let values: String = manifest.lines().filter(|l| !l.starts_with('#')).collect();
        assert!(
            !values.contains(&k),
            "the kernel release became a placeholder:\n{manifest}"
        );
        fs::remove_file(dir.join("dkms.conf")).unwrap();
        from_manifest.ok(&["add", &format!("{m}/{v}")]);
        let o = from_manifest.ok(&["install", &format!("{m}/{v}"), "-k", &k]);
        assert!(
            from_manifest
                .status()
                .lines()
                .any(|l| l == format!("{m}/{v}, {k}, {ARCH}: installed")),
            "{}",
            o.show()
        );
    }
    let (a, b) = (installed(&from_conf, &k), installed(&from_manifest, &k));
    assert_eq!(a.len(), 4, "v4l2loopback, ddcci, ddcci-backlight, vpoll: {a:#?}");
    assert_eq!(a, b, "the same modules at the same places with the same modinfo");
    for info in a.values() {
        assert!(info[1].starts_with(&format!("vermagic={k} ")), "{info:?}");
    }
    // the dkms tree has dkms's layout: m/v/source links to the source, m/kernel-K-A to the version
    let link = from_manifest
        .p("dkms/ddcci")
        .join(version_of(&dkms_source("ddcci"), "ddcci"));
    assert!(fs::read_link(link.join("source")).is_ok());
    assert!(fs::read_link(from_manifest.p("dkms/ddcci").join(format!("kernel-{k}-{ARCH}"))).is_ok());
    // remove reads the manifest too, and takes the modules out
    let dv = version_of(&dkms_source("ddcci"), "ddcci");
    from_manifest.ok(&["remove", &format!("ddcci/{dv}"), "--all"]);
    assert!(
        from_manifest.installed_ko(&k, "ddcci").is_none()
            && from_manifest.installed_ko(&k, "ddcci-backlight").is_none()
    );
    assert!(!from_manifest.p("dkms/ddcci").exists());
    assert!(from_manifest.installed_ko(&k, "vpoll").is_some(), "the others stay");
}

/// A one-file module `name/1.0` whose source holds `manifest`, a script
/// that records its arguments in `args`, and optionally a dkms.conf.
fn probe_module(w: &World, name: &str, manifest: &str, dkms_conf: Option<&str>) -> std::path::PathBuf {
    let dir = w.p("src").join(format!("{name}-1.0"));
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("modsync.toml"), manifest).unwrap();
    if let Some(c) = dkms_conf {
        fs::write(dir.join("dkms.conf"), c).unwrap();
    }
    fs::write(dir.join("Makefile"), format!("obj-m := {name}.o\n")).unwrap();
    fs::write(
        dir.join(format!("{name}.c")),
        "#include <linux/module.h>\nMODULE_LICENSE(\"GPL\");\n",
    )
    .unwrap();
    let record = dir.join("record.sh");
    fs::write(
        &record,
        format!("#!/bin/sh\nprintf '[%s]\\n' \"$@\" >> {}\n", w.p("args").display()),
    )
    .unwrap();
    fs::set_permissions(&record, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

fn no_markers(markers: &[&Path], what: &str) {
    for m in markers {
        assert!(
            !m.exists(),
            "{what}: {} was created: a shell ran a manifest value",
            m.display()
        );
    }
}

#[test]
fn shell_syntax_in_a_manifest_is_passed_literally_or_refused() {
    require_root("manifest injection probe");
    let ks = test_kernels();
    let k = ks[0].clone();
    let w = World::new(std::slice::from_ref(&k));
    let mk = |n: &str| w.p(&format!("MARKER-{n}"));
    let markers: Vec<std::path::PathBuf> = (0..8).map(|i| mk(&i.to_string())).collect();
    let markers: Vec<&Path> = markers.iter().map(|p| p.as_path()).collect();
    let sub = format!("$(touch {})", mk("1").display());
    let semi = format!(";touch {}", mk("2").display());
    let tick = format!("`touch {}`", mk("3").display());
    let make_var = format!(
        "MODSYNC_PROBE=$(touch {});touch {}",
        mk("4").display(),
        mk("5").display()
    );
    let manifest = format!(
        "name = \"literal\"\nversion = \"1.0\"\n\
         make = [\"make\", \"-C\", \"{{kernel_source_dir}}\", \"M={{build_dir}}\", {make_var:?}]\n\
         pre_build = [\"record.sh\", {sub:?}, {semi:?}, \"{{kernelver}}\"]\n\
         post_install = [\"record.sh\", {tick:?}]\n\
         [[module]]\nname = \"literal\"\n"
    );
    // a dkms.conf beside the manifest would touch a marker if it were sourced
    let conf = format!(
        "touch {}\nPACKAGE_NAME=literal\nPACKAGE_VERSION=1.0\nDEST_MODULE_LOCATION[0]=/updates\n",
        mk("0").display()
    );
    probe_module(&w, "literal", &manifest, Some(&conf));
    let o = w.ok(&["add", "literal/1.0"]);
    assert!(
        o.stderr.contains("modsync uses modsync.toml"),
        "the notice: {}",
        o.show()
    );
    let o = w.ok(&["install", "literal/1.0", "-k", &k]);
    no_markers(&markers, "install");
    assert!(w.installed_ko(&k, "literal").is_some(), "{}", o.show());
    let args = fs::read_to_string(w.p("args")).unwrap();
    assert_eq!(
        args,
        format!("[{sub}]\n[{semi}]\n[{k}]\n[{tick}]\n"),
        "each value reached the scripts as one literal argument"
    );
    let log = w.p("dkms/literal/1.0").join(&k).join(ARCH).join("log/make.log");
    let log = fs::read_to_string(&log).unwrap();
    assert!(
        log.contains(&format!("'{make_var}'")),
        "make.log shows the argument quoted:\n{log}"
    );

    // values that would become paths or shell words are refused before anything runs
    for (name, body) in [
        ("badname", format!("name = \"badname\"\nversion = \"1.0\"\n[[module]]\nname = \"$(touch {})\"\n", mk("6").display())),
        (
            "badpatch",
            format!(
                "name = \"badpatch\"\nversion = \"1.0\"\n[[patch]]\nfile = \";touch {}\"\n[[module]]\nname = \"badpatch\"\n",
                mk("7").display()
            ),
        ),
    ] {
        probe_module(&w, name, &body, None);
        let o = w.modsync(&["add", &format!("{name}/1.0")]);
        assert_eq!(o.code, 8, "{}", o.show());
        assert!(o.stderr.contains("is not a valid modsync.toml"), "{}", o.show());
        assert!(!w.p("dkms").join(name).exists(), "{name} was registered");
    }
    no_markers(&markers, "refused manifests");

    // an unknown key is an error with its line and column
    probe_module(
        &w,
        "typo",
        "name = \"typo\"\nversion = \"1.0\"\n[[module]]\nname = \"typo\"\n  strip_debug = true\n",
        None,
    );
    let o = w.modsync(&["add", "typo/1.0"]);
    assert_eq!(o.code, 8, "{}", o.show());
    assert!(
        o.stderr
            .contains("modsync.toml: line 5, column 3: unknown field `strip_debug`"),
        "{}",
        o.show()
    );
}
