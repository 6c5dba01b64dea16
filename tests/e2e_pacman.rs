//! End-to-end test of the alpm hooks (hooks/pacman/*.hook) with the real
//! pacman (Debian's pacman-package-manager 6.0.2, libalpm 13).
//!
//! Runs in an overlay root of this machine (see tests/overlay_root): the
//! host's tools and Debian kernel headers are visible, every write goes to a
//! throwaway layer. In it, pacman installs hand-made Arch packages:
//! - `modsync`: the binary under test, `dkms` link, the two alpm hooks;
//! - `linux-e2e`: kernel K (`usr/lib/modules/K/{vmlinuz,modules.order,...}`);
//! - `linux-e2e-headers`: `usr/lib/modules/K/build/`, the real Debian header
//!   tree of K (`/usr/src/linux-headers-K`);
//! - `hello-dkms`: `usr/src/hello-1.0/` (tests/fixtures/hello-1.0).
//!
//! and the hooks must build the registered module when the kernel arrives,
//! keep it when only the headers go, drop it with the kernel, and handle a
//! module package arriving and leaving.
//!
//! Needs root, pacman, zstd, make, gcc, kmod and the Debian headers of one
//! kernel (`apt-get install pacman-package-manager linux-headers-6.1.0-56-amd64`).
//! Skips (saying why) when something is missing; `MODSYNC_E2E_REQUIRE=1` makes
//! that a failure. `MODSYNC_TEST_KERNELS`: kernel release to use (first word);
//! default: the newest /usr/src/linux-headers-*-amd64. `MODSYNC_TEST_KEEP=1`
//! keeps the overlay layer for a look.

mod overlay_root;

use overlay_root::*;
use std::time::Instant;

/// Where the files under test are put inside the root.
const E: &str = "/usr/local/lib/modsync-e2e";
const P: &str = "pacman --noconfirm --noprogressbar";

#[test]
fn pacman_hooks_build_and_remove_modules() {
    if let Some(why) = skip_reason(&["pacman", "unshare", "zstd", "tar", "modinfo", "make", "gcc"]) {
        eprintln!("SKIPPED e2e_pacman: {why}");
        return;
    }
    let Some(k) = test_kernels().into_iter().next() else {
        let why = "no kernel headers (/usr/src/linux-headers-*-amd64 or MODSYNC_TEST_KERNELS)";
        assert!(std::env::var_os("MODSYNC_E2E_REQUIRE").is_none(), "{why}");
        eprintln!("SKIPPED e2e_pacman: {why}");
        return;
    };
    let t0 = Instant::now();
    progress(&t0, &format!("kernel {k}"));
    let root = Root::new("e2e-pacman");
    setup(&root, &k);
    progress(&t0, "packages built");
    let mut ck = Checks::default();
    scenario(&root, &k, &mut ck, &t0);
    ck.finish(&t0);
}

/// Puts the files under test into the root and builds the packages there.
fn setup(root: &Root, k: &str) {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    root.put(&modsync_bin(), &format!("{E}/modsync"));
    root.put(&manifest.join("hooks/pacman"), &format!("{E}/hooks"));
    root.put(&hello_fixture(), &format!("{E}/hello-1.0"));
    let k = q(k);
    root.must(
        "build the test packages",
        &format!(
            r#"
K={k} E={E}
# Only the pacman packages provide kernels in here.
rm -rf /usr/lib/modules/*
rm -rf /var/lib/pacman /var/lib/dkms /usr/src/hello-*
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

s=$(mktemp -d); m=$s/usr/lib/modules/$K
mkdir -p "$m/kernel"
printf 'not a real kernel image\n' > "$m/vmlinuz"
: > "$m/modules.order"; : > "$m/modules.builtin"
echo linux-e2e > "$m/pkgbase"
mkpkg linux-e2e 1-1 "$s"

s=$(mktemp -d); b=$s/usr/lib/modules/$K/build
mkdir -p "${{b%/build}}"
cp -a "/usr/src/linux-headers-$K" "$b"
# Debian's links point two levels up from /usr/src/X; make them absolute.
find "$b" -maxdepth 1 -type l | while read -r l; do
    t=$(readlink "$l")
    case $t in ../../*) ln -sfn "/usr/${{t#../../}}" "$l" ;; esac
done
test -d "$b/include"
mkpkg linux-e2e-headers 1-1 "$s"

s=$(mktemp -d); mkdir -p "$s/usr/src"
cp -a "$E/hello-1.0" "$s/usr/src/hello-1.0"
mkpkg hello-dkms 1.0-1 "$s"
ls -l /tmp/pkgs
"#
        ),
    );
}

fn scenario(root: &Root, k: &str, ck: &mut Checks, t0: &Instant) {
    let installed = format!("modsync status | grep -qx 'hello/1.0, {k}, x86_64: installed'");
    let no_k = format!("! modsync status | grep -qF {}", q(k));
    let hook_errors = "! grep -qiE '^(error|warning): .*hook' ";

    ck.cmd("pacman works in the root (empty local database)", &root.sh("pacman -V >/dev/null && [ -z \"$(pacman -Qq)\" ]"));
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
    progress(t0, "kernel install with hello registered");
    ck.cmd(
        "register hello/1.0 (modsync add)",
        &root.sh(&format!("cp -a {E}/hello-1.0 /usr/src/ && modsync add hello/1.0 && modsync status | grep -q '^hello/1.0'")),
    );
    let out = root.sh(&format!("{P} -U /tmp/pkgs/linux-e2e.pkg.tar.zst /tmp/pkgs/linux-e2e-headers.pkg.tar.zst"));
    ck.cmd(&format!("pacman -U linux-e2e linux-e2e-headers ({k}) succeeds"), &out);
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
    ck.cmd(&format!("hello built and installed for {k} by the hook"), &root.sh(&vermagic_is("hello", k)));
    ck.cmd(&format!("status says installed for {k}"), &root.sh(&installed));

    progress(t0, "headers removal");
    let out = root.sh(&format!("{P} -R linux-e2e-headers > /tmp/rm-headers.log 2>&1; rc=$?; cat /tmp/rm-headers.log; exit $rc"));
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

    progress(t0, "kernel removal");
    ck.cmd("pacman -R linux-e2e succeeds", &root.sh(&format!("{P} -R linux-e2e")));
    ck.cmd(
        &format!("the module of the removed kernel {k} is gone (files and status)"),
        &root.sh(&format!("{} && {no_k}", no_module_file("hello", k))),
    );
    ck.cmd(
        "unregister hello/1.0 by hand",
        &root.sh("modsync remove hello/1.0 --all; rm -rf /usr/src/hello-1.0; ! modsync status | grep -q '^hello'"),
    );

    // --- a kernel first, then a module package ---
    progress(t0, "kernel without modules, then a module package");
    ck.cmd(
        "pacman -U linux-e2e linux-e2e-headers with nothing registered builds nothing",
        &root.sh(&format!(
            "{P} -U /tmp/pkgs/linux-e2e.pkg.tar.zst /tmp/pkgs/linux-e2e-headers.pkg.tar.zst && {}",
            no_module_file("hello", k)
        )),
    );
    ck.cmd(
        "pacman -U hello-dkms (usr/src/hello-1.0) builds it for the installed kernel",
        &root.sh(&format!("{P} -U /tmp/pkgs/hello-dkms.pkg.tar.zst && {} && {installed}", vermagic_is("hello", k))),
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
