//! What the boot guard reads from the system: the bootable kernels, the
//! modules each one has (its module tree and `modules.builtin`), and the
//! modules the running system uses that modsync or dkms installed (loaded
//! now, or in the running kernel's initramfs). Only reads.

use super::plan::{module_key, KernelFacts};
use crate::ops::Cx;
use crate::state::packaged;
use std::collections::BTreeSet;
use std::path::Path;

/// Kernels that can boot: a module tree and a kernel image
/// (`/boot/vmlinuz-K`, or `vmlinuz` in the module tree as Arch and Fedora
/// ship it).
pub fn bootable(cx: &Cx) -> Vec<String> {
    let boot = cx.settings.sysconf_root.join("boot");
    crate::sys::fs::sorted_names(&cx.settings.install_tree)
        .into_iter()
        .filter(|k| crate::state::looks_like_kernel(k))
        .filter(|k| {
            boot.join(format!("vmlinuz-{k}")).is_file() || cx.settings.install_tree.join(k).join("vmlinuz").is_file()
        })
        .collect()
}

/// The module names (normalised) kernel `k` has: every `*.ko*` in its tree
/// and every line of `modules.builtin`.
pub fn modules_of(install_tree: &Path, k: &str) -> BTreeSet<String> {
    let dir = install_tree.join(k);
    let mut out: BTreeSet<String> = std::fs::read_to_string(dir.join("modules.builtin"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.rsplit('/').next()?.split_once(".ko").map(|(n, _)| module_key(n)))
        .collect();
    for e in walkdir::WalkDir::new(&dir)
        .into_iter()
        .filter_entry(|e| e.depth() != 1 || !matches!(e.file_name().to_str(), Some("build" | "source")))
        .filter_map(Result::ok)
    {
        if let Some((n, _)) = e.file_name().to_str().and_then(|f| f.split_once(".ko")) {
            out.insert(module_key(n));
        }
    }
    out
}

/// What each bootable kernel lacks of `required`.
pub fn kernels(cx: &Cx, required: &BTreeSet<String>) -> Vec<KernelFacts> {
    bootable(cx)
        .into_iter()
        .map(|k| {
            let has = modules_of(&cx.settings.install_tree, &k);
            KernelFacts {
                missing: required.difference(&has).cloned().collect(),
                release: k,
            }
        })
        .collect()
}

/// The module names modsync or dkms installed for kernel `k` (from the
/// state tree and from module packages' markers).
pub fn managed(cx: &Cx, k: &str) -> BTreeSet<String> {
    let arch = crate::kernel::machine_arch();
    let mut out = BTreeSet::new();
    for (m, v) in cx.tree.combos() {
        if cx.tree.is_installed(&m, &v, k, &arch) {
            if let Some(rec) = cx.tree.read_record(&m, &v, k, &arch) {
                out.extend(rec.modules.into_iter().map(|b| module_key(&b.name)));
            }
        }
    }
    for mk in packaged::all(&cx.settings.sysconf_root)
        .into_iter()
        .filter(|mk| mk.kernel == k)
    {
        out.extend(
            mk.files
                .iter()
                .filter_map(|f| f.rsplit('/').next()?.split_once(".ko").map(|(n, _)| module_key(n))),
        );
    }
    out
}

/// The modules loaded now (`/proc/modules`).
pub fn loaded() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/modules")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(module_key)
        .collect()
}

/// Which module version of the tree provides `name`, for the messages.
pub fn provider(cx: &Cx, name: &str) -> Option<(String, String)> {
    cx.tree.combos().into_iter().find_map(|(m, v)| {
        let provides = cx.tree.built(&m, &v, None, None).into_iter().any(|(k, a)| {
            cx.tree
                .read_record(&m, &v, &k, &a)
                .is_some_and(|r| r.modules.iter().any(|b| module_key(&b.name) == name))
        }) || module_key(&m) == name;
        provides.then(|| (m.clone(), v.clone()))
    })
}
