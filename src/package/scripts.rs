//! The maintainer scripts of a per-kernel module package, as POSIX shell
//! text: before install, a source build of the module for that kernel
//! (dkms or modsync) is uninstalled so the package's files take over; after
//! install and after removal, `depmod -a K` and, when one of the package's
//! modules belongs in the initramfs (named in the generator's configuration
//! or already in the image, as [`crate::install::initramfs`] decides), the
//! image is regenerated with the distribution's tool. No command in them
//! can fail the package manager's transaction. pacman's upgrade also
//! tidies the kernel it replaced (see [`forget_replaced`]). Pure.

/// What the scripts are about. Every value is a checked name (no quote or
/// shell character can be in it); they are still single-quoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFacts {
    pub module: String,
    pub kernel: String,
    /// `/lib/modules` or `/usr/lib/modules` (where the package puts the files).
    pub modules_root: String,
    /// The kernel module names the package ships (DEST_MODULE_NAME).
    pub names: Vec<String>,
    /// The package's own name (for messages).
    pub package: String,
}

/// The three script bodies (no interpreter line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scripts {
    pub pre_install: String,
    pub post_install: String,
    pub post_remove: String,
    /// After a pacman upgrade, for the kernel the upgrade replaced.
    pub forget_replaced: String,
}

fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Uninstalls a source build of the module for the kernel, if `dkms` is here.
fn pre_install(f: &ScriptFacts) -> String {
    format!(
        r#"mod={m} kver={k}
if command -v dkms >/dev/null 2>&1; then
    for v in $(dkms status -m "$mod" -k "$kver" 2>/dev/null | grep -v '(package ' |
               sed -n "s|^$mod/\([^,]*\), $kver, [^:]*: installed.*|\1|p"); do
        echo "{p}: the source build $mod/$v for $kver gives way to this package"
        dkms uninstall -m "$mod" -v "$v" -k "$kver" || true
    done
fi
"#,
        m = q(&f.module),
        k = q(&f.kernel),
        p = f.package,
    )
}

/// depmod, then the initramfs when a module of the package belongs in it.
fn refresh(f: &ScriptFacts) -> String {
    let patterns: Vec<String> = f.names.iter().map(|n| n.replace(['-', '_'], "[-_]")).collect();
    format!(
        r#"kver={k} root={root}
if [ -d "$root/$kver" ] && command -v depmod >/dev/null 2>&1; then
    depmod -a "$kver" || true
fi
in_initramfs() {{
    for n in {names}; do
        for c in /etc/initramfs-tools/modules /etc/mkinitcpio.conf /etc/dracut.conf /etc/dracut.conf.d/*.conf; do
            [ -f "$c" ] || continue
            if sed 's/#.*//' "$c" | grep -Eq "(^|[^A-Za-z0-9_-])$n([^A-Za-z0-9_-]|\$)"; then return 0; fi
        done
        for l in lsinitramfs:/boot/initrd.img-$kver lsinitrd:/boot/initramfs-$kver.img; do
            if [ -f "${{l#*:}}" ] && command -v "${{l%%:*}}" >/dev/null 2>&1 &&
               "${{l%%:*}}" "${{l#*:}}" 2>/dev/null | grep -Eq "/$n\.ko"; then return 0; fi
        done
    done
    return 1
}}
if in_initramfs; then
    if [ -f "/boot/initrd.img-$kver" ] && command -v update-initramfs >/dev/null 2>&1; then
        update-initramfs -u -k "$kver" || true
    elif [ -f "/boot/initramfs-$kver.img" ] && command -v dracut >/dev/null 2>&1; then
        dracut -f --kver "$kver" || true
    elif [ -f "$root/$kver/pkgbase" ] && command -v mkinitcpio >/dev/null 2>&1; then
        mkinitcpio -P || true
    fi
fi
"#,
        k = q(&f.kernel),
        root = q(&f.modules_root),
        names = patterns.iter().map(|p| q(p)).collect::<Vec<_>>().join(" "),
    )
}

/// A pacman module package follows its kernel package, whose upgrade
/// replaces the old kernel: the old kernel's depmod output still names the
/// modules the upgrade took away. Where that kernel is still there, depmod
/// runs for it; where it left with its package (no `modules.builtin`, no
/// `kernel/`), the depmod output is all that is left of it and goes, with
/// the directories left empty (the next module package's upgrade removes
/// what an earlier one could not while its files were still there).
fn forget_replaced(f: &ScriptFacts) -> String {
    let patterns: Vec<String> = f.names.iter().map(|n| n.replace(['-', '_'], "[-_]")).collect();
    format!(
        r#"kver={k} root={root}
for d in "$root"/*/; do
    d=${{d%/}}; old=${{d##*/}}
    [ "$old" != "$kver" ] || continue
    names_ours() {{ grep -Eq "(^|/)({names})\.ko[^:]*:" "$d/modules.dep"; }}
    if [ -e "$d/modules.builtin" ] || [ -d "$d/kernel" ]; then
        if [ -f "$d/modules.dep" ] && names_ours && command -v depmod >/dev/null 2>&1; then
            depmod -a "$old" || true
        fi
    else
        if [ ! -f "$d/modules.dep" ] || names_ours; then
            for o in {outputs}; do rm -f "$d/$o"; done
        fi
        rmdir "$d/updates/dkms" "$d/updates" "$d" 2>/dev/null || true
    fi
done
"#,
        k = q(&f.kernel),
        root = q(&f.modules_root),
        names = patterns.join("|"),
        outputs = DEPMOD_OUTPUTS.join(" "),
    )
}

/// What depmod writes in a kernel's module directory.
const DEPMOD_OUTPUTS: [&str; 11] = [
    "modules.dep",
    "modules.dep.bin",
    "modules.alias",
    "modules.alias.bin",
    "modules.softdep",
    "modules.weakdep",
    "modules.symbols",
    "modules.symbols.bin",
    "modules.builtin.bin",
    "modules.builtin.alias.bin",
    "modules.devname",
];

/// The scripts of a per-kernel package.
pub fn scripts(f: &ScriptFacts) -> Scripts {
    Scripts {
        pre_install: pre_install(f),
        post_install: refresh(f),
        post_remove: refresh(f),
        forget_replaced: forget_replaced(f),
    }
}

/// A deb maintainer script: the body under `#!/bin/sh`.
pub fn deb_script(body: &str) -> String {
    format!("#!/bin/sh\n# written by modsync\n{body}exit 0\n")
}

/// A pacman `.INSTALL` file: the bodies as its functions.
pub fn pacman_install(s: &Scripts) -> String {
    let f = |name: &str, body: &str| format!("{name}() {{\n{body}}}\n\n");
    let mut out = String::from("# written by modsync\n");
    out.push_str(&f("pre_install", &s.pre_install));
    out.push_str(&f("pre_upgrade", &s.pre_install));
    out.push_str(&f("post_install", &s.post_install));
    out.push_str(&f("post_upgrade", &format!("{}{}", s.post_install, s.forget_replaced)));
    out.push_str(&f("post_remove", &s.post_remove));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> ScriptFacts {
        ScriptFacts {
            module: "hello".into(),
            kernel: "6.1.0-56-amd64".into(),
            modules_root: "/lib/modules".into(),
            names: vec!["hello".into(), "nvidia_drm".into()],
            package: "hello-modules-6.1.0-56-amd64".into(),
        }
    }

    #[test]
    fn scripts_name_the_kernel_and_module() {
        let s = scripts(&facts());
        assert!(s.pre_install.contains("mod='hello' kver='6.1.0-56-amd64'"));
        assert!(s
            .pre_install
            .contains("dkms uninstall -m \"$mod\" -v \"$v\" -k \"$kver\" || true"));
        assert!(s.post_install.contains("depmod -a \"$kver\" || true"));
        assert!(s.post_install.contains("'hello' 'nvidia[-_]drm'"));
        assert!(s.post_install.contains("update-initramfs -u -k \"$kver\""));
        assert_eq!(s.post_install, s.post_remove);
        assert!(deb_script(&s.post_install).starts_with("#!/bin/sh\n"));
        let i = pacman_install(&s);
        for f in [
            "pre_install() {",
            "post_install() {",
            "post_upgrade() {",
            "post_remove() {",
        ] {
            assert!(i.contains(f), "{f}");
        }
    }

    #[test]
    fn scripts_are_valid_shell() {
        let s = scripts(&facts());
        for body in [
            &s.pre_install,
            &s.post_install,
            &deb_script(&s.post_remove),
            &pacman_install(&s),
        ] {
            let st = std::process::Command::new("sh")
                .args(["-n", "-c", body])
                .status()
                .unwrap();
            assert!(st.success(), "{body}");
        }
    }

    #[test]
    fn a_pacman_upgrade_forgets_the_kernel_it_replaced() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("modules");
        let bin = t.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let depmod = bin.join("depmod");
        std::fs::write(
            &depmod,
            format!("#!/bin/sh\necho \"$@\" >> {}/depmod.log\n", t.path().display()),
        )
        .unwrap();
        std::fs::set_permissions(&depmod, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let dep = "updates/dkms/hello.ko.xz:\nkernel/foo.ko:\n";
        for (k, builtin, deps) in [
            ("gone", false, dep),
            ("kept", true, dep),
            ("other", false, "kernel/x.ko:\n"),
        ] {
            let d = root.join(k);
            std::fs::create_dir_all(d.join("updates/dkms")).unwrap();
            std::fs::write(d.join("modules.dep"), deps).unwrap();
            std::fs::write(d.join("modules.alias"), "").unwrap();
            if builtin {
                std::fs::write(d.join("modules.builtin"), "").unwrap();
            }
        }
        let f = ScriptFacts {
            modules_root: root.display().to_string(),
            kernel: "new".into(),
            ..facts()
        };
        let st = std::process::Command::new("sh")
            .args(["-e", "-c", &forget_replaced(&f)])
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .status()
            .unwrap();
        assert!(st.success());
        assert!(
            !root.join("gone").exists(),
            "the departed kernel's depmod output is gone"
        );
        assert!(root.join("kept/modules.dep").exists() && root.join("other/modules.dep").exists());
        let log = std::fs::read_to_string(t.path().join("depmod.log")).unwrap();
        assert_eq!(log, "-a kept\n", "depmod runs for the kernel that is still there only");
    }
}
