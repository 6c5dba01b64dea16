//! Why a build failed and what to do about it. [`classify`] is a pure
//! function over plain values (the make.log text, the exit code and message,
//! the kernel's and the host's compiler) that returns a [`Diagnosis`]: a
//! class, one sentence of reason, advice naming the package to install
//! where one is known, and the log lines it rests on. The build records it
//! beside the kept make.log ([`record`]); `status --json` reads it back and
//! `modsync explain` prints it. [`facts`] gathers the inputs (the only part
//! that reads files or starts processes).

pub mod facts;
pub mod logscan;
pub mod record;

use crate::kernel::distro::Family;
use logscan::{compiler_program, compiler_version, error_line, missing_program, sections};
use serde::{Deserialize, Serialize};

/// The kinds of failure modsync tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    HeadersMissing,
    CompilerMissing,
    MakeMissing,
    CompilerMismatch,
    PreBuildFailed,
    KernelUnsupported,
    Excluded,
    DiskFull,
    SigningFailed,
    ModuleMissing,
    Unknown,
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
}

/// The package holding a compiler or make program on a distribution
/// (`x86_64-linux-gnu-gcc-12` is `gcc-12` on Debian, `gcc` elsewhere).
pub fn tool_package(family: Family, program: &str) -> String {
    let tool = ["gcc", "clang", "g++"]
        .iter()
        .filter_map(|t| program.rfind(t).map(|i| &program[i..]))
        .next()
        .unwrap_or(if program == "cc" { "gcc" } else { program });
    match family {
        Family::Debian | Family::Ubuntu => tool.to_string(),
        _ => tool.split('-').next().unwrap_or(tool).to_string(),
    }
}

fn is_compiler(program: &str) -> bool {
    program == "cc" || program.contains("gcc") || program.contains("clang")
}

/// The kernel's and the host's compiler, when they differ.
fn mismatch<'a>(f: &Facts<'a>) -> Option<(&'a str, &'a str)> {
    let k = compiler_version(f.kernel_cc?)?;
    let h = compiler_version(f.host_cc?)?;
    (k != h).then(|| {
        (
            f.kernel_cc.unwrap_or_default().trim_matches('"'),
            f.host_cc.unwrap_or_default(),
        )
    })
}

/// The file of an error line as the driver's own (relative to its build
/// directory), or None for a file of the kernel's headers.
fn driver_file<'a>(file: &'a str, build_dir: &str) -> Option<&'a str> {
    if !build_dir.is_empty() {
        if let Some(rel) = file.strip_prefix(build_dir).and_then(|r| r.strip_prefix('/')) {
            return Some(rel);
        }
    }
    let kernel = ["./include/", "./arch/", "include/", "arch/", "scripts/", "/usr/src/"];
    (!file.starts_with('/') && !kernel.iter().any(|p| file.starts_with(p))).then(|| file.trim_start_matches("./"))
}

/// Classifies a failed build. Pure.
pub fn classify(f: &Facts) -> Diagnosis {
    let family = f.family.unwrap_or(Family::Other);
    let (m, v, k) = (f.module, f.version, f.kernel);
    let lines: Vec<&str> = f.log.lines().collect();
    let with_message: Vec<&str> = lines.iter().copied().chain(f.message.lines()).collect();
    let rebuild = format!("`modsync build {m}/{v} -k {k}`");
    // disk full
    if let Some(l) = with_message
        .iter()
        .find(|l| l.contains("No space left on device") || l.contains("ENOSPC"))
    {
        let mut d = Diagnosis::new(
            Class::DiskFull,
            format!("the disk filled up while {m}/{v} was built for kernel {k}"),
            format!(
                "free space on the file system of {} (and of /tmp), then rebuild: {rebuild}",
                if f.build_dir.is_empty() {
                    "the dkms tree"
                } else {
                    f.build_dir
                }
            ),
        );
        d.quote.push(l.trim().to_string());
        return d;
    }
    // a compiler or make that is not there
    if let Some((l, prog)) = lines.iter().find_map(|l| {
        missing_program(l)
            .filter(|p| is_compiler(p) || *p == "make")
            .map(|p| (*l, p))
    }) {
        let package = tool_package(family, prog);
        let (class, what) = if prog == "make" {
            (Class::MakeMissing, "make is".to_string())
        } else {
            (Class::CompilerMissing, format!("the compiler {prog} is"))
        };
        let mut d = Diagnosis::new(
            class,
            format!("{what} not installed, so {m}/{v} cannot be built for kernel {k}"),
            format!(
                "install it (`{}`), then rebuild: {rebuild}",
                family.install_command(&package)
            ),
        );
        d.quote.push(l.trim().to_string());
        d.package = Some(package);
        return d;
    }
    // a PRE_BUILD step (configure) that failed: its own words
    if let Some(s) = sections(f.log)
        .into_iter()
        .find(|s| s.description.contains("pre_build") && s.exit.is_some_and(|c| c != 0))
    {
        let said: Vec<&str> = s.output.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect();
        let marked: Vec<&str> = said
            .iter()
            .copied()
            .filter(|l| l.starts_with('!') || l.to_lowercase().contains("error") || l.contains("install"))
            .filter(|l| l.trim_start_matches('!').trim() != "")
            .collect();
        let quote = if marked.is_empty() {
            &said[said.len().saturating_sub(5)..]
        } else {
            &marked[..]
        };
        let mut d = Diagnosis::new(
            Class::PreBuildFailed,
            format!(
                "the PRE_BUILD step of {m}/{v} ({}) failed with exit status {} for kernel {k}; it names what is missing",
                script_name(s.command),
                s.exit.unwrap_or_default()
            ),
            format!("do what it says (quoted above), then rebuild: {rebuild}"),
        );
        d.package = install_suggestion(quote);
        d.quote = quote.iter().map(|l| l.to_string()).collect();
        return d;
    }
    // signing
    if let Some(l) = with_message.iter().find(|l| {
        let low = l.to_lowercase();
        (low.contains("sign-file") && (low.contains("error") || low.contains("failed")))
            || low.contains("could not sign")
            || low.contains("signing failed")
            || l.starts_with("At main.c:")
    }) {
        let mut d = Diagnosis::new(
            Class::SigningFailed,
            format!("{m}/{v} was built for kernel {k}, but signing its modules failed"),
            "check the signing key and certificate (mok_signing_key, mok_certificate in /etc/modsync/config.toml; `modsync secureboot` explains the enrolment), then rebuild with --force".into(),
        );
        d.quote.push(l.trim().to_string());
        return d;
    }
    let mism = mismatch(f);
    let cc_package = f
        .kernel_cc
        .and_then(compiler_program)
        .map(|p| tool_package(family, p))
        .unwrap_or_else(|| "gcc".into());
    let flag_error = lines.iter().find(|l| {
        l.contains("unrecognized command-line option")
            || l.contains("unrecognized command line option")
            || l.contains("unknown argument:")
            || l.starts_with("cc1: error:")
    });
    if let (Some((kcc, hcc)), Some(l)) = (mism, flag_error) {
        let mut d = compiler_mismatch(m, v, k, kcc, hcc, &cc_package, family);
        d.quote.push(l.trim().to_string());
        return d;
    }
    // the driver's own source does not compile: the kernel changed under it
    let first = lines
        .iter()
        .filter_map(|l| error_line(l))
        .find_map(|e| driver_file(e.file, f.build_dir).map(|rel| (e, rel)));
    let undefined = lines
        .iter()
        .find(|l| l.contains("modpost: ") && l.contains("undefined!"));
    if first.is_some() || undefined.is_some() {
        let (what, quote, file) = match (first, undefined) {
            (Some((e, rel)), _) => (
                format!("its own source fails to compile: {rel}:{}: {}", e.line, e.text),
                e.whole.to_string(),
                Some(rel.to_string()),
            ),
            (None, Some(u)) => (
                format!("it uses a symbol kernel {k} does not export"),
                u.trim().to_string(),
                None,
            ),
            (None, None) => unreachable!("checked above"),
        };
        let mut advice = format!(
            "this driver version does not build for kernel {k}; a newer version of the driver is needed (or keep booting a kernel it supports)."
        );
        if let Some((kcc, hcc)) = mism {
            advice.push_str(&format!(
                " Note: the kernel was built with {kcc}, this machine's gcc is {hcc}; installing the kernel's compiler (`{}`) may help too.",
                family.install_command(&cc_package)
            ));
        }
        let mut d = Diagnosis::new(
            Class::KernelUnsupported,
            format!("{m}/{v} does not support kernel {k}: {what}"),
            advice,
        );
        d.quote.push(quote);
        d.file = file;
        return d;
    }
    if f.code == crate::error::code::MODULE_MISSING {
        return Diagnosis::new(
            Class::ModuleMissing,
            format!(
                "make succeeded but the module(s) of {m}/{v} are missing after the build for kernel {k}: {}",
                f.message.lines().next().unwrap_or_default()
            ),
            "the driver's Makefile did not build what its dkms.conf names (BUILT_MODULE_NAME, BUILT_MODULE_LOCATION); often it skips a module that this kernel's configuration does not support. Read the build log, and report it to the driver's maintainers".into(),
        );
    }
    if let Some((kcc, hcc)) = mism {
        return compiler_mismatch(m, v, k, kcc, hcc, &cc_package, family);
    }
    let mut d = Diagnosis::new(
        Class::Unknown,
        f.message.lines().next().unwrap_or("the build failed").to_string(),
        format!(
            "read the build log {}",
            if f.log_path.is_empty() {
                "(make.log)"
            } else {
                f.log_path
            }
        ),
    );
    d.quote = lines
        .iter()
        .filter(|l| l.contains("error") || l.contains("Error") || l.contains("***"))
        .take(3)
        .map(|l| l.trim().to_string())
        .collect();
    d
}

fn compiler_mismatch(m: &str, v: &str, k: &str, kcc: &str, hcc: &str, package: &str, family: Family) -> Diagnosis {
    let mut d = Diagnosis::new(
        Class::CompilerMismatch,
        format!("kernel {k} was built with {kcc}, but this machine's gcc is {hcc}; {m}/{v} did not build with it"),
        format!(
            "install the kernel's compiler (`{}`); modsync builds with it when it is installed. Then rebuild: `modsync build {m}/{v} -k {k}`",
            family.install_command(package)
        ),
    );
    d.package = Some(package.to_string());
    d
}

/// The script a build step ran: `configure` of `cd DIR/ && DIR/./configure --opts`.
fn script_name(command: &str) -> &str {
    let run = command.rsplit("&& ").next().unwrap_or(command);
    let first = run.split_whitespace().next().unwrap_or(run);
    first.rsplit('/').next().unwrap_or(first)
}

/// The first package an `apt-get install X` / `dnf install X` line names.
fn install_suggestion(lines: &[&str]) -> Option<String> {
    lines.iter().find_map(|l| {
        let words: Vec<&str> = l.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "install")?;
        let before = words[..at].iter().rev().next()?;
        ["apt-get", "apt", "yum", "dnf", "zypper"]
            .contains(before)
            .then(|| words.get(at + 1).map(|p| p.to_string()))
            .flatten()
    })
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
