//! modsync.toml: a shell-free manifest a vendor ships instead of (or beside)
//! dkms.conf. It is parsed by serde (an unknown key is an error naming its
//! line and column), never sourced or run by a shell; its commands are
//! argument lists with a few `{placeholders}` ([`template`]). [`evaluate`]
//! turns it into the same [`super::directives::Evaluated`] a dkms.conf
//! gives for a kernel; [`convert`] writes one from an evaluated dkms.conf.
//! Pure.

pub mod convert;
pub mod evaluate;
pub mod template;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The manifest's file name in a module's source directory.
pub const FILE_NAME: &str = "modsync.toml";

/// True when a configuration file is a manifest (`*.toml`) rather than a dkms.conf.
pub fn is_manifest(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

/// The configuration in a source directory: its modsync.toml when there is
/// one, else its dkms.conf (which may not exist).
pub fn config_in(dir: &Path) -> std::path::PathBuf {
    let manifest = dir.join(FILE_NAME);
    if manifest.is_file() {
        manifest
    } else {
        dir.join("dkms.conf")
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn yes() -> bool {
    true
}

fn default_dest() -> String {
    "/updates".to_string()
}

/// A whole modsync.toml.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// PACKAGE_NAME: the module's name in the tree.
    pub name: String,
    /// PACKAGE_VERSION.
    pub version: String,
    /// Build and install for every new kernel.
    #[serde(default, skip_serializing_if = "is_false")]
    pub autoinstall: bool,
    /// Modules that must be installed for the kernel before this one builds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub build_depends: Vec<String>,
    /// Rebuild when one of `build_depends` changes version.
    #[serde(default, skip_serializing_if = "is_false")]
    pub build_depends_rebuild: bool,
    /// The build command (default `make -C {kernel_source_dir} M={build_dir}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub make: Option<Vec<String>>,
    /// Scripts: the program is relative to the build directory (pre/post_build)
    /// or the source directory (the others), as in dkms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_add: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_install: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_install: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_remove: Option<Vec<String>>,
    /// Kernels the whole package builds for.
    #[serde(default, skip_serializing_if = "Exclusive::is_empty")]
    pub exclusive: Exclusive,
    #[serde(default, rename = "patch", skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<Patch>,
    #[serde(default, rename = "module")]
    pub modules: Vec<Module>,
}

/// One `[[module]]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Module {
    /// The built file's name without `.ko`.
    pub name: String,
    /// Where make leaves it, relative to the build directory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub built_location: String,
    /// DEST_MODULE_LOCATION (the distribution's location replaces it where dkms replaces it).
    #[serde(default = "default_dest")]
    pub dest_location: String,
    /// The installed name, when it differs from `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_name: Option<String>,
    #[serde(default = "yes")]
    pub strip: bool,
    /// Kernels this module builds for (besides the package's rules).
    #[serde(default, skip_serializing_if = "Exclusive::is_empty")]
    pub exclusive: Exclusive,
}

/// BUILD_EXCLUSIVE rules: every one that is set must admit the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusive {
    /// A regular expression the kernel release must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_max: Option<String>,
    /// A regular expression the architecture must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Kernel options that must be set (`CONFIG_X`) or unset (`!CONFIG_X`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<String>,
}

impl Exclusive {
    pub fn is_empty(&self) -> bool {
        *self == Exclusive::default()
    }
}

/// One `[[patch]]`: a file in `patches/`, applied with `patch -p1`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Patch {
    pub file: String,
    /// Applied only to kernels whose release matches this regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
}

/// A manifest that is not valid TOML or not the manifest's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based; None when the parser gives no place (e.g. a missing key).
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ParseError {}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Parses a manifest's text.
pub fn parse(text: &str) -> Result<Manifest, ParseError> {
    toml::from_str(text).map_err(|e| {
        let place = e.span().map(|s| line_column(text, s.start));
        ParseError {
            line: place.map(|p| p.0),
            column: place.map(|p| p.1),
            message: e.message().trim().to_string(),
        }
    })
}

/// The manifest as TOML text.
pub fn to_text(m: &Manifest) -> String {
    toml::to_string(m).expect("a manifest always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
name = "foo"
version = "1.0"
autoinstall = true
make = ["make", "-C", "{kernel_source_dir}", "M={build_dir}"]

[exclusive]
kernel_min = "5.10"
config = ["CONFIG_USB"]

[[patch]]
file = "fix-6.1.patch"
kernel = '^6\.1\.'

[[module]]
name = "foo"
built_location = "src"

[[module]]
name = "foo-extra"
dest_location = "/extra"
strip = false
exclusive = { arch = "x86_64" }
"#;

    #[test]
    fn a_full_manifest_parses_and_round_trips() {
        let m = parse(EXAMPLE).unwrap();
        assert_eq!(
            (m.name.as_str(), m.version.as_str(), m.autoinstall),
            ("foo", "1.0", true)
        );
        assert_eq!(m.modules.len(), 2);
        assert_eq!(m.modules[0].dest_location, "/updates", "the default");
        assert!(m.modules[0].strip && !m.modules[1].strip);
        assert_eq!(m.modules[1].exclusive.arch.as_deref(), Some("x86_64"));
        assert_eq!(m.patches[0].kernel.as_deref(), Some("^6\\.1\\."));
        assert_eq!(m.exclusive.config, vec!["CONFIG_USB"]);
        assert_eq!(parse(&to_text(&m)).unwrap(), m);
    }

    #[test]
    fn an_unknown_key_names_its_line_and_column() {
        let text = "name = \"foo\"\nversion = \"1\"\n\n[[module]]\nname = \"foo\"\n  destination = \"/updates\"\n";
        let e = parse(text).unwrap_err();
        assert_eq!((e.line, e.column), (Some(6), Some(3)), "{e}");
        assert!(e.message.contains("unknown field `destination`"), "{e}");
        assert!(e.to_string().starts_with("line 6, column 3: "), "{e}");
        let e = parse("name = \"foo\"\nversion = \"1\"\nmake = \"make all\"\n").unwrap_err();
        assert_eq!(e.line, Some(3), "a command must be a list: {e}");
        let e = parse("name = \"foo\"\nversion = \"1\"\nautoinstall = \"yes\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (Some(3), Some(15)), "{e}");
        let e = parse("name = \"foo\"\nversion = \n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert!(parse("version = \"1\"\n").unwrap_err().message.contains("name"));
    }

    #[test]
    fn the_readme_example_is_a_valid_manifest() {
        let readme = include_str!("../../../README.md");
        let section = readme.split("### modsync.toml").nth(1).expect("the README's section");
        let example = section
            .split("```toml\n")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .unwrap();
        let m = parse(example).unwrap();
        assert_eq!(evaluate::problems(&m), Vec::<String>::new());
        assert_eq!((m.modules.len(), m.patches.len()), (1, 1));
    }

    #[test]
    fn manifests_are_told_from_dkms_conf() {
        assert!(is_manifest(Path::new("/usr/src/foo-1/modsync.toml")));
        assert!(!is_manifest(Path::new("/usr/src/foo-1/dkms.conf")));
        let d = tempfile::tempdir().unwrap();
        assert_eq!(config_in(d.path()), d.path().join("dkms.conf"));
        std::fs::write(d.path().join(FILE_NAME), "").unwrap();
        assert_eq!(config_in(d.path()), d.path().join(FILE_NAME));
    }
}
