//! The command line: dkms 3.x's actions and options (clap derive), the same
//! whether the binary is called `dkms` or `modsync`, plus modsync's own
//! actions (`hook`, `cache`, `secureboot`, `explain`, `log`, `convert`,
//! `status --json`, `boot`, `autoinstaller`, `mkdeb`, `mkrpm`, `mkpkg`, and
//! the hidden `generate-docs`).
//! [`args`] gives the options dkms's meaning; [`dispatch`] hands them to the
//! operations; [`manual`] renders the man pages and completions from these
//! definitions.
//! No file system or process work happens in the definitions.

pub mod args;
pub mod dispatch;
pub mod manual;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "modsync",
    disable_version_flag = true,
    about = "Rebuilds out-of-tree kernel modules for every kernel (a drop-in replacement for dkms)",
    after_help = "Every dkms action and option works the same when the binary is called as dkms. \
                  Settings: /etc/modsync/config.toml, /etc/dkms/framework.conf."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: Common,
}

/// Options accepted anywhere on the line, as dkms accepts them.
#[derive(Debug, Clone, Default, Args)]
pub struct Common {
    /// Module, or module/version.
    #[arg(short = 'm', long = "module", global = true, value_name = "MODULE[/VERSION]")]
    pub module: Option<String>,
    /// Module version.
    #[arg(short = 'v', global = true, value_name = "VERSION")]
    pub module_version: Option<String>,
    /// Kernel release, optionally /arch (repeatable; default: the running kernel).
    #[arg(short = 'k', long = "kernelver", global = true, value_name = "KERNEL[/ARCH]")]
    pub kernels: Vec<String>,
    /// Architecture (repeatable; one applies to every kernel; default: the machine's).
    #[arg(short = 'a', long = "arch", global = true, value_name = "ARCH")]
    pub arches: Vec<String>,
    /// Every kernel the module is built for (uninstall, unbuild, remove, mktarball).
    #[arg(long, global = true)]
    pub all: bool,
    /// Rebuild or reinstall even if current; skip the version check and BUILD_DEPENDS.
    #[arg(long, global = true)]
    pub force: bool,
    /// Install over a module of the kernel whatever its version.
    #[arg(long, global = true)]
    pub force_version_override: bool,
    /// make's -j for every build, as dkms passes it (0: unlimited).
    #[arg(short = 'j', global = true, value_name = "N")]
    pub jobs: Option<usize>,
    /// Use this dkms.conf instead of the module's own.
    #[arg(short = 'c', global = true, value_name = "DKMS.CONF")]
    pub conf: Option<PathBuf>,
    /// The kernel configuration to build against (default: the headers').
    #[arg(long = "config", global = true, value_name = "FILE")]
    pub kernel_config: Option<PathBuf>,
    /// The kernel headers directory (default: /lib/modules/KERNEL/build).
    #[arg(long, global = true, value_name = "DIR")]
    pub kernelsourcedir: Option<PathBuf>,
    /// The state tree (default: /var/lib/dkms).
    #[arg(long, global = true, value_name = "DIR")]
    pub dkmstree: Option<PathBuf>,
    /// Where module sources are (default: /usr/src).
    #[arg(long, global = true, value_name = "DIR")]
    pub sourcetree: Option<PathBuf>,
    /// Where kernels keep their modules (default: /lib/modules).
    #[arg(long, global = true, value_name = "DIR")]
    pub installtree: Option<PathBuf>,
    /// Set a dkms.conf directive, NAME=value (repeatable).
    #[arg(long = "directive", global = true, value_name = "NAME=VALUE")]
    pub directives: Vec<String>,
    /// The kernel whose installed modules `match` copies.
    #[arg(long, global = true, value_name = "KERNEL")]
    pub templatekernel: Option<String>,
    /// The tarball for mktarball (a name, or a path) or ldtarball.
    #[arg(long, global = true, value_name = "FILE")]
    pub archive: Option<PathBuf>,
    /// mktarball: the builds and the dkms.conf, without the source (not with --source-only).
    #[arg(long, global = true)]
    pub binaries_only: bool,
    /// mktarball: the source only, no builds (not with --binaries-only).
    #[arg(long, global = true)]
    pub source_only: bool,
    /// Do not run depmod.
    #[arg(long, global = true)]
    pub no_depmod: bool,
    /// Load the new modules after installing for the running kernel.
    #[arg(long, global = true)]
    pub modprobe_on_install: bool,
    /// Install modules as symbolic links into the DKMS tree.
    #[arg(long, global = true)]
    pub symlink_modules: bool,
    /// Part of an RPM upgrade: a remove of the version just added is skipped.
    #[arg(long = "rpm_safe_upgrade", global = true)]
    pub rpm_safe_upgrade: bool,
    /// No output.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    /// More output (debug logs with RUST_LOG=debug).
    #[arg(long, global = true)]
    pub verbose: bool,
    /// Print the version.
    #[arg(short = 'V', long = "version", global = true)]
    pub version: bool,
    #[arg(long, global = true, hide = true)]
    pub debug: bool,
    #[arg(long, global = true, hide = true)]
    pub no_initrd: bool,
    #[arg(long, global = true, hide = true)]
    pub no_clean_kernel: bool,
    #[arg(long, global = true, hide = true)]
    pub no_prepare_kernel: bool,
}

/// What `mkdeb`, `mkrpm` and `mkpkg` take besides -k/--all.
#[derive(Debug, Clone, Default, Args)]
pub struct PackageArgs {
    #[command(flatten)]
    pub t: Targets,
    /// Write the packages into DIR (created; default: the module version's
    /// deb/, rpm/ or pkg/ directory in the DKMS tree).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Depend on this kernel package instead of the distribution's (NAME
    /// alone: any version).
    #[arg(long, value_name = "NAME[=VERSION]")]
    pub kernel_package: Option<String>,
}

/// Positional arguments: MODULE/VERSION, a source directory, a dkms.conf, a tarball.
#[derive(Debug, Clone, Default, Args)]
pub struct Targets {
    #[arg(value_name = "MODULE/VERSION|DIR|DKMS.CONF")]
    pub targets: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register a module version: MODULE/VERSION, a source directory, or its dkms.conf.
    Add(Targets),
    /// Build for the given kernels.
    Build(Targets),
    /// Build if needed, then install for the given kernels.
    Install(Targets),
    /// Take an installed module out of the kernels (it stays built).
    Uninstall(Targets),
    /// Uninstall and delete the builds.
    Unbuild(Targets),
    /// Unbuild; the version leaves the tree once it is built for no kernel.
    Remove(Targets),
    /// Show what is added, built and installed.
    Status {
        #[command(flatten)]
        t: Targets,
        /// Machine-readable output (with the last failed builds).
        #[arg(long)]
        json: bool,
    },
    /// Build and install every AUTOINSTALL module for one kernel.
    Autoinstall(Targets),
    /// Install on -k the module versions installed on --templatekernel.
    Match(Targets),
    /// Write MODULE/VERSION's builds for -k KERNEL (or --all) and its source into a tarball.
    ///
    /// The file is MODULE-VERSION-kernelK-A[-kernelK-A...].dkms.tar.gz in
    /// $dkms_tree/MODULE/VERSION/tarball/ unless --archive names it (its suffix picks gzip,
    /// xz, zstd or none); --source-only leaves the builds out, --binaries-only the source.
    Mktarball(Targets),
    /// Load a tarball made by mktarball (or any tarball with a dkms.conf) and add it.
    ///
    /// Builds already in the tree are kept unless --force. The tarball is untrusted input:
    /// it is extracted into a private directory and refused, with nothing written to the
    /// trees, if an entry leaves it (absolute paths, `..`, links pointing out), is a device
    /// or set-ID file, or names a module, version, kernel or arch that is not a plain name.
    Ldtarball(Targets),
    /// Create the module signing key and certificate if they are missing.
    #[command(name = "generate_mok")]
    GenerateMok(Targets),
    /// A kernel is about to be upgraded: drop its AUTOINSTALL modules.
    #[command(name = "kernel_preinst")]
    KernelPreinst(Targets),
    /// A kernel was installed: autoinstall for it.
    #[command(name = "kernel_postinst")]
    KernelPostinst(Targets),
    /// A kernel is being removed: drop every module built for it.
    #[command(name = "kernel_prerm")]
    KernelPrerm(Targets),
    /// Entry point of the package-manager hooks (modsync's own).
    Hook {
        manager: String,
        /// Empty for `modsync hook dnf` (its input is JSON on stdin).
        #[arg(default_value = "")]
        event: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Write a modsync.toml manifest from DIR's dkms.conf as evaluated for
    /// -k KERNEL, naming what could not be carried over (modsync's own).
    Convert {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Write DIR/modsync.toml instead of printing the manifest.
        #[arg(short = 'o', long = "write")]
        write: bool,
    },
    /// Show or clear the build cache (modsync's own).
    Cache {
        #[arg(value_parser = ["show", "clear"], default_value = "show")]
        action: String,
    },
    /// Explain Secure Boot and the enrolment of the signing key (modsync's own).
    Secureboot,
    /// Why MODULE[/VERSION] did not build for -k KERNEL (default: every failed build), and what to do (modsync's own).
    Explain(Targets),
    /// Would every registered module build for -k KERNEL? Builds them in a
    /// scratch tree, installs nothing, and exits 1 if one would fail
    /// (modsync's own; --kernelsourcedir names headers not yet installed).
    Check {
        #[command(flatten)]
        t: Targets,
        /// Check the kernel apt would install next (its headers are
        /// fetched into the scratch tree, not installed) instead of -k.
        #[arg(long)]
        candidate: bool,
    },
    /// Show what the hooks built, skipped, failed (and why) and removed, with
    /// timestamps, oldest first (modsync's own).
    Log {
        #[command(flatten)]
        t: Targets,
        /// Only failures (failed builds, modules not installed, kernels without headers).
        #[arg(long)]
        failed: bool,
        /// Only the last N entries.
        #[arg(long, value_name = "N")]
        lines: Option<usize>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Build and install what is missing for the running kernel, then load it (modsync's own).
    ///
    /// -k names another kernel. modsync.service runs it at boot; when nothing is missing it
    /// decides so from the state tree alone and exits at once.
    Boot {
        /// Do not load the modules it installed.
        #[arg(long)]
        no_load: bool,
    },
    /// The boot guard (modsync's own): shows the hold in force, after checking
    /// again whether the newest kernel has every module the system depends on.
    ///
    /// When it lacks one, the boot loader keeps booting the newest kernel that has
    /// them all; the hooks, install and autoinstall run this by themselves.
    #[command(name = "boot-guard")]
    BootGuard {
        /// Print the hold as JSON (`null` when none).
        #[arg(long)]
        json: bool,
        /// Undo the hold (what packaging runs when modsync is removed).
        #[arg(long)]
        lift: bool,
    },
    /// What /usr/lib/dkms/dkms_autoinstaller runs (modsync's own).
    ///
    /// `start [KERNEL]` is `autoinstall -k KERNEL` with its exit code folded to 0 or 1; a
    /// kernel without headers is skipped with a message and exit 0.
    Autoinstaller {
        /// start (stop, restart, force-reload, status and reload do nothing).
        #[arg(value_name = "start")]
        action: String,
        /// The kernel (default: the running one).
        #[arg(value_name = "KERNEL")]
        kernel: Option<String>,
    },
    /// A .deb per kernel of a built MODULE/VERSION, plus a meta package
    /// following the newest kernel (modsync's own).
    ///
    /// Needs `-k KERNEL...` or `--all`; the module must be built for each
    /// kernel. Packages `<m>-modules-<K>` (Depends: linux-image-<K>) and
    /// `<m>-modules`; prints each file written.
    Mkdeb(PackageArgs),
    /// An RPM per kernel of a built MODULE/VERSION, plus a meta package
    /// following the newest kernel (modsync's own).
    ///
    /// Needs `-k KERNEL...` or `--all`; the module must be built for each
    /// kernel. Packages `kmod-<m>-<K>` (Requires: kernel-uname-r = <K>) and
    /// `kmod-<m>`; prints each file written.
    Mkrpm(PackageArgs),
    /// A pacman package per kernel of a built MODULE/VERSION, plus a meta
    /// package following the newest kernel (modsync's own).
    ///
    /// Needs `-k KERNEL...` or `--all`; the module must be built for each
    /// kernel. Packages `<m>-modules-<K>` (depends on the kernel's package
    /// named by /usr/lib/modules/<K>/pkgbase, at its installed version) and
    /// `<m>-modules`; prints each file written.
    Mkpkg(PackageArgs),
    /// Write the man pages and shell completions into DIR (for packaging).
    #[command(name = "generate-docs", hide = true)]
    GenerateDocs { dir: PathBuf },
}

impl Command {
    /// dkms's name of the action.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Add(_) => "add",
            Command::Build(_) => "build",
            Command::Install(_) => "install",
            Command::Uninstall(_) => "uninstall",
            Command::Unbuild(_) => "unbuild",
            Command::Remove(_) => "remove",
            Command::Status { .. } => "status",
            Command::Autoinstall(_) => "autoinstall",
            Command::Match(_) => "match",
            Command::Mktarball(_) => "mktarball",
            Command::Ldtarball(_) => "ldtarball",
            Command::GenerateMok(_) => "generate_mok",
            Command::KernelPreinst(_) => "kernel_preinst",
            Command::KernelPostinst(_) => "kernel_postinst",
            Command::KernelPrerm(_) => "kernel_prerm",
            Command::Hook { .. } => "hook",
            Command::Convert { .. } => "convert",
            Command::Cache { .. } => "cache",
            Command::Secureboot => "secureboot",
            Command::Explain(_) => "explain",
            Command::Check { .. } => "check",
            Command::Log { .. } => "log",
            Command::Boot { .. } => "boot",
            Command::BootGuard { .. } => "boot-guard",
            Command::Autoinstaller { .. } => "autoinstaller",
            Command::Mkdeb(_) => "mkdeb",
            Command::Mkrpm(_) => "mkrpm",
            Command::Mkpkg(_) => "mkpkg",
            Command::GenerateDocs { .. } => "generate-docs",
        }
    }

    pub fn targets(&self) -> &[String] {
        match self {
            Command::Add(t)
            | Command::Build(t)
            | Command::Install(t)
            | Command::Uninstall(t)
            | Command::Unbuild(t)
            | Command::Remove(t)
            | Command::Autoinstall(t)
            | Command::Match(t)
            | Command::Mktarball(t)
            | Command::Ldtarball(t)
            | Command::GenerateMok(t)
            | Command::KernelPreinst(t)
            | Command::KernelPostinst(t)
            | Command::KernelPrerm(t)
            | Command::Explain(t)
            | Command::Check { t, .. }
            | Command::Status { t, .. }
            | Command::Log { t, .. } => &t.targets,
            Command::Mkdeb(p) | Command::Mkrpm(p) | Command::Mkpkg(p) => &p.t.targets,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dkms_command_lines() {
        let c = Cli::try_parse_from([
            "dkms",
            "install",
            "v4l2loopback/0.12.7",
            "-k",
            "6.1.0-56-amd64",
            "-k",
            "6.1.0-54-amd64/x86_64",
        ])
        .unwrap();
        assert_eq!(c.command.as_ref().unwrap().targets(), ["v4l2loopback/0.12.7"]);
        assert_eq!(c.common.kernels, vec!["6.1.0-56-amd64", "6.1.0-54-amd64/x86_64"]);
        let c = Cli::try_parse_from(["dkms", "remove", "-m", "foo", "-v", "1.0", "--all"]).unwrap();
        assert_eq!(
            (
                c.common.module.as_deref(),
                c.common.module_version.as_deref(),
                c.common.all
            ),
            (Some("foo"), Some("1.0"), true)
        );
        let c = Cli::try_parse_from(["dkms", "--verbose", "autoinstall", "--kernelver=6.1", "-a", "x86_64"]).unwrap();
        assert!(c.common.verbose);
        assert_eq!(
            (c.common.kernels.clone(), c.common.arches.clone()),
            (vec!["6.1".to_string()], vec!["x86_64".to_string()])
        );
        let c = Cli::try_parse_from([
            "dkms", "build", "-k", "6.1", "-m", "t", "-v", "1", "--config", "/tmp/k", "--force",
        ])
        .unwrap();
        assert_eq!(c.common.kernel_config, Some(PathBuf::from("/tmp/k")));
        assert!(Cli::try_parse_from(["dkms", "match", "--templatekernel=fake", "-k", "6.1"]).is_ok());
        assert!(Cli::try_parse_from([
            "modsync",
            "hook",
            "kernel-install",
            "add",
            "6.1",
            "/boot/x",
            "/boot/vmlinuz-6.1"
        ])
        .is_ok());
        assert!(Cli::try_parse_from(["dkms", "kernel_prerm", "-k", "6.1"]).is_ok());
        let c = Cli::try_parse_from(["modsync", "convert", "/usr/src/foo-1", "-k", "6.1", "-o"]).unwrap();
        assert!(matches!(c.command, Some(Command::Convert { write: true, .. })));
        assert!(Cli::try_parse_from(["dkms", "--version"]).unwrap().common.version);
        let c = Cli::try_parse_from(["modsync", "boot", "-k", "6.1", "--no-load"]).unwrap();
        assert!(matches!(c.command, Some(Command::Boot { no_load: true })));
        assert_eq!(c.common.kernels, vec!["6.1"]);
        let c = Cli::try_parse_from(["/usr/sbin/modsync", "autoinstaller", "start", "6.1"]).unwrap();
        assert!(
            matches!(c.command, Some(Command::Autoinstaller { ref action, ref kernel })
            if action == "start" && kernel.as_deref() == Some("6.1"))
        );
        assert!(Cli::try_parse_from(["dkms", "frobnicate"]).is_err());
        assert!(Cli::try_parse_from(["dkms", "status", "--bogus"]).is_err());
        let c = Cli::try_parse_from(["dkms", "mktarball", "hello/1.0", "--all", "--binaries-only"]).unwrap();
        assert!(c.common.all && c.common.binaries_only);
        assert_eq!(c.command.as_ref().unwrap().name(), "mktarball");
        let c = Cli::try_parse_from(["dkms", "ldtarball", "/tmp/x.dkms.tar.gz", "--force"]).unwrap();
        assert_eq!(c.command.as_ref().unwrap().targets(), ["/tmp/x.dkms.tar.gz"]);
        let c = Cli::try_parse_from([
            "modsync",
            "mkrpm",
            "hello/1.0",
            "-k",
            "6.1",
            "--output-dir",
            "/tmp/o",
            "--kernel-package",
            "kernel-core=6.1",
        ])
        .unwrap();
        assert!(
            matches!(c.command, Some(Command::Mkrpm(ref p)) if p.output_dir == Some(PathBuf::from("/tmp/o"))
                && p.kernel_package.as_deref() == Some("kernel-core=6.1") && p.t.targets == ["hello/1.0"])
        );
        let c = Cli::try_parse_from(["modsync", "explain", "vpoll/0.1", "-k", "6.12"]).unwrap();
        assert_eq!(c.command.as_ref().unwrap().targets(), ["vpoll/0.1"]);
    }
}
