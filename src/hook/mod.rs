//! What package-manager hooks ask of the engine. The shims in `hooks/` only
//! exec `modsync hook <manager> <event> ...`; every decision is here: which
//! kernels and modules a transaction touched, whether headers exist, and the
//! failure policy: a kernel transaction never fails because of modsync.
//! Every error (a module that does not build, a broken config.toml, a lock,
//! depmod, an interrupted earlier run, even a panic) is reported with what to
//! do, and the hook exits 0, unless `strict = true` asks for failure. Last,
//! the boot guard ([`crate::guard`]) says which kernel will boot.

#[cfg(feature = "alpm")]
pub mod alpm_db;
pub mod apt;
pub mod dnf;
mod sources;
pub mod targets;

use crate::cli::Common;
use crate::config::settings::Settings;
use crate::error::{code, fail};
use crate::kernel::distro::Distro;
use crate::kernel::Kernel;
use crate::ops::{self, Cx};
use crate::state::history::{self, Event, ResultKind};
use crate::ui::{Direct, Sink};
use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

/// What a hook run came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Modules that did not build or install.
    pub failures: usize,
    /// What happened to each (module, kernel), for the history.
    pub events: Vec<Event>,
}

impl Verdict {
    /// Adds another part of the same run.
    pub fn add(&mut self, other: Verdict) {
        self.failures += other.failures;
        self.events.extend(other.events);
    }
}

/// The exit code: 0 unless strict and something failed. Pure.
pub fn exit_code(strict: bool, failures: usize, errored: bool) -> i32 {
    if strict && (failures > 0 || errored) {
        code::AUTOINSTALL_FAILED
    } else {
        0
    }
}

/// `modsync hook ...`: never fails the package manager unless strict.
pub fn main(c: &Common, manager: &str, event: &str, args: &[String]) -> i32 {
    // hooks talk on stderr only (dnf5 parses stdout)
    use std::io::Write;
    let _ = std::io::stdout().flush();
    // SAFETY: dup2 on the process's own standard descriptors.
    unsafe { libc::dup2(2, 1) };
    let sink = Direct;
    let root = crate::cli::dispatch::sysconf_root();
    let distro = Distro::detect(&root);
    let settings = match crate::cli::dispatch::settings(c, distro.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            sink.warn(&format!(
                "{e:#}\nmodsync carries on with its default settings; fix /etc/modsync/config.toml (`modsync status` checks it)."
            ));
            match Settings::load_defaults(&root, distro.as_ref()) {
                Ok(s) => crate::cli::dispatch::with_command_line(c, s),
                Err(e) => {
                    sink.error(&format!(
                        "{e:#}\nNo module was built; fix the configuration, then run `modsync autoinstall -k KERNEL`."
                    ));
                    return 0;
                }
            }
        }
    };
    let strict = settings.strict;
    let cx = Cx {
        tree: crate::state::Tree::new(&settings.dkms_tree, &settings.source_tree),
        settings,
        distro,
        opts: ops::Options {
            verbose: c.verbose,
            hook: true,
            ..Default::default()
        },
    };
    let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&cx, manager, event, args, &sink)));
    let rc = match res {
        Ok(Ok(v)) => {
            if let Some(path) = &cx.settings.history_log {
                let trigger = format!("{manager} {event}");
                if let Err(e) = history::append(path, trigger.trim(), &v.events) {
                    sink.warn(&format!("{e:#}; this run is missing from `modsync log`"));
                }
            }
            if v.failures > 0 {
                sink.err(&format!(
                    "modsync: {} module build(s) failed (why and what to do: above, and `modsync explain MODULE`).{}",
                    v.failures,
                    if strict { " strict = true: the hook fails." } else { " The package operation goes on; strict = true in /etc/modsync/config.toml makes it fail instead." }
                ));
            }
            exit_code(strict, v.failures, false)
        }
        Ok(Err(e)) => {
            sink.error(&format!("{e:#}\nThe package operation goes on; once the cause is fixed, `modsync autoinstall -k KERNEL` builds what is missing."));
            exit_code(strict, 0, true)
        }
        Err(_) => {
            sink.error("modsync stopped unexpectedly in a package-manager hook (see the message above); the package operation goes on. Please report this.");
            exit_code(strict, 0, true)
        }
    };
    // last, so that it ends the package manager's output
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| crate::guard::after_change(&cx, &sink))).is_err() {
        sink.error(
            "modsync's boot guard stopped unexpectedly; the boot loader's default is unchanged. Please report this.",
        );
    }
    rc
}

/// Kernels among `releases` that can get modules now; explains the others
/// (and records kernels without headers for the history).
fn buildable(cx: &Cx, releases: &BTreeSet<String>, sink: &dyn Sink) -> (Vec<Kernel>, Vec<Event>) {
    let arch = crate::kernel::machine_arch();
    let mut out = Vec::new();
    let mut events = Vec::new();
    for r in releases {
        let mut k = cx.kernel(r, &arch);
        if !k.has_headers() {
            let fedora = PathBuf::from("/usr/src/kernels").join(r);
            if fedora.join("include").is_dir() {
                k = Kernel::new(
                    r,
                    &arch,
                    &crate::kernel::Locations {
                        headers_dir: Some(fedora),
                        ..cx.locations()
                    },
                );
            }
        }
        if !k.modules_dir.is_dir() {
            sink.err(&format!(
                "modsync: kernel {r} is not installed; its modules are built when it is."
            ));
        } else if !k.has_headers() {
            let hint = headers_hint(cx, r);
            sink.err(&format!(
                "modsync: the headers of kernel {r} are not installed, so no module was built for it. Install them (`{hint}`); modsync then builds the modules."
            ));
            events.push(Event {
                reason: Some(format!("the kernel's headers are not installed; install them: {hint}")),
                ..Event::new(None, r, ResultKind::NotBuilt)
            });
        } else {
            out.push(k);
        }
    }
    (out, events)
}

/// The command installing the headers of `release` here; with libalpm, the
/// exact `<pkgbase>-headers` package of the package that owns the kernel.
fn headers_hint(cx: &Cx, release: &str) -> String {
    #[cfg(feature = "alpm")]
    if let Some((_, headers, false)) = alpm_db::headers_package_for(release) {
        return format!("pacman -S {headers}");
    }
    cx.distro
        .as_ref()
        .map(|d| d.headers_hint(release, &cx.settings.install_tree))
        .unwrap_or_else(|| format!("install the headers of {release}"))
}

/// Builds and installs every autoinstall module for these kernels.
fn install_for(cx: &Cx, releases: &BTreeSet<String>, sink: &dyn Sink) -> Result<Verdict> {
    if cx.settings.etc_dkms().join("no-autoinstall").exists() {
        sink.err("modsync: automatic installation is off (/etc/dkms/no-autoinstall exists); nothing was built.");
        return Ok(Verdict::default());
    }
    let (kernels, events) = buildable(cx, releases, sink);
    let mut v = Verdict { failures: 0, events };
    if kernels.is_empty() {
        return Ok(v);
    }
    let _lock = cx.lock(sink)?;
    for k in kernels {
        match ops::autoinstall::for_kernel(cx, &k, sink) {
            Ok(s) => {
                ops::autoinstall::report(&k.release, &s, sink);
                v.failures += s.failed.len() + s.missing.len();
                v.events.extend(s.events);
            }
            Err(e) => {
                sink.error(&format!("{e:#}"));
                v.failures += 1;
                v.events.push(Event {
                    code: crate::error::exit_code(&e),
                    reason: Some(format!("{e:#}")),
                    ..Event::new(None, &k.release, ResultKind::Failed)
                });
            }
        }
    }
    Ok(v)
}

/// Drops the modules of kernels that are being removed (registrations stay).
fn drop_kernels(cx: &Cx, releases: &BTreeSet<String>, sink: &dyn Sink) -> Result<Verdict> {
    if releases.is_empty() {
        return Ok(Verdict::default());
    }
    let _lock = cx.lock(sink)?;
    let mut v = Verdict::default();
    for r in releases {
        let k = cx.kernel(r, &crate::kernel::machine_arch());
        let events = ops::kernel_hooks::drop_kernel(cx, &k, false, sink)?;
        v.failures += events.iter().filter(|e| e.result == ResultKind::Failed).count();
        v.events.extend(events);
    }
    Ok(v)
}

fn read_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the hook's targets on stdin")?;
    Ok(s)
}

fn rpm_files(nevra: &str) -> Vec<String> {
    std::process::Command::new("rpm")
        .args(["-ql", nevra])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
        .unwrap_or_default()
}

fn run_dnf(cx: &Cx, t: &dnf::DnfTransaction, sink: &dyn Sink) -> Result<Verdict> {
    let mut v = drop_kernels(cx, &t.removed_kernels, sink)?;
    for k in &t.removed.headers {
        sink.err(&format!(
            "modsync: the headers of {k} were removed; the modules built for it stay installed and working."
        ));
    }
    let installed = t.installed.releases();
    if !installed.is_empty() {
        v.add(install_for(cx, &installed, sink)?);
    }
    if t.installed.kernels.is_empty() && !t.installed.headers.is_empty() {
        // headers without their kernel: its initramfs was made before the modules
        ops::finish::initramfs(cx, &changes_for(cx, &t.installed.headers), sink);
    }
    Ok(v)
}

/// What is installed now for these kernels (to regenerate their initramfs).
fn changes_for(cx: &Cx, releases: &BTreeSet<String>) -> std::collections::BTreeMap<String, crate::run::Change> {
    releases
        .iter()
        .map(|r| {
            let names = cx
                .tree
                .combos()
                .into_iter()
                .filter(|(m, v)| cx.tree.is_installed(m, v, r, &crate::kernel::machine_arch()))
                .flat_map(|(m, v)| {
                    cx.tree
                        .read_record(&m, &v, r, &crate::kernel::machine_arch())
                        .map(|rec| rec.modules.into_iter().map(|b| b.name).collect::<Vec<_>>())
                        .unwrap_or_default()
                })
                .collect();
            (
                r.clone(),
                crate::run::Change {
                    installed: names,
                    removed: Vec::new(),
                },
            )
        })
        .collect()
}

/// `modsync hook MANAGER EVENT ARGS...`.
pub fn run(cx: &Cx, manager: &str, event: &str, args: &[String], sink: &dyn Sink) -> Result<Verdict> {
    let one = |what: &str| -> Result<BTreeSet<String>> {
        let k = args
            .first()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| fail(code::USAGE, format!("modsync hook {manager} {event} needs the {what}")))?;
        if let Some(p) = crate::sys::names::problem(crate::sys::names::Kind::Kernel, k) {
            return Err(fail(code::BAD_KERNEL, format!("modsync hook {manager} {event}: {p}")));
        }
        Ok(BTreeSet::from([k.clone()]))
    };
    match (manager, event) {
        ("apt", ev) => {
            let params = std::env::var("DEB_MAINT_PARAMS").ok();
            match apt::decide(ev, params.as_deref()) {
                apt::Action::Install { headers_later } => {
                    let ks = one("kernel version")?;
                    let v = install_for(cx, &ks, sink)?;
                    if headers_later {
                        ops::finish::initramfs(cx, &changes_for(cx, &ks), sink);
                    }
                    Ok(v)
                }
                apt::Action::Drop => drop_kernels(cx, &one("kernel version")?, sink),
                apt::Action::Nothing(why) => {
                    log::info!("apt {ev} ({params:?}): nothing to do: {why}");
                    Ok(Verdict::default())
                }
            }
        }
        ("kernel-install", "add") => install_for(cx, &one("kernel version")?, sink),
        ("kernel-install", "remove") => drop_kernels(cx, &one("kernel version")?, sink),
        ("kernel-install", other) => {
            log::info!("kernel-install {other}: nothing to do");
            Ok(Verdict::default())
        }
        ("pacman", "install") => {
            let t = targets::touched_by_paths(read_stdin()?.lines());
            let mut v = Verdict::default();
            let kernels = t.releases();
            if !kernels.is_empty() {
                v.add(install_for(cx, &kernels, sink)?);
                if t.kernels.is_empty() {
                    ops::finish::initramfs(cx, &changes_for(cx, &t.headers), sink);
                }
            }
            let dirs = sources::source_dirs(cx, &t);
            if !dirs.is_empty() {
                v.add(sources::refresh_modules(cx, &dirs, false, true, sink)?);
            }
            Ok(v)
        }
        ("pacman", "remove") => {
            let t = targets::touched_by_paths(read_stdin()?.lines());
            let mut v = sources::remove_modules(cx, &sources::source_dirs(cx, &t), sink)?;
            for k in t.headers.difference(&t.kernels) {
                sink.err(&format!(
                    "modsync: the headers of {k} were removed; the modules built for it stay installed and working."
                ));
            }
            v.add(drop_kernels(cx, &t.kernels, sink)?);
            Ok(v)
        }
        ("dnf", _) => {
            let t = dnf::from_json(&read_stdin()?)
                .map_err(|e| fail(code::USAGE, format!("modsync hook dnf: bad JSON on stdin: {e}")))?;
            run_dnf(cx, &t, sink)
        }
        ("dnf5", dir) => {
            let [name, version, release, arch] = args else {
                return Err(fail(code::USAGE, "modsync hook dnf5 in|out NAME VERSION RELEASE ARCH"));
            };
            let files = rpm_files(&format!("{name}-{version}-{release}.{arch}"));
            let t = dnf::from_dnf5(dir, name, version, release, arch, &files)
                .map_err(|e| fail(code::USAGE, e.to_string()))?;
            run_dnf(cx, &t, sink)
        }
        ("common-postinst", name) => sources::common_postinst(cx, name, args, sink),
        _ => Err(fail(
            code::USAGE,
            format!("unknown hook `{manager} {event}`; the README lists the hook entry points"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_fail_only_when_strict() {
        assert_eq!(exit_code(false, 3, true), 0);
        assert_eq!(exit_code(true, 0, false), 0);
        assert_eq!(exit_code(true, 1, false), 11);
        assert_eq!(exit_code(true, 0, true), 11);
    }
}
