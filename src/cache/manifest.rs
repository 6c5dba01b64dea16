//! An entry's manifest: every directory, file (mode, size, SHA-256) and
//! symbolic link of the stored result, in a fixed order, closed by an `end`
//! line that counts and hashes the lines before it. A writer makes it from
//! the build result it stores and checks its copy against it; a reader
//! checks its copy of the entry against it, so a truncated, half-deleted or
//! swapped entry is never used. The text format: a header line
//! `modsync-cache-manifest 1`, one line per item with tab-separated fields
//! and the path last (`d <path>`, `f <octal mode> <size> <sha256> <path>`,
//! `l <path> <target>`), and `end <item count> <sha256 of the lines above>`.

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const HEADER: &str = "modsync-cache-manifest 1";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Item {
    Dir {
        path: String,
    },
    File {
        path: String,
        mode: u32,
        size: u64,
        sha256: String,
    },
    Link {
        path: String,
        target: String,
    },
}

impl Item {
    fn path(&self) -> &str {
        match self {
            Item::Dir { path } | Item::File { path, .. } | Item::Link { path, .. } => path,
        }
    }
}

/// What a complete entry holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    items: Vec<Item>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// A path or link target as one field of a line.
fn text(p: &Path, what: &Path) -> Result<String> {
    match p.to_str() {
        Some(s) if !s.contains(['\t', '\n']) => Ok(s.to_string()),
        _ => bail!(
            "cannot record {} in a cache manifest: its name is not UTF-8 or holds a tab or newline",
            what.display()
        ),
    }
}

impl Manifest {
    /// The manifest of the tree at `root` (which must be a directory).
    pub fn of(root: &Path) -> Result<Manifest> {
        let mut items = Vec::new();
        for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
            let e = e.with_context(|| format!("reading {}", root.display()))?;
            let path = text(e.path().strip_prefix(root).unwrap_or(e.path()), e.path())?;
            let md = std::fs::symlink_metadata(e.path()).with_context(|| format!("reading {}", e.path().display()))?;
            let ft = md.file_type();
            items.push(if ft.is_symlink() {
                let t =
                    std::fs::read_link(e.path()).with_context(|| format!("reading the link {}", e.path().display()))?;
                Item::Link {
                    path,
                    target: text(&t, e.path())?,
                }
            } else if ft.is_dir() {
                Item::Dir { path }
            } else if ft.is_file() {
                Item::File {
                    path,
                    mode: md.permissions().mode() & 0o7777,
                    size: md.len(),
                    sha256: sha256_of(e.path())?,
                }
            } else {
                bail!(
                    "cannot store {} in the build cache: it is a special file",
                    e.path().display()
                )
            });
        }
        Ok(Manifest { items })
    }

    pub fn render(&self) -> String {
        let mut body = format!("{HEADER}\n");
        for i in &self.items {
            body.push_str(&match i {
                Item::Dir { path } => format!("d\t{path}\n"),
                Item::File {
                    path,
                    mode,
                    size,
                    sha256,
                } => format!("f\t{mode:o}\t{size}\t{sha256}\t{path}\n"),
                Item::Link { path, target } => format!("l\t{path}\t{target}\n"),
            });
        }
        let sum = hex(&Sha256::digest(body.as_bytes()));
        body.push_str(&format!("end\t{}\t{sum}\n", self.items.len()));
        body
    }

    /// Reads a rendered manifest; one that is cut short, altered or
    /// malformed is an error.
    pub fn parse(text: &str) -> Result<Manifest> {
        let Some(body_len) = text.trim_end_matches('\n').rfind('\n').map(|i| i + 1) else {
            bail!("the manifest is empty or cut short");
        };
        let (body, end) = text.split_at(body_len);
        let end: Vec<&str> = end.trim_end_matches('\n').split('\t').collect();
        let (count, sum) = match end.as_slice() {
            ["end", count, sum] => (count.parse::<usize>().context("the manifest's end line")?, *sum),
            _ => bail!("the manifest has no end line (cut short)"),
        };
        if hex(&Sha256::digest(body.as_bytes())) != sum {
            bail!("the manifest does not match its own checksum");
        }
        let mut lines = body.lines();
        if lines.next() != Some(HEADER) {
            bail!("not a modsync cache manifest");
        }
        let items = lines.map(parse_item).collect::<Result<Vec<Item>>>()?;
        if items.len() != count {
            bail!("the manifest lists {} items, its end line says {count}", items.len());
        }
        Ok(Manifest { items })
    }

    /// Checks that the tree at `root` is exactly what the manifest lists
    /// (nothing missing, nothing extra, every file's content).
    pub fn check(&self, root: &Path) -> Result<()> {
        let found = Manifest::of(root)?;
        if found == *self {
            return Ok(());
        }
        let has = |items: &[Item], p: &str| items.iter().any(|i| i.path() == p);
        if let Some(w) = self.items.iter().find(|w| !has(&found.items, w.path())) {
            bail!("{} is missing", root.join(w.path()).display());
        }
        if let Some(h) = found.items.iter().find(|h| !has(&self.items, h.path())) {
            bail!("{} is not in the manifest", root.join(h.path()).display());
        }
        let w = self
            .items
            .iter()
            .zip(&found.items)
            .find(|(w, h)| w != h)
            .map(|(w, _)| w);
        bail!(
            "{} differs from the manifest",
            root.join(w.map_or("", |w| w.path())).display()
        )
    }
}

fn parse_item(line: &str) -> Result<Item> {
    let f: Vec<&str> = line.split('\t').collect();
    Ok(match f.as_slice() {
        ["d", path] => Item::Dir { path: path.to_string() },
        ["f", mode, size, sha256, path] => Item::File {
            path: path.to_string(),
            mode: u32::from_str_radix(mode, 8).with_context(|| format!("the manifest line {line:?}"))?,
            size: size.parse().with_context(|| format!("the manifest line {line:?}"))?,
            sha256: sha256.to_string(),
        },
        ["l", path, target] => Item::Link {
            path: path.to_string(),
            target: target.to_string(),
        },
        _ => bail!("the manifest line {line:?} is malformed"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(root: &Path) {
        std::fs::create_dir_all(root.join("module")).unwrap();
        std::fs::create_dir_all(root.join("log")).unwrap();
        std::fs::write(root.join("module/foo.ko"), vec![7u8; 3000]).unwrap();
        std::fs::write(root.join("log/make.log"), "built\n").unwrap();
        std::os::unix::fs::symlink("foo.ko", root.join("module/bar.ko")).unwrap();
    }

    #[test]
    fn a_manifest_round_trips_and_matches_its_tree() {
        let d = tempfile::tempdir().unwrap();
        sample(d.path());
        let m = Manifest::of(d.path()).unwrap();
        let text = m.render();
        assert!(text.contains("l\tmodule/bar.ko\tfoo.ko\n"), "{text}");
        assert_eq!(Manifest::parse(&text).unwrap(), m);
        m.check(d.path()).unwrap();
    }

    #[test]
    fn a_cut_or_altered_manifest_is_refused() {
        let d = tempfile::tempdir().unwrap();
        sample(d.path());
        let text = Manifest::of(d.path()).unwrap().render();
        for cut in [0, 10, text.len() / 2, text.len() - 2] {
            assert!(Manifest::parse(&text[..cut]).is_err(), "cut at {cut} accepted");
        }
        let altered = text.replace("\t644\t", "\t755\t");
        assert_ne!(altered, text);
        let e = Manifest::parse(&altered).unwrap_err();
        assert!(format!("{e:#}").contains("checksum"), "{e:#}");
    }

    #[test]
    fn a_tree_that_differs_from_its_manifest_fails_the_check() {
        let d = tempfile::tempdir().unwrap();
        sample(d.path());
        let m = Manifest::of(d.path()).unwrap();
        let ko = d.path().join("module/foo.ko");
        // truncated
        std::fs::write(&ko, vec![7u8; 1000]).unwrap();
        assert!(format!("{:#}", m.check(d.path()).unwrap_err()).contains("foo.ko differs"));
        // same size, other bytes
        std::fs::write(&ko, vec![8u8; 3000]).unwrap();
        assert!(m.check(d.path()).is_err());
        std::fs::write(&ko, vec![7u8; 3000]).unwrap();
        m.check(d.path()).unwrap();
        // an extra file, then a missing one
        std::fs::write(d.path().join("module/extra"), "x").unwrap();
        assert!(m.check(d.path()).is_err());
        std::fs::remove_file(d.path().join("module/extra")).unwrap();
        std::fs::remove_file(d.path().join("log/make.log")).unwrap();
        assert!(format!("{:#}", m.check(d.path()).unwrap_err()).contains("make.log is missing"));
    }
}
