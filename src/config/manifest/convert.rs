//! A manifest written from a dkms.conf that bash evaluated for one kernel,
//! with notes on what could not be carried over: values that depend on the
//! kernel (found by comparing with an evaluation for a second kernel, after
//! writing the kernel's paths as placeholders), shell code in the file,
//! commands that need a shell, and directives modsync does not run. Pure.

use super::template::abstracted;
use super::{Exclusive, Manifest, Module, Patch};
use crate::config::command::{plain_words, Command};
use crate::config::directives::{self, Context};
use crate::config::shell::Raw;
use std::collections::BTreeSet;

/// One evaluation of the dkms.conf: its variables and the kernel's facts.
pub struct Reading<'a> {
    pub raw: &'a Raw,
    pub ctx: Context<'a>,
}

/// The manifest and what a person must check before shipping it.
#[derive(Debug)]
pub struct Converted {
    pub manifest: Manifest,
    pub notes: Vec<String>,
}

/// The kernel's values that become placeholders, longest first.
fn values(r: &Reading) -> Vec<(&'static str, String)> {
    let c = &r.ctx;
    vec![
        (
            "build_dir",
            format!("{}/{}/{}/build", c.dkms_tree, c.module, c.module_version),
        ),
        ("kernel_source_dir", c.kernel_source_dir.to_string()),
        ("kernelver", c.kernelver.to_string()),
    ]
}

fn abstract_words(words: &[String], values: &[(&str, String)]) -> Vec<String> {
    let v: Vec<(&str, &str)> = values.iter().map(|(n, s)| (*n, s.as_str())).collect();
    words.iter().map(|w| abstracted(w, &v)).collect()
}

/// The lines of a dkms.conf that are more than `NAME=value` or
/// `NAME[i]=value` assignments (comments and blank lines aside).
pub fn shell_lines(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return false;
            }
            let Some((name, value)) = l.split_once('=') else {
                return true;
            };
            let base = name.split_once('[').map_or(name, |(b, rest)| {
                if rest
                    .strip_suffix(']')
                    .is_some_and(|i| i.chars().all(|c| c.is_ascii_digit()))
                {
                    b
                } else {
                    "-"
                }
            });
            let plain_name = !base.is_empty() && base.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            let v = value.trim_matches('"');
            // a value may use $variables, but not command substitution or a second command
            !plain_name || v.contains("$(") || v.contains('`') || value.contains(';')
        })
        .map(|(i, l)| (i + 1, l.trim().to_string()))
        .collect()
}

/// A dkms.conf command as an argument list with placeholders, or a note
/// saying why it stays behind.
fn command(
    what: &str,
    key: &str,
    value: Option<&str>,
    vals: &[(&str, String)],
    notes: &mut Vec<String>,
) -> Option<Vec<String>> {
    let value = value?;
    match plain_words(value) {
        Some(words) => Some(abstract_words(&words, vals)),
        None => {
            notes.push(format!(
                "{what} {value:?} uses shell syntax and cannot be an argument list; it was NOT carried over: write `{key} = [...]` by hand (a script in the source directory can hold the shell part)"
            ));
            None
        }
    }
}

fn exclusive_at(raw: &Raw, i: usize) -> Exclusive {
    let get = |n: &str| raw.get(n, i).filter(|s| !s.is_empty()).map(str::to_string);
    Exclusive {
        kernel: get("BUILD_EXCLUSIVE_KERNEL"),
        kernel_min: get("BUILD_EXCLUSIVE_KERNEL_MIN"),
        kernel_max: get("BUILD_EXCLUSIVE_KERNEL_MAX"),
        arch: get("BUILD_EXCLUSIVE_ARCH"),
        config: get("BUILD_EXCLUSIVE_CONFIG")
            .map(|c| c.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
    }
}

/// Every variable of a reading with the kernel's values as placeholders,
/// as `NAME[i]=value` lines (what two readings are compared by).
fn abstracted_vars(r: &Reading) -> BTreeSet<String> {
    let vals = values(r);
    let v: Vec<(&str, &str)> = vals.iter().map(|(n, s)| (*n, s.as_str())).collect();
    r.raw
        .vars
        .iter()
        .flat_map(|(name, a)| a.iter().map(move |(i, val)| (name, i, val)))
        .map(|(name, i, val)| format!("{name}[{i}]={}", abstracted(val, &v)))
        .collect()
}

/// The manifest for `k`'s kernel; `other` is the same file evaluated for a
/// second kernel (differences become notes); `text` is the file itself.
/// Errors are the dkms.conf's own problems.
pub fn convert(text: &str, k: &Reading, other: &Reading) -> Result<Converted, Vec<String>> {
    let e = directives::evaluate(k.raw, &k.ctx);
    if !e.usable() {
        return Err(e.errors);
    }
    let raw = k.raw;
    let vals = values(k);
    let mut notes = Vec::new();
    let lines = shell_lines(text);
    if !lines.is_empty() {
        let shown: Vec<String> = lines.iter().take(3).map(|(n, l)| format!("line {n}: {l}")).collect();
        notes.push(format!(
            "dkms.conf runs shell code ({}{}); the manifest holds the values it gave for kernel {} — express kernel-dependent logic as [exclusive] rules",
            shown.join("; "),
            if lines.len() > 3 { "; ..." } else { "" },
            k.ctx.kernelver
        ));
    }
    let (mine, theirs) = (abstracted_vars(k), abstracted_vars(other));
    let changed: BTreeSet<String> = mine
        .symmetric_difference(&theirs)
        .map(|l| l.split(['[', '=']).next().unwrap_or("").to_string())
        .collect();
    for name in changed {
        let show = |s: &BTreeSet<String>| {
            let v: Vec<&str> = s
                .iter()
                .filter(|l| l.starts_with(&format!("{name}[")))
                .map(String::as_str)
                .collect();
            if v.is_empty() {
                "unset".to_string()
            } else {
                v.join(" ")
            }
        };
        notes.push(format!(
            "{name} depends on the kernel: for {} it is {}, for {} {}; the manifest has the value for {}",
            k.ctx.kernelver,
            show(&mine),
            other.ctx.kernelver,
            show(&theirs),
            k.ctx.kernelver
        ));
    }
    if raw.array("MAKE_MATCH").is_some() {
        notes.push(format!(
            "MAKE_MATCH chooses the make command per kernel; the manifest has the one chosen for {}",
            k.ctx.kernelver
        ));
    }
    let make = match (&e.conf.make_command, raw.array("MAKE").is_some()) {
        (Command::Shell(line), true) => command("MAKE", "make", Some(line), &vals, &mut notes),
        _ => None,
    };
    let script = |directive: &str, key: &str, notes: &mut Vec<String>| {
        let v = raw.scalar(directive);
        command(directive, key, v, &vals, notes)
    };
    let mut manifest = Manifest {
        name: e.conf.package_name.clone(),
        version: e.conf.package_version.clone(),
        autoinstall: e.conf.autoinstall,
        build_depends: e.conf.build_depends.clone(),
        build_depends_rebuild: e.conf.build_depends_rebuild,
        make,
        pre_build: script("PRE_BUILD", "pre_build", &mut notes),
        post_build: script("POST_BUILD", "post_build", &mut notes),
        post_add: script("POST_ADD", "post_add", &mut notes),
        pre_install: script("PRE_INSTALL", "pre_install", &mut notes),
        post_install: script("POST_INSTALL", "post_install", &mut notes),
        post_remove: script("POST_REMOVE", "post_remove", &mut notes),
        exclusive: exclusive_at(raw, 0),
        patches: Vec::new(),
        modules: Vec::new(),
    };
    if let (Some(o), None) = (&e.conf.obsolete_by, &manifest.exclusive.kernel_max) {
        manifest.exclusive.kernel_max = Some(o.clone());
        notes.push(format!("OBSOLETE_BY={o} became exclusive.kernel_max"));
    }
    let patch_count = raw.array("PATCH").map_or(0, |a| a.len());
    manifest.patches = (0..patch_count)
        .filter_map(|i| {
            let file = raw.get("PATCH", i).filter(|p| !p.is_empty())?;
            Some(Patch {
                file: file.to_string(),
                kernel: raw.get("PATCH_MATCH", i).filter(|r| !r.is_empty()).map(str::to_string),
            })
        })
        .collect();
    manifest.modules = e
        .conf
        .modules
        .iter()
        .map(|s| Module {
            name: s.built_name.clone(),
            built_location: s.built_location.trim_end_matches('/').to_string(),
            dest_location: s.declared_location.clone(),
            dest_name: (s.dest_name != s.built_name).then(|| s.dest_name.clone()),
            strip: s.strip,
            exclusive: if s.index > 0 && k.ctx.per_module_exclusive {
                exclusive_at(raw, s.index)
            } else {
                Exclusive::default()
            },
        })
        .collect();
    if raw.array("CLEAN").is_some() {
        notes.push("CLEAN was left out: modsync builds from a fresh copy of the source and never runs it".into());
    }
    for d in [
        "NO_WEAK_MODULES",
        "REMAKE_INITRD",
        "MODULES_CONF",
        "MODULES_CONF_OBSOLETES",
        "MODULES_CONF_ALIAS_TYPE",
        "MODULES_CONF_OBSOLETE_ONLY",
    ] {
        if raw.array(d).is_some() {
            notes.push(format!("{d} was left out: it has no effect in dkms 3 or modsync"));
        }
    }
    Ok(Converted { manifest, notes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::manifest::evaluate::evaluate;

    fn raw(pairs: &[(&str, usize, &str)]) -> Raw {
        let mut r = Raw::default();
        for (n, i, v) in pairs {
            r.vars.entry(n.to_string()).or_default().insert(*i, v.to_string());
        }
        r
    }

    fn ctx(k: &'static str, ksd: &'static str) -> Context<'static> {
        Context {
            kernelver: k,
            arch: "x86_64",
            kernel_source_dir: ksd,
            dkms_tree: "/var/lib/dkms",
            module: "ddcci",
            module_version: "0.4.2",
            per_module_exclusive: true,
            records_by_index: true,
            ..Default::default()
        }
    }

    const K: (&str, &str) = ("6.1.0-56-amd64", "/lib/modules/6.1.0-56-amd64/build");
    const P: (&str, &str) = ("99.0-probe", "/lib/modules/99.0-probe/build");

    /// ddcci's dkms.conf as bash gives it for two kernels.
    fn ddcci(k: (&'static str, &'static str), excluded: bool) -> Raw {
        let make = format!("make KVER={} -C /var/lib/dkms/ddcci/0.4.2/build", k.0);
        let mut p = vec![
            ("PACKAGE_NAME", 0, "ddcci".to_string()),
            ("PACKAGE_VERSION", 0, "0.4.2".into()),
            ("CLEAN", 0, "make clean".into()),
            ("BUILT_MODULE_NAME", 0, "ddcci".into()),
            ("BUILT_MODULE_NAME", 1, "ddcci-backlight".into()),
            ("BUILT_MODULE_LOCATION", 0, "ddcci/".into()),
            ("BUILT_MODULE_LOCATION", 1, "ddcci-backlight/".into()),
            ("DEST_MODULE_LOCATION", 0, "/extra".into()),
            ("DEST_MODULE_LOCATION", 1, "/extra".into()),
            ("MAKE", 0, make),
            ("AUTOINSTALL", 0, "yes".into()),
        ];
        if excluded {
            p.push(("BUILD_EXCLUSIVE_ARCH", 0, "^do_not_build$".into()));
        }
        let mut r = Raw::default();
        for (n, i, v) in p {
            r.vars.entry(n.to_string()).or_default().insert(i, v);
        }
        r
    }

    const DDCCI_TEXT: &str = "PACKAGE_NAME=\"ddcci\"\nMAKE[0]=\"make KVER=$kernelver -C ${dkms_tree}/x\"\n\
        if ! grep -q \"^CONFIG_I2C=[ym]$\" \"$kernel_source_dir/.config\" 2>/dev/null ; then\n  BUILD_EXCLUSIVE_ARCH=\"^do_not_build$\"\nfi\n";

    #[test]
    fn ddcci_converts_with_placeholders_and_notes() {
        let (rk, rp) = (ddcci(K, false), ddcci(P, true));
        let k = Reading {
            raw: &rk,
            ctx: ctx(K.0, K.1),
        };
        let p = Reading {
            raw: &rp,
            ctx: ctx(P.0, P.1),
        };
        let c = convert(DDCCI_TEXT, &k, &p).unwrap();
        let m = &c.manifest;
        assert_eq!(
            m.make.as_deref().unwrap(),
            ["make", "KVER={kernelver}", "-C", "{build_dir}"]
        );
        assert_eq!(m.modules.len(), 2);
        assert_eq!(
            (
                m.modules[1].name.as_str(),
                m.modules[1].built_location.as_str(),
                m.modules[1].dest_location.as_str()
            ),
            ("ddcci-backlight", "ddcci-backlight", "/extra")
        );
        assert!(m.autoinstall && m.exclusive.is_empty());
        let notes = c.notes.join("\n");
        assert!(notes.contains("runs shell code (line 3: if ! grep"), "{notes}");
        assert!(
            notes.contains("BUILD_EXCLUSIVE_ARCH depends on the kernel: for 6.1.0-56-amd64 it is unset, for 99.0-probe BUILD_EXCLUSIVE_ARCH[0]=^do_not_build$"),
            "{notes}"
        );
        assert!(
            !notes.contains("MAKE depends"),
            "the release became a placeholder: {notes}"
        );
        assert!(notes.contains("CLEAN was left out"), "{notes}");
        // evaluated for the kernel, the manifest gives what the dkms.conf gave
        let from_conf = directives::evaluate(&rk, &k.ctx).conf;
        let from_manifest = evaluate(m, &k.ctx, "").conf;
        assert_eq!(from_manifest.modules, from_conf.modules);
        assert_eq!(
            from_manifest.make_command.to_string(),
            from_conf.make_command.to_string()
        );
        assert_eq!(
            (from_manifest.autoinstall, from_manifest.build_exclude),
            (from_conf.autoinstall, from_conf.build_exclude)
        );
    }

    #[test]
    fn shell_commands_stay_behind_and_patches_keep_their_match() {
        let r = raw(&[
            ("PACKAGE_NAME", 0, "foo"),
            ("PACKAGE_VERSION", 0, "1"),
            ("DEST_MODULE_LOCATION", 0, "/updates"),
            ("MAKE", 0, "KERNELDIR=/lib/modules/6.1.0-56-amd64/build make driver"),
            ("PRE_BUILD", 0, "configure --kdir=/lib/modules/6.1.0-56-amd64/build"),
            ("POST_INSTALL", 0, "post.sh && rm -rf x"),
            ("PATCH", 0, "a.patch"),
            ("PATCH", 1, "b.patch"),
            ("PATCH_MATCH", 1, "^5\\."),
            ("OBSOLETE_BY", 0, "6.5"),
        ]);
        let reading = |c| Reading { raw: &r, ctx: c };
        let c = convert("PACKAGE_NAME=foo\n", &reading(ctx(K.0, K.1)), &reading(ctx(K.0, K.1))).unwrap();
        let m = &c.manifest;
        assert_eq!(m.make, None);
        assert_eq!(
            m.pre_build.as_deref().unwrap(),
            ["configure", "--kdir={kernel_source_dir}"]
        );
        assert_eq!(m.post_install, None);
        assert_eq!(m.patches[1].kernel.as_deref(), Some("^5\\."));
        assert_eq!(m.exclusive.kernel_max.as_deref(), Some("6.5"));
        let notes = c.notes.join("\n");
        assert!(
            notes.contains("MAKE \"KERNELDIR=") && notes.contains("NOT carried over"),
            "{notes}"
        );
        assert!(notes.contains("POST_INSTALL \"post.sh && rm -rf x\""), "{notes}");
        assert!(!notes.contains("runs shell code"), "{notes}");
        let bad = raw(&[("PACKAGE_NAME", 0, "a/b")]);
        assert!(convert(
            "",
            &reading(ctx(K.0, K.1)),
            &Reading {
                raw: &bad,
                ctx: ctx(K.0, K.1)
            }
        )
        .is_ok());
        assert!(convert(
            "",
            &Reading {
                raw: &bad,
                ctx: ctx(K.0, K.1)
            },
            &reading(ctx(K.0, K.1))
        )
        .is_err());
    }

    #[test]
    fn only_assignments_are_plain() {
        let lines = shell_lines(
            "# c\nA=1\nB[2]=\"$kernelver x\"\nC=$(uname -r)\nif x; then\nD[x]=1\npushd `dirname $BASH_SOURCE`\nE=1; F=2\n",
        );
        let nums: Vec<usize> = lines.iter().map(|(n, _)| *n).collect();
        assert_eq!(nums, vec![4, 5, 6, 7, 8]);
    }
}
