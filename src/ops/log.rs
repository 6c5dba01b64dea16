//! `modsync log [MODULE[/VERSION]] [-k KERNEL]... [--failed] [--lines N] [--json]`:
//! what the hooks did, oldest first, from the history file and its
//! rotations ([`crate::state::history`]), filtered.

use super::{Cx, Target};
use crate::state::history::{self, Entry, ResultKind};
use crate::ui::Sink;
use anyhow::Result;

/// Which entries to show.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub module: Option<String>,
    pub version: Option<String>,
    pub kernels: Vec<String>,
    pub failed_only: bool,
    /// Only the last N (after filtering).
    pub last: Option<usize>,
}

/// The entries the query selects, oldest first. Pure.
pub fn select<'a>(entries: &'a [Entry], q: &Query) -> Vec<&'a Entry> {
    let wanted = |e: &Entry| {
        let (m, v) = match e.event.module.as_deref().map(|mv| mv.split_once('/')) {
            Some(Some((m, v))) => (Some(m), Some(v)),
            _ => (None, None),
        };
        // a kernel-wide entry (no module) concerns every module of that kernel
        let module_ok = q.module.is_none() || m.is_none() || m == q.module.as_deref();
        let version_ok = q.version.is_none() || v.is_none() || v == q.version.as_deref();
        let kernel_ok = q.kernels.is_empty() || q.kernels.contains(&e.event.kernel);
        let result_ok = !q.failed_only
            || matches!(
                e.event.result,
                ResultKind::Failed | ResultKind::NotInstalled | ResultKind::NotBuilt
            );
        module_ok && version_ok && kernel_ok && result_ok
    };
    let mut out: Vec<&Entry> = entries.iter().filter(|e| wanted(e)).collect();
    if let Some(n) = q.last {
        out.drain(..out.len().saturating_sub(n));
    }
    out
}

pub fn run(cx: &Cx, t: &Target, failed_only: bool, last: Option<usize>, json: bool, sink: &dyn Sink) -> Result<i32> {
    let Some(path) = &cx.settings.history_log else {
        sink.out("No history is kept (history_log = \"\" in /etc/modsync/config.toml).");
        return Ok(0);
    };
    let (entries, bad) = history::read(path)?;
    if bad > 0 {
        sink.warn(&format!(
            "{bad} line(s) of {} (or its rotations) are not history entries and are left out",
            path.display()
        ));
    }
    let q = Query {
        module: t.module.clone().filter(|m| !m.is_empty()),
        version: t.version.clone(),
        kernels: t.kernels.iter().map(|(k, _)| k.clone()).collect(),
        failed_only,
        last,
    };
    let shown = select(&entries, &q);
    if json {
        sink.out(&serde_json::to_string_pretty(&shown)?);
    } else if shown.is_empty() {
        sink.out(&format!("Nothing in the history ({}) matches.", path.display()));
    } else {
        for e in shown {
            sink.out(&history::human(e));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::history::{parse, Event};

    #[test]
    fn filters_by_module_kernel_result_and_count() {
        let ev = |m: Option<&str>, k: &str, r| Event::new(m.map(str::to_string), k, r);
        let text = history::lines(
            "t",
            "apt postinst",
            &[
                ev(Some("a/1"), "6.1", ResultKind::Installed),
                ev(Some("b/2"), "6.1", ResultKind::Failed),
                ev(None, "6.12", ResultKind::NotBuilt),
                ev(Some("a/1"), "6.12", ResultKind::Removed),
            ],
        );
        let (entries, _) = parse(&text);
        let pick = |q: Query| -> Vec<(Option<String>, String)> {
            select(&entries, &q)
                .into_iter()
                .map(|e| (e.event.module.clone(), e.event.kernel.clone()))
                .collect()
        };
        let a = Query {
            module: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(
            pick(a.clone()),
            vec![
                (Some("a/1".into()), "6.1".into()),
                (None, "6.12".into()),
                (Some("a/1".into()), "6.12".into())
            ]
        );
        let failed = Query {
            failed_only: true,
            ..Default::default()
        };
        assert_eq!(
            pick(failed),
            vec![(Some("b/2".into()), "6.1".into()), (None, "6.12".into())]
        );
        let k = Query {
            kernels: vec!["6.1".into()],
            last: Some(1),
            ..Default::default()
        };
        assert_eq!(pick(k), vec![(Some("b/2".into()), "6.1".into())]);
        let v = Query {
            module: Some("a".into()),
            version: Some("2".into()),
            ..Default::default()
        };
        assert_eq!(pick(v), vec![(None, "6.12".into())]);
    }
}
