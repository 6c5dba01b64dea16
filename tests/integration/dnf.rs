//! The dnf 4 plugin (hooks/dnf/modsync.py) with the real dnf 4.14
//! (Debian's python3-dnf), rpm 4.18 and createrepo_c, and the dnf 5 actions
//! file (hooks/dnf/modsync.actions) replayed around real dnf transactions.
//!
//! Runs in an overlay root of this machine (see [`crate::overlay_root`]): the
//! host's tools and Debian kernel headers are visible, every write goes to a
//! throwaway layer. Kernel RPMs are made with the `rpm` crate, Fedora style:
//! - `kernel-devel` owns `/usr/src/kernels/K` (a link to the Debian headers of K),
//! - `kernel-core` owns `/lib/modules/K/config`,
//!
//! both `Provides: installonlypkg(kernel)`, plus one unrelated package; they
//! are published with createrepo_c and installed / removed with `dnf -y`.
//!
//! What it proves: the plugin builds the registered modules when
//! kernel-devel or kernel-core arrives (a module that does not compile is
//! reported, dnf still succeeds), keeps them when kernel-devel leaves and
//! drops them when kernel-core leaves (the registration stays); an
//! unrelated transaction builds nothing; a failing or missing engine never
//! breaks dnf; the dnf 5 actions build and drop modules the same way and
//! keep stdout empty (dnf 5 parses it). The kernel release K is taken from
//! the paths the packages own: rpm forbids '-' in VERSION and RELEASE, so
//! VERSION-RELEASE.ARCH can never be K here.
//!
//! Needs root, dnf + python3-dnf, rpm, createrepo_c, make, gcc, kmod and the
//! test kernels' headers (`tests/setup.sh`). `MODSYNC_TEST_KEEP=1` keeps the
//! overlay layer for a look.

use crate::overlay_root::*;
use crate::support::{require_root, test_kernels};
use std::fs;
use std::path::Path;

const TEST: &str = "dnf::dnf_plugin_builds_and_drops_modules";
const E: &str = "/usr/local/lib/modsync-e2e";

#[test]
fn dnf_plugin_builds_and_drops_modules() {
    require_root(TEST);
    require_tools(
        TEST,
        &[
            "dnf",
            "rpm",
            "createrepo_c",
            "python3",
            "unshare",
            "modinfo",
            "make",
            "gcc",
        ],
    );
    let k = test_kernels().pop().expect("test kernels");
    let mut ck = Checks::new(TEST);
    ck.progress(&format!("kernel {k}"));
    let root = Root::new("dnf-root");
    let (v, r) = rpm_version_release(&k);
    setup(&root, &k, &v, &r);
    ck.progress("RPMs built and published");
    scenario(&root, &k, &format!("{v}-{r}"), &mut ck);
    drop(root);
    ck.finish();
}

/// Version and release for the test RPMs of kernel release K: `6.1.0-56-amd64`
/// -> (`6.1.0`, `56_amd64`). rpm forbids '-' in both, so the fallback
/// VERSION-RELEASE.ARCH can never be K itself: the plugin and the engine must
/// take K from the paths the packages own.
pub fn rpm_version_release(k: &str) -> (String, String) {
    match k.split_once('-') {
        Some((v, r)) => (v.to_string(), r.replace('-', "_")),
        None => (k.to_string(), "1".to_string()),
    }
}

fn kernel_rpm(name: &str, v: &str, r: &str) -> rpm::PackageBuilder {
    let mut b = rpm::PackageBuilder::new(name, v, "GPL-2.0-only", "x86_64", "modsync e2e stand-in kernel package");
    b.release(r)
        .description("Stand-in for a Fedora kernel package (modsync e2e test).")
        .provides(rpm::Dependency::any("installonlypkg(kernel)"));
    b
}

/// Builds the RPMs with the `rpm` crate into DIR.
fn build_rpms(dir: &Path, k: &str, v: &str, r: &str) {
    fs::create_dir_all(dir).unwrap();
    let headers = format!("/usr/src/linux-headers-{k}");
    let devel = kernel_rpm("kernel-devel", v, r)
        .with_symlink(rpm::FileOptions::symlink(
            format!("/usr/src/kernels/{k}"),
            headers.clone(),
        ))
        .expect("kernel-devel symlink")
        .build()
        .expect("build kernel-devel");
    devel
        .write_file(dir.join("kernel-devel.rpm"))
        .expect("write kernel-devel.rpm");

    let config = fs::read(format!("{headers}/.config")).expect("read the kernel .config");
    let core = kernel_rpm("kernel-core", v, r)
        .with_file_contents(config, rpm::FileOptions::new(format!("/lib/modules/{k}/config")))
        .expect("kernel-core config")
        .build()
        .expect("build kernel-core");
    core.write_file(dir.join("kernel-core.rpm"))
        .expect("write kernel-core.rpm");

    let other = rpm::PackageBuilder::new("modsync-e2e-other", "1.0", "MIT", "noarch", "unrelated package")
        .release("1")
        .description("A package that is not a kernel (modsync e2e test).")
        .with_file_contents(
            "test\n",
            rpm::FileOptions::new("/usr/share/doc/modsync-e2e-other/README"),
        )
        .expect("other file")
        .build()
        .expect("build modsync-e2e-other");
    other
        .write_file(dir.join("modsync-e2e-other.rpm"))
        .expect("write modsync-e2e-other.rpm");
}

fn setup(root: &Root, k: &str, v: &str, r: &str) {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let rpms = tempfile::tempdir().expect("tempdir");
    build_rpms(rpms.path(), k, v, r);
    root.put(rpms.path(), "/srv/rpms");
    root.put(&modsync_bin(), "/usr/bin/modsync");
    root.put(&manifest.join("hooks/dnf"), &format!("{E}/dnf"));
    root.put(&hello_fixture(), &format!("{E}/hello-1.0"));
    let rpm_dnf = rpm_and_dnf("12");
    root.must(
        "set up rpm, dnf, the local repo and the plugin",
        &format!(
            r#"
E={E}
rm -rf /var/lib/dkms /usr/src/hello-* /usr/src/broken-* /usr/src/kernels /var/lib/rpm /var/cache/dnf
# the host's module trees as the headers packages ship them (build, source):
# modules a host dkms or modsync installed (the README's example) must not count
for d in /usr/lib/modules/*/; do find "$d" -mindepth 1 -maxdepth 1 ! -name build ! -name source -exec rm -rf {{}} +; done
ln -sfn /usr/bin/modsync /usr/sbin/dkms
{rpm_dnf}
# the plugin, as the package installs it
pp=$(python3 -c 'import dnf.const; print(dnf.const.PLUGINPATH)')
mkdir -p "$pp"
cp "$E/dnf/modsync.py" "$pp/"
cp "$E/dnf/modsync.conf" /etc/dnf/plugins/
# a module that does not compile
mkdir -p /usr/src/broken-1.0
printf 'PACKAGE_NAME="broken"\nPACKAGE_VERSION="1.0"\nBUILT_MODULE_NAME[0]="broken"\nDEST_MODULE_LOCATION[0]="/updates"\nAUTOINSTALL="yes"\n' \
    > /usr/src/broken-1.0/dkms.conf
echo 'obj-m := broken.o' > /usr/src/broken-1.0/Makefile
echo 'this is not C;' > /usr/src/broken-1.0/broken.c
"#
        ),
    );
}

fn scenario(root: &Root, k: &str, vr: &str, ck: &mut Checks) {
    let installed = format!("modsync status | grep -qx 'hello/1.0, {k}, x86_64: installed'");
    // dnf -y ARGS with its output in LOG; fails unless dnf exits 0 and gets to
    // its own end ("Complete!") after the plugin ran.
    let dnf = |log: &str, args: &str| {
        format!(
            "rc=0; dnf -y {args} > /tmp/dnf-{log}.log 2>&1 || rc=$?; cat /tmp/dnf-{log}.log; \
             echo \"(dnf {args}: exit $rc)\"; [ $rc = 0 ] && grep -qx 'Complete!' /tmp/dnf-{log}.log"
        )
    };

    ck.cmd(
        "dnf loads the modsync plugin",
        &root.sh("dnf -v repolist 2>&1 | grep -E '^Loaded plugins: .*\\bmodsync\\b'"),
    );
    ck.cmd(
        "dnf sees the kernel RPMs",
        &root.sh("[ \"$(dnf -q repoquery 'kernel-*' | wc -l)\" = 2 ]"),
    );
    ck.cmd(
        "register hello/1.0 and broken/1.0",
        &root.sh(&format!(
            "cp -a {E}/hello-1.0 /usr/src/ && modsync add hello/1.0 && modsync add broken/1.0 && \
             modsync status | grep -qx 'hello/1.0: added'"
        )),
    );

    ck.progress("unrelated package");
    ck.cmd(
        "a transaction without kernel packages succeeds and builds nothing",
        &root.sh(&format!(
            "{} && ! modinfo -k {k} -F filename hello && modsync status | grep -qx 'hello/1.0: added'",
            dnf("other", "install modsync-e2e-other")
        )),
    );

    ck.progress("kernel-devel install");
    let out = root.sh(&dnf("devel", &format!("install kernel-devel-{vr}")));
    ck.cmd(
        &format!("dnf install kernel-devel ({k}) succeeds despite the broken module"),
        &out,
    );
    ck.cmd(
        &format!("the plugin built and installed hello for {k}"),
        &root.sh(&vermagic_is("hello", k)),
    );
    ck.cmd(&format!("status says installed for {k}"), &root.sh(&installed));
    ck.truth(
        "the broken module's failure is shown in dnf's output",
        out.output.contains("broken"),
        &out.output,
    );
    ck.cmd(
        "the broken module is not installed",
        &root.sh(&format!(
            "{} && ! modsync status | grep -q '^broken/1.0, .*: installed'",
            no_module_file("broken", k)
        )),
    );

    ck.progress("kernel-devel removal");
    ck.cmd(
        "dnf remove kernel-devel succeeds",
        &root.sh(&dnf("rm-devel", "remove kernel-devel")),
    );
    ck.cmd(
        "removing only the headers keeps the module",
        &root.sh(&format!("{} && {installed}", vermagic_is("hello", k))),
    );

    ck.progress("kernel-core install");
    ck.cmd(
        "drop hello for the kernel by hand (unbuild: it stays registered)",
        &root.sh(&format!(
            "modsync unbuild hello/1.0 -k {k} && {} && modsync status | grep -qx 'hello/1.0: added'",
            no_module_file("hello", k)
        )),
    );
    ck.cmd(
        "dnf install kernel-core rebuilds hello for it",
        &root.sh(&format!(
            "{} && {} && {installed}",
            dnf("core", &format!("install kernel-core-{vr}")),
            vermagic_is("hello", k)
        )),
    );

    ck.progress("kernel-core removal");
    ck.cmd(
        "dnf remove kernel-core drops the module for that kernel",
        &root.sh(&format!(
            "{} && {} && ! modsync status | grep -qF {}",
            dnf("rm-core", "remove kernel-core"),
            no_module_file("hello", k),
            q(k)
        )),
    );
    ck.cmd(
        "hello stays registered (status: added)",
        &root.sh("modsync status | grep -qx 'hello/1.0: added'"),
    );

    dnf5_actions(root, k, vr, ck);

    ck.progress("engine failing or missing");
    ck.cmd(
        "a failing engine is reported and dnf still completes",
        &root.sh(&format!(
            "mv /usr/bin/modsync /usr/bin/modsync.real && printf '#!/bin/sh\\necho engine-boom >&2\\nexit 3\\n' > /usr/bin/modsync && \
             chmod 755 /usr/bin/modsync && {} && grep -q engine-boom /tmp/dnf-fail.log && grep -q 'exited with status 3' /tmp/dnf-fail.log",
            dnf("fail", "reinstall kernel-devel")
        )),
    );
    ck.cmd(
        "without the engine dnf still completes",
        &root.sh(&format!(
            "rm /usr/bin/modsync && {}; rc=$?; mv /usr/bin/modsync.real /usr/bin/modsync; exit $rc",
            dnf("noengine", "reinstall kernel-devel")
        )),
    );
    ck.cmd(
        "the plugin never raised (no Python traceback in dnf's output)",
        &root.sh("! grep -l Traceback /tmp/dnf-*.log"),
    );
    let state = root
        .sh("modsync status; rpm -qa | sort; find /usr/lib/modules/*/updates /var/lib/dkms -maxdepth 4 2>/dev/null");
    eprintln!("final state:\n{}", indent(&state.output));
}

/// One line of hooks/dnf/modsync.actions (libdnf5 actions plugin format
/// `CALLBACK:PACKAGE_FILTER:DIRECTION:OPTIONS:COMMAND`).
#[derive(Debug)]
struct Action {
    callback: String,
    filter: String,
    direction: String,
    options: String,
    command: String,
}

fn parse_actions(text: &str) -> Vec<Action> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let f: Vec<&str> = l.splitn(5, ':').collect();
            assert_eq!(f.len(), 5, "actions line without 5 fields: {l}");
            Action {
                callback: f[0].into(),
                filter: f[1].into(),
                direction: f[2].into(),
                options: f[3].into(),
                command: f[4].into(),
            }
        })
        .collect()
}

impl Action {
    /// The filter as the actions plugin applies it to a package name (only
    /// the forms used here: NAME or PREFIX*).
    fn matches(&self, name: &str) -> bool {
        match self.filter.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.filter == name,
        }
    }

    /// The command with the package's ${pkg.*} substituted, for bash.
    fn command_for(&self, name: &str, version: &str, release: &str, arch: &str) -> String {
        self.command
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(|w| {
                q(&w.replace("${pkg.name}", name)
                    .replace("${pkg.version}", version)
                    .replace("${pkg.release}", release)
                    .replace("${pkg.arch}", arch))
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// dnf 5 is not in Debian 12: replay what its actions plugin does with
/// hooks/dnf/modsync.actions around dnf 4 transactions that run without the
/// dnf 4 plugin, so only the actions' commands can build or drop modules.
fn dnf5_actions(root: &Root, k: &str, vr: &str, ck: &mut Checks) {
    ck.progress("dnf5 actions (replayed)");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/dnf/modsync.actions");
    let actions = parse_actions(&fs::read_to_string(&path).expect("read modsync.actions"));
    let find = |callback: &str, direction: &str| {
        actions
            .iter()
            .find(|a| a.callback == callback && a.direction == direction && a.matches("kernel-core"))
    };
    let (Some(inn), Some(out)) = (find("post_transaction", "in"), find("pre_transaction", "out")) else {
        ck.truth(
            "modsync.actions has post_transaction/in and pre_transaction/out actions for kernel*",
            false,
            &format!("{actions:?}"),
        );
        return;
    };
    ck.truth(
        "every action is restricted to the host and to kernel packages",
        actions
            .iter()
            .all(|a| a.options == "enabled=host-only" && a.matches("kernel-devel") && !a.matches("bash")),
        &format!("{actions:?}"),
    );
    let (v, r) = vr.split_once('-').unwrap();
    let nodnf4 = "dnf -y --disableplugin=modsync";
    // Runs the action's command; dnf5 parses its stdout, so it must stay empty.
    let act = |a: &Action, name: &str| {
        format!(
            "out=$({} 2>>/tmp/actions.err); [ -z \"$out\" ] || {{ echo \"stdout not empty: $out\"; exit 1; }}",
            a.command_for(name, v, r, "x86_64")
        )
    };

    ck.cmd(
        "kernel-devel installed without the dnf 4 plugin builds nothing",
        &root.sh(&format!(
            "{nodnf4} install kernel-devel-{vr} && {}",
            no_module_file("hello", k)
        )),
    );
    ck.cmd(
        "post_transaction:in for kernel-devel builds hello, printing nothing on stdout",
        &root.sh(&format!("{} && {}", act(inn, "kernel-devel"), vermagic_is("hello", k))),
    );
    ck.cmd(
        "post_transaction:in for kernel-core (already built) succeeds",
        &root.sh(&format!(
            "{nodnf4} install kernel-core-{vr} && {} && {}",
            act(inn, "kernel-core"),
            vermagic_is("hello", k)
        )),
    );
    ck.cmd(
        "pre_transaction:out for kernel-core drops the module, then dnf removes the kernel",
        &root.sh(&format!(
            "{} && {nodnf4} remove kernel-core && {} && ! modsync status | grep -qF {}",
            act(out, "kernel-core"),
            no_module_file("hello", k),
            q(k)
        )),
    );
}

mod unit {
    use super::{parse_actions, rpm_version_release};

    #[test]
    fn version_release_of_kernel_releases() {
        assert_eq!(
            rpm_version_release("6.1.0-56-amd64"),
            ("6.1.0".into(), "56_amd64".into())
        );
        assert_eq!(
            rpm_version_release("6.12.117+deb12-amd64"),
            ("6.12.117+deb12".into(), "amd64".into())
        );
        assert_eq!(rpm_version_release("6.9"), ("6.9".into(), "1".into()));
    }

    #[test]
    fn actions_file_parses() {
        let a = parse_actions(
            "# c\n\npost_transaction:kernel*:in:enabled=host-only:/usr/bin/x a ${pkg.name} ${pkg.release}\n",
        );
        assert_eq!(a.len(), 1);
        assert!(a[0].matches("kernel-core") && !a[0].matches("bash"));
        assert_eq!(
            a[0].command_for("kernel-core", "6.1", "56", "x86_64"),
            "'/usr/bin/x' 'a' 'kernel-core' '56'"
        );
    }
}
