//! The command line: dkms 3.x's verbs and options (clap derive), plus
//! modsync's own (`hook`, `cache`, `secureboot`, `status --json`). No file
//! system or process work happens here.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "modsync", version, about = "Rebuilds out-of-tree kernel modules for every kernel (a drop-in replacement for dkms)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub common: Common,
}

/// Options accepted anywhere on the line, as dkms does.
#[derive(Debug, Clone, Default, Args)]
pub struct Common {
    /// Module (or module/version).
    #[arg(short = 'm', long = "module", global = true)]
    pub module: Option<String>,
    /// Module version.
    #[arg(short = 'v', global = true)]
    pub module_version: Option<String>,
    /// Kernel release, optionally /arch (repeatable; default: the running kernel).
    #[arg(short = 'k', long = "kernelver", global = true)]
    pub kernels: Vec<String>,
    /// Architecture (default: the machine's).
    #[arg(short = 'a', long = "arch", global = true)]
    pub arch: Option<String>,
    /// Every kernel the module is built for (uninstall, unbuild, remove).
    #[arg(long, global = true)]
    pub all: bool,
    /// Rebuild / reinstall even if current; ignore BUILD_DEPENDS and source permission checks.
    #[arg(long, global = true)]
    pub force: bool,
    /// CPU budget for all builds of this command (make jobserver); 0 = unlimited.
    #[arg(short = 'j', global = true)]
    pub jobs: Option<usize>,
    /// Use this dkms.conf instead of the module's own.
    #[arg(short = 'c', global = true)]
    pub conf: Option<PathBuf>,
    /// Kernel headers directory (default: /lib/modules/KVER/build).
    #[arg(long, global = true)]
    pub kernelsourcedir: Option<PathBuf>,
    #[arg(long, global = true)]
    pub dkmstree: Option<PathBuf>,
    #[arg(long, global = true)]
    pub sourcetree: Option<PathBuf>,
    #[arg(long, global = true)]
    pub installtree: Option<PathBuf>,
    /// Do not run depmod.
    #[arg(long, global = true)]
    pub no_depmod: bool,
    /// No output.
    #[arg(short = 'q', long, global = true)]
    pub quiet: bool,
    /// More output (debug logs with RUST_LOG too).
    #[arg(long, global = true)]
    pub verbose: bool,
    /// Accepted for dkms compatibility; no effect.
    #[arg(long, global = true, hide = true)]
    pub no_initrd: bool,
    #[arg(long, global = true, hide = true)]
    pub no_clean_kernel: bool,
    #[arg(long, global = true, hide = true)]
    pub no_prepare_kernel: bool,
    #[arg(long = "rpm_safe_upgrade", global = true, hide = true)]
    pub rpm_safe_upgrade: bool,
    /// Install over a module of the kernel that has the same or a newer version.
    #[arg(long, global = true)]
    pub force_version_override: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register a module: MODULE/VERSION, a source directory, or a dkms.conf path.
    Add { target: Option<String> },
    /// Build for the given kernels.
    Build { target: Option<String> },
    /// Build if needed, then install for the given kernels.
    Install { target: Option<String> },
    /// Take installed modules out of the kernels (they stay built).
    Uninstall { target: Option<String> },
    /// Uninstall and delete the builds.
    Unbuild { target: Option<String> },
    /// Unbuild; with --all, also unregister the module.
    Remove { target: Option<String> },
    /// Show what is added, built, installed or failed.
    Status {
        target: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Build and install every AUTOINSTALL module for the kernels.
    Autoinstall,
    /// dkms's kernel_postinst (= autoinstall).
    #[command(name = "kernel_postinst")]
    KernelPostinst,
    /// dkms's kernel_prerm: drop every module built for the kernel.
    #[command(name = "kernel_prerm")]
    KernelPrerm,
    /// dkms's kernel_preinst: nothing to do (the ABI is kept on upgrades).
    #[command(name = "kernel_preinst")]
    KernelPreinst,
    /// Entry point of the package-manager hooks.
    Hook {
        manager: String,
        /// Empty for `modsync hook dnf` (its input is the JSON on stdin).
        #[arg(default_value = "")]
        event: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Show or clear the build cache.
    Cache {
        #[arg(value_parser = ["show", "clear"], default_value = "show")]
        action: String,
    },
    /// Explain Secure Boot and the module signing key's enrolment.
    Secureboot,
    /// Create the module signing key if it is missing.
    #[command(name = "generate_mok")]
    GenerateMok,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dkms_command_lines() {
        let c = Cli::try_parse_from(["dkms", "install", "v4l2loopback/0.12.7", "-k", "6.1.0-56-amd64", "-k", "6.1.0-54-amd64/x86_64"]).unwrap();
        assert!(matches!(c.command, Some(Command::Install { target: Some(ref t) }) if t == "v4l2loopback/0.12.7"));
        assert_eq!(c.common.kernels, vec!["6.1.0-56-amd64", "6.1.0-54-amd64/x86_64"]);
        let c = Cli::try_parse_from(["dkms", "remove", "-m", "foo", "-v", "1.0", "--all"]).unwrap();
        assert_eq!(c.common.module.as_deref(), Some("foo"));
        assert_eq!(c.common.module_version.as_deref(), Some("1.0"));
        assert!(c.common.all);
        let c = Cli::try_parse_from(["dkms", "--verbose", "autoinstall", "--kernelver=6.1"]).unwrap();
        assert!(c.common.verbose);
        assert_eq!(c.common.kernels, vec!["6.1"]);
        let c = Cli::try_parse_from(["modsync", "hook", "kernel-install", "add", "6.1", "/boot/x", "/boot/vmlinuz-6.1"]).unwrap();
        assert!(matches!(c.command, Some(Command::Hook { ref args, .. }) if args.len() == 3));
        assert!(Cli::try_parse_from(["dkms", "kernel_postinst", "-k", "6.1"]).is_ok());
        assert!(Cli::try_parse_from(["dkms", "frobnicate"]).is_err());
    }
}
