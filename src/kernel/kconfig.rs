//! Kernel `.config` / `auto.conf` parsing: `CONFIG_X=y|m|"str"|n`, and
//! `# CONFIG_X is not set`. Pure.

use std::collections::BTreeMap;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KConfig {
    values: BTreeMap<String, String>,
}

impl KConfig {
    pub fn parse(text: &str) -> KConfig {
        let mut values = BTreeMap::new();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                if k.starts_with("CONFIG_") {
                    let v = v.trim();
                    let v = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v);
                    values.insert(k.to_string(), v.to_string());
                }
            }
        }
        KConfig { values }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// `=y` or `=m`.
    pub fn enabled(&self, key: &str) -> bool {
        matches!(self.get(key), Some("y") | Some("m"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values() {
        let c = KConfig::parse(
            "# c\nCONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_MODULE_SIG_HASH=\"sha256\"\nCONFIG_D=n\n",
        );
        assert!(c.enabled("CONFIG_A") && c.enabled("CONFIG_B"));
        assert!(!c.enabled("CONFIG_C") && !c.enabled("CONFIG_D"));
        assert_eq!(c.get("CONFIG_MODULE_SIG_HASH"), Some("sha256"));
    }
}
