//! Errors that carry a dkms-compatible exit code. Everything else is an
//! `anyhow::Error` and exits 1; `main` looks for a `Failure` in the chain.

use std::fmt;

/// dkms exit codes that scripts test for (dkms-behaviour.md §1.4).
pub mod code {
    pub const GENERIC: i32 = 1;
    pub const USAGE: i32 = 2;
    pub const NOT_FOUND: i32 = 3;
    pub const BROKEN: i32 = 4;
    pub const ALREADY: i32 = 5;
    pub const INSTALL: i32 = 6;
    pub const MODULE_MISSING: i32 = 7;
    pub const BAD_CONF: i32 = 8;
    pub const MAKE_FAILED: i32 = 10;
    pub const AUTOINSTALL: i32 = 11;
    pub const BUILD_DEPENDS: i32 = 13;
    pub const HEADERS_MISSING: i32 = 21;
    pub const EXCLUDED: i32 = 77;
    pub const PRE_INSTALL: i32 = 101;
}

/// A failure with the exit code dkms would use and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Shorthand: an `anyhow::Error` holding a `Failure`.
pub fn fail(code: i32, message: impl Into<String>) -> anyhow::Error {
    Failure::new(code, message).into()
}

/// The exit code for an error chain: the first `Failure` found, else 1.
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
    fn exit_code_found_through_context() {
        let e: anyhow::Result<()> = Err(fail(code::HEADERS_MISSING, "no headers"));
        let e = e.context("building foo/1.0").unwrap_err();
        assert_eq!(exit_code(&e), 21);
        assert_eq!(exit_code(&anyhow::anyhow!("plain")), 1);
    }
}
