//! Why a build failed and what to do about it. [`classify`] is a pure
//! function over plain values (the make.log text, the exit code and message,
//! the kernel's and the host's compiler) that returns a [`Diagnosis`]: a
//! class, one sentence of reason, advice naming the package to install
//! where one is known, and the log lines it rests on. The build records it
//! beside the kept make.log ([`record`]); `status --json` reads it back and
//! `modsync explain` prints it. [`logscan`] reads a make.log, `rules` hold
//! one recogniser per class, [`facts`] gathers the inputs (the only part
//! that reads files or starts processes).

pub mod facts;
pub mod logscan;
pub mod record;
mod rules;

use crate::kernel::distro::Family;
pub use rules::tool_package;
use serde::{Deserialize, Serialize};

/// The kinds of failure modsync tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    HeadersMissing,
    CompilerMissing,
    MakeMissing,
    /// A build tool kbuild runs (pahole, bc, openssl...) is not installed.
    ToolMissing,
    CompilerMismatch,
    PreBuildFailed,
    KernelUnsupported,
    Excluded,
    DiskFull,
    SigningFailed,
    ModuleMissing,
    Unknown,
}

impl Class {
    /// The name JSON gives it (`kernel-unsupported`).
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// A failure explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    pub class: Class,
    /// What went wrong, in one sentence.
    pub reason: String,
    /// What to do.
    pub advice: String,
    /// The log lines the diagnosis rests on (the first error, a script's own words).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quote: Vec<String>,
    /// The driver's source file of the first error, relative to its build directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The package to install, or (for a driver that does not support the
    /// kernel, once explained) the package that ships the driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
}

impl Diagnosis {
    fn new(class: Class, reason: String, advice: String) -> Diagnosis {
        Diagnosis {
            class,
            reason,
            advice,
            quote: Vec::new(),
            file: None,
            package: None,
        }
    }

    /// For people: the reason, the quoted lines, the advice.
    pub fn render(&self) -> String {
        let mut s = format!("Why: {}", self.reason);
        for q in &self.quote {
            s.push_str(&format!("\n    | {q}"));
        }
        s.push_str(&format!("\nWhat to do: {}", self.advice));
        s
    }

    /// Names the package that ships a driver that does not support the kernel.
    pub fn with_owner(mut self, owner: Option<&str>, family: Family) -> Diagnosis {
        if let (Class::KernelUnsupported, Some(p)) = (self.class, owner) {
            self.advice = format!(
                "{} The driver comes from the package {p}: look for a newer version of it (`{}` once your distribution has one), or ask its maintainers.",
                self.advice,
                family.install_command(p)
            );
            self.package = Some(p.to_string());
        }
        self
    }
}

/// What is known about one failed build.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    pub module: &'a str,
    pub version: &'a str,
    pub kernel: &'a str,
    /// The build's exit code (dkms's: 10 make failed, 7 module missing...).
    pub code: i32,
    /// The build's own message.
    pub message: &'a str,
    /// The make.log text.
    pub log: &'a str,
    /// Where the make.log is kept (for the advice).
    pub log_path: &'a str,
    /// The build directory as the commands saw it (paths in the log start with it).
    pub build_dir: &'a str,
    /// The kernel's CONFIG_CC_VERSION_TEXT.
    pub kernel_cc: Option<&'a str>,
    /// The first line of `gcc --version` here; None when there is no gcc.
    pub host_cc: Option<&'a str>,
    pub family: Option<Family>,
    /// The command that installs the kernel's headers here.
    pub headers_hint: Option<&'a str>,
}

/// Classifies a failed build: the first rule that recognises it, in this
/// order (a full disk or a missing tool explains any error after it; a
/// driver error is more telling than a compiler that merely differs). Pure.
pub fn classify(f: &Facts) -> Diagnosis {
    let s = rules::Scan::new(f);
    rules::disk_full(&s)
        .or_else(|| rules::missing_tool(&s))
        .or_else(|| rules::missing_headers(&s))
        .or_else(|| rules::pre_build(&s))
        .or_else(|| rules::signing(&s))
        .or_else(|| rules::compiler_options(&s))
        .or_else(|| rules::driver_source(&s))
        .or_else(|| rules::module_missing(&s))
        .or_else(|| rules::compiler_only(&s))
        .unwrap_or_else(|| rules::unknown(&s))
}

/// A failure that left no make.log (it stopped before make): only what its
/// message shows beyond doubt, a full disk. Pure.
pub fn classify_message(f: &Facts) -> Option<Diagnosis> {
    rules::disk_full(&rules::Scan::new(f))
}

/// A kernel excluded by BUILD_EXCLUSIVE (not a failure): the rule that excludes it.
pub fn excluded(m: &str, v: &str, k: &str, rule: &str) -> Diagnosis {
    Diagnosis::new(
        Class::Excluded,
        format!("{m}/{v} is not built for kernel {k}: its dkms.conf excludes that kernel ({rule})"),
        "nothing to do: the driver's authors chose not to build it for this kernel; it is not a failure".into(),
    )
}

/// A kernel whose headers are missing; `hint` is the command that installs them.
pub fn headers_missing(m: &str, v: &str, k: &str, hint: &str) -> Diagnosis {
    let mut d = Diagnosis::new(
        Class::HeadersMissing,
        format!("the headers of kernel {k} are not installed, so {m}/{v} cannot be built for it"),
        format!("install them (`{hint}`); modsync then builds the module"),
    );
    d.package = hint.split_whitespace().last().map(str::to_string);
    d
}

#[cfg(test)]
mod tests;
