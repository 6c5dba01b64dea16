//! BUILD_EXCLUSIVE_* evaluation, including dkms's per-module form where the
//! index-0 value applies to every module. Pure.

use crate::config::directives::{Exclusive, ModuleConf};
use crate::kernel::kconfig::KConfig;
use crate::kernel::version;
use std::cmp::Ordering;

fn regex_match(re: &str, s: &str) -> bool {
    match regex::Regex::new(re) {
        Ok(r) => r.is_match(s),
        Err(e) => {
            log::warn!("invalid BUILD_EXCLUSIVE regex {re:?}: {e}");
            false
        }
    }
}

/// Whether one set of constraints admits this kernel.
pub fn admits(e: &Exclusive, release: &str, arch: &str, kconfig: Option<&KConfig>) -> bool {
    if e.kernel.as_deref().is_some_and(|re| !regex_match(re, release)) {
        return false;
    }
    if e.kernel_min.as_deref().is_some_and(|min| version::compare(release, min) == Ordering::Less) {
        return false;
    }
    if e.kernel_max.as_deref().is_some_and(|max| version::compare(release, max) == Ordering::Greater) {
        return false;
    }
    if e.arch.as_deref().is_some_and(|re| !regex_match(re, arch)) {
        return false;
    }
    if let (Some(list), Some(cfg)) = (e.config.as_deref(), kconfig) {
        for word in list.split_whitespace() {
            let ok = match word.strip_prefix('!') {
                Some(neg) => !cfg.enabled(neg),
                None => cfg.enabled(word),
            };
            if !ok {
                return false;
            }
        }
    }
    true
}

/// Indices of the modules that may be built for this kernel; None when the
/// whole package is excluded (dkms's exit 77).
pub fn allowed_modules(conf: &ModuleConf, release: &str, arch: &str, kconfig: Option<&KConfig>) -> Option<Vec<usize>> {
    let ok = |i: usize| conf.exclusive.get(&i).is_none_or(|e| admits(e, release, arch, kconfig));
    if !ok(0) {
        return None;
    }
    if conf.modules.is_empty() {
        return Some(Vec::new());
    }
    let allowed: Vec<usize> = (0..conf.modules.len()).filter(|&i| ok(i)).collect();
    (!allowed.is_empty()).then_some(allowed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::directives::from_raw;
    use crate::config::dkms_conf::Raw;

    fn conf(pairs: &[(&str, usize, &str)]) -> ModuleConf {
        let mut r = Raw::default();
        let base = [
            ("PACKAGE_NAME", 0, "foo"), ("PACKAGE_VERSION", 0, "1"),
            ("BUILT_MODULE_NAME", 0, "a"), ("DEST_MODULE_LOCATION", 0, "/updates"),
            ("BUILT_MODULE_NAME", 1, "b"), ("DEST_MODULE_LOCATION", 1, "/updates"),
        ];
        for (n, i, v) in base.iter().chain(pairs) {
            r.vars.entry(n.to_string()).or_default().insert(*i, v.to_string());
        }
        from_raw(&r).unwrap()
    }

    #[test]
    fn index_zero_excludes_the_whole_package() {
        let c = conf(&[("BUILD_EXCLUSIVE_KERNEL", 0, "^99\\..*")]);
        assert_eq!(allowed_modules(&c, "6.1.0", "x86_64", None), None);
        let c = conf(&[("BUILD_EXCLUSIVE_KERNEL_MAX", 0, "3.99")]);
        assert_eq!(allowed_modules(&c, "6.1.0", "x86_64", None), None);
    }

    #[test]
    fn per_module_config_excludes_one() {
        let cfg = KConfig::parse("CONFIG_A=y\n");
        let c = conf(&[("BUILD_EXCLUSIVE_CONFIG", 0, "CONFIG_A"), ("BUILD_EXCLUSIVE_CONFIG", 1, "CONFIG_B")]);
        assert_eq!(allowed_modules(&c, "6.1", "x86_64", Some(&cfg)), Some(vec![0]));
        let c = conf(&[("BUILD_EXCLUSIVE_CONFIG", 0, "!CONFIG_A")]);
        assert_eq!(allowed_modules(&c, "6.1", "x86_64", Some(&cfg)), None);
        // no config file: config constraints are not checked, as in dkms
        assert_eq!(allowed_modules(&c, "6.1", "x86_64", None), Some(vec![0, 1]));
    }

    #[test]
    fn min_max_and_arch() {
        let c = conf(&[("BUILD_EXCLUSIVE_KERNEL_MIN", 0, "3.5"), ("BUILD_EXCLUSIVE_ARCH", 0, "x86_64|i.86")]);
        assert!(allowed_modules(&c, "3.5-rc2", "x86_64", None).is_some());
        assert!(allowed_modules(&c, "3.4.9", "x86_64", None).is_none());
        assert!(allowed_modules(&c, "6.1", "aarch64", None).is_none());
        let c = conf(&[("BUILD_EXCLUSIVE_KERNEL_MAX", 0, "4.12")]);
        assert!(allowed_modules(&c, "4.12-rc1", "x86_64", None).is_none());
        assert!(allowed_modules(&c, "4.12", "x86_64", None).is_some());
    }
}
