//! Debian's kernel hook protocol: which event of which maintainer script we
//! were called from (`$DEB_MAINT_PARAMS`), and what to do about it. Pure.

/// What an apt/dpkg hook call asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Build and install every registered module for the kernel.
    Install {
        headers_later: bool,
    },
    /// The kernel is going away: drop its modules.
    Drop,
    Nothing(&'static str),
}

/// The first word of `$DEB_MAINT_PARAMS` (maybe single-quoted), if set.
pub fn maint_action(params: Option<&str>) -> Option<String> {
    let first = params?.split_whitespace().next()?;
    Some(first.trim_matches('\'').to_string())
}

/// Decides from the hook directory (`event`) and the maintainer-script
/// action. An unset DEB_MAINT_PARAMS (bookworm's header_postinst.d, or a
/// manual run) counts as the event's main action.
pub fn decide(event: &str, params: Option<&str>) -> Action {
    let act = maint_action(params);
    let is = |want: &[&str]| act.as_deref().is_none_or(|a| want.contains(&a));
    match event {
        "postinst" if is(&["configure"]) => Action::Install { headers_later: false },
        "header_postinst" if is(&["configure"]) => Action::Install { headers_later: true },
        "prerm" if is(&["remove"]) => Action::Drop,
        "postrm" if is(&["remove", "purge"]) => Action::Drop,
        "preinst" => Action::Nothing("an in-place upgrade keeps the kernel's ABI, so its modules stay valid"),
        "postinst" | "header_postinst" | "prerm" | "postrm" => {
            Action::Nothing("not the maintainer-script action this hook acts on")
        }
        _ => Action::Nothing("unknown hook event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_on_the_maintainer_action() {
        assert_eq!(
            decide("postinst", Some("configure")),
            Action::Install { headers_later: false }
        );
        assert_eq!(
            decide("postinst", Some("'configure' '6.1.192-1'")),
            Action::Install { headers_later: false }
        );
        assert!(matches!(decide("postinst", Some("abort-upgrade")), Action::Nothing(_)));
        assert_eq!(decide("header_postinst", None), Action::Install { headers_later: true });
        assert_eq!(decide("prerm", Some("remove")), Action::Drop);
        assert!(matches!(decide("prerm", Some("upgrade 6.1.192-2")), Action::Nothing(_)));
        assert_eq!(decide("postrm", Some("purge")), Action::Drop);
        assert!(matches!(decide("postrm", Some("upgrade")), Action::Nothing(_)));
        assert!(matches!(decide("preinst", Some("install")), Action::Nothing(_)));
        assert_eq!(decide("postinst", None), Action::Install { headers_later: false });
    }
}
