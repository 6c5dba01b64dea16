//! `modsync mkdeb|mkrpm|mkpkg` against real builds (the hello fixture and
//! Debian's vpoll source, both test kernels): the real dpkg-deb, rpm and
//! pacman list exactly the files modsync computed and the build made, the
//! dependencies and the scripts; the packaged modules carry the build's
//! signature; a .deb installed with the real dpkg in an overlay root takes
//! over from a source-installed module (its preinst uninstalls it), runs
//! depmod, shows in `status`, keeps autoinstall from rebuilding it, and its
//! removal leaves nothing; an RPM installed with the real rpm does the same
//! for its files and depmod, and so does a pacman package with the real
//! pacman. A module version not built for a kernel, or a
//! bad `--kernel-package`, is refused with nothing written.

use crate::overlay_root::q;
use crate::overlay_root::{require_tools, Checks, Root};
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
fn written(o: &crate::support::Out) -> Vec<PathBuf> {
    let paths: Vec<PathBuf> = o.stdout.lines().map(PathBuf::from).collect();
    for p in &paths {
        assert!(p.is_file(), "{} was printed but not written\n{}", p.display(), o.show());
    }
    paths
}

fn named(paths: &[PathBuf], prefix: &str) -> PathBuf {
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
        &["dpkg-deb", "dpkg", "rpm", "rpm2cpio", "cpio", "pacman", "modinfo"],
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
    let o = w.ok(&args(
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
    let pkgs = written(&o);
    for k in &ks {
        let pkg = named(&pkgs, &format!("hello-modules-{k}-"));
        let listing = run_ok(Command::new("pacman").arg("-Qlp").arg(&pkg));
        assert_eq!(
            listed_files(&listing, 1),
            expected_files(&w, "hello/1.0", k, "/usr/lib/modules", "/updates/dkms"),
            "{listing}"
        );
        let info = run_ok(Command::new("pacman").arg("-Qip").arg(&pkg));
        assert!(
            info.lines()
                .any(|l| l.starts_with("Depends On") && l.ends_with(": linux=6.1.0-1")),
            "{info}"
        );
        assert!(
            info.lines()
                .any(|l| l.starts_with("Install Script") && l.ends_with(": Yes")),
            "{info}"
        );
    }
    let info = run_ok(
        Command::new("pacman")
            .arg("-Qip")
            .arg(named(&pkgs, "hello-modules-1.0")),
    );
    assert!(info.contains(&format!("hello-modules-{new}=1.0-1")), "{info}");
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
        named(&pkgs, &format!("hello-modules-{k}-"))
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
        "mkdir -p /var/lib/pacman; pacman -U -dd --noconfirm {pkg}; {v}; modsync status; pacman -Qkk hello-modules-{k}; \
         pacman -R --noconfirm hello-modules-{k}; {none}; [ ! -e /usr/lib/modsync/packaged/hello/{k} ]; \
         ! grep -q hello /usr/lib/modules/{k}/modules.dep",
        v = crate::overlay_root::vermagic_is("hello", &k),
        none = crate::overlay_root::no_module_file("hello", &k)
    ));
    ck.truth(
        "pacman installs the package (depmod runs, status shows it, -Qkk finds it intact) and removes it leaving nothing",
        o.ok && o.output.contains(&format!("installed (package hello-modules-{k})"))
            && o.output.contains("0 altered files"),
        &o.output,
    );
    drop(root);
    ck.finish();
}
