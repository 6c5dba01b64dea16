//! The distribution, as dkms names it (`running_distribution`, from
//! os-release): where modules are installed, which sign-file it uses and
//! which package holds a kernel's headers.

use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Debian,
    Ubuntu,
    Arch,
    RedHat,
    Suse,
    Gentoo,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distro {
    /// dkms's `running_distribution`: `ubuntu`, else the whole ID_LIKE, else ID.
    pub name: String,
    pub family: Family,
    /// os-release's VERSION_ID ("12", "24.04"), empty when absent.
    pub version_id: String,
}

impl Family {
    /// The command that installs `package` with this family's package manager.
    pub fn install_command(self, package: &str) -> String {
        match self {
            Family::Debian | Family::Ubuntu => format!("apt install {package}"),
            Family::Arch => format!("pacman -S {package}"),
            Family::RedHat => format!("dnf install {package}"),
            Family::Suse => format!("zypper install {package}"),
            Family::Gentoo | Family::Other => format!("install {package}"),
        }
    }
}

fn value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
    })
}

/// The distribution from an os-release text, as dkms computes it. Pure.
pub fn parse_os_release(text: &str) -> Distro {
    let id = value(text, "ID").unwrap_or_default();
    let like = value(text, "ID_LIKE").unwrap_or_default();
    let name = if id == "ubuntu" || like.is_empty() { id } else { like };
    let p = |pre: &[&str]| pre.iter().any(|x| name.starts_with(x));
    let family = if p(&["ubuntu"]) {
        Family::Ubuntu
    } else if p(&["debian"]) {
        Family::Debian
    } else if p(&["arch"]) {
        Family::Arch
    } else if p(&["fedora", "centos", "rhel"]) {
        Family::RedHat
    } else if p(&["sles", "suse", "opensuse"]) {
        Family::Suse
    } else if p(&["gentoo"]) {
        Family::Gentoo
    } else {
        Family::Other
    };
    Distro {
        name,
        family,
        version_id: value(text, "VERSION_ID").unwrap_or_default(),
    }
}

impl Distro {
    /// Reads `etc/os-release`, else `usr/lib/os-release`, under `root`;
    /// None when neither exists (dkms refuses to run then, exit 4).
    pub fn detect(root: &Path) -> Option<Distro> {
        ["etc/os-release", "usr/lib/os-release"]
            .iter()
            .find_map(|p| std::fs::read_to_string(root.join(p)).ok())
            .map(|t| parse_os_release(&t))
    }

    /// Where modules go under `/lib/modules/K`, replacing DEST_MODULE_LOCATION
    /// as dkms does; None keeps the directive's value.
    pub fn module_location(&self) -> Option<&'static str> {
        match self.family {
            Family::Debian | Family::Ubuntu | Family::Arch => Some("/updates/dkms"),
            Family::RedHat => Some("/extra"),
            Family::Suse => Some("/updates"),
            Family::Gentoo | Family::Other => None,
        }
    }

    /// The command that installs the headers of `release` here.
    pub fn headers_hint(&self, release: &str, install_tree: &Path) -> String {
        match self.family {
            Family::Debian | Family::Ubuntu => format!("apt install linux-headers-{release}"),
            Family::Arch => {
                let base = std::fs::read_to_string(install_tree.join(release).join("pkgbase"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "linux".into());
                format!("pacman -S {base}-headers")
            }
            Family::RedHat => format!("dnf install kernel-devel-{release}"),
            Family::Suse => "zypper install kernel-default-devel".into(),
            Family::Gentoo | Family::Other => {
                format!("install your distribution's kernel headers package for {release}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_locations_as_dkms_computes_them() {
        let d = parse_os_release("PRETTY_NAME=\"Debian\"\nID=debian\n");
        assert_eq!((d.name.as_str(), d.family), ("debian", Family::Debian));
        assert_eq!(d.module_location(), Some("/updates/dkms"));
        assert_eq!(
            d.headers_hint("6.1.0-56-amd64", Path::new("/x")),
            "apt install linux-headers-6.1.0-56-amd64"
        );
        let m = parse_os_release("ID=linuxmint\nID_LIKE=\"ubuntu debian\"");
        assert_eq!((m.name.as_str(), m.family), ("ubuntu debian", Family::Ubuntu));
        assert_eq!(parse_os_release("ID=ubuntu\nID_LIKE=debian").name, "ubuntu");
        let a = parse_os_release("ID=almalinux\nID_LIKE=\"rhel centos fedora\"");
        assert_eq!((a.family, a.module_location()), (Family::RedHat, Some("/extra")));
        assert_eq!(
            parse_os_release("ID=opensuse-tumbleweed\nID_LIKE=\"opensuse suse\"").module_location(),
            Some("/updates")
        );
        assert_eq!(parse_os_release("ID=arch\n").family, Family::Arch);
        assert_eq!(parse_os_release("ID=gentoo\n").module_location(), None);
        assert_eq!(parse_os_release("ID=alpine\n").module_location(), None);
        assert_eq!(parse_os_release("ID=debian\nVERSION_ID=\"12\"\n").version_id, "12");
    }
}
