//! `modsync boot-guard [--json] [--lift]`: runs the boot guard
//! ([`crate::guard`]) and shows the hold in force; `--lift` undoes it.

use super::{require_root, Cx};
use crate::guard::{self, record};
use crate::ui::Sink;
use anyhow::Result;

/// The hold as JSON (`null` when none). Pure.
pub fn json(r: Option<&record::Record>) -> String {
    match r {
        None => "null".to_string(),
        Some(r) => serde_json::json!({
            "kernel": r.kernel,
            "newest": r.newest,
            "missing": r.missing,
            "reasons": r.reasons,
            "loader": r.loader,
            "since": r.since,
        })
        .to_string(),
    }
}

/// The verb.
pub fn run(cx: &Cx, as_json: bool, lift: bool, sink: &dyn Sink) -> Result<i32> {
    require_root()?;
    let _lock = cx.lock(sink)?;
    if lift {
        if let Some(r) = record::read(&cx.settings.dkms_tree)? {
            crate::guard::loader::lift(&cx.settings.sysconf_root, &r.change, &r.newest)?;
            record::remove(&cx.settings.dkms_tree)?;
            sink.out(&format!(
                "modsync boot guard: lifted; {} boots the newest kernel, {}, again.",
                r.loader, r.newest
            ));
        }
        return Ok(0);
    }
    if as_json {
        guard::run(cx)?;
    } else {
        guard::after_change(cx, sink);
    }
    let held = record::read(&cx.settings.dkms_tree)?;
    if as_json {
        sink.out(&json(held.as_ref()));
    } else if held.is_none() {
        sink.out("modsync boot guard: no hold; the boot loader's default is its own.");
    }
    Ok(0)
}
