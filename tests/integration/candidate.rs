//! `modsync check --candidate` on Arch and Fedora: the next kernel comes
//! from the real pacman and dnf, its headers package is downloaded from a
//! local repository and unpacked in the scratch tree, never installed.
//!
//! Each test runs in an overlay root of this machine ([`crate::overlay_root`])
//! that says it is Arch (or Fedora) in os-release. The repository holds the
//! headers of the newest test kernel K as that distribution packages them:
//! `linux-e2e-headers` with `usr/lib/modules/K/build` (made with tar and
//! zstd, published with repo-add), the running kernel's `pkgbase` naming
//! `linux-e2e`; `kernel-devel` with `usr/src/kernels/K` (made with the rpm
//! crate from the real Debian headers of K, published with createrepo_c)
//! beside an older kernel-devel for K0 that dnf must pass over. What it
//! proves: check names K and its package, builds hello against the fetched
//! headers, and installs nothing (no package in the database, no K module
//! directory, no headers, nothing in the state tree); a headers package the
//! repository lacks is an error that names it.
//!
//! Needs root, pacman + repo-add, dnf 4 with dnf-plugins-core (`dnf
//! download`), rpm, createrepo_c, zstd, make, gcc and the test kernels'
//! headers (`tests/setup.sh`).

use crate::overlay_root::*;
use crate::support::{require_root, test_kernels};
use std::path::Path;

/// The overlay root with modsync, hello registered and this os-release.
fn root_with_hello(name: &str, os_release: &str) -> Root {
    let root = Root::new(name);
    root.put(&modsync_bin(), "/usr/bin/modsync");
    root.put(&hello_fixture(), "/usr/src/hello-1.0");
    root.must(
        "os-release and hello registered",
        &format!(
            "rm -rf /var/lib/dkms /etc/os-release && printf '%s\\n' {} > /etc/os-release && modsync add hello/1.0",
            q(os_release)
        ),
    );
    root
}

/// The checks after `modsync check --candidate` printed `out`: K and the
/// package named, hello built against `headers` (a path under the scratch
/// tree), and nothing installed (`not_installed` is the package manager's
/// own query, failing when the package is installed).
fn candidate_checked(
    ck: &mut Checks,
    root: &Root,
    out: &Outcome,
    (manager, k, package, headers): (&str, &str, &str, &str),
    not_installed: &str,
) {
    ck.truth("check --candidate exits 0", out.ok, &out.output);
    ck.truth(
        &format!("it names {k} from {package} as {manager}'s next kernel"),
        out.output
            .contains(&format!("The next kernel {manager} would install is {k} ({package})")),
        &out.output,
    );
    ck.truth(
        "the headers are the fetched ones, in the scratch tree",
        out.output.contains(&format!("candidate/root/{headers})")),
        &out.output,
    );
    ck.truth(
        "hello/1.0 builds",
        out.output.contains("hello/1.0: builds"),
        &out.output,
    );
    ck.cmd(
        "nothing installed: not in the package database, no module directory or headers, the state tree as it was",
        &root.sh(&format!(
            "{not_installed} && ! [ -e /usr/lib/modules/{k} ] && ! [ -e /usr/src/kernels ] && \
             [ \"$(modsync status)\" = 'hello/1.0: added' ] && ! [ -e /var/lib/dkms/hello/kernel-{k}-x86_64 ] && \
             ! ls -d /tmp/modsync-check.* 2>/dev/null",
            k = q(k)
        )),
    );
}

#[test]
fn check_candidate_asks_pacman_for_the_next_kernel() {
    const TEST: &str = "candidate::check_candidate_asks_pacman_for_the_next_kernel";
    require_root(TEST);
    require_tools(TEST, &["pacman", "repo-add", "unshare", "zstd", "tar", "make", "gcc"]);
    let k = test_kernels().pop().expect("test kernels");
    let mut ck = Checks::new(TEST);
    let root = root_with_hello("candidate-pacman", "NAME=\"Arch Linux\"\nID=arch");
    root.must(
        "a pacman repository with linux-e2e-headers for K",
        &format!(
            r#"
K={k}
rm -rf /usr/lib/modules/$K /var/lib/pacman /srv/repo
mkdir -p /var/lib/pacman /srv/repo "/usr/lib/modules/$(uname -r)"
echo linux-e2e > "/usr/lib/modules/$(uname -r)/pkgbase"
printf '%s\n' '[options]' 'Architecture = x86_64' 'SigLevel = Never' '[e2e]' 'Server = file:///srv/repo' > /etc/pacman.conf
s=$(mktemp -d); b=$s/usr/lib/modules/$K/build
{DEBIAN_HEADERS_TO_B}
printf '%s\n' 'pkgname = linux-e2e-headers' 'pkgbase = linux-e2e' 'pkgver = 2-1' 'arch = x86_64' \
    "size = $(du -sb "$s" | cut -f1)" "builddate = $(date +%s)" > "$s/.PKGINFO"
f=/srv/repo/linux-e2e-headers-2-1-x86_64.pkg.tar.zst
(cd "$s" && {{ echo .PKGINFO; find . -mindepth 1 ! -name .PKGINFO -printf '%P\n' | LC_ALL=C sort; }} \
    | tar --no-recursion --numeric-owner --owner=0 --group=0 -cf - -T -) | zstd -q -c > "$f"
repo-add -q /srv/repo/e2e.db.tar.gz "$f"
pacman -Sy --noprogressbar
"#,
            k = q(&k)
        ),
    );
    let out = root.sh("modsync check --candidate");
    candidate_checked(
        &mut ck,
        &root,
        &out,
        ("pacman", &k, "linux-e2e-headers", &format!("usr/lib/modules/{k}/build")),
        "! pacman -Q linux-e2e-headers",
    );
    let out = root.sh("echo linux-gone > \"/usr/lib/modules/$(uname -r)/pkgbase\"; ! modsync check --candidate");
    ck.truth(
        "a kernel package without headers in the repository: check fails and names linux-gone-headers",
        out.ok && out.output.contains("linux-gone-headers") && out.output.contains("pacman -Sy"),
        &out.output,
    );
    drop(root);
    ck.finish();
}

/// A kernel-devel RPM of K as Fedora lays it out (`/usr/src/kernels/K`),
/// from the Debian headers of K (links to the kbuild tree made absolute).
fn kernel_devel(k: &str, rpms: &Path) {
    let (v, r) = crate::dnf::rpm_version_release(k);
    let headers = format!("/usr/src/linux-headers-{k}");
    let dest = format!("/usr/src/kernels/{k}");
    let mut b = rpm::PackageBuilder::new(
        "kernel-devel",
        &v,
        "GPL-2.0-only",
        "x86_64",
        "modsync e2e kernel headers",
    );
    b.release(&r)
        .description("Stand-in for Fedora's kernel-devel (modsync e2e test).")
        .provides(rpm::Dependency::any("installonlypkg(kernel)"));
    for name in ["scripts", "tools"] {
        let target = std::fs::read_link(format!("{headers}/{name}")).expect("Debian's headers link");
        let target = format!("/usr/{}", target.to_string_lossy().trim_start_matches("../../"));
        b.with_symlink(rpm::FileOptions::symlink(format!("{dest}/{name}"), target))
            .expect("symlink");
    }
    b.with_dir(&headers, &dest, |o| o).expect("headers tree");
    b.build()
        .expect("build kernel-devel")
        .write_file(rpms.join(format!("kernel-devel-{v}-{r}.x86_64.rpm")))
        .expect("write kernel-devel");
}

#[test]
fn check_candidate_asks_dnf_for_the_next_kernel() {
    const TEST: &str = "candidate::check_candidate_asks_dnf_for_the_next_kernel";
    require_root(TEST);
    require_tools(TEST, &["dnf", "rpm", "createrepo_c", "unshare", "make", "gcc"]);
    let ks = test_kernels();
    let (k0, k) = (ks[0].clone(), ks[ks.len() - 1].clone());
    let mut ck = Checks::new(TEST);
    let rpms = tempfile::tempdir().expect("tempdir");
    kernel_devel(&k0, rpms.path());
    kernel_devel(&k, rpms.path());
    let root = root_with_hello("candidate-dnf", "NAME=Fedora\nID=fedora\nVERSION_ID=40");
    root.put(rpms.path(), "/srv/rpms");
    root.must(
        "rpm, dnf and a repository with kernel-devel for K0 and K",
        &format!(
            "rm -rf /usr/src/kernels /var/lib/rpm /var/cache/dnf\n{}\ndnf -q makecache",
            rpm_and_dnf("40")
        ),
    );
    ck.cmd(
        "dnf itself lists kernel-devel of K0 and K",
        &root.sh("[ \"$(dnf -q repoquery kernel-devel | wc -l)\" = 2 ]"),
    );
    let out = root.sh(&format!(
        "rm -rf /usr/lib/modules/{} && modsync check --candidate",
        q(&k)
    ));
    candidate_checked(
        &mut ck,
        &root,
        &out,
        ("dnf", &k, "kernel-devel", &format!("usr/src/kernels/{k}")),
        "! rpm -q kernel-devel",
    );
    let out = root
        .sh("rm -f /srv/rpms/*.rpm && createrepo_c -q /srv/rpms && dnf -q makecache && ! modsync check --candidate");
    ck.truth(
        "no kernel-devel in the repository: check fails and names it",
        out.ok && out.output.contains("kernel-devel"),
        &out.output,
    );
    drop(root);
    ck.finish();
}
