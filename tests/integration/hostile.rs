//! Input that must be refused: for each kind (names and versions that leave
//! the tree, kernel releases, trees that are not trees, dkms.conf values
//! that would become paths outside their directories, links and records
//! planted in the state tree, hook arguments, shell in names), the command
//! runs on a populated tree (a module added, built and installed) and must
//! exit with dkms's code while every file of the world stays byte for byte
//! as it was. Injection is probed with a marker file that must not appear.

use crate::support::{require_root, run, run_ok, snapshot, test_kernels, World};
use std::path::Path;
use std::process::Command;

/// A world with hello/1.0 added, built and installed for one kernel.
fn populated() -> (World, String) {
    let ks = test_kernels();
    let w = World::new(&ks[..1]);
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hello-1.0"))
            .arg(w.p("src")),
    );
    w.ok(&["install", "hello/1.0", "-k", &ks[0]]);
    assert!(w.installed_ko(&ks[0], "hello").is_some());
    (w, ks[0].clone())
}

fn refused(w: &World, args: &[&str], code: i32) {
    let before = snapshot(w.root());
    let o = w.modsync(args);
    assert_eq!(o.code, code, "{}", o.show());
    assert!(o.stderr.contains("Error!"), "no error message: {}", o.show());
    let after = snapshot(w.root());
    let changed: Vec<_> = after
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(v))
        .map(|(p, _)| p.clone())
        .chain(before.keys().filter(|p| !after.contains_key(*p)).cloned())
        .collect();
    assert!(changed.is_empty(), "`modsync {}` changed {changed:?}", args.join(" "));
}

#[test]
fn names_versions_and_kernels_that_leave_the_tree_are_refused() {
    require_root("hostile names");
    let (w, k) = populated();
    std::fs::create_dir_all(w.p("dkms/foo")).unwrap();
    refused(&w, &["remove", "foo/..", "--all"], 3);
    refused(&w, &["remove", "hello/..", "--all"], 3);
    refused(&w, &["remove", "-m", "hello", "-v", "", "--all"], 1);
    refused(&w, &["remove", "-m", "", "-v", "1.0", "--all"], 1);
    refused(&w, &["unbuild", "hello/1.0/..", "-k", &k], 3);
    refused(&w, &["uninstall", "../../etc/1.0", "-k", &k], 3);
    refused(&w, &["install", "hello/1.0", "-k", "../../../etc"], 16);
    refused(&w, &["install", "hello/1.0", "-k", ""], 16);
    refused(&w, &["install", "hello/1.0", "-k", &k, "-a", "x86_64/../.."], 16);
    refused(&w, &["remove", "hello/1.0", "-k", &k, "--all"], 2);
    refused(&w, &["autoinstall", "-k", &k, "-k", &k], 4);
    refused(&w, &["build", "hello/1.0", "--all"], 5);
    refused(&w, &["add", "hello/1.0"], 3);
    refused(&w, &["add", "-m", "$(touch marker)", "-v", "1"], 2);
    assert!(!w.p("marker").exists() && !Path::new("marker").exists());
}

#[test]
fn a_tree_that_is_not_a_tree_is_refused_and_nothing_is_created() {
    require_root("bad trees");
    let (w, _k) = populated();
    let before = std::fs::read_dir("/").unwrap().count();
    let o = run(Command::new(env!("CARGO_BIN_EXE_modsync"))
        .args(["add", "hello/1.0", "--dkmstree", "/"])
        .env("MODSYNC_SYSCONF_ROOT", w.root()));
    assert_eq!(o.code, 1, "{}", o.show());
    assert!(!Path::new("/.modsync").exists() && !Path::new("/hello").exists());
    assert_eq!(std::fs::read_dir("/").unwrap().count(), before);
    let missing = w.p("no/such/tree");
    let o = run(Command::new(env!("CARGO_BIN_EXE_modsync"))
        .args(["add", "hello/1.0", "--dkmstree"])
        .arg(&missing)
        .env("MODSYNC_SYSCONF_ROOT", w.root()));
    assert_eq!(o.code, 1, "{}", o.show());
    assert!(!w.p("no").exists(), "a missing tree is not created");
}

/// A module source with this dkms.conf, added by directory.
fn add_conf(w: &World, name: &str, conf: &str) -> crate::support::Out {
    let dir = w.p("incoming").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dkms.conf"), conf).unwrap();
    std::fs::write(dir.join("Makefile"), "obj-m := x.o\n").unwrap();
    w.modsync(&["add", dir.to_str().unwrap()])
}

#[test]
fn dkms_conf_values_that_would_leave_their_directories_are_refused() {
    require_root("hostile dkms.conf");
    let (w, _k) = populated();
    let base = "PACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=x\nDEST_MODULE_LOCATION[0]=/updates\n";
    for (name, conf) in [
        ("pn", "PACKAGE_NAME=../../evil\nPACKAGE_VERSION=1.0\nDEST_MODULE_LOCATION[0]=/updates\n".to_string()),
        ("pv", "PACKAGE_NAME=pv\nPACKAGE_VERSION=../1\nDEST_MODULE_LOCATION[0]=/updates\n".to_string()),
        ("dn", format!("PACKAGE_NAME=dn\n{base}DEST_MODULE_NAME[0]=../../../../marker\n")),
        ("dl", "PACKAGE_NAME=dl\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=x\nDEST_MODULE_LOCATION[0]=/updates/../../../../tmp\n".to_string()),
        ("bl", format!("PACKAGE_NAME=bl\n{base}BUILT_MODULE_LOCATION[0]=../../..\n")),
        ("bd", format!("PACKAGE_NAME=bd\n{base}BUILD_DEPENDS=\"../x\"\n")),
    ] {
        let before = snapshot(&w.p("dkms"));
        let o = add_conf(&w, name, &conf);
        assert_eq!(o.code, 8, "{name}: {}", o.show());
        assert_eq!(snapshot(&w.p("dkms")), before, "{name} changed the state tree");
        assert!(!w.p("evil-1.0").exists() && !w.p("marker").exists() && !w.p("src/../evil-1.0").exists());
    }
}

#[test]
fn links_and_records_planted_in_the_tree_are_not_followed() {
    require_root("planted links");
    let (w, k) = populated();
    let arch = crate::support::ARCH;
    let outside = w.p("outside");
    std::fs::create_dir_all(outside.join("1.0")).unwrap();
    std::fs::write(outside.join("1.0/keep"), "keep").unwrap();
    // a module directory that is a link out of the tree
    std::os::unix::fs::symlink(&outside, w.p("dkms/evil")).unwrap();
    refused(&w, &["remove", "evil/1.0", "--all"], 3);
    assert!(outside.join("1.0/keep").exists());
    // an archived original whose .origin points outside the kernel's tree
    let orig = w.p("dkms/hello/original_module").join(&k).join(arch);
    std::fs::create_dir_all(&orig).unwrap();
    std::fs::write(orig.join("hello.ko"), "archived").unwrap();
    std::fs::write(
        orig.join("hello.ko.origin"),
        format!("{}\n", w.p("outside/planted.ko").display()),
    )
    .unwrap();
    let o = w.ok(&["uninstall", "hello/1.0", "-k", &k]);
    assert!(
        !w.p("outside/planted.ko").exists(),
        "restored outside the kernel's tree: {}",
        o.show()
    );
    assert_eq!(
        std::fs::read(orig.join("hello.ko")).unwrap(),
        b"archived",
        "what could not be restored stays archived"
    );
    // a build record naming paths outside: ignored, the real files are handled
    let rec = w.p("dkms/hello/1.0").join(&k).join(arch).join(".modsync.json");
    std::fs::write(&rec, r#"{"modules":[{"name":"../../../../outside/1.0/keep","file":"x.ko","location":"/../../..","declared_location":"/updates"}]}"#).unwrap();
    w.ok(&["install", "hello/1.0", "-k", &k]);
    w.ok(&["remove", "hello/1.0", "--all"]);
    assert!(outside.join("1.0/keep").exists() && w.installed_ko(&k, "hello").is_none());
}

#[test]
fn hooks_refuse_bad_arguments_and_never_fail_the_package_manager() {
    require_root("hook arguments");
    let (w, k) = populated();
    let before = snapshot(w.root());
    for args in [
        vec!["kernel-install", "add", "../../../etc"],
        vec!["apt", "postinst", "$(touch marker)"],
        vec!["kernel-install", "remove", ""],
    ] {
        let o = w.hook(&args);
        assert!(o.stderr.contains("Error!"), "{}", o.show());
    }
    assert_eq!(snapshot(w.root()), before);
    assert!(!w.p("marker").exists() && !Path::new("marker").exists());
    // a broken config.toml: reported, the hook goes on with the defaults
    // (and the command line's trees) and exits 0
    w.ok(&["uninstall", "hello/1.0", "-k", &k]);
    std::fs::write(w.p("etc/modsync/config.toml"), "strict = maybe\n").unwrap();
    // (the defaults sign with /var/lib/dkms/mok.key; dkms's framework.conf keeps the key in the world)
    std::fs::write(
        w.p("etc/dkms/framework.conf"),
        format!(
            "mok_signing_key={}\nmok_certificate={}\n",
            w.p("mok.key").display(),
            w.p("mok.pub").display()
        ),
    )
    .unwrap();
    let o = w.hook(&["kernel-install", "add", &k]);
    assert!(o.stderr.contains("config.toml"), "{}", o.show());
    assert!(
        w.installed_ko(&k, "hello").is_some(),
        "built in the world's tree: {}",
        o.show()
    );
    // strict = true: a failure fails the hook
    std::fs::write(w.p("etc/modsync/config.toml"), "strict = true\n").unwrap();
    let o = w.modsync(&["hook", "kernel-install", "add", "../x"]);
    assert_eq!(o.code, 11, "{}", o.show());
}
