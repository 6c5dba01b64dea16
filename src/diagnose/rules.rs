//! One rule per kind of failure: does the make.log (or the build's message)
//! show it, and what does it mean? Each returns a [`Diagnosis`] or None;
//! [`super::classify`] tries them in order. Pure.

use super::logscan::{
    compiler_program, compiler_version, error_line, install_suggestion, make_error, missing_program, script_name,
    sections,
};
use super::{Class, Diagnosis, Facts};
use crate::kernel::distro::Family;

/// A failed build, read once for every rule.
pub struct Scan<'a> {
    f: &'a Facts<'a>,
    family: Family,
    lines: Vec<&'a str>,
    /// The log's lines, then the message's.
    all: Vec<&'a str>,
    /// The command that rebuilds, for the advice.
    rebuild: String,
    /// The kernel's and the host's compiler, when they differ.
    mismatch: Option<(&'a str, &'a str)>,
    /// The package of the kernel's compiler here.
    cc_package: String,
}

impl<'a> Scan<'a> {
    pub fn new(f: &'a Facts<'a>) -> Scan<'a> {
        let family = f.family.unwrap_or(Family::Other);
        let lines: Vec<&str> = f.log.lines().collect();
        let all = lines.iter().copied().chain(f.message.lines()).collect();
        let mismatch = match (f.kernel_cc, f.host_cc) {
            (Some(k), Some(h)) => compiler_version(k)
                .zip(compiler_version(h))
                .filter(|(a, b)| a != b)
                .map(|_| (k.trim_matches('"'), h)),
            _ => None,
        };
        Scan {
            f,
            family,
            lines,
            all,
            rebuild: format!("`modsync build {}/{} -k {}`", f.module, f.version, f.kernel),
            mismatch,
            cc_package: f
                .kernel_cc
                .and_then(compiler_program)
                .map(|p| tool_package(family, p))
                .unwrap_or_else(|| "gcc".into()),
        }
    }

    fn mv(&self) -> String {
        format!("{}/{}", self.f.module, self.f.version)
    }
}

/// The programs kbuild runs besides the compiler and make, with their
/// package on Debian/Ubuntu, Fedora/SUSE and Arch (pahole makes the BTF of
/// modules for kernels built with CONFIG_DEBUG_INFO_BTF_MODULES).
const KBUILD_TOOLS: &[(&str, [&str; 3])] = &[
    ("pahole", ["pahole", "dwarves", "pahole"]),
    ("bc", ["bc", "bc", "bc"]),
    ("flex", ["flex", "flex", "flex"]),
    ("bison", ["bison", "bison", "bison"]),
    ("perl", ["perl", "perl", "perl"]),
    ("python3", ["python3", "python3", "python"]),
    ("openssl", ["openssl", "openssl", "openssl"]),
    ("xz", ["xz-utils", "xz", "xz"]),
    ("zstd", ["zstd", "zstd", "zstd"]),
    ("gzip", ["gzip", "gzip", "gzip"]),
    ("lz4", ["lz4", "lz4", "lz4"]),
    ("gawk", ["gawk", "gawk", "gawk"]),
    ("cpio", ["cpio", "cpio", "cpio"]),
];

/// The package of a build tool kbuild runs, if `program` is one.
fn kbuild_tool_package(family: Family, program: &str) -> Option<&'static str> {
    let (_, packages) = KBUILD_TOOLS.iter().find(|(p, _)| *p == program)?;
    Some(match family {
        Family::RedHat | Family::Suse => packages[1],
        Family::Arch => packages[2],
        _ => packages[0],
    })
}

/// The package holding a compiler, make or another build program on a
/// distribution (`x86_64-linux-gnu-gcc-12` is `gcc-12` on Debian, `gcc`
/// elsewhere; pahole is `dwarves` on Fedora).
pub fn tool_package(family: Family, program: &str) -> String {
    if let Some(p) = kbuild_tool_package(family, program) {
        return p.to_string();
    }
    let tool = ["gcc", "clang", "g++"]
        .iter()
        .find_map(|t| program.rfind(t).map(|i| &program[i..]))
        .unwrap_or(if program == "cc" { "gcc" } else { program });
    match family {
        Family::Debian | Family::Ubuntu => tool.to_string(),
        _ => tool.split('-').next().unwrap_or(tool).to_string(),
    }
}

fn is_compiler(program: &str) -> bool {
    program == "cc" || program.contains("gcc") || program.contains("clang")
}

/// ENOSPC anywhere in the log or the message.
pub fn disk_full(s: &Scan) -> Option<Diagnosis> {
    let l = s
        .all
        .iter()
        .find(|l| l.contains("No space left on device") || l.contains("ENOSPC"))?;
    let place = if s.f.build_dir.is_empty() {
        "the dkms tree"
    } else {
        s.f.build_dir
    };
    let mut d = Diagnosis::new(
        Class::DiskFull,
        format!(
            "the disk filled up while {} was built for kernel {}",
            s.mv(),
            s.f.kernel
        ),
        format!(
            "free space on the file system of {place} (and of /tmp), then rebuild: {}",
            s.rebuild
        ),
    );
    d.quote.push(l.trim().to_string());
    Some(d)
}

/// A compiler or make that the shell or make could not find.
pub fn missing_tool(s: &Scan) -> Option<Diagnosis> {
    let (l, prog) = s.lines.iter().find_map(|l| {
        missing_program(l)
            .filter(|p| is_compiler(p) || *p == "make" || kbuild_tool_package(s.family, p).is_some())
            .map(|p| (*l, p))
    })?;
    let package = tool_package(s.family, prog);
    let (class, what) = if prog == "make" {
        (Class::MakeMissing, "make is".to_string())
    } else if !is_compiler(prog) {
        (Class::ToolMissing, format!("the build tool {prog} is"))
    } else {
        (Class::CompilerMissing, format!("the compiler {prog} is"))
    };
    let mut d = Diagnosis::new(
        class,
        format!(
            "{what} not installed, so {} cannot be built for kernel {}",
            s.mv(),
            s.f.kernel
        ),
        format!(
            "install it (`{}`), then rebuild: {}",
            s.family.install_command(&package),
            s.rebuild
        ),
    );
    d.quote.push(l.trim().to_string());
    d.package = Some(package);
    Some(d)
}

/// A driver Makefile that looks for the kernel's headers where there are
/// none (`make[2]: *** /lib/modules/K/build: No such file or directory.  Stop.`).
pub fn missing_headers(s: &Scan) -> Option<Diagnosis> {
    let (l, dir) = s.lines.iter().find_map(|l| {
        let dir = l
            .split_once("*** ")?
            .1
            .strip_suffix(": No such file or directory.  Stop.")?;
        (dir.contains("/lib/modules/") || dir.ends_with("/build")).then_some((*l, dir))
    })?;
    let k = s.f.kernel;
    let install = match s.f.headers_hint {
        Some(h) => format!("install them (`{h}`)"),
        None => "install them".into(),
    };
    let mut d = Diagnosis::new(
        Class::HeadersMissing,
        format!(
            "the Makefile of {} looks for the headers of kernel {k} in {dir}, which does not exist",
            s.mv()
        ),
        format!(
            "{install} so that {dir} exists (this driver does not use --kernelsourcedir), then rebuild: {}",
            s.rebuild
        ),
    );
    d.quote.push(l.trim().to_string());
    d.package =
        s.f.headers_hint
            .and_then(|h| h.split_whitespace().last())
            .map(str::to_string);
    Some(d)
}

/// A PRE_BUILD step (a configure script) that failed: quoted in its own words.
pub fn pre_build(s: &Scan) -> Option<Diagnosis> {
    let step = sections(s.f.log)
        .into_iter()
        .find(|x| x.description.contains("pre_build") && x.exit.is_some_and(|c| c != 0))?;
    let said: Vec<&str> = step.output.iter().map(|l| l.trim()).filter(|l| !l.is_empty()).collect();
    let marked: Vec<&str> = said
        .iter()
        .copied()
        .filter(|l| l.starts_with('!') || l.to_lowercase().contains("error") || l.contains("install"))
        .filter(|l| !l.trim_start_matches('!').trim().is_empty())
        .collect();
    let quote = if marked.is_empty() {
        &said[said.len().saturating_sub(5)..]
    } else {
        &marked[..]
    };
    let mut d = Diagnosis::new(
        Class::PreBuildFailed,
        format!(
            "the PRE_BUILD step of {} ({}) failed with exit status {} for kernel {}; it names what is missing",
            s.mv(),
            script_name(step.command),
            step.exit.unwrap_or_default(),
            s.f.kernel
        ),
        format!("do what it says (quoted above), then rebuild: {}", s.rebuild),
    );
    d.package = install_suggestion(quote);
    d.quote = quote.iter().map(|l| l.to_string()).collect();
    Some(d)
}

/// sign-file's errors, or modsync's own "could not sign".
pub fn signing(s: &Scan) -> Option<Diagnosis> {
    let l = s.all.iter().find(|l| {
        let low = l.to_lowercase();
        (low.contains("sign-file") && (low.contains("error") || low.contains("failed")))
            || low.contains("could not sign")
            || low.contains("signing failed")
            || l.starts_with("At main.c:")
    })?;
    let mut d = Diagnosis::new(
        Class::SigningFailed,
        format!("{} was built for kernel {}, but signing its modules failed", s.mv(), s.f.kernel),
        "check the signing key and certificate (mok_signing_key, mok_certificate in /etc/modsync/config.toml; `modsync secureboot` explains the enrolment), then rebuild with --force".into(),
    );
    d.quote.push(l.trim().to_string());
    Some(d)
}

/// Another compiler than the kernel's, rejecting the kernel's options.
pub fn compiler_options(s: &Scan) -> Option<Diagnosis> {
    let l = s.lines.iter().find(|l| {
        l.contains("unrecognized command-line option")
            || l.contains("unrecognized command line option")
            || l.contains("unknown argument:")
            || l.starts_with("cc1: error:")
    })?;
    let mut d = compiler_only(s)?;
    d.quote.push(l.trim().to_string());
    Some(d)
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

/// The driver's own source does not compile, its own makefile refuses
/// the kernel (`$(error ...)`), or it uses a symbol the kernel does not
/// export: the kernel changed under it.
pub fn driver_source(s: &Scan) -> Option<Diagnosis> {
    let k = s.f.kernel;
    let own = |scan: fn(&str) -> Option<super::logscan::ErrorLine>| {
        s.lines
            .iter()
            .filter_map(|l| scan(l))
            .find_map(|e| driver_file(e.file, s.f.build_dir).map(|rel| (e, rel)))
    };
    let (what, quote, file) = match (own(error_line), own(make_error)) {
        (Some((e, rel)), _) => (
            format!("its own source fails to compile: {rel}:{}: {}", e.line, e.text),
            e.whole.to_string(),
            Some(rel.to_string()),
        ),
        (None, Some((e, rel))) => (
            format!("its own {rel} refuses to build: {}", e.text),
            e.whole.to_string(),
            Some(rel.to_string()),
        ),
        (None, None) => {
            let u = s
                .lines
                .iter()
                .find(|l| l.contains("modpost: ") && l.contains("undefined!"))?;
            (
                format!("it uses a symbol kernel {k} does not export"),
                u.trim().to_string(),
                None,
            )
        }
    };
    let mut advice = format!(
        "this driver version does not build for kernel {k}; a newer version of the driver is needed (or keep booting a kernel it supports)."
    );
    if let Some((kcc, hcc)) = s.mismatch {
        advice.push_str(&format!(
            " Note: the kernel was built with {kcc}, this machine's gcc is {hcc}; installing the kernel's compiler (`{}`) may help too.",
            s.family.install_command(&s.cc_package)
        ));
    }
    let mut d = Diagnosis::new(
        Class::KernelUnsupported,
        format!("{} does not support kernel {k}: {what}", s.mv()),
        advice,
    );
    d.quote.push(quote);
    d.file = file;
    Some(d)
}

/// make succeeded without producing the modules (dkms's exit 7).
pub fn module_missing(s: &Scan) -> Option<Diagnosis> {
    (s.f.code == crate::error::code::MODULE_MISSING).then(|| {
        Diagnosis::new(
            Class::ModuleMissing,
            format!(
                "make succeeded but the module(s) of {} are missing after the build for kernel {}: {}",
                s.mv(),
                s.f.kernel,
                s.f.message.lines().next().unwrap_or_default()
            ),
            "the driver's Makefile did not build what its dkms.conf names (BUILT_MODULE_NAME, BUILT_MODULE_LOCATION); often it skips a module that this kernel's configuration does not support. Read the build log, and report it to the driver's maintainers".into(),
        )
    })
}

/// The kernel was built with another compiler than this machine's gcc.
pub fn compiler_only(s: &Scan) -> Option<Diagnosis> {
    let (kcc, hcc) = s.mismatch?;
    let mut d = Diagnosis::new(
        Class::CompilerMismatch,
        format!(
            "kernel {} was built with {kcc}, but this machine's gcc is {hcc}; {} did not build with it",
            s.f.kernel,
            s.mv()
        ),
        format!(
            "install the kernel's compiler (`{}`); modsync builds with it when it is installed. Then rebuild: {}",
            s.family.install_command(&s.cc_package),
            s.rebuild
        ),
    );
    d.package = Some(s.cc_package.clone());
    Some(d)
}

/// None of the above: the build's message and the log's error lines.
pub fn unknown(s: &Scan) -> Diagnosis {
    let log = if s.f.log_path.is_empty() {
        "(make.log)"
    } else {
        s.f.log_path
    };
    let mut d = Diagnosis::new(
        Class::Unknown,
        s.f.message.lines().next().unwrap_or("the build failed").to_string(),
        format!("read the build log {log}"),
    );
    d.quote = s
        .lines
        .iter()
        .filter(|l| l.contains("error") || l.contains("Error") || l.contains("***"))
        .take(3)
        .map(|l| l.trim().to_string())
        .collect();
    d
}
