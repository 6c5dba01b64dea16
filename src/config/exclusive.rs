//! dkms.conf's BUILD_EXCLUSIVE rules (kernel regex, minimum and maximum
//! kernel, architecture, kernel config options) and which of them refuses a
//! kernel, so that "excluded" can always say why. Pure.

use super::directives::Context;
use super::shell::Raw;
use crate::kernel::version;
use std::cmp::Ordering;

/// bash's `[[ s =~ re ]]`: an invalid expression matches nothing.
pub fn regex_match(re: &str, s: &str) -> bool {
    regex::Regex::new(re).map(|r| r.is_match(s)).unwrap_or(false)
}

/// One set of BUILD_EXCLUSIVE values (index 0 for the package, or one module's).
#[derive(Debug, Default)]
pub struct Exclusive<'a> {
    pub kernel: &'a str,
    pub min: &'a str,
    pub max: &'a str,
    pub arch: &'a str,
    pub config: &'a str,
    /// `max` stands in for OBSOLETE_BY (named so in the refusal).
    pub max_is_obsolete_by: bool,
}

impl<'a> Exclusive<'a> {
    /// The values of record `i`; `max_override` (OBSOLETE_BY) stands in for
    /// an empty BUILD_EXCLUSIVE_KERNEL_MAX of record 0.
    pub fn read(raw: &'a Raw, i: usize, max_override: &'a str) -> Self {
        let get = |n: &str| raw.get(n, i).unwrap_or("");
        let max = get("BUILD_EXCLUSIVE_KERNEL_MAX");
        let obsolete = i == 0 && max.is_empty() && !max_override.is_empty();
        Exclusive {
            kernel: get("BUILD_EXCLUSIVE_KERNEL"),
            min: get("BUILD_EXCLUSIVE_KERNEL_MIN"),
            max: if obsolete { max_override } else { max },
            arch: get("BUILD_EXCLUSIVE_ARCH"),
            config: get("BUILD_EXCLUSIVE_CONFIG"),
            max_is_obsolete_by: obsolete,
        }
    }

    pub fn is_set(&self) -> bool {
        !(self.kernel.is_empty()
            && self.min.is_empty()
            && self.max.is_empty()
            && self.arch.is_empty()
            && self.config.is_empty())
    }

    /// The rule that keeps this kernel out, worded for a person, or None
    /// when the kernel is admitted.
    pub fn refusal(&self, c: &Context) -> Option<String> {
        let k = c.kernelver;
        if !self.kernel.is_empty() && !regex_match(self.kernel, k) {
            return Some(format!("BUILD_EXCLUSIVE_KERNEL=\"{}\" does not match {k}", self.kernel));
        }
        if !self.min.is_empty() && version::compare(k, self.min) == Ordering::Less {
            return Some(format!("BUILD_EXCLUSIVE_KERNEL_MIN=\"{}\": {k} is older", self.min));
        }
        if !self.max.is_empty() && version::compare(k, self.max) == Ordering::Greater {
            let name = if self.max_is_obsolete_by {
                "OBSOLETE_BY"
            } else {
                "BUILD_EXCLUSIVE_KERNEL_MAX"
            };
            return Some(format!("{name}=\"{}\": {k} is newer", self.max));
        }
        if !self.arch.is_empty() && !regex_match(self.arch, c.arch) {
            return Some(format!(
                "BUILD_EXCLUSIVE_ARCH=\"{}\" does not match {}",
                self.arch, c.arch
            ));
        }
        if let (false, Some(cfg)) = (self.config.is_empty(), c.kconfig) {
            for word in self.config.split_whitespace() {
                let (option, want) = match word.strip_prefix('!') {
                    Some(neg) => (neg, false),
                    None => (word, true),
                };
                if cfg.enabled(option) != want {
                    let state = if want { "not set" } else { "set" };
                    return Some(format!(
                        "BUILD_EXCLUSIVE_CONFIG=\"{}\": {option} is {state} in {k}'s configuration",
                        self.config
                    ));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::kconfig::KConfig;

    fn ctx<'a>(k: &'a str, kconfig: Option<&'a KConfig>) -> Context<'a> {
        Context {
            kernelver: k,
            arch: "x86_64",
            kconfig,
            ..Default::default()
        }
    }

    #[test]
    fn each_rule_names_itself_when_it_refuses() {
        let e = Exclusive {
            min: "6.5",
            ..Default::default()
        };
        assert_eq!(
            e.refusal(&ctx("6.1.0-56-amd64", None)).unwrap(),
            "BUILD_EXCLUSIVE_KERNEL_MIN=\"6.5\": 6.1.0-56-amd64 is older"
        );
        assert_eq!(e.refusal(&ctx("6.12.1", None)), None);
        let e = Exclusive {
            max: "5.10",
            max_is_obsolete_by: true,
            ..Default::default()
        };
        assert!(e
            .refusal(&ctx("6.1", None))
            .unwrap()
            .starts_with("OBSOLETE_BY=\"5.10\""));
        let e = Exclusive {
            arch: "aarch64",
            ..Default::default()
        };
        assert!(e.refusal(&ctx("6.1", None)).unwrap().contains("does not match x86_64"));
        let cfg = KConfig::parse("CONFIG_A=y\n");
        let e = Exclusive {
            config: "CONFIG_A !CONFIG_B CONFIG_C",
            ..Default::default()
        };
        assert!(e
            .refusal(&ctx("6.1", Some(&cfg)))
            .unwrap()
            .contains("CONFIG_C is not set"));
        let e = Exclusive {
            config: "!CONFIG_A",
            ..Default::default()
        };
        assert!(e.refusal(&ctx("6.1", Some(&cfg))).unwrap().contains("CONFIG_A is set"));
        assert!(!Exclusive::default().is_set());
    }
}
