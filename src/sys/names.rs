//! The one validation of every name that becomes a path: module names and
//! versions, kernel releases and architectures, whether they come from the
//! command line, a dkms.conf, a hook's arguments, a package manager's target
//! list or the state tree itself. A name that passes can be joined to a
//! directory without leaving it and without meaning anything to a shell.
//! Pure.

/// What kind of name is checked (for messages and for the allowed characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Module,
    Version,
    Kernel,
    Arch,
}

impl Kind {
    fn what(self) -> &'static str {
        match self {
            Kind::Module => "module name",
            Kind::Version => "module version",
            Kind::Kernel => "kernel release",
            Kind::Arch => "architecture",
        }
    }

    fn allowed(self, c: char) -> bool {
        c.is_ascii_alphanumeric()
            || match self {
                Kind::Module | Kind::Version => "._+-~:@".contains(c),
                Kind::Kernel => "._+-~".contains(c),
                Kind::Arch => "_-".contains(c),
            }
    }
}

/// Why a name was refused, as a sentence that says what is allowed.
pub fn problem(kind: Kind, s: &str) -> Option<String> {
    let what = kind.what();
    if s.is_empty() {
        return Some(format!("the {what} is empty"));
    }
    if s.len() > 255 {
        return Some(format!("the {what} is longer than 255 characters"));
    }
    if s.starts_with('.') || s.starts_with('-') {
        return Some(format!("the {what} {s:?} starts with '{}'", &s[..1]));
    }
    if let Some(c) = s.chars().find(|&c| !kind.allowed(c)) {
        let allowed = match kind {
            Kind::Module | Kind::Version => "letters, digits and . _ + - ~ : @",
            Kind::Kernel => "letters, digits and . _ + - ~",
            Kind::Arch => "letters, digits, _ and -",
        };
        return Some(format!("the {what} {s:?} contains {c:?}; it may hold only {allowed}"));
    }
    None
}

/// True when `s` is a valid name of that kind.
pub fn valid(kind: Kind, s: &str) -> bool {
    problem(kind, s).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_names_pass() {
        for (k, s) in [
            (Kind::Module, "v4l2loopback"),
            (Kind::Module, "nvidia-current"),
            (Kind::Module, "linux-apfs-rw"),
            (Kind::Version, "1.12.0+dfsg"),
            (Kind::Version, "0.3.0-1"),
            (Kind::Version, "2:1.0~rc1"),
            (Kind::Kernel, "6.1.0-56-amd64"),
            (Kind::Kernel, "6.12.117+deb12-amd64"),
            (Kind::Kernel, "4.18.0-477.10.1.el8_8.x86_64"),
            (Kind::Kernel, "6.6.1-arch1-1"),
            (Kind::Arch, "x86_64"),
        ] {
            assert!(valid(k, s), "{k:?} {s}");
        }
    }

    #[test]
    fn names_that_escape_or_mean_something_to_a_shell_fail() {
        for (k, s) in [
            (Kind::Module, ""),
            (Kind::Module, ".."),
            (Kind::Module, "."),
            (Kind::Module, "foo/.."),
            (Kind::Module, ".hidden"),
            (Kind::Module, "-rf"),
            (Kind::Module, "a b"),
            (Kind::Module, "a;reboot"),
            (Kind::Module, "$(x)"),
            (Kind::Version, ""),
            (Kind::Version, "1/2"),
            (Kind::Version, "1\n2"),
            (Kind::Kernel, "../../etc"),
            (Kind::Kernel, "6.1:x"),
            (Kind::Arch, "x86_64/.."),
        ] {
            assert!(!valid(k, s), "{k:?} {s:?} accepted");
        }
        assert!(problem(Kind::Module, "a b").unwrap().contains("may hold only"));
        assert!(!valid(Kind::Version, &"1".repeat(300)));
    }
}
