//! The directives of a module, read from the evaluated dkms.conf arrays and
//! validated with dkms's rules plus safety checks of our own (no path may
//! escape its tree, names are plain). Pure: no file system access.

use super::dkms_conf::Raw;
use std::collections::BTreeMap;

/// One kernel module produced by the package (one `[i]` record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSpec {
    pub index: usize,
    pub built_name: String,
    /// Relative to the build directory; "" for its root.
    pub built_location: String,
    pub dest_name: String,
    /// As written in dkms.conf (the distro default usually replaces it).
    pub dest_location: String,
    pub strip: bool,
}

/// BUILD_EXCLUSIVE_* constraints of one index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exclusive {
    pub kernel: Option<String>,
    pub kernel_min: Option<String>,
    pub kernel_max: Option<String>,
    pub arch: Option<String>,
    pub config: Option<String>,
}

impl Exclusive {
    fn is_empty(&self) -> bool {
        *self == Exclusive::default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub file: String,
    pub kernel_match: Option<String>,
}

/// Everything the engine needs from a dkms.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleConf {
    pub package_name: String,
    pub package_version: String,
    pub modules: Vec<ModuleSpec>,
    /// MAKE[i] and MAKE_MATCH[i].
    pub make: BTreeMap<usize, String>,
    pub make_match: BTreeMap<usize, String>,
    pub patches: Vec<Patch>,
    pub pre_build: Option<String>,
    pub post_build: Option<String>,
    pub post_add: Option<String>,
    pub pre_install: Option<String>,
    pub post_install: Option<String>,
    pub post_remove: Option<String>,
    pub autoinstall: bool,
    pub build_depends: Vec<String>,
    /// Index 0 applies to every module (bash's `$X` is `${X[0]}`).
    pub exclusive: BTreeMap<usize, Exclusive>,
    pub warnings: Vec<String>,
}

fn opt(raw: &Raw, name: &str, i: usize) -> Option<String> {
    raw.get(name, i).filter(|s| !s.is_empty()).map(str::to_string)
}

fn max_index(raw: &Raw, names: &[&str]) -> Option<usize> {
    names
        .iter()
        .filter_map(|n| raw.array(n))
        .filter_map(|a| a.iter().filter(|(_, v)| !v.is_empty()).map(|(i, _)| *i).max())
        .max()
}

/// A name that is safe as a file name and in a shell word.
pub fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars().all(|c| c.is_ascii_alphanumeric() || "._+-~:@".contains(c))
}

/// A relative path that stays inside its directory.
fn is_contained(p: &str) -> bool {
    !p.starts_with('/') && !p.split('/').any(|c| c == "..")
}

/// Builds the directives from the evaluated arrays; errors are complete
/// sentences naming the directive and what to change.
pub fn from_raw(raw: &Raw) -> Result<ModuleConf, String> {
    let mut warnings = Vec::new();
    let package_name = raw
        .scalar("PACKAGE_NAME")
        .ok_or("dkms.conf: no PACKAGE_NAME directive; add PACKAGE_NAME=\"<module name>\"")?
        .to_string();
    let package_version = raw
        .scalar("PACKAGE_VERSION")
        .ok_or("dkms.conf: no PACKAGE_VERSION directive; add PACKAGE_VERSION=\"<version>\"")?
        .to_string();
    if !is_plain_name(&package_name) {
        return Err(format!("dkms.conf: PACKAGE_NAME {package_name:?} may only hold letters, digits and ._+-~:@"));
    }
    if !is_plain_name(&package_version) || package_version.contains('/') {
        return Err(format!("dkms.conf: PACKAGE_VERSION {package_version:?} may only hold letters, digits and ._+-~:@"));
    }

    let record_names = ["BUILT_MODULE_NAME", "BUILT_MODULE_LOCATION", "DEST_MODULE_NAME", "DEST_MODULE_LOCATION"];
    let count = max_index(raw, &record_names).map_or(0, |m| m.saturating_add(1));
    if count == 0 {
        warnings.push("dkms.conf: zero modules specified".into());
    }
    let strip_default = raw.get("STRIP", 0).or(raw.get("strip", 0)).unwrap_or("");
    let mut modules = Vec::new();
    for i in 0..count {
        let built_name = match opt(raw, "BUILT_MODULE_NAME", i) {
            Some(n) => n,
            None if count == 1 => package_name.clone(),
            None => return Err(format!("dkms.conf: no BUILT_MODULE_NAME for record #{i}; set BUILT_MODULE_NAME[{i}]")),
        };
        let dest_location = opt(raw, "DEST_MODULE_LOCATION", i).ok_or_else(|| {
            format!("dkms.conf: no DEST_MODULE_LOCATION for record #{i}; set DEST_MODULE_LOCATION[{i}]=\"/updates\"")
        })?;
        let dest_name = opt(raw, "DEST_MODULE_NAME", i).unwrap_or_else(|| built_name.clone());
        let built_location = opt(raw, "BUILT_MODULE_LOCATION", i).unwrap_or_default();
        for (what, v) in [("BUILT_MODULE_NAME", &built_name), ("DEST_MODULE_NAME", &dest_name)] {
            if v.ends_with(".ko") || v.ends_with(".o") {
                return Err(format!("dkms.conf: {what}[{i}] {v:?} must not end in .o or .ko; drop the suffix"));
            }
            if !is_plain_name(v) {
                return Err(format!("dkms.conf: {what}[{i}] {v:?} is not a plain file name (no '/', spaces or shell characters)"));
            }
        }
        if built_location.starts_with('/') || !is_contained(built_location.trim_end_matches('/')) {
            return Err(format!("dkms.conf: BUILT_MODULE_LOCATION[{i}] {built_location:?} leaves the build directory; use a relative path without '..'"));
        }
        let loc = dest_location.trim_end_matches('/');
        if !["/kernel", "/updates", "/extra"].iter().any(|p| loc == *p || loc.starts_with(&format!("{p}/")))
            || loc.split('/').any(|c| c == ".." || c == ".")
        {
            return Err(format!("dkms.conf: DEST_MODULE_LOCATION[{i}] {dest_location:?} must start with /kernel, /updates or /extra and contain no '..'"));
        }
        let strip_word = raw.get("STRIP", i).filter(|s| !s.is_empty()).unwrap_or(strip_default);
        let strip = !strip_word.to_ascii_lowercase().starts_with('n');
        modules.push(ModuleSpec { index: i, built_name, built_location, dest_name, dest_location, strip });
    }
    for (i, m) in modules.iter().enumerate() {
        if modules[..i].iter().any(|o| o.dest_name == m.dest_name) {
            return Err(format!("dkms.conf: DEST_MODULE_NAME {:?} is used twice; give each module its own name", m.dest_name));
        }
    }

    let autoinstall = match raw.scalar("AUTOINSTALL").map(str::to_ascii_lowercase).as_deref() {
        None | Some("no") => false,
        Some("yes") => true,
        Some(other) => return Err(format!("dkms.conf: unsupported AUTOINSTALL value {other:?}; use \"yes\" or \"no\"")),
    };

    let mut patches = Vec::new();
    if let Some(arr) = raw.array("PATCH") {
        for (i, p) in arr.iter().filter(|(_, p)| !p.is_empty()) {
            if !is_contained(p) {
                return Err(format!("dkms.conf: PATCH[{i}] {p:?} leaves the patches directory; name a file in patches/"));
            }
            patches.push(Patch { file: p.clone(), kernel_match: opt(raw, "PATCH_MATCH", *i) });
        }
    }

    let build_depends = raw
        .array("BUILD_DEPENDS")
        .map(|a| a.values().flat_map(|v| v.split_whitespace()).map(str::to_string).collect())
        .unwrap_or_default();

    let mut exclusive: BTreeMap<usize, Exclusive> = BTreeMap::new();
    let ex_names = [
        "BUILD_EXCLUSIVE_KERNEL", "BUILD_EXCLUSIVE_KERNEL_MIN", "BUILD_EXCLUSIVE_KERNEL_MAX",
        "BUILD_EXCLUSIVE_ARCH", "BUILD_EXCLUSIVE_CONFIG",
    ];
    // Only the indices that are set (a sparse BUILD_EXCLUSIVE_ARCH[10**12]
    // must not loop over every index below it).
    let ex_indices: std::collections::BTreeSet<usize> = ex_names
        .iter()
        .filter_map(|n| raw.array(n))
        .flat_map(|a| a.iter().filter(|(_, v)| !v.is_empty()).map(|(i, _)| *i))
        .chain([0])
        .collect();
    for i in ex_indices {
        let e = Exclusive {
            kernel: opt(raw, ex_names[0], i),
            kernel_min: opt(raw, ex_names[1], i),
            kernel_max: opt(raw, ex_names[2], i).or_else(|| if i == 0 { opt(raw, "OBSOLETE_BY", 0) } else { None }),
            arch: opt(raw, ex_names[3], i),
            config: opt(raw, ex_names[4], i),
        };
        if !e.is_empty() {
            exclusive.insert(i, e);
        }
    }
    for d in ["REMAKE_INITRD", "MODULES_CONF", "MODULES_CONF_OBSOLETES", "MODULES_CONF_ALIAS_TYPE", "MODULES_CONF_OBSOLETE_ONLY", "OBSOLETE_BY"] {
        if raw.scalar(d).is_some() {
            warnings.push(format!("dkms.conf: {d} is deprecated and has no effect beyond what dkms 3 does"));
        }
    }

    let script = |n: &str| -> Result<Option<String>, String> {
        match raw.scalar(n) {
            None => Ok(None),
            Some(s) => {
                let first = s.split_whitespace().next().unwrap_or("");
                if !is_contained(first) {
                    return Err(format!("dkms.conf: {n} script {first:?} must be a path inside the module's directory"));
                }
                Ok(Some(s.to_string()))
            }
        }
    };

    Ok(ModuleConf {
        package_name,
        package_version,
        modules,
        make: raw.array("MAKE").cloned().unwrap_or_default().into_iter().filter(|(_, v)| !v.is_empty()).collect(),
        make_match: raw.array("MAKE_MATCH").cloned().unwrap_or_default(),
        patches,
        pre_build: script("PRE_BUILD")?,
        post_build: script("POST_BUILD")?,
        post_add: script("POST_ADD")?,
        pre_install: script("PRE_INSTALL")?,
        post_install: script("POST_INSTALL")?,
        post_remove: script("POST_REMOVE")?,
        autoinstall,
        build_depends,
        exclusive,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, usize, &str)]) -> Raw {
        let mut r = Raw::default();
        for (n, i, v) in pairs {
            r.vars.entry(n.to_string()).or_default().insert(*i, v.to_string());
        }
        r
    }

    fn base() -> Vec<(&'static str, usize, &'static str)> {
        vec![("PACKAGE_NAME", 0, "foo"), ("PACKAGE_VERSION", 0, "1.0"), ("DEST_MODULE_LOCATION", 0, "/updates")]
    }

    #[test]
    fn single_module_defaults_to_package_name() {
        let c = from_raw(&raw(&base())).unwrap();
        assert_eq!(c.modules.len(), 1);
        assert_eq!(c.modules[0].built_name, "foo");
        assert_eq!(c.modules[0].dest_name, "foo");
        assert!(c.modules[0].strip);
        assert!(!c.autoinstall);
    }

    #[test]
    fn missing_name_or_version_is_explained() {
        let e = from_raw(&raw(&[("PACKAGE_VERSION", 0, "1")])).unwrap_err();
        assert!(e.contains("PACKAGE_NAME"), "{e}");
        let e = from_raw(&raw(&[("PACKAGE_NAME", 0, "x")])).unwrap_err();
        assert!(e.contains("PACKAGE_VERSION"), "{e}");
    }

    #[test]
    fn sparse_records_need_names() {
        let mut p = base();
        p.push(("BUILT_MODULE_NAME", 1, "bar"));
        p.push(("DEST_MODULE_LOCATION", 1, "/updates"));
        let e = from_raw(&raw(&p)).unwrap_err();
        assert!(e.contains("record #0"), "{e}");
    }

    #[test]
    fn escaping_paths_are_refused() {
        for (n, v) in [
            ("BUILT_MODULE_NAME", "../evil"),
            ("BUILT_MODULE_LOCATION", "../../x"),
            ("BUILT_MODULE_LOCATION", "/abs"),
            ("DEST_MODULE_LOCATION", "/updates/../../etc"),
            ("DEST_MODULE_LOCATION", "/etc"),
            ("PATCH", "../x.patch"),
            ("BUILT_MODULE_NAME", "a b"),
            ("BUILT_MODULE_NAME", "x;rm"),
            ("BUILT_MODULE_NAME", "foo.ko"),
        ] {
            let mut p = base();
            p.retain(|(k, _, _)| *k != n);
            p.push((n, 0, v));
            assert!(from_raw(&raw(&p)).is_err(), "{n}={v} accepted");
        }
    }

    #[test]
    fn bad_names_are_refused() {
        let e = from_raw(&raw(&[("PACKAGE_NAME", 0, "a b"), ("PACKAGE_VERSION", 0, "1")])).unwrap_err();
        assert!(e.contains("PACKAGE_NAME"));
        let e = from_raw(&raw(&[("PACKAGE_NAME", 0, "a"), ("PACKAGE_VERSION", 0, "1/2")])).unwrap_err();
        assert!(e.contains("PACKAGE_VERSION"));
    }

    #[test]
    fn autoinstall_values() {
        for (v, ok) in [("yes", Some(true)), ("YES", Some(true)), ("no", Some(false)), ("", Some(false)), ("Y", None)] {
            let mut p = base();
            p.push(("AUTOINSTALL", 0, v));
            assert_eq!(from_raw(&raw(&p)).ok().map(|c| c.autoinstall), ok, "{v}");
        }
    }

    #[test]
    fn strip_inherits_index_zero() {
        let mut p = base();
        p.push(("STRIP", 0, "no"));
        p.push(("BUILT_MODULE_NAME", 0, "a"));
        p.push(("BUILT_MODULE_NAME", 1, "b"));
        p.push(("DEST_MODULE_LOCATION", 1, "/updates"));
        let c = from_raw(&raw(&p)).unwrap();
        assert!(!c.modules[0].strip && !c.modules[1].strip);
    }

    #[test]
    fn duplicate_dest_names_are_refused() {
        let mut p = base();
        p.push(("BUILT_MODULE_NAME", 0, "a"));
        p.push(("BUILT_MODULE_NAME", 1, "b"));
        p.push(("DEST_MODULE_NAME", 1, "a"));
        p.push(("DEST_MODULE_LOCATION", 1, "/updates"));
        assert!(from_raw(&raw(&p)).unwrap_err().contains("twice"));
    }

    #[test]
    fn exclusive_and_depends() {
        let mut p = base();
        p.push(("BUILD_EXCLUSIVE_KERNEL", 0, "^6\\."));
        p.push(("BUILD_EXCLUSIVE_CONFIG", 1, "CONFIG_X"));
        p.push(("BUILD_DEPENDS", 0, "a b"));
        p.push(("BUILD_DEPENDS", 1, "c"));
        let c = from_raw(&raw(&p)).unwrap();
        assert_eq!(c.exclusive[&0].kernel.as_deref(), Some("^6\\."));
        assert_eq!(c.exclusive[&1].config.as_deref(), Some("CONFIG_X"));
        assert_eq!(c.build_depends, vec!["a", "b", "c"]);
    }
}
