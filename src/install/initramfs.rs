//! Regenerating a kernel's initramfs when modules that belong in it changed
//! outside the kernel's own hooks (headers installed after the kernel, an
//! install or uninstall by hand, a module dropped with its kernel's
//! headers): with the distribution's tool, once per kernel, and only when a
//! changed module is listed in the generator's configuration or already in
//! the image.

use crate::ui::Sink;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The generator of an existing image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generator {
    /// Debian's initramfs-tools: `/boot/initrd.img-K`.
    InitramfsTools(PathBuf),
    /// dracut: `/boot/initramfs-K.img`.
    Dracut(PathBuf),
    /// Arch's mkinitcpio: `/boot/initramfs-<pkgbase>.img`.
    Mkinitcpio(PathBuf, String),
}

/// The image of kernel `k` and its generator, if one exists.
pub fn find(boot: &Path, install_tree: &Path, k: &str) -> Option<Generator> {
    let deb = boot.join(format!("initrd.img-{k}"));
    if deb.is_file() {
        return Some(Generator::InitramfsTools(deb));
    }
    let dracut = boot.join(format!("initramfs-{k}.img"));
    if dracut.is_file() {
        return Some(Generator::Dracut(dracut));
    }
    let pkgbase = std::fs::read_to_string(install_tree.join(k).join("pkgbase"))
        .ok()?
        .trim()
        .to_string();
    let arch = boot.join(format!("initramfs-{pkgbase}.img"));
    arch.is_file().then_some(Generator::Mkinitcpio(arch, pkgbase))
}

fn norm(n: &str) -> String {
    n.replace('-', "_")
}

/// Module names the generator's configuration asks for. Pure over the texts.
pub fn configured(initramfs_tools_modules: &str, mkinitcpio_conf: &str, dracut_confs: &str) -> Vec<String> {
    let mut v: Vec<String> = initramfs_tools_modules
        .lines()
        .map(|l| {
            l.split('#')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("")
        })
        .filter(|w| !w.is_empty())
        .map(norm)
        .collect();
    for l in mkinitcpio_conf
        .lines()
        .filter(|l| l.trim_start().starts_with("MODULES="))
    {
        v.extend(
            l.split_once('=')
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_matches(|c| "()\"' ".contains(c))
                .split_whitespace()
                .map(norm),
        );
    }
    for l in dracut_confs
        .lines()
        .filter(|l| l.contains("add_drivers") || l.contains("force_drivers"))
    {
        v.extend(
            l.split_once('=')
                .map(|(_, r)| r)
                .unwrap_or("")
                .trim_matches(|c| "\"' ".contains(c))
                .split_whitespace()
                .map(norm),
        );
    }
    v
}

/// Whether any of `changed` belongs in the image: configured, or among the
/// image's files (paths ending in `name.ko[.ext]`). Pure.
pub fn belongs(changed: &[String], configured: &[String], image_files: &[String]) -> bool {
    changed.iter().map(|c| norm(c)).any(|c| {
        configured.contains(&c)
            || image_files.iter().any(|f| {
                let base = f.rsplit('/').next().unwrap_or(f);
                base.split(".ko").next().is_some_and(|n| norm(n) == c) && base.contains(".ko")
            })
    })
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn listing(g: &Generator) -> Vec<String> {
    let (tool, image) = match g {
        Generator::InitramfsTools(i) => ("lsinitramfs", i),
        Generator::Dracut(i) => ("lsinitrd", i),
        Generator::Mkinitcpio(i, _) => ("lsinitcpio", i),
    };
    Command::new(tool)
        .arg(image)
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The module names (`-` as `_`) in kernel `k`'s image, if it has one.
pub fn image_modules(boot: &Path, install_tree: &Path, k: &str) -> std::collections::BTreeSet<String> {
    find(boot, install_tree, k)
        .map(|g| listing(&g))
        .unwrap_or_default()
        .iter()
        .filter_map(|f| f.rsplit('/').next()?.split_once(".ko").map(|(n, _)| norm(n)))
        .collect()
}

/// Regenerates kernel `k`'s image when one of `changed` belongs in it;
/// returns true when it ran.
pub fn refresh(
    etc: &Path,
    boot: &Path,
    install_tree: &Path,
    k: &str,
    changed: &[String],
    sink: &dyn Sink,
) -> Result<bool> {
    let Some(g) = find(boot, install_tree, k) else {
        return Ok(false);
    };
    let dracut: String = crate::sys::fs::sorted_names(&etc.join("dracut.conf.d"))
        .iter()
        .map(|n| read(&etc.join("dracut.conf.d").join(n)))
        .collect();
    let conf = configured(
        &read(&etc.join("initramfs-tools/modules")),
        &read(&etc.join("mkinitcpio.conf")),
        &(read(&etc.join("dracut.conf")) + &dracut),
    );
    if !belongs(changed, &conf, &[]) && !belongs(changed, &[], &listing(&g)) {
        return Ok(false);
    }
    let mut c = match &g {
        Generator::InitramfsTools(_) => {
            let mut c = Command::new("update-initramfs");
            c.args(["-u", "-k", k]);
            c
        }
        Generator::Dracut(_) => {
            let mut c = Command::new("dracut");
            c.args(["-f", "--kver", k]);
            c
        }
        Generator::Mkinitcpio(_, base) => {
            let mut c = Command::new("mkinitcpio");
            c.args(["-p", base]);
            c
        }
    };
    sink.err(&format!(
        "modsync: regenerating the initramfs of {k}: `{}`",
        crate::sys::cmd::line(&c)
    ));
    let out = c
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", crate::sys::cmd::line(&c)))?;
    if !out.status.success() {
        anyhow::bail!(
            "`{}` failed: {}",
            crate::sys::cmd::line(&c),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_and_image_decide() {
        let conf = configured(
            "# comment\nv4l2loopback card_limit=2\n\nzfs\n",
            "MODULES=(nvidia nvidia-drm)\n",
            "add_drivers+=\" ddcci \"\n",
        );
        assert_eq!(conf, vec!["v4l2loopback", "zfs", "nvidia", "nvidia_drm", "ddcci"]);
        assert!(belongs(&["nvidia-drm".into()], &conf, &[]));
        assert!(!belongs(&["vpoll".into()], &conf, &[]));
        let image = vec![
            "usr/lib/modules/6.1/updates/dkms/vpoll.ko".to_string(),
            "usr/lib/modules/6.1/kernel/fs/ext4.ko.xz".into(),
        ];
        assert!(belongs(&["vpoll".into()], &[], &image));
        assert!(belongs(&["ext4".into()], &[], &image));
        assert!(!belongs(&["ext".into()], &[], &image));
    }

    #[test]
    fn images_are_found_for_each_generator() {
        let d = tempfile::tempdir().unwrap();
        let (boot, lib) = (d.path().join("boot"), d.path().join("lib"));
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::create_dir_all(lib.join("6.6-arch1")).unwrap();
        assert_eq!(find(&boot, &lib, "6.1"), None);
        std::fs::write(boot.join("initrd.img-6.1"), "").unwrap();
        assert!(matches!(find(&boot, &lib, "6.1"), Some(Generator::InitramfsTools(_))));
        std::fs::write(boot.join("initramfs-6.9.fc40.img"), "").unwrap();
        assert!(matches!(find(&boot, &lib, "6.9.fc40"), Some(Generator::Dracut(_))));
        std::fs::write(lib.join("6.6-arch1/pkgbase"), "linux\n").unwrap();
        std::fs::write(boot.join("initramfs-linux.img"), "").unwrap();
        assert_eq!(
            find(&boot, &lib, "6.6-arch1"),
            Some(Generator::Mkinitcpio(boot.join("initramfs-linux.img"), "linux".into()))
        );
        let sink = crate::ui::Buffered::default();
        assert!(!refresh(d.path(), &boot, &lib, "6.1", &["nothing".into()], &sink).unwrap());
    }
}
