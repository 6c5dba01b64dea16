//! `modsync mkdeb|mkrpm|mkpkg` against real builds (the hello fixture and
//! Debian's vpoll source, both test kernels): the real dpkg-deb, rpm and
//! pacman list exactly the files modsync computed and the build made, the
//! dependencies and the scripts; the packaged modules carry the build's
//! signature; a module version a package provides for a kernel is shown by
//! `status` and not built from source by the hooks for that kernel
//! (installing them for real: [`crate::packages_install`]). A module version not built for a kernel, or a
//! bad `--kernel-package`, is refused with nothing written.

use crate::overlay_root::q;
use crate::overlay_root::require_tools;
use crate::support::{dkms_source, modinfo, require_root, run_ok, test_kernels, version_of, World, ARCH};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn add_source(w: &World, prefix: &str) -> String {
    let src = dkms_source(prefix);
    let v = version_of(&src, prefix);
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(w.p("src")));
    w.ok(&["add", &format!("{prefix}/{v}")]);
    format!("{prefix}/{v}")
}

fn args<'a>(first: &[&'a str], rest: &'a [String]) -> Vec<&'a str> {
    first.iter().copied().chain(rest.iter().map(String::as_str)).collect()
}

/// The module files the build of m/v made for K, as the package must hold them
/// under `root/K/<location>`, plus the marker.
fn expected_files(w: &World, mv: &str, k: &str, root: &str, location: &str) -> Vec<String> {
    let (m, v) = mv.split_once('/').unwrap();
    let dir = w.p("dkms").join(m).join(v).join(k).join(ARCH).join("module");
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".ko"))
        .map(|n| format!("{root}/{k}{location}/{n}"))
        .collect();
    assert!(!files.is_empty(), "the build of {mv} for {k} made no file");
    files.push(format!("/usr/lib/modsync/packaged/{m}/{k}"));
    files.sort();
    files
}

/// The paths the command printed, which must all exist.
pub fn written(o: &crate::support::Out) -> Vec<PathBuf> {
    let paths: Vec<PathBuf> = o.stdout.lines().map(PathBuf::from).collect();
    for p in &paths {
        assert!(p.is_file(), "{} was printed but not written\n{}", p.display(), o.show());
    }
    paths
}

pub fn named(paths: &[PathBuf], prefix: &str) -> PathBuf {
    paths
        .iter()
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no package named {prefix}* in {paths:?}"))
        .clone()
}

/// Regular files in a package listing (`dpkg-deb -c`, `pacman -Qlp`), as absolute paths.
fn listed_files(listing: &str, field: usize) -> Vec<String> {
    let mut v: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(field))
        .map(|p| format!("/{}", p.trim_start_matches("./").trim_start_matches('/')))
        .filter(|p| !p.ends_with('/'))
        .collect();
    v.sort();
    v
}

/// `modinfo -F signer` of every .ko of `files` extracted under `dir` equals the build's.
fn assert_signed_as_built(w: &World, mv: &str, k: &str, dir: &Path, files: &[String]) {
    let (m, v) = mv.split_once('/').unwrap();
    for f in files.iter().filter(|f| f.contains(".ko")) {
        let name = f.rsplit('/').next().unwrap();
        let built = w.p("dkms").join(m).join(v).join(k).join(ARCH).join("module").join(name);
        let packed = dir.join(f.trim_start_matches('/'));
        let signer = modinfo("signer", &built);
        assert!(!signer.is_empty(), "the build of {name} for {k} is not signed");
        assert_eq!(modinfo("signer", &packed), signer, "{}", packed.display());
        assert_eq!(
            fs::read(&packed).unwrap(),
            fs::read(&built).unwrap(),
            "{name} differs from the build"
        );
    }
}

#[test]
fn packages_hold_the_build_its_dependencies_and_scripts() {
    require_root("packages");
    require_tools(
        "packages",
        &[
            "dpkg-deb", "dpkg", "rpm", "rpm2cpio", "cpio", "pacman", "vercmp", "modinfo",
        ],
    );
    let ks = test_kernels();
    let (old, new) = (&ks[0], &ks[ks.len() - 1]);
    let w = World::new(&ks);
    w.add_fixture("hello-1.0");
    let vpoll = add_source(&w, "vpoll");
    let kargs = w.k_args();
    w.ok(&args(&["build", "hello/1.0"], &kargs));
    w.ok(&args(&["build", &vpoll], &kargs));

    // deb, default output dir
    let o = w.ok(&["mkdeb", "hello/1.0", "--all"]);
    let debs = written(&o);
    assert_eq!(debs.len(), ks.len() + 1, "{}", o.show());
    assert!(debs.iter().all(|p| p.starts_with(w.p("dkms/hello/1.0/deb"))));
    for k in &ks {
        let deb = named(&debs, &format!("hello-modules-{k}_"));
        let want = expected_files(&w, "hello/1.0", k, "/lib/modules", "/updates/dkms");
        let listing = run_ok(Command::new("dpkg-deb").arg("-c").arg(&deb));
        assert_eq!(listed_files(&listing, 5), want, "{listing}");
        let field = |f: &str| {
            run_ok(Command::new("dpkg-deb").arg("-f").arg(&deb).arg(f))
                .trim()
                .to_string()
        };
        assert_eq!(field("Depends"), format!("linux-image-{k}"));
        assert_eq!(
            (field("Version"), field("Architecture")),
            ("1.0".into(), "amd64".into())
        );
        let info = run_ok(Command::new("dpkg-deb").arg("-I").arg(&deb));
        for s in ["preinst", "postinst", "postrm"] {
            assert!(info.contains(&format!(" {s} ")), "{s} missing:\n{info}");
        }
        let x = tempfile::tempdir().unwrap();
        run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(x.path()));
        assert_signed_as_built(&w, "hello/1.0", k, x.path(), &want);
        let marker = fs::read_to_string(x.path().join(format!("usr/lib/modsync/packaged/hello/{k}"))).unwrap();
        assert!(marker.contains(&format!("package = \"hello-modules-{k}\"")), "{marker}");
        let postinst = run_ok(Command::new("dpkg-deb").arg("-I").arg(&deb).arg("postinst"));
        assert!(postinst.contains(&format!("kver='{k}' root='/lib/modules'")) && postinst.contains("depmod -a"));
    }
    let meta = named(&debs, "hello-modules_");
    let depends = run_ok(Command::new("dpkg-deb").arg("-f").arg(&meta).arg("Depends"));
    assert_eq!(depends.trim(), format!("hello-modules-{new} (= 1.0)"));
    // the meta package of an older kernel is older
    let d = w.p("out-old");
    let o = w.ok(&[
        "mkdeb",
        "hello/1.0",
        "-k",
        old,
        "--output-dir",
        &d.display().to_string(),
    ]);
    let old_meta = named(&written(&o), "hello-modules_");
    let version = |p: &Path| {
        run_ok(Command::new("dpkg-deb").arg("-f").arg(p).arg("Version"))
            .trim()
            .to_string()
    };
    run_ok(Command::new("dpkg").args(["--compare-versions", &version(&old_meta), "lt", &version(&meta)]));

    // rpm of a real Debian source, named kernels, --output-dir
    let d = w.p("out-rpm");
    let o = w.ok(&args(
        &["mkrpm", &vpoll, "--output-dir", &d.display().to_string()],
        &kargs,
    ));
    let rpms = written(&o);
    assert_eq!(rpms.len(), ks.len() + 1, "{}", o.show());
    for k in &ks {
        let rpm = named(&rpms, &format!("kmod-vpoll-{k}-"));
        let want = expected_files(&w, &vpoll, k, "/lib/modules", "/updates/dkms");
        let listing = run_ok(Command::new("rpm").arg("-qpl").arg(&rpm));
        let mut files: Vec<String> = listing
            .lines()
            .filter(|l| !listing.lines().any(|o| o.starts_with(&format!("{l}/"))))
            .map(str::to_string)
            .collect();
        files.sort();
        assert_eq!(files, want, "{listing}");
        let requires = run_ok(Command::new("rpm").arg("-qpR").arg(&rpm));
        assert!(
            requires.lines().any(|l| l.trim() == format!("kernel-uname-r = {k}")),
            "{requires}"
        );
        let scripts = run_ok(Command::new("rpm").args(["-qp", "--scripts"]).arg(&rpm));
        for s in [
            "preinstall scriptlet",
            "postinstall scriptlet",
            "postuninstall scriptlet",
            "dkms uninstall",
            "depmod -a",
        ] {
            assert!(scripts.contains(s), "{s} missing:\n{scripts}");
        }
        let x = tempfile::tempdir().unwrap();
        run_ok(Command::new("sh").current_dir(x.path()).arg("-c").arg(format!(
            "rpm2cpio {} | cpio -idm --quiet",
            q(&rpm.display().to_string())
        )));
        assert_signed_as_built(&w, &vpoll, k, x.path(), &want);
    }
    let meta = named(&rpms, "kmod-vpoll-0");
    let requires = run_ok(Command::new("rpm").arg("-qpR").arg(&meta));
    assert!(
        requires
            .lines()
            .any(|l| l.trim() == format!("kmod-vpoll-{new} = 0.1-1")),
        "{requires}"
    );
    let d_old = w.p("out-rpm-old").display().to_string();
    let old_meta = named(
        &written(&w.ok(&["mkrpm", &vpoll, "-k", old, "--output-dir", &d_old])),
        "kmod-vpoll-0",
    );
    let evr = |p: &Path| {
        run_ok(
            Command::new("rpm")
                .args(["-qp", "--qf", "%{VERSION}-%{RELEASE}"])
                .arg(p),
        )
    };
    let cmp = run_ok(Command::new("rpm").arg("--eval").arg(format!(
        "%{{lua: print(rpm.vercmp(\"{}\", \"{}\"))}}",
        evr(&old_meta),
        evr(&meta)
    )));
    assert_eq!(cmp.trim(), "-1", "rpm orders the older kernel's meta package first");

    // pacman: the kernel's package must be known (these Debian kernels have no pkgbase)
    let d = w.p("out-pkg");
    let ds = d.display().to_string();
    let o = w.modsync(&["mkpkg", "hello/1.0", "-k", new, "--output-dir", &ds]);
    assert_ne!(o.code, 0, "{}", o.show());
    assert!(o.stderr.contains("--kernel-package"), "{}", o.show());
    assert!(
        !d.exists() || fs::read_dir(&d).unwrap().next().is_none(),
        "written despite the error"
    );
    // an Arch kernel package holds one kernel: two kernels for one package are refused
    let o = w.modsync(&args(
        &[
            "mkpkg",
            "hello/1.0",
            "--output-dir",
            &ds,
            "--kernel-package",
            "linux=6.1.0-1",
        ],
        &kargs,
    ));
    assert_ne!(o.code, 0, "{}", o.show());
    assert!(o.stderr.contains("once per kernel"), "{}", o.show());
    assert!(
        !d.exists() || fs::read_dir(&d).unwrap().next().is_none(),
        "written despite the error"
    );
    // one kernel at a time, each the generation of the package `linux` that holds it
    let ver = |p: &Path| {
        let q = run_ok(Command::new("pacman").arg("-Qp").arg(p));
        q.split_whitespace().nth(1).unwrap().to_string()
    };
    let mut made = Vec::new();
    for (i, k) in ks.iter().enumerate() {
        let dk = w.p(&format!("out-pkg-{i}")).display().to_string();
        let kp = format!("linux={}-1", i + 1);
        let pkgs = written(&w.ok(&[
            "mkpkg",
            "hello/1.0",
            "-k",
            k,
            "--output-dir",
            &dk,
            "--kernel-package",
            &kp,
        ]));
        let pkg = named(&pkgs, "hello-modules-linux-");
        let meta = named(&pkgs, "hello-modules-1.0");
        let listing = run_ok(Command::new("pacman").arg("-Qlp").arg(&pkg));
        assert_eq!(
            listed_files(&listing, 1),
            expected_files(&w, "hello/1.0", k, "/usr/lib/modules", "/updates/dkms"),
            "{listing}"
        );
        let info = run_ok(Command::new("pacman").arg("-Qip").arg(&pkg));
        assert!(
            info.lines()
                .any(|l| l.starts_with("Depends On") && l.ends_with(&format!(": {kp}"))),
            "{info}"
        );
        assert!(
            info.lines()
                .any(|l| l.starts_with("Install Script") && l.ends_with(": Yes")),
            "{info}"
        );
        let meta_info = run_ok(Command::new("pacman").arg("-Qip").arg(&meta));
        assert!(
            meta_info.contains(&format!("hello-modules-linux={}", ver(&pkg))),
            "{meta_info}"
        );
        made.push((ver(&pkg), ver(&meta)));
    }
    for pair in made.windows(2) {
        for (a, b) in [(&pair[0].0, &pair[1].0), (&pair[0].1, &pair[1].1)] {
            let cmp = run_ok(Command::new("vercmp").arg(a).arg(b));
            assert_eq!(cmp.trim(), "-1", "pacman upgrades {a} to {b} (the newer kernel's)");
        }
    }
    assert!(made[0].0.starts_with("1.0+"), "{made:?}");
}

#[test]
fn not_built_or_bad_kernel_package_is_refused_with_nothing_written() {
    require_root("packages refused");
    let ks = test_kernels();
    let w = World::new(&ks);
    w.add_fixture("hello-1.0");
    w.ok(&["build", "hello/1.0", "-k", &ks[0]]);
    let out = w.p("out");
    let os = out.display().to_string();
    for verb in ["mkdeb", "mkrpm", "mkpkg"] {
        let o = w.modsync(&args(
            &[verb, "hello/1.0", "--output-dir", &os, "--kernel-package", "k"],
            &w.k_args(),
        ));
        assert_ne!(o.code, 0, "{}", o.show());
        assert!(
            o.stderr.contains(&format!("`modsync build hello/1.0 -k {}`", ks[1])),
            "{}",
            o.show()
        );
        for bad in ["lin ux", "linux=$(id)", "=1", "linux=", "-linux"] {
            let kp = format!("--kernel-package={bad}");
            let o = w.modsync(&[verb, "-m", "hello", "-v", "1.0", "-k", &ks[0], "--output-dir", &os, &kp]);
            assert_ne!(o.code, 0, "{bad}: {}", o.show());
            assert!(o.stderr.contains("--kernel-package"), "{}", o.show());
        }
        let o = w.modsync(&[verb, "nosuch/1.0", "-k", &ks[0], "--output-dir", &os]);
        assert_ne!(o.code, 0, "{}", o.show());
        let o = w.modsync(&[verb, "hello/1.0", "--output-dir", &os]);
        assert_ne!(o.code, 0, "no kernel named: {}", o.show());
    }
    assert!(!out.exists(), "something was written");
    assert!(!w.p("dkms/hello/1.0/deb").exists() && !w.p("dkms/hello/1.0/rpm").exists());
    assert!(!w.p("dkms/hello/1.0/pkg").exists());
}

#[test]
fn a_module_a_package_provides_is_not_built_from_source_for_that_kernel() {
    require_root("packages hooks");
    let ks = test_kernels();
    let (old, new) = (&ks[0], &ks[ks.len() - 1]);
    let w = World::new(&ks);
    run_ok(
        Command::new("cp")
            .arg("-a")
            .arg(crate::overlay_root::hello_fixture())
            .arg(w.p("src")),
    );
    let marker = w.p("usr/lib/modsync/packaged/hello");
    fs::create_dir_all(&marker).unwrap();
    fs::write(
        marker.join(new),
        format!(
            "module = \"hello\"\nversion = \"1.0\"\nkernel = \"{new}\"\narch = \"{ARCH}\"\n\
             package = \"hello-modules-{new}\"\nfiles = []\n"
        ),
    )
    .unwrap();
    // a source package's common.postinst builds for the newest kernel: not this one
    let o = w.hook(&["common-postinst", "hello", "1.0"]);
    assert!(
        o.stderr.contains(&format!(
            "the package hello-modules-{new} provides hello for kernel {new}"
        )),
        "{}",
        o.show()
    );
    assert!(
        !w.p("dkms/hello/1.0").join(new).exists(),
        "built from source:\n{}",
        w.status()
    );
    let o = w.ok(&["autoinstall", "-k", new]);
    assert!(o.stdout.contains("not built from source"), "{}", o.show());
    assert!(
        !w.p("dkms/hello/1.0").join(new).exists(),
        "built from source:\n{}",
        w.status()
    );
    // another kernel is built as usual
    w.ok(&["autoinstall", "-k", old]);
    let status = w.status();
    assert!(
        status.contains(&format!("hello/1.0, {old}, {ARCH}: installed\n")),
        "{status}"
    );
    assert!(
        status.contains(&format!(
            "hello/1.0, {new}, {ARCH}: installed (package hello-modules-{new})\n"
        )),
        "{status}"
    );
    let json = w.status_json();
    assert!(
        json.iter().any(|l| l["package"] == format!("hello-modules-{new}")),
        "{json:?}"
    );
}
