//! Package names, versions and architectures in each format's charset:
//! names lower-cased (deb `[a-z0-9.+-]`, rpm and pacman also `_`), versions
//! as each package manager compares them (deb upstream versions start with a
//! digit; rpm and pacman forbid `-` in a version), architectures as each
//! format spells them. Pure.

use super::Format;

fn map_chars(s: &str, keep: impl Fn(char) -> bool, with: char) -> String {
    s.chars().map(|c| if keep(c) { c } else { with }).collect()
}

/// A package name in the format's charset, lower-cased.
pub fn name(f: Format, s: &str) -> String {
    let s = s.to_ascii_lowercase();
    let out = match f {
        Format::Deb => map_chars(&s, |c| c.is_ascii_alphanumeric() || "+-.".contains(c), '-'),
        Format::Rpm => map_chars(&s, |c| c.is_ascii_alphanumeric() || "+-._".contains(c), '-'),
        Format::Pacman => map_chars(&s, |c| c.is_ascii_alphanumeric() || "@+-._".contains(c), '-'),
    };
    out.trim_start_matches(['-', '.']).to_string()
}

/// A module version as the format's version (rpm's and pacman's without
/// `-`; deb's starting with a digit and never ending in `-`).
pub fn version(f: Format, v: &str) -> String {
    match f {
        Format::Deb => {
            let mut s = map_chars(v, |c| c.is_ascii_alphanumeric() || "+-.~".contains(c), '.');
            if !s.starts_with(|c: char| c.is_ascii_digit()) {
                s.insert_str(0, "0+");
            }
            if s.ends_with('-') {
                s.push('0');
            }
            s
        }
        Format::Rpm => map_chars(v, |c| c.is_ascii_alphanumeric() || "._+~^".contains(c), '_'),
        Format::Pacman => map_chars(v, |c| c.is_ascii_alphanumeric() || "._+".contains(c), '_'),
    }
}

/// A kernel release as a version component that compares like the kernel
/// (`6.1.0-56-amd64` -> deb `6.1.0.56.amd64`, rpm/pacman `6.1.0_56_amd64`).
pub fn kernel_component(f: Format, k: &str) -> String {
    match f {
        Format::Deb => map_chars(k, |c| c.is_ascii_alphanumeric() || "+.~".contains(c), '.'),
        Format::Rpm | Format::Pacman => map_chars(k, |c| c.is_ascii_alphanumeric() || "._+".contains(c), '_'),
    }
}

/// The machine architecture (`uname -m`) as the format names it.
pub fn arch(f: Format, machine: &str) -> String {
    match f {
        Format::Deb => match machine {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "i386" | "i486" | "i586" | "i686" => "i386",
            "armv7l" | "armv7" => "armhf",
            "ppc64le" => "ppc64el",
            "riscv64" => "riscv64",
            "s390x" => "s390x",
            "loongarch64" => "loong64",
            other => other,
        }
        .to_string(),
        Format::Rpm | Format::Pacman => machine.to_string(),
    }
}

/// Why a `--kernel-package NAME[=VERSION]` value is refused, if it is.
pub fn kernel_package_problem(s: &str) -> Option<String> {
    let (n, v) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (s, None),
    };
    let name_ok = !n.is_empty()
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || "+-._@".contains(c));
    if !name_ok {
        return Some(format!(
            "--kernel-package {s:?}: the package name {n:?} must start with a letter or digit and hold only letters, digits and + - . _ @"
        ));
    }
    if let Some(v) = v {
        let ok = v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.chars().all(|c| c.is_ascii_alphanumeric() || "+-.~:_".contains(c));
        if !ok {
            return Some(format!(
                "--kernel-package {s:?}: the version {v:?} must start with a letter or digit and hold only letters, digits and + - . ~ : _"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_each_charset() {
        assert_eq!(
            name(Format::Deb, "My_Mod-modules-6.1.0-56-amd64"),
            "my-mod-modules-6.1.0-56-amd64"
        );
        assert_eq!(name(Format::Rpm, "kmod-My_Mod-6.1"), "kmod-my_mod-6.1");
        assert_eq!(name(Format::Pacman, "x~y"), "x-y");
    }

    #[test]
    fn versions_fit_and_compare() {
        assert_eq!(version(Format::Deb, "1.0"), "1.0");
        assert_eq!(version(Format::Deb, "v2_1"), "0+v2.1");
        assert_eq!(version(Format::Rpm, "1.0-rc1"), "1.0_rc1");
        assert_eq!(version(Format::Pacman, "1:2-3"), "1_2_3");
        assert_eq!(kernel_component(Format::Deb, "6.1.0-56-amd64"), "6.1.0.56.amd64");
        assert_eq!(
            kernel_component(Format::Rpm, "6.12.117+deb12-amd64"),
            "6.12.117+deb12_amd64"
        );
        assert_eq!(arch(Format::Deb, "x86_64"), "amd64");
        assert_eq!(arch(Format::Rpm, "x86_64"), "x86_64");
    }

    #[test]
    fn kernel_package_values_are_checked() {
        assert_eq!(kernel_package_problem("linux"), None);
        assert_eq!(kernel_package_problem("linux-lts=6.6.30-1"), None);
        assert_eq!(kernel_package_problem("kernel-core=1:6.9.1-200.fc40"), None);
        for bad in ["", "=1", "-x", "a b", "linux=", "linux=$(id)", "lin;ux", "a=1 2"] {
            assert!(kernel_package_problem(bad).is_some(), "{bad:?}");
        }
    }
}
