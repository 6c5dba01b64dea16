//! What `modinfo` says about a module file, read without running it: the
//! `.modinfo` section of the ELF object (decompressed first for `.ko.gz`,
//! `.ko.xz` and `.ko.zst`). dkms compares modules by their `version` and
//! `srcversion` fields; `status` and the install checks do the same here
//! without a process per module.

use anyhow::{Context, Result};
use object::{Object, ObjectSection};
use std::io::Read;
use std::path::Path;

/// The fields dkms compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModInfo {
    /// `version=` (empty when the module declares none).
    pub version: String,
    /// `srcversion=` (empty when the kernel does not add one).
    pub srcversion: String,
}

/// The module file's bytes, decompressed when its name says it is compressed.
pub fn read_module(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let name = path.to_string_lossy();
    let mut out = Vec::new();
    if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out)
    } else if name.ends_with(".xz") {
        liblzma::read::XzDecoder::new(&raw[..]).read_to_end(&mut out)
    } else if name.ends_with(".zst") {
        zstd::stream::read::Decoder::new(&raw[..]).and_then(|mut d| d.read_to_end(&mut out))
    } else {
        return Ok(raw);
    }
    .with_context(|| format!("decompressing {}", path.display()))?;
    Ok(out)
}

/// The `key=value` strings of a `.modinfo` section. Pure.
pub fn parse_section(data: &[u8]) -> ModInfo {
    let mut info = ModInfo::default();
    for entry in data.split(|b| *b == 0) {
        let s = String::from_utf8_lossy(entry);
        if let Some(v) = s.strip_prefix("version=") {
            info.version = v.to_string();
        } else if let Some(v) = s.strip_prefix("srcversion=") {
            info.srcversion = v.to_string();
        }
    }
    info
}

/// `version` and `srcversion` of a module file.
pub fn read(path: &Path) -> Result<ModInfo> {
    let data = read_module(path)?;
    let obj = object::File::parse(&*data).with_context(|| format!("{} is not an ELF module", path.display()))?;
    Ok(obj
        .section_by_name(".modinfo")
        .and_then(|s| s.data().ok())
        .map(parse_section)
        .unwrap_or_default())
}

/// dkms's comparison of two modules: the same version (and whether the
/// srcversion is the same too), or which is newer by dkms's version order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Same version and same srcversion.
    Identical,
    /// Same version, another srcversion.
    SameVersion,
    FirstNewer,
    FirstOlder,
    /// One of them could not be read.
    Unknown,
}

/// Compares `a` with `b` as dkms's `compare_module_version` does. Pure.
pub fn compare(a: Option<&ModInfo>, b: Option<&ModInfo>) -> Comparison {
    let (Some(a), Some(b)) = (a, b) else {
        return Comparison::Unknown;
    };
    if a.version == b.version {
        return if a.srcversion == b.srcversion {
            Comparison::Identical
        } else {
            Comparison::SameVersion
        };
    }
    if super::version::compare(&a.version, &b.version) == std::cmp::Ordering::Greater {
        Comparison::FirstNewer
    } else {
        Comparison::FirstOlder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(v: &str, s: &str) -> ModInfo {
        ModInfo {
            version: v.into(),
            srcversion: s.into(),
        }
    }

    #[test]
    fn section_fields() {
        let i = parse_section(b"license=GPL\0version=1.0\0srcversion=ABC\0depends=\0");
        assert_eq!(i, info("1.0", "ABC"));
        assert_eq!(parse_section(b"license=GPL\0"), info("", ""));
    }

    #[test]
    fn comparisons_follow_dkms() {
        assert_eq!(
            compare(Some(&info("2.0", "a")), Some(&info("1.0", "b"))),
            Comparison::FirstNewer
        );
        assert_eq!(
            compare(Some(&info("1.0", "a")), Some(&info("2.0", "b"))),
            Comparison::FirstOlder
        );
        assert_eq!(
            compare(Some(&info("1.0", "a")), Some(&info("1.0", "a"))),
            Comparison::Identical
        );
        assert_eq!(
            compare(Some(&info("1.0", "a")), Some(&info("1.0", "b"))),
            Comparison::SameVersion
        );
        assert_eq!(compare(Some(&info("", "")), Some(&info("", ""))), Comparison::Identical);
        assert_eq!(compare(None, Some(&info("1", ""))), Comparison::Unknown);
    }

    #[test]
    fn reads_a_compiled_object() {
        // a real ELF object with a .modinfo section, made by the C compiler
        let d = tempfile::tempdir().unwrap();
        let c = d.path().join("m.c");
        std::fs::write(
            &c,
            "__attribute__((section(\".modinfo\"), used)) static const char a[] = \"version=3.1\";\n\
             __attribute__((section(\".modinfo\"), used)) static const char b[] = \"srcversion=XYZ\";\n",
        )
        .unwrap();
        let o = d.path().join("m.ko");
        let st = std::process::Command::new("cc")
            .arg("-c")
            .arg(&c)
            .arg("-o")
            .arg(&o)
            .status()
            .unwrap();
        assert!(st.success());
        assert_eq!(read(&o).unwrap(), info("3.1", "XYZ"));
        let gz = d.path().join("m.ko.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut enc, &std::fs::read(&o).unwrap()).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert_eq!(read(&gz).unwrap(), info("3.1", "XYZ"));
        std::fs::write(d.path().join("junk.ko"), "not elf").unwrap();
        assert!(read(&d.path().join("junk.ko")).is_err());
    }
}
