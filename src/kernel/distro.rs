//! The distribution, from os-release: where modules are installed and which
//! package holds a kernel's headers.

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Debian,
    Arch,
    RedHat,
    Suse,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distro {
    pub id: String,
    pub family: Family,
}

/// Reads `ID` and `ID_LIKE` from an os-release text. Pure.
pub fn parse_os_release(text: &str) -> Distro {
    let mut id = String::new();
    let mut like = String::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"').trim_matches('\'').to_ascii_lowercase();
            match k.trim() {
                "ID" => id = v,
                "ID_LIKE" => like = v,
                _ => {}
            }
        }
    }
    let words: Vec<&str> = std::iter::once(id.as_str()).chain(like.split_whitespace()).collect();
    let has = |pats: &[&str]| words.iter().any(|w| pats.iter().any(|p| w.starts_with(p)));
    let family = if has(&["debian", "ubuntu", "linuxmint"]) {
        Family::Debian
    } else if has(&["arch"]) {
        Family::Arch
    } else if has(&["fedora", "rhel", "centos", "almalinux", "rocky", "ol"]) {
        Family::RedHat
    } else if has(&["suse", "opensuse", "sles"]) {
        Family::Suse
    } else {
        Family::Other
    };
    Distro { id, family }
}

impl Distro {
    pub fn detect(root: &Path) -> Distro {
        for p in ["etc/os-release", "usr/lib/os-release"] {
            if let Ok(t) = std::fs::read_to_string(root.join(p)) {
                return parse_os_release(&t);
            }
        }
        Distro { id: String::new(), family: Family::Other }
    }

    /// Where modules go under `/lib/modules/K`, replacing DEST_MODULE_LOCATION
    /// as dkms does; None means "use the directive".
    pub fn module_location(&self) -> Option<&'static str> {
        match self.family {
            Family::Debian | Family::Arch => Some("/updates/dkms"),
            Family::RedHat => Some("/extra"),
            Family::Suse => Some("/updates"),
            Family::Other => None,
        }
    }

    /// The command that installs the headers of `release` here.
    pub fn headers_hint(&self, release: &str, install_tree: &Path) -> String {
        match self.family {
            Family::Debian => format!("apt install linux-headers-{release}"),
            Family::Arch => {
                let base = std::fs::read_to_string(install_tree.join(release).join("pkgbase"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "linux".into());
                format!("pacman -S {base}-headers")
            }
            Family::RedHat => format!("dnf install kernel-devel-{release}"),
            Family::Suse => "zypper install kernel-devel kernel-default-devel".into(),
            Family::Other => format!("install your distribution's kernel headers package for {release}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_locations() {
        let d = parse_os_release("PRETTY_NAME=\"Debian\"\nID=debian\n");
        assert_eq!(d.family, Family::Debian);
        assert_eq!(d.module_location(), Some("/updates/dkms"));
        assert_eq!(d.headers_hint("6.1.0-56-amd64", Path::new("/nonexistent")), "apt install linux-headers-6.1.0-56-amd64");
        assert_eq!(parse_os_release("ID=linuxmint\nID_LIKE=\"ubuntu debian\"").family, Family::Debian);
        let f = parse_os_release("ID=fedora\n");
        assert_eq!(f.module_location(), Some("/extra"));
        assert!(f.headers_hint("6.9.1-200.fc40.x86_64", Path::new("/x")).contains("kernel-devel-6.9.1-200.fc40.x86_64"));
        assert_eq!(parse_os_release("ID=almalinux\nID_LIKE=\"rhel centos fedora\"").family, Family::RedHat);
        assert_eq!(parse_os_release("ID=opensuse-tumbleweed\nID_LIKE=\"opensuse suse\"").module_location(), Some("/updates"));
        assert_eq!(parse_os_release("ID=arch\n").family, Family::Arch);
        assert_eq!(parse_os_release("ID=gentoo\n").module_location(), None);
    }
}
