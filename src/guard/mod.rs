//! The boot guard: never boot into a kernel that lacks a driver the system
//! uses. After every change to the installed modules (a hook run, an
//! install, autoinstall, a boot run), it works out which modules the system
//! depends on ([`plan::required`]: the `required` setting, and the modules
//! modsync or dkms installed for the running kernel that are loaded now or
//! in its initramfs), which bootable kernel has them all ([`facts`]), and
//! decides ([`plan::plan`], pure): when the newest kernel lacks one, the
//! boot loader's default stays on the newest kernel that has them
//! ([`loader`]: GRUB, grubby, systemd-boot); when the newest has them
//! again, the default returns to it. What it changed is recorded
//! ([`record`]) so that lifting undoes exactly that. A default the user
//! chose is never touched, and `boot_guard = false` lifts any hold.
//! Messages go to stderr: a dkms command's output stays dkms's.

pub mod facts;
pub mod loader;
pub mod plan;
pub mod record;

use crate::ops::Cx;
use crate::ui::Sink;
use anyhow::Result;
use plan::Plan;
use record::Record;
use std::collections::BTreeSet;

/// What the guard did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing is required or held.
    Quiet,
    /// A hold began (or moved to another kernel).
    Held(Record),
    /// A hold stays as it was.
    Holding(Record),
    /// A hold ended: the newest kernel boots again (`off`: because the
    /// guard was turned off).
    Lifted { record: Record, newest: String, off: bool },
    /// The newest kernel lacks modules but nothing was changed (why).
    NotChanged(String),
}

/// Runs the guard and reports on `sink`; an error is reported, never
/// returned (the guard never fails the command that ran it).
pub fn after_change(cx: &Cx, sink: &dyn Sink) -> Option<Outcome> {
    match run(cx) {
        Ok(o) => {
            report(&o, sink);
            Some(o)
        }
        Err(e) => {
            sink.warn(&format!(
                "modsync boot guard: {e:#}. The boot loader's default is as it was; `modsync boot-guard` retries."
            ));
            None
        }
    }
}

fn names(s: &BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Why each missing module is missing for `newest`, a sentence each: the
/// diagnosis of its failed build, or that it was not built.
fn reasons(cx: &Cx, missing: &BTreeSet<String>, newest: &str) -> Vec<String> {
    let arch = crate::kernel::machine_arch();
    missing
        .iter()
        .map(|n| match facts::provider(cx, n) {
            Some((m, v)) => {
                let failed = crate::diagnose::record::read(&cx.tree.failed_dir(&m, &v, newest, &arch));
                match failed {
                    Some(d) => format!(
                        "{n}: {m}/{v} failed to build for {newest}: {} (`modsync explain {m}/{v} -k {newest}`)",
                        d.reason
                    ),
                    None => format!(
                        "{n}: {m}/{v} is not installed for {newest} (`modsync explain {m}/{v} -k {newest}` says why)"
                    ),
                }
            }
            None => format!("{n}: no registered module provides it"),
        })
        .collect()
}

fn missing_detail(cx: &Cx, missing: &BTreeSet<String>, newest: &str) -> String {
    reasons(cx, missing, newest).join("; ")
}

/// Decides and applies; returns what happened.
pub fn run(cx: &Cx) -> Result<Outcome> {
    let root = &cx.settings.sysconf_root;
    let tree = &cx.settings.dkms_tree;
    let held = record::read(tree)?;
    if !cx.settings.boot_guard {
        return match held {
            Some(r) => lift(cx, r, None),
            None => Ok(Outcome::Quiet),
        };
    }
    let running = crate::kernel::running_release();
    let managed = facts::managed(cx, &running);
    let (loaded, initramfs) = if managed.is_empty() {
        (BTreeSet::new(), BTreeSet::new())
    } else {
        let boot = root.join("boot");
        (
            facts::loaded(),
            crate::install::initramfs::image_modules(&boot, &cx.settings.install_tree, &running),
        )
    };
    let required = plan::required(&cx.settings.required, &managed, &loaded, &initramfs);
    if required.is_empty() && held.is_none() {
        return Ok(Outcome::Quiet);
    }
    log::debug!("boot guard: required {required:?}");
    match plan::plan(&facts::kernels(cx, &required)) {
        Plan::Hold {
            kernel,
            newest,
            missing,
        } => {
            let Some(l) = loader::detect(root) else {
                if let Some(r) = held {
                    log::info!("boot guard: the boot loader of the hold on {} is gone", r.kernel);
                    record::remove(tree)?;
                }
                return Ok(Outcome::NotChanged(format!(
                    "{} missing for kernel {newest}, but no boot loader modsync can steer (GRUB, grubby, systemd-boot) was found, so nothing changed: choose {kernel} in the boot menu",
                    missing_detail(cx, &missing, &newest)
                )));
            };
            if let Some(why) = loader::user_choice(root, &l, held.as_ref().map(|r| &r.change)) {
                // a choice made since a hold began wins over it
                if let Some(r) = held {
                    lift(cx, r, Some(&newest))?;
                }
                return Ok(Outcome::NotChanged(format!(
                    "{} missing for kernel {newest}; {why}, so modsync leaves {} as it is: choose {kernel} in the boot menu",
                    missing_detail(cx, &missing, &newest),
                    l.name()
                )));
            }
            if let Some(r) = &held {
                if r.kernel == kernel && r.newest == newest {
                    // the same hold; why may have changed (a build failed since)
                    let now = Record {
                        missing: missing.iter().cloned().collect(),
                        reasons: reasons(cx, &missing, &newest),
                        ..r.clone()
                    };
                    if now != *r {
                        record::write(tree, &now)?;
                    }
                    return Ok(Outcome::Holding(now));
                }
            }
            if let Some(r) = held {
                lift(cx, r, Some(&newest))?;
            }
            let why = format!("{} missing for kernel {newest}", names(&missing));
            let change = loader::hold(root, &l, &kernel, &why)?;
            let r = Record {
                reasons: reasons(cx, &missing, &newest),
                kernel,
                newest,
                missing: missing.into_iter().collect(),
                loader: l.name().to_string(),
                since: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0),
                change,
            };
            record::write(tree, &r)?;
            Ok(Outcome::Held(r))
        }
        Plan::Newest { kernel } => match held {
            Some(r) => lift(cx, r, Some(&kernel)),
            None => Ok(Outcome::Quiet),
        },
        Plan::NoneComplete { newest, missing } => {
            if let Some(r) = held {
                lift(cx, r, Some(&newest))?;
            }
            Ok(Outcome::NotChanged(format!(
                "no installed kernel has {}; holding an older kernel would not help, so {newest} boots",
                names(&missing)
            )))
        }
        Plan::Nothing => match held {
            Some(r) => lift(cx, r, None),
            None => Ok(Outcome::Quiet),
        },
    }
}

fn lift(cx: &Cx, r: Record, newest: Option<&str>) -> Result<Outcome> {
    let newest = newest.unwrap_or(&r.newest).to_string();
    loader::lift(&cx.settings.sysconf_root, &r.change, &newest)?;
    record::remove(&cx.settings.dkms_tree)?;
    Ok(Outcome::Lifted {
        record: r,
        newest,
        off: !cx.settings.boot_guard,
    })
}

/// The lines a hold shows (hooks, `status`, `boot-guard`, the boot run).
pub fn describe(r: &Record) -> String {
    let why = if r.reasons.is_empty() {
        String::new()
    } else {
        format!(" Why: {}.", r.reasons.join("; "))
    };
    format!(
        "modsync boot guard: {} missing for kernel {}, so {} keeps booting {}, the newest kernel that has them.{why} \
         Once they are installed for {} (a fixed driver, `modsync autoinstall -k {}`), the newest kernel boots again by itself. \
         To boot {} anyway, choose it in the boot menu; boot_guard = false in /etc/modsync/config.toml turns the guard off.",
        r.missing.join(", "),
        r.newest,
        r.loader,
        r.kernel,
        r.newest,
        r.newest,
        r.newest
    )
}

/// Says what happened.
pub fn report(o: &Outcome, sink: &dyn Sink) {
    match o {
        Outcome::Quiet => {}
        Outcome::Held(r) | Outcome::Holding(r) => sink.err(&describe(r)),
        Outcome::Lifted { record, newest, off } => sink.err(&format!(
            "modsync boot guard: {}; {} boots the newest kernel, {newest}, again.",
            if *off {
                "boot_guard = false".to_string()
            } else {
                format!("{} installed for {newest} now", record.missing.join(", "))
            },
            record.loader
        )),
        Outcome::NotChanged(why) => sink.err(&format!("modsync boot guard: {why}.")),
    }
}
