//! The inputs of a diagnosis that live outside the make.log: the compiler
//! the kernel was built with (its .config, else `include/generated/compile.h`),
//! the host's `gcc --version`, the distribution and its headers package for
//! the kernel, and, for `modsync explain`
//! only, the package that ships a driver (dpkg -S, rpm -qf, pacman -Qo).
//! `status` never comes here: it reads the recorded diagnosis.

use super::{classify, Diagnosis, Facts};
use crate::kernel::distro::{Distro, Family};
use crate::kernel::Kernel;
use std::path::Path;
use std::process::Command;

/// The kernel's compiler: CONFIG_CC_VERSION_TEXT, else compile.h's LINUX_COMPILER.
pub fn kernel_compiler(k: &Kernel) -> Option<String> {
    if let Some(t) = k
        .config()
        .and_then(|c| c.get("CONFIG_CC_VERSION_TEXT").map(str::to_string))
    {
        return Some(t.trim_matches('"').to_string());
    }
    let h = std::fs::read_to_string(k.headers_dir.join("include/generated/compile.h")).ok()?;
    compile_h_compiler(&h).map(str::to_string)
}

/// LINUX_COMPILER of a compile.h, without the linker part. Pure.
pub fn compile_h_compiler(text: &str) -> Option<&str> {
    let l = text.lines().find(|l| l.contains("LINUX_COMPILER"))?;
    let v = l.split_once('"')?.1.trim_end().trim_end_matches('"');
    Some(v.split(", GNU ld").next().unwrap_or(v))
}

/// The first line of `gcc --version`; None when gcc is not there.
pub fn host_compiler() -> Option<String> {
    let o = Command::new("gcc").arg("--version").output().ok()?;
    o.status
        .success()
        .then(|| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .filter(|l| !l.is_empty())
}

/// What a failed build left: where its log is and what it said.
pub struct Failure<'a> {
    pub module: &'a str,
    pub version: &'a str,
    pub kernel: &'a Kernel,
    pub code: i32,
    pub message: &'a str,
    /// The kept make.log, read here.
    pub kept_log: &'a Path,
    /// The make.log and the build directory as the user and the commands saw them.
    pub log_path: &'a str,
    pub build_dir: &'a str,
}

/// Diagnoses a failed build from its kept make.log and this machine's facts.
pub fn diagnose(f: &Failure, sysconf_root: &Path) -> Diagnosis {
    let log = std::fs::read_to_string(f.kept_log).unwrap_or_else(|e| {
        log::debug!("reading {}: {e}", f.kept_log.display());
        String::new()
    });
    let kernel_cc = kernel_compiler(f.kernel);
    let host_cc = host_compiler();
    let distro = Distro::detect(sysconf_root);
    let install_tree = f.kernel.modules_dir.parent().unwrap_or(Path::new("/lib/modules"));
    let headers_hint = distro.as_ref().map(|d| d.headers_hint(&f.kernel.release, install_tree));
    classify(&Facts {
        module: f.module,
        version: f.version,
        kernel: &f.kernel.release,
        code: f.code,
        message: f.message,
        log: &log,
        log_path: f.log_path,
        build_dir: f.build_dir,
        kernel_cc: kernel_cc.as_deref(),
        host_cc: host_cc.as_deref(),
        family: distro.as_ref().map(|d| d.family),
        headers_hint: headers_hint.as_deref(),
    })
}

/// The package that owns `file`, as the distribution's package manager knows it.
pub fn owner_package(family: Family, file: &Path) -> Option<String> {
    let (tool, args): (&str, &[&str]) = match family {
        Family::Debian | Family::Ubuntu => ("dpkg", &["-S"]),
        Family::RedHat | Family::Suse => ("rpm", &["-qf", "--qf", "%{NAME}\\n"]),
        Family::Arch => ("pacman", &["-Qo"]),
        Family::Gentoo | Family::Other => return None,
    };
    let o = Command::new(tool).args(args).arg(file).output().ok()?;
    if !o.status.success() {
        log::debug!("{tool} does not know who owns {}", file.display());
        return None;
    }
    parse_owner(tool, &String::from_utf8_lossy(&o.stdout))
}

/// The package name in the answer of `dpkg -S`, `rpm -qf` or `pacman -Qo`. Pure.
pub fn parse_owner(tool: &str, out: &str) -> Option<String> {
    let l = out.lines().next()?.trim();
    let name = match tool {
        "dpkg" => l.split_once(": ")?.0.split(':').next()?,
        "pacman" => l.split_once(" is owned by ")?.1.split_whitespace().next()?,
        _ => l,
    };
    (!name.is_empty() && !name.contains(' ')).then(|| name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_compiler_of_compile_h() {
        let h = "#define UTS_MACHINE\t\t\"x86_64\"\n#define LINUX_COMPILER\t\t\"x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40\"\n";
        assert_eq!(
            compile_h_compiler(h),
            Some("x86_64-linux-gnu-gcc-12 (Debian 12.2.0-14+deb12u1) 12.2.0")
        );
        assert_eq!(compile_h_compiler("#define UTS_MACHINE \"x86_64\"\n"), None);
    }

    #[test]
    fn reads_package_owners() {
        assert_eq!(
            parse_owner(
                "dpkg",
                "openrazer-driver-dkms: /usr/src/openrazer-driver-3.5.1/dkms.conf\n"
            )
            .as_deref(),
            Some("openrazer-driver-dkms")
        );
        assert_eq!(
            parse_owner("dpkg", "libfoo:amd64: /usr/src/foo-1/dkms.conf\n").as_deref(),
            Some("libfoo")
        );
        assert_eq!(
            parse_owner(
                "pacman",
                "/usr/src/openrazer-driver-3.5.1/dkms.conf is owned by openrazer-driver-dkms 3.5.1-1\n"
            )
            .as_deref(),
            Some("openrazer-driver-dkms")
        );
        assert_eq!(
            parse_owner("rpm", "akmod-openrazer\n").as_deref(),
            Some("akmod-openrazer")
        );
        assert_eq!(parse_owner("rpm", "file /x is not owned by any package\n"), None);
    }
}
