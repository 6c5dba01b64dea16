//! The pieces of the [`fleet`](crate::fleet) test that are not the story
//! itself: the fake kernel packages its module packages depend on, the three
//! local repositories indexed with the distributions' own tools, the
//! compiler-less targets, and reading and checking package listings.
//!
//! What it proves by itself: nothing; it sets the stage. Everything lives
//! in one overlay [`Root`] of this machine (the build host, with gcc and the
//! Debian kernel headers): the repositories under `/srv/repo/{deb,rpm,pkg}`,
//! the targets under `/targets/<name>`, each a copy of the debootstrap
//! minbase tree of `tests/setup.sh` with the compiler, binutils, make and
//! libc6-dev purged (and never any kernel headers). Fake kernels:
//! - deb: `linux-image-K` owning `/lib/modules/K/modules.{order,builtin,builtin.modinfo}`
//!   copied from the real image (so depmod works), and `linux-image-e2e`
//!   depending on the newest one (version 1, then 2);
//! - rpm (the `rpm` crate): `kernel-core` with `Provides: kernel-uname-r = K`
//!   and `installonlypkg(kernel)`, owning the same three files, and
//!   `e2e-shell` providing `/bin/sh` (the targets' shell is Debian's, unknown
//!   to their rpm database);
//! - pacman (tar + zstd): `linux-e2e` 1-1 then 2-1 with the same files and
//!   `usr/lib/modules/K/pkgbase`.

use crate::dnf::rpm_version_release;
use crate::overlay_root::{q, Checks, Root};
use crate::support::{image_dir, CACHE};
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

/// The package formats, as modsync's commands name them (mk<fmt>).
pub const FORMATS: [&str; 3] = ["deb", "rpm", "pkg"];
/// The three files of a kernel's module tree depmod needs.
const KERNEL_FILES: [&str; 3] = ["modules.order", "modules.builtin", "modules.builtin.modinfo"];
pub const PATH_IN_TARGET: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// pacman on a target: its root, database, cache and log all inside it,
/// the fleet repository its only one.
pub fn pacman(target: &str) -> String {
    format!(
        "pacman --noconfirm --noprogressbar --config /srv/fleet/pacman.conf --root {target} \
         --dbpath {target}/var/lib/pacman --cachedir {target}/var/cache/pacman/pkg \
         --logfile {target}/var/log/pacman.log"
    )
}

/// pacman's queries on a target (they take no transaction options).
pub fn pacman_q(target: &str) -> String {
    format!("pacman --root {target} --dbpath {target}/var/lib/pacman")
}

/// dnf on a target (`--installroot`), the fleet repository its only one;
/// removing a module package keeps the kernel it pulled in.
pub fn dnf(target: &str) -> String {
    format!(
        "dnf -y --installroot={target} --releasever=12 --setopt=reposdir={target}/etc/yum.repos.d \
         --setopt=clean_requirements_on_remove=False --setopt=install_weak_deps=False"
    )
}

/// Shell: runs SCRIPT (bash -e) chrooted into TARGET with /proc, /dev and
/// the repositories (read-only) mounted; the mounts die with the root's
/// private namespace.
pub fn in_target(target: &str, script: &str) -> String {
    format!(
        r#"t={target}
mount -t proc proc "$t/proc"; mount --bind /dev "$t/dev"
mkdir -p "$t/srv/repo"; mount --bind -o ro /srv/repo "$t/srv/repo"
chroot "$t" /usr/bin/env -i PATH={PATH_IN_TARGET} HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    /bin/bash -o pipefail -ec {}"#,
        q(script)
    )
}

/// Sets up the build host: modsync, the two sources, the repositories, the
/// package tools' configuration, and the targets.
pub fn stage(root: &Root, hello: &Path, vpoll: &Path, targets: &[&str]) {
    root.put(&crate::overlay_root::modsync_bin(), "/usr/bin/modsync");
    root.put(
        hello,
        &format!("/usr/src/{}", hello.file_name().unwrap().to_string_lossy()),
    );
    root.put(
        vpoll,
        &format!("/usr/src/{}", vpoll.file_name().unwrap().to_string_lossy()),
    );
    let tarball = Path::new(CACHE).join("bookworm-minbase-2.tar");
    let copies: String = targets
        .iter()
        .map(|t| format!("cp -a /targets/base /targets/{t}\n"))
        .collect();
    root.must(
        "stage the build host, the repositories and the targets",
        &format!(
            r#"
rm -rf /var/lib/dkms /etc/dkms/framework.conf.d /srv /targets
# the host's module trees as the headers packages ship them (build, source)
for d in /usr/lib/modules/*/; do find "$d" -mindepth 1 -maxdepth 1 ! -name build ! -name source -exec rm -rf {{}} +; done
mkdir -p /srv/repo/deb /srv/repo/rpm /srv/repo/pkg /srv/out /srv/fleet /targets/base /etc/rpm
echo '%_dbpath /var/lib/rpm' > /etc/rpm/macros
cat > /srv/fleet/pacman.conf <<'EOF'
[options]
Architecture = x86_64
SigLevel = Never
LocalFileSigLevel = Never
[fleet]
Server = file:///srv/repo/pkg
EOF
tar -C /targets/base -xf {tarball}
{purge}
"#,
            tarball = q(&tarball.to_string_lossy()),
            purge = in_target(
                "/targets/base",
                "apt-get purge -y -q --autoremove gcc-12 cpp-12 binutils make libc6-dev >/dev/null"
            ),
        ),
    );
    // a separate namespace: the purge's mounts are gone
    root.must("copy the targets", &format!("{copies}rm -rf /targets/base"));
}

/// Shell: no compiler, assembler, make or kernel headers in TARGET.
pub fn no_toolchain(target: &str) -> String {
    format!(
        "t={target}; for b in gcc cc cpp as ld make gcc-12; do ! test -e $t/usr/bin/$b || {{ echo \"$t/usr/bin/$b\"; exit 1; }}; done; \
         ! ls -d $t/usr/src/linux-headers-* $t/usr/lib/modules/*/build 2>/dev/null"
    )
}

/// Makes and publishes generation N (1 or 2) of the fake kernel packages,
/// for kernel K.
pub fn fake_kernels(root: &Root, k: &str, n: u32) {
    let img = image_dir(k).join("lib/modules").join(k);
    let rpms = tempfile::tempdir().expect("tempdir");
    let (v, r) = rpm_version_release(k);
    let mut b = rpm::PackageBuilder::new("kernel-core", &v, "GPL-2.0-only", "x86_64", "fleet test kernel");
    b.release(&r)
        .description("Stand-in for a Fedora kernel-core package (modsync fleet test).")
        .provides(rpm::Dependency::any("installonlypkg(kernel)"))
        .provides(rpm::Dependency::eq("kernel-uname-r", k));
    for f in KERNEL_FILES {
        let data = fs::read(img.join(f)).unwrap_or_else(|e| panic!("read {}: {e}", img.join(f).display()));
        b.with_file_contents(data, rpm::FileOptions::new(format!("/lib/modules/{k}/{f}")))
            .expect("kernel-core file");
    }
    let file = rpms.path().join(format!("kernel-core-{v}-{r}.x86_64.rpm"));
    b.build()
        .expect("build kernel-core")
        .write_file(&file)
        .expect("write kernel-core");
    // the targets' shell is Debian's: tell their rpm database it is there
    let sh = rpms.path().join("e2e-shell-1-1.noarch.rpm");
    rpm::PackageBuilder::new("e2e-shell", "1", "MIT", "noarch", "the target's /bin/sh")
        .release("1")
        .description("Tells the rpm database of a fleet test target that its /bin/sh exists.")
        .provides(rpm::Dependency::any("/bin/sh"))
        .build()
        .expect("build e2e-shell")
        .write_file(&sh)
        .expect("write e2e-shell");
    root.put(rpms.path(), &format!("/srv/fleet/rpms-{k}"));
    root.must(
        "publish the RPMs",
        &format!("cp /srv/fleet/rpms-{k}/*.rpm /srv/repo/rpm/"),
    );
    root.put(&img, &format!("/srv/fleet/img-{k}"));
    root.must(
        &format!("fake kernel packages for {k}"),
        &format!(
            r#"K={k} N={n} I=/srv/fleet/img-{k}
s=$(mktemp -d); mkdir -p "$s/DEBIAN" "$s/lib/modules/$K"
cp "$I"/modules.order "$I"/modules.builtin "$I"/modules.builtin.modinfo "$s/lib/modules/$K/"
printf 'Package: linux-image-%s\nVersion: %s\nArchitecture: amd64\nMaintainer: modsync e2e <e2e@example.invalid>\nDescription: fleet test kernel %s\n' \
    "$K" "$N" "$K" > "$s/DEBIAN/control"
dpkg-deb -Zxz --root-owner-group --build "$s" "/srv/repo/deb/linux-image-${{K}}_${{N}}_amd64.deb" >/dev/null
s=$(mktemp -d); mkdir -p "$s/DEBIAN"
printf 'Package: linux-image-e2e\nVersion: %s\nArchitecture: amd64\nDepends: linux-image-%s\nMaintainer: modsync e2e <e2e@example.invalid>\nDescription: fleet test kernel (newest)\n' \
    "$N" "$K" > "$s/DEBIAN/control"
dpkg-deb -Zxz --root-owner-group --build "$s" "/srv/repo/deb/linux-image-e2e_${{N}}_amd64.deb" >/dev/null
s=$(mktemp -d); m=$s/usr/lib/modules/$K; mkdir -p "$m"
cp "$I"/modules.order "$I"/modules.builtin "$I"/modules.builtin.modinfo "$m/"
echo linux-e2e > "$m/pkgbase"
printf 'pkgname = linux-e2e\npkgbase = linux-e2e\npkgver = %s-1\npkgdesc = fleet test kernel\nurl = https://example.invalid\nbuilddate = %s\npackager = modsync e2e\nsize = 1\narch = x86_64\nlicense = GPL2\n' \
    "$N" "$(date +%s)" > "$s/.PKGINFO"
(cd "$s" && {{ echo .PKGINFO; find . -mindepth 1 ! -name .PKGINFO -printf '%P\n' | LC_ALL=C sort; }} \
    | tar --no-recursion --numeric-owner --owner=0 --group=0 -cf - -T -) | zstd -q -c > "/srv/repo/pkg/linux-e2e-$N-1-x86_64.pkg.tar.zst"
"#
        ),
    );
}

/// Shell: (re)indexes the three repositories with the distributions' tools.
pub const INDEX: &str = r#"cd /srv/repo/deb && dpkg-scanpackages --multiversion . > Packages 2>/dev/null && gzip -kf Packages
createrepo_c -q --update /srv/repo/rpm
cd /srv/repo/pkg && rm -f fleet.db* fleet.files* && repo-add -q -p fleet.db.tar.gz ./*.pkg.tar.zst
"#;

/// Shell: points each target's own package manager at its repository only.
pub fn configure_targets(apt: &str, dnf_targets: &[&str], pacman_target: &str) -> String {
    let mut s = format!(
        "rm -f {apt}/etc/apt/sources.list.d/*; echo 'deb [trusted=yes] file:/srv/repo/deb ./' > {apt}/etc/apt/sources.list\n"
    );
    for t in dnf_targets {
        s.push_str(&format!(
            "mkdir -p {t}/etc/yum.repos.d {t}/var/lib/rpm; rpm --root {t} --initdb\n\
             printf '[fleet]\\nname=fleet\\nbaseurl=file:///srv/repo/rpm\\ngpgcheck=0\\nmetadata_expire=0\\n' > {t}/etc/yum.repos.d/fleet.repo\n"
        ));
    }
    s.push_str(&format!(
        "mkdir -p {p}/var/lib/pacman {p}/var/cache/pacman/pkg {p}/var/log\n",
        p = pacman_target
    ));
    s
}

/// The per-kernel and the meta package's names of module M.
pub fn package_names(fmt: &str, m: &str, k: &str) -> (String, String) {
    match fmt {
        "rpm" => (format!("kmod-{m}-{k}"), format!("kmod-{m}")),
        // pacman's is named for the kernel's package, which holds one kernel
        "pkg" => (format!("{m}-modules-linux-e2e"), format!("{m}-modules")),
        _ => (format!("{m}-modules-{k}"), format!("{m}-modules")),
    }
}

/// `dpkg-deb -c`, `rpm -qplv`, `pacman -Qlp` list exactly the module and
/// the marker (the meta package: nothing). Returns (package name, file).
pub fn check_listings(
    root: &Root,
    ck: &mut Checks,
    fmt: &str,
    m: &str,
    k: &str,
    files: &[String],
) -> Vec<(String, String)> {
    let (per_kernel, meta) = package_names(fmt, m, k);
    let mut named = Vec::new();
    for f in files {
        let (name_cmd, list_cmd) = match fmt {
            "deb" => (format!("dpkg-deb -f {f} Package"), format!("dpkg-deb -c {f}")),
            "rpm" => (format!("rpm -qp --qf '%{{NAME}}' {f}"), format!("rpm -qplv {f}")),
            _ => (
                format!("pacman -Qip {f} | sed -n 's/^Name *: //p'"),
                format!("pacman -Qlp {f}"),
            ),
        };
        let name = root.sh(&name_cmd).output.trim().to_string();
        let list = root.sh(&list_cmd);
        let (fs, ds) = listing(fmt, &list.output);
        let what = format!("{list_cmd} ({name})");
        if name == per_kernel {
            let (prefix, dest) = match fmt {
                "deb" => (format!("/lib/modules/{k}/"), Some("updates/dkms")),
                "rpm" => (format!("/lib/modules/{k}/"), None),
                _ => (format!("/usr/lib/modules/{k}/"), None),
            };
            let problem = listing_problem(&fs, &ds, &prefix, dest, m, k);
            ck.truth(
                &format!("{what} lists exactly the module and the marker"),
                list.ok && problem.is_none(),
                &format!("{}\n{}", problem.unwrap_or_default(), list.output),
            );
        } else {
            ck.truth(
                &format!("{f} is {per_kernel} or {meta}; {meta} lists no files"),
                name == meta && list.ok && fs.is_empty(),
                &list.output,
            );
        }
        named.push((name, f.clone()));
    }
    named
}

/// Files and directories a package lists: `dpkg-deb -c`, `rpm -qplv` or
/// `pacman -Qlp` output; paths absolute, directories without the trailing '/'.
pub fn listing(format: &str, text: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut files, mut dirs) = (BTreeSet::new(), BTreeSet::new());
    for line in text.lines() {
        let (is_dir, path) = match format {
            "pkg" => match line.split_once(' ') {
                Some((_, p)) => (p.ends_with('/'), p),
                None => continue,
            },
            _ => match line.split_whitespace().last() {
                Some(p) if p.contains('/') => (line.starts_with('d'), p),
                _ => continue,
            },
        };
        let p = format!("/{}", path.trim_start_matches('.').trim_matches('/'));
        if p == "/" {
            continue;
        }
        if is_dir {
            dirs.insert(p);
        } else {
            files.insert(p);
        }
    }
    (files, dirs)
}

/// What is wrong with a per-kernel package's listing of module M for
/// kernel K, the modules under PREFIX (DEST if given), nothing else but
/// the marker; `None` when it is right.
pub fn listing_problem(
    files: &BTreeSet<String>,
    dirs: &BTreeSet<String>,
    prefix: &str,
    dest: Option<&str>,
    m: &str,
    k: &str,
) -> Option<String> {
    let marker = format!("/usr/lib/modsync/packaged/{m}/{k}");
    let module_ok = |f: &str| {
        let Some(rest) = f.strip_prefix(prefix) else {
            return false;
        };
        let (dir, name) = rest.rsplit_once('/').unwrap_or(("", rest));
        ["", ".xz", ".zst", ".gz"]
            .iter()
            .any(|ext| name == format!("{m}.ko{ext}"))
            && dest.is_none_or(|d| dir == d.trim_matches('/'))
    };
    let modules: Vec<&String> = files.iter().filter(|f| module_ok(f)).collect();
    let others: Vec<&String> = files.iter().filter(|f| !module_ok(f) && **f != marker).collect();
    let stray_dirs: Vec<&String> = dirs
        .iter()
        .filter(|d| !files.iter().any(|f| f.starts_with(&format!("{d}/"))))
        .collect();
    if modules.len() != 1 || !files.contains(&marker) || !others.is_empty() || !stray_dirs.is_empty() {
        return Some(format!(
            "expected one {prefix}{}{m}.ko[.xz|.zst|.gz] and {marker}; got files {files:?}, \
             unexpected {others:?}, directories holding none of them {stray_dirs:?}",
            dest.map(|d| format!("{}/", d.trim_matches('/')))
                .unwrap_or_else(|| "<dest>/".into())
        ));
    }
    None
}

#[test]
fn listings_parse() {
    let deb = "drwxr-xr-x root/root 0 2026-12-05 12:00 ./\n\
               drwxr-xr-x root/root 0 2026-12-05 12:00 ./lib/modules/K/updates/dkms/\n\
               -rw-r--r-- root/root 9 2026-12-05 12:00 ./lib/modules/K/updates/dkms/hello.ko.xz\n\
               -rw-r--r-- root/root 0 2026-12-05 12:00 ./usr/lib/modsync/packaged/hello/K\n";
    let (f, d) = listing("deb", deb);
    assert_eq!(f.len(), 2);
    assert!(d.contains("/lib/modules/K/updates/dkms"));
    assert_eq!(
        listing_problem(&f, &d, "/lib/modules/K/", Some("updates/dkms"), "hello", "K"),
        None
    );
    assert!(listing_problem(&f, &d, "/lib/modules/K/", Some("extra"), "hello", "K").is_some());
    let pkg = "hello-modules-K /usr/\nhello-modules-K /usr/lib/modules/K/extra/hello.ko.zst\n\
               hello-modules-K /usr/lib/modsync/packaged/hello/K\nhello-modules-K /usr/share/doc/x\n";
    let (f, d) = listing("pkg", pkg);
    assert_eq!(d.len(), 1);
    assert!(listing_problem(&f, &d, "/usr/lib/modules/K/", None, "hello", "K").is_some());
    let rpm = "(contains no files)\n";
    assert!(listing("rpm", rpm).0.is_empty());
    let rpm = "-rw-r--r--    1 root     root      9 Dec  5 12:00 /lib/modules/K/extra/hello.ko\n\
               drwxr-xr-x    2 root     root      0 Dec  5 12:00 /usr/share/empty\n\
               -rw-r--r--    1 root     root      0 Dec  5 12:00 /usr/lib/modsync/packaged/hello/K\n";
    let (f, d) = listing("rpm", rpm);
    assert!(listing_problem(&f, &d, "/lib/modules/K/", None, "hello", "K").is_some_and(|p| p.contains("empty")));
}
