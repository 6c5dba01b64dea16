//! `mktarball` and `ldtarball` against real builds (the hello fixture and
//! Debian's vpoll source, built for the two test kernels) and against the
//! real dkms 3.0.10 (`/usr/sbin/dkms`, run on isolated trees inside the
//! world with --dkmstree/--sourcetree/--installtree): tarballs pass both
//! ways, `--source-only` and `--binaries-only` round-trip, errors give
//! dkms's exit codes, and hostile tarballs are refused with every tree left
//! as it was and nothing written outside the private extraction directory.
//!
//! dkms 3.0.10 itself archives and loads only the first kernel of a
//! multi-kernel tarball (a `local -r` inside its loops), so the interop
//! checks with the real dkms are per kernel.

use crate::support::{
    dkms_source, lines_about, require, require_root, run, run_ok, snapshot, test_kernels, version_of, Out, World, ARCH,
};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const DKMS: &str = "/usr/sbin/dkms";

fn require_dkms(test: &str) {
    require_root(test);
    require(
        test,
        Path::new(DKMS).is_file(),
        "the real dkms (Debian's package) is not installed",
    );
}

/// The real dkms on the trees `base/dkms` and `base/src` (made if missing)
/// and the world's kernels.
fn dkms(w: &World, base: &Path, args: &[&str]) -> Out {
    for d in ["dkms", "src"] {
        std::fs::create_dir_all(base.join(d)).unwrap();
    }
    let mut o = run(Command::new(DKMS)
        .args(args)
        .arg("--dkmstree")
        .arg(base.join("dkms"))
        .arg("--sourcetree")
        .arg(base.join("src"))
        .arg("--installtree")
        .arg(w.p("lib/modules")));
    o.cmd = format!("dkms {}", args.join(" "));
    o
}

/// The members of a tarball (`tar taf`), without `./` and trailing `/`.
fn members(tarball: &Path) -> BTreeSet<String> {
    run_ok(Command::new("tar").arg("taf").arg(tarball))
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .filter(|l| !l.is_empty() && l != ".")
        .collect()
}

fn built_line(k: &str) -> String {
    format!("hello/1.0, {k}, {ARCH}: built")
}

/// A world for the test kernels with hello/1.0 added and built for each.
fn hello_built(ks: &[String]) -> World {
    let w = World::new(ks);
    w.add_fixture("hello-1.0");
    let mut args = vec!["build", "hello/1.0"];
    let k = w.k_args();
    args.extend(k.iter().map(String::as_str));
    w.ok(&args);
    w
}

#[test]
fn hello_tarballs_pass_between_modsync_and_the_real_dkms() {
    require_dkms("hello_tarballs_pass_between_modsync_and_the_real_dkms");
    let ks = test_kernels();
    let (k1, k2) = (&ks[0], &ks[1]);
    let w = hello_built(&ks);
    w.ok(&["mktarball", "hello/1.0", "-k", k1, "-k", k2]);
    let name = format!("hello-1.0-kernel{k1}-{ARCH}-kernel{k2}-{ARCH}.dkms.tar.gz");
    let both = w.p("dkms/hello/1.0/tarball").join(&name);
    let m = members(&both);
    for k in [k1, k2] {
        for f in ["module/hello.ko", "log/make.log"] {
            assert!(
                m.contains(&format!("dkms_main_tree/{k}/{ARCH}/{f}")),
                "{f} of {k} missing: {m:?}"
            );
        }
    }
    for f in ["dkms.conf", "hello.c", "Makefile"] {
        assert!(m.contains(&format!("dkms_source_tree/{f}")), "{m:?}");
    }

    // the same layout as the real dkms's tarball of the same tree
    let ours = w.p("ours.tar.gz");
    w.ok(&["mktarball", "hello/1.0", "-k", k1, "--archive", ours.to_str().unwrap()]);
    let theirs = w.p("theirs.tar.gz");
    let o = dkms(
        &w,
        w.root(),
        &[
            "mktarball",
            "hello/1.0",
            "-k",
            k1,
            "--archive",
            theirs.to_str().unwrap(),
        ],
    );
    assert_eq!(o.code, 0, "{}", o.show());
    assert_eq!(members(&ours), members(&theirs));

    // the real dkms loads modsync's tarballs
    let o = dkms(&w, &w.p("dk1"), &["ldtarball", both.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.show());
    let st = dkms(&w, &w.p("dk1"), &["status"]).stdout;
    assert!(st.contains(&built_line(k1)), "{st}");
    let second = w.p("second.tar.gz");
    w.ok(&[
        "mktarball",
        "hello/1.0",
        "-k",
        k2,
        "--archive",
        second.to_str().unwrap(),
    ]);
    let o = dkms(&w, &w.p("dk2"), &["ldtarball", second.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.show());
    assert!(dkms(&w, &w.p("dk2"), &["status"]).stdout.contains(&built_line(k2)));

    // modsync loads the real dkms's tarball, and installs from it
    let w2 = World::new(&ks[..1]);
    let o = w2.ok(&["ldtarball", theirs.to_str().unwrap()]);
    assert!(o.stdout.contains("Loading tarball for hello/1.0"), "{}", o.show());
    assert_eq!(lines_about(&w2.status(), "hello/1.0"), vec![built_line(k1)]);
    w2.ok(&["install", "hello/1.0", "-k", k1]);
    assert!(w2.installed_ko(k1, "hello").is_some());
    // modsync loads every kernel of its own two-kernel tarball
    let w3 = World::new(&ks);
    w3.ok(&["ldtarball", both.to_str().unwrap()]);
    assert_eq!(
        lines_about(&w3.status(), "hello/1.0"),
        vec![built_line(k1), built_line(k2)]
    );
}

#[test]
fn a_real_debian_source_round_trips_for_both_kernels() {
    require_dkms("a_real_debian_source_round_trips_for_both_kernels");
    let ks = test_kernels();
    let src = dkms_source("vpoll");
    let v = version_of(&src, "vpoll");
    let w = World::new(&ks);
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(w.p("src")));
    let mv = format!("vpoll/{v}");
    w.ok(&["add", &mv]);
    let k = w.k_args();
    let mut args = vec!["build", mv.as_str()];
    args.extend(k.iter().map(String::as_str));
    w.ok(&args);
    w.ok(&["mktarball", &mv, "--all"]);
    let t = w.p(&format!("dkms/vpoll/{v}/tarball")).join(format!(
        "vpoll-{v}-kernel{}-{ARCH}-kernel{}-{ARCH}.dkms.tar.gz",
        ks[0], ks[1]
    ));
    assert!(t.is_file(), "no {}", t.display());

    let w2 = World::new(&ks);
    w2.ok(&["ldtarball", t.to_str().unwrap()]);
    let st = w2.status();
    for k in &ks {
        assert!(st.contains(&format!("{mv}, {k}, {ARCH}: built")), "{st}");
    }
    assert!(w2.p(&format!("src/vpoll-{v}/dkms.conf")).is_file());
    w2.ok(&["install", &mv, "-k", &ks[1]]);
    assert!(w2.installed_ko(&ks[1], "vpoll").is_some());

    let o = dkms(&w, &w.p("dk"), &["ldtarball", t.to_str().unwrap()]);
    assert_eq!(o.code, 0, "{}", o.show());
    let st = dkms(&w, &w.p("dk"), &["status"]).stdout;
    assert!(st.contains(&format!("{mv}, {}, {ARCH}: built", ks[0])), "{st}");

    // any tarball with a dkms.conf in it loads as a source, as in dkms 3.4
    let plain = w.p("hello.tar.gz");
    run_ok(
        Command::new("tar")
            .arg("czf")
            .arg(&plain)
            .arg("-C")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
            .arg("hello-1.0"),
    );
    w2.ok(&["ldtarball", plain.to_str().unwrap()]);
    assert_eq!(lines_about(&w2.status(), "hello/1.0"), vec!["hello/1.0: added"]);
    assert!(w2.p("src/hello-1.0/hello.c").is_file());
    let o = w2.modsync(&["ldtarball", plain.to_str().unwrap()]);
    assert_eq!(o.code, 3, "already added: {}", o.show());
}

#[test]
fn source_only_and_binaries_only_tarballs_round_trip() {
    require_dkms("source_only_and_binaries_only_tarballs_round_trip");
    let ks = test_kernels();
    let w = hello_built(&ks);

    w.ok(&["mktarball", "hello/1.0", "--source-only"]);
    let src_only = w.p("dkms/hello/1.0/tarball/hello-1.0-source-only.dkms.tar.gz");
    let m = members(&src_only);
    assert!(
        m.contains("dkms_source_tree/hello.c") && !m.iter().any(|p| p.contains(ARCH)),
        "{m:?}"
    );
    let w2 = World::new(&ks[..1]);
    // `add FILE` loads a tarball as dkms's add does
    w2.ok(&["add", src_only.to_str().unwrap()]);
    assert_eq!(lines_about(&w2.status(), "hello/1.0"), vec!["hello/1.0: added"]);
    w2.ok(&["build", "hello/1.0", "-k", &ks[0]]);

    let bin = w.p("bin.tar.xz");
    w.ok(&[
        "mktarball",
        "hello/1.0",
        "--all",
        "--binaries-only",
        "--archive",
        bin.to_str().unwrap(),
    ]);
    let m = members(&bin);
    for f in ["PACKAGE_NAME", "PACKAGE_VERSION", "dkms.conf"] {
        assert!(m.contains(&format!("dkms_binaries_only/{f}")), "{m:?}");
    }
    assert!(!m.iter().any(|p| p.starts_with("dkms_source_tree")), "{m:?}");
    let w3 = World::new(&ks);
    // dkms exits 1 after loading binaries without their source; so does modsync
    let o = w3.modsync(&["ldtarball", bin.to_str().unwrap()]);
    assert_eq!(o.code, 1, "{}", o.show());
    let real = dkms(&w, &w.p("dk"), &["ldtarball", bin.to_str().unwrap()]);
    assert_eq!(real.code, 1, "{}", real.show());
    assert!(!w3.p("src/hello-1.0").exists() && w3.p("dkms/hello/1.0/source/dkms.conf").is_file());
    assert_eq!(
        lines_about(&w3.status(), "hello/1.0"),
        vec![built_line(&ks[0]), built_line(&ks[1])]
    );
    w3.ok(&["install", "hello/1.0", "-k", &ks[1]]);
    assert!(w3.installed_ko(&ks[1], "hello").is_some());
}

#[test]
fn errors_give_dkms_exit_codes_and_change_nothing() {
    require_dkms("errors_give_dkms_exit_codes_and_change_nothing");
    let ks = test_kernels();
    let w = hello_built(&ks[..1]);
    // not built for the kernel: 6, as the real dkms on the same tree
    let o = w.modsync(&["mktarball", "hello/1.0", "-k", &ks[1]]);
    assert_eq!(o.code, 6, "{}", o.show());
    assert!(o.stderr.contains("No modules built for"), "{}", o.show());
    assert_eq!(dkms(&w, w.root(), &["mktarball", "hello/1.0", "-k", &ks[1]]).code, 6);
    assert_eq!(w.modsync(&["mktarball", "nosuch/1.0", "-k", &ks[0]]).code, 3);
    let o = w.modsync(&["mktarball", "hello/1.0", "--source-only", "--binaries-only"]);
    assert_eq!(o.code, 8, "{}", o.show());
    assert!(!w.p("dkms/hello/1.0/tarball").exists());

    // loading over an existing build without --force: 8, as dkms, and nothing changes
    w.ok(&["mktarball", "hello/1.0", "-k", &ks[0]]);
    let t = w.p(&format!(
        "dkms/hello/1.0/tarball/hello-1.0-kernel{}-{ARCH}.dkms.tar.gz",
        ks[0]
    ));
    let before = (snapshot(&w.p("dkms")), snapshot(&w.p("src")));
    let o = w.modsync(&["ldtarball", t.to_str().unwrap()]);
    assert_eq!(o.code, 8, "{}", o.show());
    assert!(o.stderr.contains("already added"), "{}", o.show());
    assert_eq!((snapshot(&w.p("dkms")), snapshot(&w.p("src"))), before);
    assert_eq!(dkms(&w, &w.p("dk"), &["ldtarball", t.to_str().unwrap()]).code, 0);
    assert_eq!(dkms(&w, &w.p("dk"), &["ldtarball", t.to_str().unwrap()]).code, 8);
    let o = w.modsync(&["ldtarball", w.p("missing.tar.gz").to_str().unwrap()]);
    assert_eq!(o.code, 2, "{}", o.show());
}

/// One raw tar entry: path, type, link target, data, mode.
type Raw<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8], u32);

/// A gzip tarball of raw entries (names written as given: `..` and
/// absolute paths included, which tar's own API refuses to write).
fn hostile(path: &Path, entries: &[Raw]) {
    let f = std::fs::File::create(path).unwrap();
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(f, flate2::Compression::default()));
    for (name, ty, link, data, mode) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*ty);
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if !link.is_empty() {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap();
}

#[test]
fn hostile_tarballs_are_refused_and_nothing_leaves_the_private_directory() {
    require_root("hostile_tarballs_are_refused_and_nothing_leaves_the_private_directory");
    let ks = test_kernels();
    let w = hello_built(&ks[..1]);
    // extraction happens below scratch/tmp; scratch is the marker directory
    let tmp = w.p("scratch/tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let scratch = w.p("scratch");
    let abs = format!("{}/abs", scratch.display());
    use tar::EntryType::{Char, Directory as Dir, Regular as F, Symlink as L};
    let good_conf: &[u8] =
        b"PACKAGE_NAME=evil\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=evil\nDEST_MODULE_LOCATION[0]=/updates\n";
    let bad_name: &[u8] =
        b"PACKAGE_NAME=\"../x\"\nPACKAGE_VERSION=1.0\nBUILT_MODULE_NAME[0]=x\nDEST_MODULE_LOCATION[0]=/updates\n";
    let ko = format!("dkms_main_tree/{}/{ARCH}/module/evil.ko", ks[0]);
    let scratch_s = scratch.display().to_string();
    let cases: Vec<(&str, Vec<Raw>, i32, &str)> = vec![
        ("dotdot", vec![("../../escape", F, "", b"x", 0o644)], 7, "'..'"),
        ("absolute", vec![(abs.as_str(), F, "", b"x", 0o644)], 7, "absolute"),
        (
            "symlink out, then a file through it",
            vec![
                ("dkms_source_tree/out", L, scratch_s.as_str(), b"", 0o777),
                ("dkms_source_tree/out/owned", F, "", b"x", 0o644),
            ],
            7,
            "outside",
        ),
        (
            "relative symlink out",
            vec![("up", L, "../..", b"", 0o777), ("up/owned", F, "", b"x", 0o644)],
            7,
            "outside",
        ),
        (
            "PACKAGE_NAME ../x",
            vec![
                ("dkms_source_tree/dkms.conf", F, "", bad_name, 0o644),
                (ko.as_str(), F, "", b"\x7fELF", 0o644),
            ],
            8,
            "PACKAGE_NAME",
        ),
        (
            "kernel dir ..",
            vec![
                ("dkms_source_tree/dkms.conf", F, "", good_conf, 0o644),
                ("dkms_main_tree/../x86_64/module/evil.ko", F, "", b"x", 0o644),
            ],
            7,
            "'..'",
        ),
        (
            "kernel dir with shell",
            vec![
                ("dkms_source_tree/dkms.conf", F, "", good_conf, 0o644),
                ("dkms_main_tree/6.1;touch marker/x86_64/", Dir, "", b"", 0o755),
            ],
            7,
            "kernel release",
        ),
        (
            "device",
            vec![("dkms_source_tree/null", Char, "", b"", 0o666)],
            7,
            "device",
        ),
        (
            "setuid",
            vec![("dkms_source_tree/sh", F, "", b"x", 0o4755)],
            7,
            "set-user-ID",
        ),
    ];
    for (what, entries, code, says) in cases {
        let t = w.p("hostile.tar.gz");
        hostile(&t, &entries);
        let before = (snapshot(&w.p("dkms")), snapshot(&w.p("src")), snapshot(&scratch));
        let mut c = w.cmd(&["ldtarball", t.to_str().unwrap()]);
        c.env("TMPDIR", &tmp);
        let o = run(&mut c);
        assert_eq!(o.code, code, "{what}: {}", o.show());
        assert!(
            o.stderr.contains("Error!") && o.stderr.contains(says),
            "{what}: {}",
            o.show()
        );
        assert_eq!(
            (snapshot(&w.p("dkms")), snapshot(&w.p("src")), snapshot(&scratch)),
            before,
            "{what} changed a tree or wrote outside its private directory"
        );
        assert!(!w.p("escape").exists() && !w.p("x").exists() && !Path::new("marker").exists());
    }
    assert_eq!(lines_about(&w.status(), "hello/1.0"), vec![built_line(&ks[0])]);
}
