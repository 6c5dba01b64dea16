//! From a parsed command line to an operation and an exit code: the checks
//! dkms makes before any action (both --binaries-only and --source-only, no
//! os-release, the kernel and arch pairing), the settings with the command
//! line on top, then the operation. Errors are printed in dkms's shape and
//! give dkms's exit codes.

use super::args::{kernels, target};
use super::{Cli, Command, Common};
use crate::config::framework;
use crate::config::settings::{Jobs, Settings};
use crate::error::{code, exit_code, fail};
use crate::kernel::distro::Distro;
use crate::ops::remove::Teardown;
use crate::ops::{self, Cx, Options};
use crate::package::Format;
use crate::plan::Verb;
use crate::state::tarball_layout::Content;
use crate::ui::{Direct, Sink};
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Where /etc and /boot are read from (tests set a fixture root).
pub fn sysconf_root() -> PathBuf {
    std::env::var_os("MODSYNC_SYSCONF_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn silence() {
    // SAFETY: plain fd operations on our own process.
    unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if fd >= 0 {
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            libc::close(fd);
        }
    }
}

/// Settings with the command line's paths and -j on top.
pub fn settings(c: &Common, distro: Option<&Distro>) -> Result<Settings> {
    Ok(with_command_line(c, Settings::load(&sysconf_root(), distro)?))
}

/// The command line's paths and -j on top of loaded settings.
pub fn with_command_line(c: &Common, mut s: Settings) -> Settings {
    if let Some(p) = &c.dkmstree {
        s.dkms_tree = p.clone();
    }
    if let Some(p) = &c.sourcetree {
        s.source_tree = p.clone();
    }
    if let Some(p) = &c.installtree {
        s.install_tree = p.clone();
    }
    if let Some(j) = c.jobs {
        s.jobs = Jobs::Explicit(j);
    }
    s.verbose |= c.verbose;
    s
}

fn options(c: &Common) -> Options {
    Options {
        force: c.force,
        force_version_override: c.force_version_override,
        no_depmod: c.no_depmod,
        verbose: c.verbose,
        headers_dir: c.kernelsourcedir.clone(),
        kernel_config: c.kernel_config.clone(),
        conf: c.conf.clone(),
        directives: c.directives.clone(),
        rpm_safe_upgrade: c.rpm_safe_upgrade,
        modprobe_on_install: c.modprobe_on_install,
        symlink_modules: c.symlink_modules,
        templatekernel: c.templatekernel.clone(),
        hook: false,
    }
}

/// What `--version` prints: dkms's form when called as dkms (scripts and
/// make.log read it), modsync's own otherwise.
fn version_line(as_dkms: bool) -> String {
    let distro = Distro::detect(&sysconf_root());
    let compat = Settings::load(&sysconf_root(), distro.as_ref())
        .map(|s| s.compat)
        .unwrap_or(crate::config::settings::Compat::default_for(distro.as_ref()));
    if as_dkms {
        compat.version_string().to_string()
    } else {
        format!(
            "modsync {} (dkms command line of {})",
            env!("CARGO_PKG_VERSION"),
            compat.version_string()
        )
    }
}

/// Runs the command line; returns the exit code.
pub fn run(cli: Cli, as_dkms: bool) -> i32 {
    let c = &cli.common;
    if c.quiet {
        silence();
    }
    if c.version {
        println!("{}", version_line(as_dkms));
        return 0;
    }
    for (on, flag) in [
        (c.no_initrd, "--no-initrd"),
        (c.no_clean_kernel, "--no-clean-kernel"),
        (c.no_prepare_kernel, "--no-prepare-kernel"),
    ] {
        if on {
            eprintln!("Deprecated feature: {flag} (it has no effect)");
        }
    }
    let Some(cmd) = cli.command else {
        eprintln!(
            "Error! No action given; `{} --help` lists them.",
            if as_dkms { "dkms" } else { "modsync" }
        );
        return 0;
    };
    if let Command::Hook { manager, event, args } = &cmd {
        return crate::hook::main(c, manager, event, args);
    }
    // dkms_autoinstaller's kernel is a positional argument
    let kernel_arg;
    let c = match &cmd {
        Command::Autoinstaller { kernel: Some(k), .. } => {
            kernel_arg = Common {
                kernels: vec![k.clone()],
                ..c.clone()
            };
            &kernel_arg
        }
        _ => c,
    };
    match dispatch(c, &cmd) {
        Ok(rc) => rc,
        Err(e) => {
            let _ = std::io::Write::flush(&mut std::io::stdout());
            eprintln!("\nError! {e:#}");
            exit_code(&e)
        }
    }
}

fn dispatch(c: &Common, cmd: &Command) -> Result<i32> {
    if c.binaries_only && c.source_only {
        return Err(fail(
            code::BAD_CONF,
            "--binaries-only and --source-only exclude each other; give one",
        ));
    }
    if let Command::GenerateDocs { dir } = cmd {
        ops::generate_docs::run(dir)?;
        return Ok(0);
    }
    let sink = Direct;
    let distro = Distro::detect(&sysconf_root());
    if distro.is_none() && !matches!(cmd, Command::Secureboot | Command::Cache { .. }) {
        return Err(fail(
            code::BROKEN,
            "neither /etc/os-release nor /usr/lib/os-release exists; modsync needs one to know the distribution",
        ));
    }
    let settings = settings(c, distro.as_ref())?;
    let cx = Cx {
        tree: crate::state::Tree::new(&settings.dkms_tree, &settings.source_tree),
        settings,
        distro,
        opts: options(c),
    };
    let name = cmd.name();
    let (mut t, archive, warnings) = target(c, cmd.targets())?;
    for w in warnings {
        sink.warn(&w);
    }
    let explicit_kernel = name.starts_with("kernel_");
    if explicit_kernel && c.kernels.len() != 1 {
        return Err(fail(
            code::BROKEN,
            format!("{name} needs exactly one kernel (-k KERNEL)"),
        ));
    }
    t.kernels = kernels(
        c,
        !matches!(
            cmd,
            Command::Status { .. }
                | Command::Explain(_)
                | Command::Log { .. }
                | Command::Mkdeb(_)
                | Command::Mkrpm(_)
                | Command::Mkpkg(_)
        ) && !explicit_kernel,
    )?;
    if explicit_kernel && t.kernels.iter().any(|(_, a)| a.is_empty()) {
        t.kernels = t
            .kernels
            .into_iter()
            .map(|(k, a)| (k, if a.is_empty() { crate::kernel::machine_arch() } else { a }))
            .collect();
    }
    let res = match cmd {
        Command::Add(_) if archive.is_some() && t.module.is_none() && t.source_dir.is_none() => {
            ops::remove::no_all(&t, "add")?;
            ops::ldtarball::run(&cx, archive.as_deref(), &t.kernels, &sink)
        }
        Command::Ldtarball(_) => {
            // a tarball that is not there: dkms's "does not exist"
            let named = t.module.as_ref().map(|m| match &t.version {
                Some(v) => PathBuf::from(format!("{m}/{v}")),
                None => PathBuf::from(m),
            });
            ops::ldtarball::run(&cx, archive.or(named).as_deref(), &t.kernels, &sink)
        }
        Command::Mktarball(_) => {
            let content = if c.binaries_only {
                Content::BinariesOnly
            } else if c.source_only {
                Content::SourceOnly
            } else {
                Content::Both
            };
            ops::mktarball::run(&cx, &t, content, c.archive.as_deref(), &sink)
        }
        Command::Add(_) => {
            ops::remove::no_all(&t, "add")?;
            let _lock = cx.lock(&sink)?;
            ops::add::add(&cx, &t, &sink)?;
            Ok(0)
        }
        Command::Build(_) => ops::build::build_or_install(&cx, &t, Verb::Build, &sink),
        Command::Install(_) => ops::build::build_or_install(&cx, &t, Verb::Install, &sink),
        Command::Uninstall(_) => ops::remove::teardown(&cx, &t, Teardown::Uninstall, &sink),
        Command::Unbuild(_) => ops::remove::teardown(&cx, &t, Teardown::Unbuild, &sink),
        Command::Remove(_) => ops::remove::teardown(&cx, &t, Teardown::Remove, &sink),
        Command::Status { json, .. } => ops::status::print(&cx, &t, *json),
        Command::Autoinstall(_) => ops::autoinstall::autoinstall(&cx, &t, "autoinstall", &sink),
        Command::KernelPostinst(_) => ops::autoinstall::autoinstall(&cx, &t, "kernel_postinst", &sink),
        Command::KernelPrerm(_) | Command::KernelPreinst(_) => ops::kernel_hooks::kernel_hook(&cx, &t, name, &sink),
        Command::Match(_) => ops::matching::run(&cx, &t, &sink),
        Command::GenerateMok(_) => generate_mok(&cx, &sink),
        Command::Cache { action } => ops::cache::run(&cx, action == "clear", &sink),
        Command::Convert { dir, write } => ops::convert::run(&cx, dir, &t.kernels, *write, &sink),
        Command::Log {
            failed, lines, json, ..
        } => ops::log::run(&cx, &t, *failed, *lines, *json, &sink),
        Command::Secureboot => {
            let cert = cx
                .settings
                .mok_certificate
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/lib/dkms/mok.pub"));
            let state = crate::sign::secureboot::probe(Path::new("/"), &cert);
            sink.out(&crate::sign::secureboot::explain(&state, &cert));
            Ok(0)
        }
        Command::Explain(_) => ops::explain::run(&cx, &t, &sink),
        Command::Check { candidate, .. } => {
            if *candidate && !c.kernels.is_empty() {
                return Err(fail(code::USAGE, "give -k KERNEL or --candidate, not both"));
            }
            ops::check::run(&cx, &t, *candidate, &sink)
        }
        Command::Boot { no_load } => ops::boot::boot(&cx, &t, !no_load, &sink),
        Command::Autoinstaller { action, .. } => Ok(ops::autoinstaller::run(&cx, action, &t, &sink)),
        Command::Mkdeb(p) | Command::Mkrpm(p) | Command::Mkpkg(p) => {
            let format = match cmd {
                Command::Mkdeb(_) => Format::Deb,
                Command::Mkrpm(_) => Format::Rpm,
                _ => Format::Pacman,
            };
            let r = ops::package::Request {
                output_dir: p.output_dir.clone(),
                kernel_package: p.kernel_package.clone(),
            };
            ops::package::run(&cx, &t, format, &r, &sink)
        }
        Command::BootGuard { json, lift } => ops::guard::run(&cx, *json, *lift, &sink),
        Command::Hook { .. } | Command::GenerateDocs { .. } => unreachable!("handled before"),
    };
    // what boots next follows what is installed now, failures included
    let changes_modules = matches!(
        cmd,
        Command::Install(_)
            | Command::Uninstall(_)
            | Command::Remove(_)
            | Command::Autoinstall(_)
            | Command::KernelPostinst(_)
            | Command::KernelPrerm(_)
    );
    if changes_modules && ops::require_root().is_ok() {
        crate::guard::after_change(&cx, &sink);
    }
    res
}

/// `generate_mok`: the signing key and certificate, created when missing.
fn generate_mok(cx: &Cx, sink: &dyn Sink) -> Result<i32> {
    let fw = framework::read(&cx.settings.etc_dkms(), framework::SIGNING, &[], None)?;
    let key = cx
        .settings
        .mok_signing_key
        .clone()
        .or_else(|| fw.get("mok_signing_key").map(PathBuf::from))
        .unwrap_or_else(|| "/var/lib/dkms/mok.key".into());
    let cert = cx
        .settings
        .mok_certificate
        .clone()
        .or_else(|| fw.get("mok_certificate").map(PathBuf::from))
        .unwrap_or_else(|| "/var/lib/dkms/mok.pub".into());
    sink.out(&format!(
        "Signing key: {}\nPublic certificate (MOK): {}",
        key.display(),
        cert.display()
    ));
    if key.is_file() && cert.is_file() {
        return Ok(0);
    }
    crate::sign::mok::create(&key, &cert)?;
    sink.out(&format!(
        "Created {} and {}; `modsync secureboot` tells whether the certificate must be enrolled.",
        key.display(),
        cert.display()
    ));
    Ok(0)
}
