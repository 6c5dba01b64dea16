//! systemd-boot: `loader/loader.conf` on the EFI system partition (or
//! XBOOTLDR) names the default entry (`default ID`). The guard adds its own
//! `default` line under a comment of its own and removes both to lift; a
//! `default` line the user wrote, or an entry chosen with `bootctl
//! set-default` (the LoaderEntryDefault EFI variable), is theirs.

use super::Change;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

const MARK: &str = "# modsync boot guard:";
/// Where loader.conf is, relative to the root.
const PLACES: [&str; 3] = ["efi", "boot/efi", "boot"];
const EFI_DEFAULT: &str = "sys/firmware/efi/efivars/LoaderEntryDefault-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f";

/// The ESP (or XBOOTLDR) that holds `loader/loader.conf`.
pub fn detect(root: &Path) -> Option<PathBuf> {
    PLACES
        .iter()
        .map(|p| root.join(p))
        .find(|d| d.join("loader/loader.conf").is_file() && d.join("loader/entries").is_dir())
}

/// The entry (its file name) that boots kernel `k`: a Type #1 entry whose
/// `version` is `k` or whose `linux` line ends in `-k` or `/k/linux`.
/// Pure over (file name, text) pairs.
pub fn entry_for(entries: &[(String, String)], k: &str) -> Option<String> {
    entries.iter().find_map(|(name, text)| {
        let hit = text.lines().any(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next()) {
                (Some("version"), Some(v)) => v == k,
                (Some("linux"), Some(p)) => p.ends_with(&format!("-{k}")) || p.contains(&format!("/{k}/")),
                _ => false,
            }
        });
        hit.then(|| name.clone())
    })
}

/// loader.conf with the guard's default for `entry` (replacing an earlier
/// one of its own). Pure.
pub fn with_default(conf: &str, entry: &str, why: &str) -> String {
    let mut out = without_ours(conf);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("{MARK} {why}; removed when lifted\ndefault {entry}\n"));
    out
}

/// loader.conf without the guard's lines. Pure.
pub fn without_ours(conf: &str) -> String {
    let mut out = String::new();
    let mut skip_next = false;
    for l in conf.lines() {
        if l.starts_with(MARK) {
            skip_next = true;
            continue;
        }
        if skip_next && l.starts_with("default ") {
            skip_next = false;
            continue;
        }
        skip_next = false;
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// A `default` line that is not the guard's. Pure.
pub fn users_default(conf: &str) -> Option<String> {
    without_ours(conf)
        .lines()
        .find_map(|l| l.trim().strip_prefix("default").filter(|r| r.starts_with([' ', '\t'])))
        .map(|v| v.trim().to_string())
}

/// Why the default is the user's, if it is.
pub fn user_choice(root: &Path, esp: &Path) -> Option<String> {
    let conf = std::fs::read_to_string(esp.join("loader/loader.conf")).unwrap_or_default();
    if let Some(d) = users_default(&conf) {
        return Some(format!("loader.conf says `default {d}`"));
    }
    root.join(EFI_DEFAULT)
        .exists()
        .then(|| "`bootctl set-default` chose the entry (LoaderEntryDefault)".to_string())
}

fn entries(esp: &Path) -> Vec<(String, String)> {
    let d = esp.join("loader/entries");
    crate::sys::fs::sorted_names(&d)
        .into_iter()
        .filter(|n| n.ends_with(".conf"))
        .map(|n| {
            let t = std::fs::read_to_string(d.join(&n)).unwrap_or_default();
            (n, t)
        })
        .collect()
}

/// Makes kernel `k`'s entry the default.
pub fn hold(esp: &Path, k: &str, why: &str) -> Result<Change> {
    let dir = esp.join("loader/entries");
    let entry =
        entry_for(&entries(esp), k).with_context(|| format!("no entry in {} boots kernel {k}", dir.display()))?;
    let path = esp.join("loader/loader.conf");
    let conf = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    crate::sys::fs::write_atomic(&path, with_default(&conf, &entry, why).as_bytes(), 0o644)?;
    Ok(Change::LoaderConf {
        path: path.display().to_string(),
    })
}

/// Removes the guard's lines.
pub fn lift(change: &Change) -> Result<()> {
    let Change::LoaderConf { path } = change else {
        return Ok(());
    };
    let path = Path::new(path);
    let conf = match std::fs::read_to_string(path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    crate::sys::fs::write_atomic(path, without_ours(&conf).as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_of_a_kernel_is_found() {
        let es = vec![
            (
                "abc-6.9.1.conf".to_string(),
                "title Fedora\nversion 6.9.1\nlinux /abc/6.9.1/linux\n".to_string(),
            ),
            (
                "debian-6.1.0-54-amd64.conf".to_string(),
                "title Debian\nlinux /vmlinuz-6.1.0-54-amd64\n".to_string(),
            ),
        ];
        assert_eq!(entry_for(&es, "6.9.1").as_deref(), Some("abc-6.9.1.conf"));
        assert_eq!(
            entry_for(&es, "6.1.0-54-amd64").as_deref(),
            Some("debian-6.1.0-54-amd64.conf")
        );
        assert_eq!(entry_for(&es, "6.1.0-5"), None);
    }

    #[test]
    fn the_guards_default_comes_and_goes_and_the_users_stays() {
        let conf = "timeout 3\n#default old\n";
        let held = with_default(conf, "k1.conf", "zfs is missing for 6.2");
        assert_eq!(users_default(&held), None);
        assert!(held.ends_with("default k1.conf\n"), "{held}");
        let again = with_default(&held, "k0.conf", "x");
        assert_eq!(again.matches("default k").count(), 1, "{again}");
        assert_eq!(without_ours(&again), conf);
        assert_eq!(
            users_default("timeout 3\ndefault arch.conf\n").as_deref(),
            Some("arch.conf")
        );
    }

    #[test]
    fn holding_and_lifting_edit_loader_conf_only() {
        let t = tempfile::tempdir().unwrap();
        let esp = t.path().join("efi");
        std::fs::create_dir_all(esp.join("loader/entries")).unwrap();
        std::fs::write(esp.join("loader/loader.conf"), "timeout 0\n").unwrap();
        for k in ["6.1.0-54-amd64", "6.1.0-56-amd64"] {
            std::fs::write(
                esp.join(format!("loader/entries/m-{k}.conf")),
                format!("version {k}\nlinux /m/{k}/linux\n"),
            )
            .unwrap();
        }
        assert_eq!(detect(t.path()), Some(esp.clone()));
        assert_eq!(user_choice(t.path(), &esp), None);
        let c = hold(&esp, "6.1.0-54-amd64", "vpoll is missing for 6.1.0-56-amd64").unwrap();
        let conf = std::fs::read_to_string(esp.join("loader/loader.conf")).unwrap();
        assert!(conf.contains("default m-6.1.0-54-amd64.conf"), "{conf}");
        assert_eq!(
            user_choice(t.path(), &esp),
            None,
            "the guard's own default is not a user choice"
        );
        lift(&c).unwrap();
        assert_eq!(
            std::fs::read_to_string(esp.join("loader/loader.conf")).unwrap(),
            "timeout 0\n"
        );
    }
}
