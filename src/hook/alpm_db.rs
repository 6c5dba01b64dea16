//! Questions to pacman's local package database, through libalpm (cargo
//! feature `alpm`).
//!
//! Used on Arch-like systems to name the exact headers package a kernel
//! needs ("install linux-lts-headers", not just "install the headers").
//! Read-only: libalpm's read access takes no lock, so this is safe inside an
//! alpm hook while pacman holds `db.lck`.
//!
//! The `alpm` crate is tied to one libalpm major version at build time
//! (2.x <-> libalpm 13, pacman 6.0; 5.x <-> libalpm 16, pacman 7.1): see
//! packaging/arch/PKGBUILD.

use alpm::Alpm;

/// The package owning kernel `kver`'s image and its headers package:
/// `(kernel package, headers package name, headers installed?)`, from the
/// system's database (`/`, `/var/lib/pacman`). None when no installed
/// package owns `usr/lib/modules/<kver>/vmlinuz` or the database cannot be
/// read.
pub fn headers_package_for(kver: &str) -> Option<(String, String, bool)> {
    headers_package_in("/", "/var/lib/pacman", kver)
}

/// [`headers_package_for`] with another root and database path.
pub fn headers_package_in(root: &str, dbpath: &str, kver: &str) -> Option<(String, String, bool)> {
    if kver.is_empty() || kver.contains('/') || kver == "." || kver == ".." {
        return None;
    }
    let handle = Alpm::new(root, dbpath).ok()?;
    let db = handle.localdb();
    let image = format!("usr/lib/modules/{kver}/vmlinuz");
    let owner = db
        .pkgs()
        .iter()
        .find(|p| matches!(p.files().contains(image.as_str()), Ok(Some(_))))?;
    // Arch names headers after the kernel's pkgbase: linux-lts -> linux-lts-headers.
    let base = owner.base().unwrap_or_else(|| owner.name());
    let headers = format!("{base}-headers");
    let installed = db.pkg(headers.as_str()).is_ok();
    Some((owner.name().to_owned(), headers, installed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    /// Writes a package entry of a pacman local database by hand (the format
    /// libalpm reads: `local/NAME-VERSION/{desc,files}`).
    fn add_pkg(db: &Path, name: &str, base: &str, version: &str, files: &[&str]) {
        let dir = db.join("local").join(format!("{name}-{version}"));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("desc"),
            format!("%NAME%\n{name}\n\n%VERSION%\n{version}\n\n%BASE%\n{base}\n\n%ARCH%\nx86_64\n\n"),
        )
        .unwrap();
        let mut list = String::from("%FILES%\n");
        for f in files {
            list.push_str(f);
            list.push('\n');
        }
        list.push('\n');
        fs::write(dir.join("files"), list).unwrap();
    }

    #[test]
    fn finds_kernel_and_headers_packages() {
        let t = tempfile::tempdir().unwrap();
        let (root, db) = (t.path().join("root"), t.path().join("db"));
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(db.join("local")).unwrap();
        fs::write(db.join("local/ALPM_DB_VERSION"), "9\n").unwrap();
        let k1 = "6.6.30-1-lts";
        let k2 = "6.9.1-arch1-1";
        add_pkg(
            &db,
            "linux-lts",
            "linux-lts",
            "6.6.30-1",
            &[
                "usr/",
                "usr/lib/",
                "usr/lib/modules/",
                &format!("usr/lib/modules/{k1}/"),
                &format!("usr/lib/modules/{k1}/vmlinuz"),
            ],
        );
        add_pkg(
            &db,
            "linux-lts-headers",
            "linux-lts",
            "6.6.30-1",
            &[
                &format!("usr/lib/modules/{k1}/build/"),
                &format!("usr/lib/modules/{k1}/build/Makefile"),
            ],
        );
        add_pkg(
            &db,
            "linux",
            "linux",
            "6.9.1.arch1-1",
            &[&format!("usr/lib/modules/{k2}/vmlinuz")],
        );
        let (r, d) = (root.to_str().unwrap(), db.to_str().unwrap());

        assert_eq!(
            headers_package_in(r, d, k1),
            Some(("linux-lts".into(), "linux-lts-headers".into(), true))
        );
        assert_eq!(
            headers_package_in(r, d, k2),
            Some(("linux".into(), "linux-headers".into(), false))
        );
        assert_eq!(headers_package_in(r, d, "6.1.0-56-amd64"), None);
        assert_eq!(headers_package_in(r, d, "../x"), None);
        assert_eq!(headers_package_in(r, "/nonexistent/db", k1), None);
    }
}
