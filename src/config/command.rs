//! A command a module's configuration asks for (the build command, a
//! script): a dkms.conf line, run as dkms runs it, or a modsync.toml
//! argument list, which never reaches a shell. Pure.

use std::fmt;

/// One command of a module's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A dkms.conf value: bash runs the build command and build scripts;
    /// the other scripts are split at whitespace (as dkms does).
    Shell(String),
    /// A modsync.toml argument list: program and arguments, each passed as
    /// one word whatever it holds.
    Argv(Vec<String>),
}

/// Characters that mean something to a shell (for quoting a shown argv,
/// and for telling whether a dkms.conf value is a plain list of words).
const SPECIAL: &str = "$`\"'\\;&|<>()*?[]{}~#!= \t\n";

/// One word as a shell would need it written to mean itself.
fn quoted(word: &str) -> String {
    // '=' is special only for the display of assignments; keep `M=/x` readable
    let plain = !word.is_empty() && !word.contains(|c: char| c != '=' && SPECIAL.contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

impl fmt::Display for Command {
    /// The command as make.log and messages show it (an argv quoted so
    /// that pasting it into a shell runs the same thing).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Command::Shell(s) => f.write_str(s),
            Command::Argv(words) => {
                let shown: Vec<String> = words.iter().map(|w| quoted(w)).collect();
                f.write_str(&shown.join(" "))
            }
        }
    }
}

/// The words of a shell command line that holds no shell syntax (no
/// expansion, quoting, redirection, globbing or separators), so that an
/// argument list is exactly what bash would run; None otherwise.
pub fn plain_words(line: &str) -> Option<Vec<String>> {
    let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    // a leading `NAME=value` is an environment assignment to bash
    let plain = words.first().is_some_and(|w| !w.contains('='))
        && words
            .iter()
            .all(|w| !w.contains(|c: char| c != '=' && SPECIAL.contains(c)));
    plain.then_some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_argv_is_shown_quoted_and_a_shell_line_as_written() {
        let c = Command::Argv(vec![
            "make".into(),
            "M=/b".into(),
            "a b".into(),
            "it's".into(),
            "$(x)".into(),
        ]);
        assert_eq!(c.to_string(), r#"make M=/b 'a b' 'it'\''s' '$(x)'"#);
        assert_eq!(Command::Shell("make && x".into()).to_string(), "make && x");
    }

    #[test]
    fn only_plain_lines_become_words() {
        assert_eq!(
            plain_words("make  KVER=6.1 -C /var/lib/dkms/x/1/build").unwrap(),
            vec!["make", "KVER=6.1", "-C", "/var/lib/dkms/x/1/build"]
        );
        for shell in [
            "make && make install",
            "make $(nproc)",
            "KERNELDIR=/k make driver > log",
            "make 'a b'",
            "cd x; make",
            "make *.ko",
            "KERNELDIR=/k make driver",
            "",
        ] {
            assert_eq!(plain_words(shell), None, "{shell}");
        }
    }
}
