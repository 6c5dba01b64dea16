//! pacman's next kernel: the headers package of the running kernel's
//! package (`<pkgbase>-headers`, e.g. `linux-lts-headers`; Arch kernel
//! packages leave their pkgbase in `/usr/lib/modules/K/pkgbase`), as the
//! sync database has it now. It is downloaded with `pacman -Sddw` into a
//! cache directory of the caller's (no dependency, nothing installed, the
//! database untouched) and unpacked there; its `usr/lib/modules/K/build`
//! names the kernel.

use super::{one_download, one_release, Candidate};
use crate::sys::cmd::output_ok;
use anyhow::{Context, Result};
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;

/// The headers package to follow, from the running kernel's `pkgbase` file
/// (None when it has none: `linux`). A pkgbase that is no package name is
/// not followed. Pure.
pub fn headers_package(pkgbase: Option<&str>) -> String {
    let base = pkgbase.map(str::trim).filter(|b| {
        !b.is_empty()
            && !b.starts_with(['-', '.'])
            && b.chars().all(|c| c.is_ascii_alphanumeric() || "@._+-".contains(c))
    });
    format!("{}-headers", base.unwrap_or("linux"))
}

/// Downloads and unpacks the headers package that follows the running
/// kernel (`modules` is the module tree, /usr/lib/modules).
pub fn fetch(running: &str, modules: &Path, dir: &Path) -> Result<Candidate> {
    let pkgbase = std::fs::read_to_string(modules.join(running).join("pkgbase")).ok();
    let package = headers_package(pkgbase.as_deref());
    let cache = dir.join("pkgs");
    std::fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    output_ok(
        Command::new("pacman")
            .args(["-Sddw", "--noconfirm", "--noprogressbar", "--cachedir"])
            .arg(&cache)
            .arg(&package),
    )
    .with_context(|| format!("downloading {package}; is it in the sync database (`pacman -Sy`)?"))?;
    let file = one_download(&cache, &[".pkg.tar.zst", ".pkg.tar.xz"], &package)?;
    let root = dir.join("root");
    unpack(&file, &root)?;
    let (release, headers) = one_release(&root.join("usr/lib/modules"), Some("build"), &package)?;
    super::checked_release(&release, "pacman")?;
    Ok(Candidate {
        release,
        package,
        headers,
    })
}

/// Unpacks a pacman package (tar, zstd or xz) into `root`.
fn unpack(file: &Path, root: &Path) -> Result<()> {
    let f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let stream: Box<dyn Read> = if file.to_string_lossy().ends_with(".zst") {
        Box::new(zstd::stream::read::Decoder::new(f).with_context(|| format!("reading {}", file.display()))?)
    } else {
        Box::new(liblzma::read::XzDecoder::new(f))
    };
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    tar::Archive::new(stream)
        .unpack(root)
        .with_context(|| format!("unpacking {} into {}", file.display(), root.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_kernel_package() {
        assert_eq!(headers_package(Some("linux-lts\n")), "linux-lts-headers");
        assert_eq!(headers_package(Some("linux-zen")), "linux-zen-headers");
        assert_eq!(headers_package(None), "linux-headers");
        assert_eq!(headers_package(Some("")), "linux-headers");
        assert_eq!(headers_package(Some("../../x y")), "linux-headers");
        assert_eq!(headers_package(Some("--root=/x")), "linux-headers");
    }

    #[test]
    fn unpacks_a_zstd_package() {
        let d = tempfile::tempdir().unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        let body = b"obj-m := x.o\n";
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "usr/lib/modules/6.12.4-arch1-1/build/Makefile", &body[..])
            .unwrap();
        let bytes = zstd::encode_all(&tar.into_inner().unwrap()[..], 3).unwrap();
        let file = d.path().join("linux-headers-6.12.4-1-x86_64.pkg.tar.zst");
        std::fs::write(&file, bytes).unwrap();
        unpack(&file, &d.path().join("root")).unwrap();
        let m = d.path().join("root/usr/lib/modules");
        let (r, h) = one_release(&m, Some("build"), "linux-headers").unwrap();
        assert_eq!(r, "6.12.4-arch1-1");
        assert_eq!(std::fs::read(h.join("Makefile")).unwrap(), body);
    }
}
