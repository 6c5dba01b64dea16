//! Errors that carry a dkms exit code. Everything else is an `anyhow::Error`
//! and exits 1; `main` looks for a [`Failure`] anywhere in the chain.

use std::fmt;

/// dkms's exit codes, named for what they mean (dkms-behaviour.md §1.4).
pub mod code {
    /// Not root, no write access, missing module/version arguments, bad kernel/arch counts.
    pub const GENERIC: i32 = 1;
    /// Unknown option, `-k` with `--all`, module source directory missing on add.
    pub const USAGE: i32 = 2;
    /// Module/version not in the tree, or already added (or built).
    pub const NOT_IN_TREE: i32 = 3;
    /// More than one action, no os-release, dkms.conf missing, several `-k` where one is
    /// needed, a broken module.
    pub const BROKEN: i32 = 4;
    /// `--all` not accepted, a patch path with `..` or a missing patch, already installed.
    pub const REFUSED: i32 = 5;
    /// A patch failed, no such kernel to install into, installation aborted, depmod failed.
    pub const INSTALL_FAILED: i32 = 6;
    /// A built module is missing after make.
    pub const MODULE_MISSING: i32 = 7;
    /// A dkms.conf that is not valid, no source in the source directory.
    pub const BAD_CONF: i32 = 8;
    /// A source tree without a dkms.conf; no write access for a tarball.
    pub const NO_DKMS_CONF: i32 = 9;
    /// make failed.
    pub const MAKE_FAILED: i32 = 10;
    /// One or more modules failed during autoinstall.
    pub const AUTOINSTALL_FAILED: i32 = 11;
    /// BUILD_DEPENDS not installed.
    pub const BUILD_DEPENDS: i32 = 13;
    /// kernel_preinst / kernel_prerm failed for some module.
    pub const KERNEL_HOOK_FAILED: i32 = 14;
    /// An empty or unusable kernel release or architecture.
    pub const BAD_KERNEL: i32 = 16;
    /// Kernel headers missing (dkms 3.1+; dkms 3.0 uses 1).
    pub const HEADERS_MISSING: i32 = 21;
    /// Not built because BUILD_EXCLUSIVE excludes this kernel (a warning, not an error).
    pub const EXCLUDED: i32 = 77;
    /// The PRE_INSTALL script failed.
    pub const PRE_INSTALL: i32 = 101;
}

/// A failure with the exit code dkms would use and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// An `anyhow::Error` holding a [`Failure`].
pub fn fail(code: i32, message: impl Into<String>) -> anyhow::Error {
    Failure {
        code,
        message: message.into(),
    }
    .into()
}

/// The exit code for an error chain: the first [`Failure`] found, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|e| e.downcast_ref::<Failure>().map(|f| f.code))
        .unwrap_or(code::GENERIC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn exit_code_is_found_through_context() {
        let e: anyhow::Result<()> = Err(fail(code::HEADERS_MISSING, "no headers"));
        let e = e.context("building foo/1.0").unwrap_err();
        assert_eq!(exit_code(&e), 21);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), 1);
    }
}
