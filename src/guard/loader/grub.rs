//! GRUB as Debian and Ubuntu configure it: `/etc/default/grub` and
//! `/etc/default/grub.d/*.cfg` say which entry boots (`GRUB_DEFAULT`);
//! `update-grub` writes `/boot/grub/grub.cfg`. The guard holds a kernel with
//! a drop-in of its own (`zz-modsync-boot-guard.cfg`, read last) naming the
//! kernel's entry, or, where `GRUB_DEFAULT=saved`, by setting `saved_entry`
//! in `/boot/grub/grubenv`. The parsing is pure; the effects are small.

use super::{run_in, Change};
use anyhow::{Context, Result};
use std::path::Path;

/// The guard's drop-in, relative to the root.
pub const DROP_IN: &str = "etc/default/grub.d/zz-modsync-boot-guard.cfg";
const GRUB_CFG: &str = "boot/grub/grub.cfg";
const GRUBENV: &str = "boot/grub/grubenv";

/// GRUB is what boots: its configuration, its generated menu and update-grub.
pub fn detect(root: &Path) -> bool {
    root.join("etc/default/grub").is_file()
        && root.join(GRUB_CFG).is_file()
        && ["usr/sbin/update-grub", "sbin/update-grub", "usr/sbin/grub-mkconfig"]
            .iter()
            .any(|p| root.join(p).exists())
}

/// The value `GRUB_DEFAULT` ends up with when the files are read in order
/// (the last assignment wins; quotes removed). Pure.
pub fn grub_default(files: &[String]) -> Option<String> {
    let mut v = None;
    for text in files {
        for l in text.lines() {
            let l = l.trim();
            let l = l.strip_prefix("export ").unwrap_or(l);
            if let Some(val) = l.strip_prefix("GRUB_DEFAULT=") {
                let val = val.split(" #").next().unwrap_or("").trim();
                v = Some(val.trim_matches(|c| c == '"' || c == '\'').to_string());
            }
        }
    }
    v
}

/// The menu path of kernel `k`'s normal entry in a grub.cfg:
/// `SUBMENU_ID>ENTRY_ID`, or `ENTRY_ID` outside a submenu. Pure.
pub fn entry_path(grub_cfg: &str, k: &str) -> Option<String> {
    let id = |l: &str| -> Option<String> {
        let after = l.split("$menuentry_id_option").nth(1)?.trim_start();
        let q = after.chars().next()?;
        let rest = &after[q.len_utf8()..];
        Some(rest[..rest.find(q)?].to_string())
    };
    let mut submenu: Option<String> = None;
    for l in grub_cfg.lines() {
        let t = l.trim_start();
        if t.starts_with("submenu ") {
            submenu = id(t);
        } else if l.starts_with('}') {
            submenu = None;
        } else if t.starts_with("menuentry ") {
            if let Some(e) = id(t) {
                if e.starts_with(&format!("gnulinux-{k}-advanced-")) {
                    return Some(match &submenu {
                        Some(s) => format!("{s}>{e}"),
                        None => e,
                    });
                }
            }
        }
    }
    None
}

/// `saved_entry` in a grubenv block. Pure.
pub fn saved_entry(grubenv: &str) -> Option<String> {
    grubenv
        .lines()
        .find_map(|l| l.strip_prefix("saved_entry="))
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

/// The drop-in's text. Pure.
pub fn drop_in(entry: &str, kernel: &str, why: &str) -> String {
    format!(
        "# Written by modsync's boot guard: {why}.\n# It boots {kernel} until then; modsync removes this file when the\n# module is installed for the newer kernel (or boot_guard = false).\nGRUB_DEFAULT=\"{entry}\"\n"
    )
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// The configuration files GRUB reads, in order, without the guard's own.
fn config_texts(root: &Path) -> Vec<String> {
    let d = root.join("etc/default/grub.d");
    let mut out = vec![read(&root.join("etc/default/grub"))];
    for n in crate::sys::fs::sorted_names(&d) {
        if n.ends_with(".cfg") && Path::new(DROP_IN).file_name().is_some_and(|f| f != n.as_str()) {
            out.push(read(&d.join(n)));
        }
    }
    out
}

/// Why GRUB's default is the user's and not to be changed, if it is;
/// `ours` is the saved entry the guard set earlier.
pub fn user_choice(root: &Path, ours: Option<&str>) -> Option<String> {
    match grub_default(&config_texts(root)).as_deref() {
        None | Some("0") | Some("") => None,
        Some("saved") => match saved_entry(&read(&root.join(GRUBENV))) {
            Some(s) if Some(s.as_str()) != ours => Some(format!(
                "GRUB_DEFAULT=saved and the saved entry is {s:?} (grub-set-default or GRUB_SAVEDEFAULT chose it)"
            )),
            _ => None,
        },
        Some(v) => Some(format!("GRUB_DEFAULT={v:?} in /etc/default/grub chooses the entry")),
    }
}

fn update_grub(root: &Path) -> Result<()> {
    if root.join("usr/sbin/update-grub").exists() || root.join("sbin/update-grub").exists() {
        run_in(root, &["update-grub"])
    } else {
        run_in(root, &["grub-mkconfig", "-o", "/boot/grub/grub.cfg"])
    }
}

/// Makes kernel `k` the default; returns how to undo it.
pub fn hold(root: &Path, k: &str, why: &str) -> Result<Change> {
    let cfg = root.join(GRUB_CFG);
    let entry = entry_path(&read(&cfg), k)
        .with_context(|| format!("{} has no entry for kernel {k}; run update-grub", cfg.display()))?;
    if grub_default(&config_texts(root)).as_deref() == Some("saved") {
        let previous = saved_entry(&read(&root.join(GRUBENV)));
        run_in(
            root,
            &[
                "grub-editenv",
                "/boot/grub/grubenv",
                "set",
                &format!("saved_entry={entry}"),
            ],
        )?;
        return Ok(Change::GrubSaved { entry, previous });
    }
    let path = root.join(DROP_IN);
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    crate::sys::fs::write_atomic(&path, drop_in(&entry, k, why).as_bytes(), 0o644)?;
    update_grub(root)?;
    Ok(Change::GrubDropIn { entry })
}

/// Undoes `hold`.
pub fn lift(root: &Path, change: &Change) -> Result<()> {
    match change {
        Change::GrubSaved { entry, previous } => {
            if saved_entry(&read(&root.join(GRUBENV))).as_deref() != Some(entry.as_str()) {
                return Ok(()); // chosen since: the user's now
            }
            match previous {
                Some(p) => run_in(
                    root,
                    &["grub-editenv", "/boot/grub/grubenv", "set", &format!("saved_entry={p}")],
                ),
                None => run_in(root, &["grub-editenv", "/boot/grub/grubenv", "unset", "saved_entry"]),
            }
        }
        Change::GrubDropIn { .. } => {
            let path = root.join(DROP_IN);
            match std::fs::remove_file(&path) {
                Ok(()) => update_grub(root),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
            }
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = "\
menuentry 'Debian GNU/Linux' --class debian $menuentry_id_option 'gnulinux-simple-1234' {
\tlinux /boot/vmlinuz-6.1.0-56-amd64 root=UUID=1234 ro
}
submenu 'Advanced options for Debian GNU/Linux' $menuentry_id_option 'gnulinux-advanced-1234' {
\tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-56-amd64' --class debian $menuentry_id_option 'gnulinux-6.1.0-56-amd64-advanced-1234' {
\t\tlinux /boot/vmlinuz-6.1.0-56-amd64
\t}
\tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-54-amd64 (recovery mode)' $menuentry_id_option 'gnulinux-6.1.0-54-amd64-recovery-1234' {
\t}
\tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-54-amd64' --class debian $menuentry_id_option 'gnulinux-6.1.0-54-amd64-advanced-1234' {
\t\tlinux /boot/vmlinuz-6.1.0-54-amd64
\t}
}
";

    #[test]
    fn the_entry_of_a_kernel_is_found_in_its_submenu() {
        assert_eq!(
            entry_path(CFG, "6.1.0-54-amd64").as_deref(),
            Some("gnulinux-advanced-1234>gnulinux-6.1.0-54-amd64-advanced-1234")
        );
        assert_eq!(entry_path(CFG, "6.1.0-5"), None);
        let flat = "menuentry 'x' $menuentry_id_option 'gnulinux-6.1.0-54-amd64-advanced-9' {\n}\n";
        assert_eq!(
            entry_path(flat, "6.1.0-54-amd64").as_deref(),
            Some("gnulinux-6.1.0-54-amd64-advanced-9")
        );
    }

    #[test]
    fn the_last_grub_default_wins() {
        let files = [
            "GRUB_DEFAULT=0\nGRUB_TIMEOUT=5\n".to_string(),
            "# GRUB_DEFAULT=2\nGRUB_DEFAULT=\"saved\"\n".to_string(),
        ];
        assert_eq!(grub_default(&files).as_deref(), Some("saved"));
        assert_eq!(grub_default(&files[..1]).as_deref(), Some("0"));
        assert_eq!(grub_default(&[]), None);
        assert_eq!(
            saved_entry("# GRUB Environment Block\nsaved_entry=gnulinux-x\n#####\n").as_deref(),
            Some("gnulinux-x")
        );
        assert_eq!(saved_entry("# GRUB Environment Block\n#####\n"), None);
    }

    #[test]
    fn a_user_choice_is_recognised_and_ours_is_not() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc/default/grub.d")).unwrap();
        std::fs::create_dir_all(r.join("boot/grub")).unwrap();
        std::fs::write(r.join("etc/default/grub"), "GRUB_DEFAULT=0\n").unwrap();
        std::fs::write(r.join(DROP_IN), drop_in("a>b", "K", "zfs is missing")).unwrap();
        assert_eq!(
            user_choice(r, None),
            None,
            "the guard's own drop-in is not a user choice"
        );
        std::fs::write(r.join("etc/default/grub.d/50-mine.cfg"), "GRUB_DEFAULT=2\n").unwrap();
        assert!(user_choice(r, None).unwrap().contains("GRUB_DEFAULT=\"2\""));
        std::fs::write(r.join("etc/default/grub.d/50-mine.cfg"), "GRUB_DEFAULT=saved\n").unwrap();
        assert_eq!(user_choice(r, None), None, "saved with nothing saved");
        std::fs::write(r.join(GRUBENV), "saved_entry=x>y\n").unwrap();
        assert!(user_choice(r, None).is_some());
        assert_eq!(user_choice(r, Some("x>y")), None, "saved by the guard");
    }
}
