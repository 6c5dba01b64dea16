//! The placeholders of a manifest's argument lists: `{kernelver}`,
//! `{arch}`, `{kernel_source_dir}`, `{build_dir}`, `{jobs}`, `{module}` and
//! `{version}`, replaced inside one word (a value never splits a word or
//! reaches a shell); `{{` and `}}` are literal braces. The reverse,
//! [`abstracted`], writes a dkms.conf word with the placeholders. Pure.

/// Every placeholder, with what it stands for.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("kernelver", "the kernel release"),
    ("arch", "the kernel's architecture"),
    ("kernel_source_dir", "the kernel's headers directory"),
    ("build_dir", "the build directory, $dkms_tree/<name>/<version>/build"),
    ("jobs", "the number of parallel jobs (empty for unlimited)"),
    ("module", "the module's name"),
    ("version", "the module's version"),
];

/// Replaces the placeholders of `word` with `value(name)`; an unknown
/// placeholder or an unmatched brace is an error that says what is allowed.
pub fn expand(word: &str, value: &dyn Fn(&str) -> String) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = word;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("{{") {
            out.push('{');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("}}") {
            out.push('}');
            rest = t;
        } else if tail.starts_with('}') {
            return Err(format!("{word:?} has a '}}' without '{{' (write '}}}}' for a brace)"));
        } else {
            let Some(end) = tail.find('}') else {
                return Err(format!("{word:?} has a '{{' without '}}' (write '{{{{' for a brace)"));
            };
            let name = &tail[1..end];
            if !PLACEHOLDERS.iter().any(|(p, _)| *p == name) {
                let known: Vec<String> = PLACEHOLDERS.iter().map(|(p, _)| format!("{{{p}}}")).collect();
                return Err(format!(
                    "{word:?} uses the unknown placeholder {{{name}}}; the placeholders are {}",
                    known.join(", ")
                ));
            }
            out.push_str(&value(name));
            rest = &tail[end + 1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks a word's placeholders.
pub fn check(word: &str) -> Result<(), String> {
    expand(word, &|_| String::new()).map(drop)
}

/// A word written with placeholders: braces doubled, then each non-empty
/// value in `values` (name, value), in the order given (longest first, so a
/// directory wins over the release inside it), replaced by `{name}`.
pub fn abstracted(word: &str, values: &[(&str, &str)]) -> String {
    let mut w = word.replace('{', "{{").replace('}', "}}");
    for (name, value) in values {
        if !value.is_empty() {
            w = w.replace(value, &format!("{{{name}}}"));
        }
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str) -> String {
        match name {
            "kernelver" => "6.1.0-56-amd64".into(),
            "build_dir" => "/var/lib/dkms/foo/1.0/build".into(),
            "jobs" => String::new(),
            other => format!("<{other}>"),
        }
    }

    #[test]
    fn placeholders_expand_inside_one_word() {
        assert_eq!(expand("M={build_dir}", &v).unwrap(), "M=/var/lib/dkms/foo/1.0/build");
        assert_eq!(expand("-j{jobs}", &v).unwrap(), "-j");
        assert_eq!(
            expand("{{literal}} {kernelver}", &v).unwrap(),
            "{literal} 6.1.0-56-amd64"
        );
        assert_eq!(
            expand("$(touch x);", &v).unwrap(),
            "$(touch x);",
            "nothing else is special"
        );
    }

    #[test]
    fn bad_placeholders_are_refused() {
        assert!(expand("{kernel}", &v)
            .unwrap_err()
            .contains("unknown placeholder {kernel}"));
        assert!(check("{kernelver").is_err());
        assert!(check("a}b").is_err());
        assert!(check("${kernelver}").is_ok(), "a dollar is just a character");
    }

    #[test]
    fn words_are_abstracted_and_expand_back() {
        let values = [
            ("build_dir", "/var/lib/dkms/foo/1.0/build"),
            ("kernel_source_dir", "/lib/modules/6.1.0-56-amd64/build"),
            ("kernelver", "6.1.0-56-amd64"),
        ];
        let w = abstracted("KDIR=/lib/modules/6.1.0-56-amd64/build{x}", &values);
        assert_eq!(w, "KDIR={kernel_source_dir}{{x}}");
        let back = expand(&w, &|n| values.iter().find(|(k, _)| *k == n).unwrap().1.to_string()).unwrap();
        assert_eq!(back, "KDIR=/lib/modules/6.1.0-56-amd64/build{x}");
        assert_eq!(abstracted("KVER=6.1.0-56-amd64", &values), "KVER={kernelver}");
    }
}
