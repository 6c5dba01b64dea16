//! The alpm hooks (hooks/pacman/*.hook) with the real pacman (Debian's
//! pacman-package-manager 6.0.2, libalpm 13).
//!
//! Runs in an overlay root of this machine (see [`crate::overlay_root`]): the
//! host's tools and Debian kernel headers are visible, every write goes to a
//! throwaway layer. In it, pacman installs hand-made Arch packages:
//! - `modsync`: the binary under test, `dkms` link, the two alpm hooks;
//! - `linux-e2e`: kernel K (`usr/lib/modules/K/{vmlinuz,modules.order,...}`),
//!   version 1-1 for the older test kernel K0 and 2-1 for the newer K;
//! - `linux-e2e-headers`: `usr/lib/modules/K/build/`, the real Debian header
//!   tree of K (`/usr/src/linux-headers-K`), same two versions;
//! - `hello-dkms`: `usr/src/hello-1.0/` (tests/fixtures/hello-1.0).
//!
//! What it proves: the hooks sort between 60-depmod and
//! 90-mkinitcpio-install; pacman runs them without hook errors; they build
//! the registered module when the kernel arrives (a module that does not
//! compile is reported and fails nothing), build it for the new kernel and
//! drop the old kernel's on a kernel upgrade K0 -> K, keep it when only the
//! headers go, drop it with the kernel (the registration stays), build a
//! module package arriving for the installed kernel and uninstall and
//! unregister it when it leaves.
//!
//! Needs root, pacman, zstd, make, gcc, kmod and the test kernels' headers
//! (`tests/setup.sh`). `MODSYNC_TEST_KEEP=1` keeps the overlay layer.

use crate::overlay_root::*;
use crate::support::{require_root, test_kernels};

const TEST: &str = "pacman::pacman_hooks_build_and_remove_modules";
/// Where the files under test are put inside the root.
const E: &str = "/usr/local/lib/modsync-e2e";
const P: &str = "pacman --noconfirm --noprogressbar";

#[test]
fn pacman_hooks_build_and_remove_modules() {
    require_root(TEST);
    require_tools(TEST, &["pacman", "unshare", "zstd", "tar", "modinfo", "make", "gcc"]);
    let ks = test_kernels();
    // oldest first: linux-e2e K0 -> K is a kernel upgrade
    let (k0, k) = (ks[0].clone(), ks[ks.len() - 1].clone());
    let mut ck = Checks::new(TEST);
    ck.progress(&format!("kernels {k0} then {k}"));
    let root = Root::new("pacman-root");
    setup(&root, &k0, &k);
    ck.progress("packages built");
    scenario(&root, &k0, &k, &mut ck);
    drop(root);
    ck.finish();
}

/// Puts the files under test into the root and builds the packages there.
fn setup(root: &Root, k0: &str, k: &str) {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    root.put(&modsync_bin(), &format!("{E}/modsync"));
    root.put(&manifest.join("hooks/pacman"), &format!("{E}/hooks"));
    root.put(&hello_fixture(), &format!("{E}/hello-1.0"));
    let (k0, k) = (q(k0), q(k));
    root.must(
        "build the test packages",
        &format!(
            r#"
K0={k0} K={k} E={E}
# Only the pacman packages provide kernels in here.
rm -rf /usr/lib/modules/*
rm -rf /var/lib/pacman /var/lib/dkms /usr/src/hello-* /usr/src/broken-*
mkdir -p /var/lib/pacman /tmp/pkgs
cat > /etc/pacman.conf <<'EOF'
[options]
Architecture = x86_64
SigLevel = Never
LocalFileSigLevel = Never
EOF

# mkpkg NAME VERSION DIR [.PKGINFO line...]: an Arch package of DIR's files.
mkpkg() {{
    local name=$1 ver=$2 dir=$3; shift 3
    {{
        echo "pkgname = $name"
        echo "pkgbase = $name"
        echo "pkgver = $ver"
        echo "pkgdesc = modsync e2e test package"
        echo "url = https://example.invalid"
        echo "builddate = $(date +%s)"
        echo "packager = modsync e2e"
        echo "size = $(du -sb "$dir" | cut -f1)"
        echo "arch = x86_64"
        echo "license = GPL2"
        for l in "$@"; do echo "$l"; done
    }} > "$dir/.PKGINFO"
    (cd "$dir" && {{ echo .PKGINFO; find . -mindepth 1 ! -name .PKGINFO -printf '%P\n' | LC_ALL=C sort; }} \
        | tar --no-recursion --numeric-owner --owner=0 --group=0 -cf - -T -) \
        | zstd -q -c > "/tmp/pkgs/$name.pkg.tar.zst"
}}

s=$(mktemp -d)
install -Dm755 "$E/modsync" "$s/usr/bin/modsync"
ln -s modsync "$s/usr/bin/dkms"
install -Dm644 -t "$s/usr/share/libalpm/hooks" "$E"/hooks/*.hook
mkpkg modsync 0.1.0-1 "$s" "provides = dkms=3.1.2" "conflicts = dkms"

# kpkgs K VERSION: linux-e2e (kernel K) and linux-e2e-headers (K's build/)
kpkgs() {{
    local K=$1 v=$2 s m b
    s=$(mktemp -d); m=$s/usr/lib/modules/$K
    mkdir -p "$m/kernel"
    printf 'not a real kernel image\n' > "$m/vmlinuz"
    : > "$m/modules.order"; : > "$m/modules.builtin"
    echo linux-e2e > "$m/pkgbase"
    mkpkg linux-e2e "$v" "$s"

    s=$(mktemp -d); b=$s/usr/lib/modules/$K/build
    {DEBIAN_HEADERS_TO_B}
    mkpkg linux-e2e-headers "$v" "$s"
}}
kpkgs "$K0" 1-1
mv /tmp/pkgs/linux-e2e.pkg.tar.zst /tmp/pkgs/linux-e2e-old.pkg.tar.zst
mv /tmp/pkgs/linux-e2e-headers.pkg.tar.zst /tmp/pkgs/linux-e2e-headers-old.pkg.tar.zst
kpkgs "$K" 2-1

# a module that does not compile
mkdir -p /usr/src/broken-1.0
printf 'PACKAGE_NAME="broken"\nPACKAGE_VERSION="1.0"\nBUILT_MODULE_NAME[0]="broken"\nDEST_MODULE_LOCATION[0]="/updates"\nAUTOINSTALL="yes"\n' \
    > /usr/src/broken-1.0/dkms.conf
echo 'obj-m := broken.o' > /usr/src/broken-1.0/Makefile
echo 'this is not C;' > /usr/src/broken-1.0/broken.c

s=$(mktemp -d); mkdir -p "$s/usr/src"
cp -a "$E/hello-1.0" "$s/usr/src/hello-1.0"
mkpkg hello-dkms 1.0-1 "$s"
ls -l /tmp/pkgs
"#
        ),
    );
}

fn scenario(root: &Root, k0: &str, k: &str, ck: &mut Checks) {
    let installed = format!("modsync status | grep -qx 'hello/1.0, {k}, x86_64: installed'");
    let no_k = format!("! modsync status | grep -qF {}", q(k));
    let hook_errors = "! grep -qiE '^(error|warning): .*hook' ";

    ck.cmd(
        "pacman works in the root (empty local database)",
        &root.sh("pacman -V >/dev/null && [ -z \"$(pacman -Qq)\" ]"),
    );
    ck.cmd(
        "pacman -U modsync installs the binary and its alpm hooks",
        &root.sh(&format!(
            "{P} -U /tmp/pkgs/modsync.pkg.tar.zst && test -x /usr/bin/modsync && \
             ls /usr/share/libalpm/hooks/*.hook && pacman -Qk modsync"
        )),
    );
    ck.cmd(
        "the hooks sort after 60-depmod and before 90-mkinitcpio-install",
        &root.sh(
            "for h in /usr/share/libalpm/hooks/*.hook; do n=${h##*/}; n=${n%.hook}; \
             [[ $n > 60-depmod && $n < 90-mkinitcpio-install ]] || exit 1; done",
        ),
    );

    // --- a registered module, a kernel arrives and leaves ---
    ck.progress("kernel install with hello registered");
    ck.cmd(
        "register hello/1.0 (modsync add)",
        &root.sh(&format!(
            "cp -a {E}/hello-1.0 /usr/src/ && modsync add hello/1.0 && modsync status | grep -q '^hello/1.0'"
        )),
    );
    ck.cmd(
        "register broken/1.0 (does not compile)",
        &root.sh("modsync add broken/1.0 && modsync status | grep -qx 'broken/1.0: added'"),
    );
    let out = root.sh(&format!(
        "{P} -U /tmp/pkgs/linux-e2e-old.pkg.tar.zst /tmp/pkgs/linux-e2e-headers-old.pkg.tar.zst"
    ));
    ck.cmd(
        &format!("pacman -U linux-e2e linux-e2e-headers ({k0}) succeeds despite the broken module"),
        &out,
    );
    ck.truth(
        "pacman ran the install hook, without hook errors",
        out.output.contains("Running post-transaction hooks")
            && out.output.contains("Building out-of-tree kernel modules")
            && !out.output.lines().any(|l| {
                let l = l.to_ascii_lowercase();
                (l.starts_with("error:") || l.starts_with("warning:")) && l.contains("hook")
            }),
        &out.output,
    );
    ck.truth(
        "the broken module's failure is shown in pacman's output",
        out.output.contains("broken"),
        &out.output,
    );
    ck.cmd(
        &format!("hello built and installed for {k0} by the hook, broken not installed"),
        &root.sh(&format!(
            "{} && {} && modsync status | grep -qx 'hello/1.0, {k0}, x86_64: installed' && \
             ! modsync status | grep -q '^broken/1.0, .*: installed'",
            vermagic_is("hello", k0),
            no_module_file("broken", k0)
        )),
    );

    ck.progress(&format!("kernel upgrade {k0} -> {k}"));
    let out = root.sh(&format!(
        "{P} -U /tmp/pkgs/linux-e2e.pkg.tar.zst /tmp/pkgs/linux-e2e-headers.pkg.tar.zst"
    ));
    ck.cmd(&format!("pacman -U upgrades linux-e2e linux-e2e-headers to {k}"), &out);
    ck.cmd(
        "the kernel package is upgraded",
        &root.sh("pacman -Q linux-e2e | grep -qx 'linux-e2e 2-1'"),
    );
    ck.cmd(
        &format!("hello built and installed for {k} by the upgrade's hook"),
        &root.sh(&vermagic_is("hello", k)),
    );
    ck.cmd(&format!("status says installed for {k}"), &root.sh(&installed));
    ck.cmd(
        &format!("the module of the replaced kernel {k0} is gone (files and status)"),
        &root.sh(&format!(
            "{} && ! modsync status | grep -qF {}",
            no_module_file("hello", k0),
            q(k0)
        )),
    );
    ck.cmd(
        "unregister broken/1.0",
        &root.sh(
            "modsync remove broken/1.0 --all && rm -rf /usr/src/broken-1.0 && ! modsync status | grep -q '^broken'",
        ),
    );

    ck.progress("headers removal");
    let out = root.sh(&format!(
        "{P} -R linux-e2e-headers > /tmp/rm-headers.log 2>&1; rc=$?; cat /tmp/rm-headers.log; exit $rc"
    ));
    ck.cmd("pacman -R linux-e2e-headers succeeds", &out);
    ck.cmd(
        "pacman ran the remove hook, without hook errors",
        &root.sh(&format!(
            "grep -q 'Running pre-transaction hooks' /tmp/rm-headers.log && \
             grep -q 'Removing out-of-tree kernel modules' /tmp/rm-headers.log && \
             {hook_errors} /tmp/rm-headers.log"
        )),
    );
    ck.cmd(
        "removing only the headers keeps the built module",
        &root.sh(&format!("{} && {installed}", vermagic_is("hello", k))),
    );

    ck.progress("kernel removal");
    ck.cmd("pacman -R linux-e2e succeeds", &root.sh(&format!("{P} -R linux-e2e")));
    ck.cmd(
        &format!("the module of the removed kernel {k} is gone (files and status)"),
        &root.sh(&format!("{} && {no_k}", no_module_file("hello", k))),
    );
    ck.cmd(
        "hello stays registered after its kernel left; unregister it by hand",
        &root.sh(
            "modsync status | grep -qx 'hello/1.0: added' && modsync remove hello/1.0 --all && \
             rm -rf /usr/src/hello-1.0 && ! modsync status | grep -q '^hello'",
        ),
    );

    // --- a kernel first, then a module package ---
    ck.progress("kernel without modules, then a module package");
    ck.cmd(
        "pacman -U linux-e2e linux-e2e-headers with nothing registered builds nothing",
        &root.sh(&format!(
            "{P} -U /tmp/pkgs/linux-e2e.pkg.tar.zst /tmp/pkgs/linux-e2e-headers.pkg.tar.zst && {}",
            no_module_file("hello", k)
        )),
    );
    ck.cmd(
        "pacman -U hello-dkms (usr/src/hello-1.0) builds it for the installed kernel",
        &root.sh(&format!(
            "{P} -U /tmp/pkgs/hello-dkms.pkg.tar.zst && {} && {installed}",
            vermagic_is("hello", k)
        )),
    );
    ck.cmd(
        "pacman -R hello-dkms removes it everywhere and unregisters it",
        &root.sh(&format!(
            "{P} -R hello-dkms && {} && ! modsync status | grep -q '^hello'",
            no_module_file("hello", "*")
        )),
    );
    ck.cmd(
        "pacman -R linux-e2e linux-e2e-headers leaves nothing behind",
        &root.sh(&format!("{P} -R linux-e2e linux-e2e-headers && {no_k}")),
    );
    let state = root.sh("modsync status; pacman -Q; find /usr/lib/modules /var/lib/dkms -maxdepth 4 2>/dev/null");
    eprintln!("final state:\n{}", indent(&state.output));
}
