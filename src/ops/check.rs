//! `modsync check -k KERNEL` (modsync's own): would every registered module
//! build for a kernel, before it is installed? The latest version of each
//! registered module is built for the kernel, in BUILD_DEPENDS order and
//! under the CPU budget as autoinstall would, but in a scratch tree under
//! `tmp_location`: the registrations are linked there, nothing is
//! installed, signed, cached or recorded, the state tree and the kernel's
//! module directory are not written, and the scratch tree is removed at the
//! end. Each module is reported as building, excluded, failing (with the
//! diagnosis `explain` gives) or not built automatically. Exit 0 when
//! everything would build, 1 otherwise. With `--candidate` the kernel is
//! the one the package manager (apt, pacman, dnf) would install next, its
//! headers fetched into the scratch tree ([`candidate`]).

use super::autoinstall::{for_kernel, one_kernel, registered};
use super::explain::explain_one;
use super::{Cx, Target};
use crate::error::{code, fail};
use crate::kernel::{candidate, Kernel, Locations};
use crate::state::Tree;
use crate::ui::{Buffered, Sink};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What `check` found for one module version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Builds,
    /// Kept out by BUILD_EXCLUSIVE (not a failure): why.
    Excluded(String),
    /// The diagnosis class and its explanation.
    Fails(String, String),
    /// AUTOINSTALL is not set: a kernel installation does not build it.
    NotAutomatic,
    /// Waits for a BUILD_DEPENDS that is not registered or did not build.
    Waits(String),
}

impl Verdict {
    /// One report line (and the explanation, indented, for a failure). Pure.
    pub fn render(&self, mv: &str) -> String {
        match self {
            Verdict::Builds => format!("{mv}: builds"),
            Verdict::Excluded(why) => format!("{mv}: excluded, not a failure: {why}"),
            Verdict::Fails(class, why) => {
                let mut s = format!("{mv}: fails ({class})");
                for l in why.lines() {
                    s.push_str(&format!("\n  {l}"));
                }
                s
            }
            Verdict::NotAutomatic => {
                format!("{mv}: not checked: AUTOINSTALL is not set, so a new kernel does not build it")
            }
            Verdict::Waits(why) => format!("{mv}: would not be built: {why}"),
        }
    }

    pub fn is_failure(&self) -> bool {
        matches!(self, Verdict::Fails(..) | Verdict::Waits(_))
    }
}

/// Links the registered versions into the scratch tree (their sources stay
/// where they are); returns them.
fn link_registrations(cx: &Cx, scratch: &Path) -> Result<BTreeMap<String, String>> {
    let latest = registered(cx).latest;
    for (m, v) in &latest {
        let dir = scratch.join(m).join(v);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let source = super::build::source_of(cx, m, v)?;
        std::os::unix::fs::symlink(&source, dir.join("source"))
            .with_context(|| format!("linking {} into {}", source.display(), dir.display()))?;
    }
    Ok(latest)
}

/// The scratch context: the same settings and options, with the trees in
/// `scratch` and every effect beyond the build turned off.
fn scratch_cx(cx: &Cx, scratch: &Path, headers: &Path, config: &Path) -> Cx {
    let mut settings = cx.settings.clone();
    settings.dkms_tree = scratch.join("dkms");
    settings.install_tree = scratch.join("modules");
    settings.cache = false;
    settings.sign = false;
    settings.update_initramfs = false;
    settings.history_log = None;
    settings.modprobe_on_install = false;
    let mut opts = cx.opts.clone();
    opts.headers_dir = Some(headers.to_path_buf());
    opts.kernel_config = config.is_file().then(|| config.to_path_buf());
    opts.no_depmod = true;
    opts.modprobe_on_install = false;
    Cx {
        tree: Tree::new(&settings.dkms_tree, &settings.source_tree),
        settings,
        distro: cx.distro.clone(),
        opts,
    }
}

/// Makefiles that hard-code `/lib/modules/K/build` must find the headers
/// named with --kernelsourcedir too: in a mount namespace of this process
/// alone, `/lib/modules` becomes an overlay whose upper layer lives in the
/// scratch tree, holding `K/build` and `K/source` → the headers. Nothing
/// changes for the rest of the system, and the scratch tree never holds a
/// mount point (it is deleted with everything in it). Returns whether the
/// headers are shown there.
fn headers_at_lib_modules(scratch: &Path, release: &str, headers: &Path) -> Result<bool> {
    let lib = Path::new("/lib/modules");
    let link = lib.join(release).join("build");
    let same = |a: &Path, b: &Path| std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok();
    if same(&link, headers) {
        return Ok(false);
    }
    let upper = scratch.join("lib-modules");
    let work = scratch.join("lib-modules.work");
    let odd = |p: &Path| p.to_string_lossy().contains([',', ':', '\\']);
    if !lib.is_dir() || odd(&upper) || odd(lib) || !crate::build::workdir::can_isolate() {
        log::info!(
            "{} is not shown at {}: Makefiles that look there will not find them",
            headers.display(),
            link.display()
        );
        return Ok(false);
    }
    for d in [&upper, &work] {
        std::fs::create_dir(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).context("a path with NUL");
    let options = std::ffi::CString::new(format!(
        "lowerdir={},upperdir={},workdir={}",
        lib.display(),
        upper.display(),
        work.display()
    ))
    .context("overlay options with NUL")?;
    let (root, target) = (c(Path::new("/"))?, c(lib)?);
    // SAFETY: plain syscalls on valid C strings; the new namespace is this
    // process's alone, and the builds it starts inherit it.
    let mounted = unsafe {
        crate::build::workdir::private_namespace(&root)
            && libc::mount(
                c"overlay".as_ptr(),
                target.as_ptr(),
                c"overlay".as_ptr(),
                0,
                options.as_ptr().cast(),
            ) == 0
    };
    if !mounted {
        let e = std::io::Error::last_os_error();
        log::info!(
            "no overlay on {} ({e}): Makefiles that look there will not find the headers",
            lib.display()
        );
        return Ok(false);
    }
    let kdir = lib.join(release);
    std::fs::create_dir_all(&kdir).with_context(|| format!("creating {} in the overlay", kdir.display()))?;
    for name in ["build", "source"] {
        let l = kdir.join(name);
        if l.symlink_metadata().is_ok() {
            std::fs::remove_file(&l).with_context(|| format!("replacing {} in the overlay", l.display()))?;
        }
        std::os::unix::fs::symlink(headers, &l).with_context(|| format!("linking {} in the overlay", l.display()))?;
    }
    Ok(true)
}

/// The kernel to check and where its headers are: `-k` (headers where the
/// tree or --kernelsourcedir says), or with `candidate` the kernel the
/// package manager would install next, its headers fetched into `dir`.
fn kernel_to_check(cx: &Cx, t: &Target, candidate: bool, dir: &Path, sink: &dyn Sink) -> Result<Kernel> {
    if !candidate {
        let (r, a) = one_kernel(t, "check", true)?;
        return Ok(cx.kernel(&r, &a));
    }
    let Some(manager) = cx.distro.as_ref().and_then(|d| candidate::Manager::of(d.family)) else {
        return Err(fail(
            code::USAGE,
            "--candidate asks apt, pacman or dnf for the next kernel, and this distribution has none of them; unpack its headers and run `modsync check -k KERNEL --kernelsourcedir DIR`",
        ));
    };
    let running = crate::kernel::running_release();
    let c = manager.fetch(&running, &cx.settings.install_tree, dir)?;
    sink.out(&format!(
        "The next kernel {} would install is {} ({}); its headers are fetched, not installed.",
        manager.name(),
        c.release,
        c.package
    ));
    let (r, headers) = (c.release, c.headers);
    let at = Locations {
        install_tree: cx.settings.install_tree.clone(),
        headers_dir: Some(headers),
        config_file: None,
    };
    Ok(Kernel::new(&r, &crate::kernel::machine_arch(), &at))
}

/// `modsync check -k KERNEL` (or `--candidate`): prints a line per
/// registered module; the exit code says whether every one would build.
pub fn run(cx: &Cx, t: &Target, candidate: bool, sink: &dyn Sink) -> Result<i32> {
    let tmp = tempfile::Builder::new()
        .prefix("modsync-check.")
        .tempdir_in(&cx.settings.tmp_location)
        .with_context(|| format!("creating a scratch tree in {}", cx.settings.tmp_location.display()))?;
    let real = kernel_to_check(cx, t, candidate, &tmp.path().join("candidate"), sink)?;
    let (r, a) = (real.release.clone(), real.arch.clone());
    if !real.has_headers() {
        let hint = cx
            .distro
            .as_ref()
            .map(|d| d.headers_hint(&r, &cx.settings.install_tree))
            .unwrap_or_else(|| format!("install the headers of {r}"));
        return Err(fail(
            code::GENERIC,
            format!(
                "the headers of kernel {r} are not at {}: {hint}, or name them with --kernelsourcedir DIR",
                real.headers_dir.display()
            ),
        ));
    }
    let scx = scratch_cx(cx, tmp.path(), &real.headers_dir, &real.config_file);
    let latest = link_registrations(cx, &scx.settings.dkms_tree)?;
    std::fs::create_dir_all(scx.settings.install_tree.join(&r))
        .with_context(|| format!("creating {}", scx.settings.install_tree.display()))?;
    let k = scx.kernel(&r, &a);
    if headers_at_lib_modules(tmp.path(), &r, &real.headers_dir)? {
        log::info!(
            "/lib/modules/{r}/build shows {} to the builds",
            real.headers_dir.display()
        );
    }
    // the builds' own messages only with --verbose
    let quiet = Buffered::default();
    let chatter: &dyn Sink = if cx.opts.verbose { sink } else { &quiet };
    let summary = {
        let _lock = scx.lock(chatter)?;
        for_kernel(&scx, &k, chatter)?
    };
    let automatic: BTreeSet<&str> = summary
        .installed
        .iter()
        .chain(&summary.skipped)
        .map(String::as_str)
        .chain(summary.failed.iter().map(|(m, _)| m.as_str()))
        .collect();
    let waiting: BTreeMap<String, String> = summary
        .missing
        .iter()
        .map(|(mv, d)| (mv.clone(), format!("its BUILD_DEPENDS {} would not build", d.join(" "))))
        .chain(summary.deferred.iter().map(|(mv, d)| {
            (
                mv.clone(),
                format!("its BUILD_DEPENDS {} is not registered", d.join(" ")),
            )
        }))
        .collect();
    sink.out(&format!(
        "Checking {} registered module(s) for kernel {} (headers: {}); nothing is installed.",
        latest.len(),
        k.label(),
        real.headers_dir.display()
    ));
    let mut failures = 0;
    for (m, v) in &latest {
        let mv = format!("{m}/{v}");
        let verdict = if let Some(why) = waiting.get(&mv) {
            Verdict::Waits(why.clone())
        } else if !automatic.contains(m.as_str()) {
            Verdict::NotAutomatic
        } else {
            let e = explain_one(&scx, m, v, &r, &a)?;
            match (e.state.as_str(), e.diagnosis) {
                ("installed" | "built", _) => Verdict::Builds,
                ("excluded", d) => Verdict::Excluded(d.map(|d| d.reason).unwrap_or_default()),
                (class, Some(d)) => Verdict::Fails(class.to_string(), d.render()),
                (class, None) => Verdict::Fails(class.to_string(), String::new()),
            }
        };
        failures += usize::from(verdict.is_failure());
        sink.out(&verdict.render(&mv));
    }
    tmp.close().context("removing the scratch tree")?;
    if failures > 0 {
        sink.out(&format!(
            "{failures} module(s) would not build for kernel {r}; `modsync check -k {r} --verbose` shows their builds."
        ));
        return Ok(1);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_render_and_count() {
        assert_eq!(Verdict::Builds.render("a/1"), "a/1: builds");
        let f = Verdict::Fails("kernel-unsupported".into(), "Why: x\nWhat to do: y".into());
        assert_eq!(
            f.render("a/1"),
            "a/1: fails (kernel-unsupported)\n  Why: x\n  What to do: y"
        );
        assert!(f.is_failure() && Verdict::Waits("w".into()).is_failure());
        assert!(!Verdict::Excluded("r".into()).is_failure() && !Verdict::NotAutomatic.is_failure());
    }
}
