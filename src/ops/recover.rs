//! Finishing what a killed run left, at the start of every command that
//! changes the tree (under the lock): each journal entry's steps are
//! applied again (every step is safe to repeat), temporaries beside their
//! targets are swept, and depmod runs for the kernels still marked. A
//! recovery that fails is reported once, with what to do, and set aside:
//! it never fails the command that found it, nor later ones.

use super::Cx;
use crate::install::{depmod, steps};
use crate::state::journal::Journal;
use crate::ui::Sink;

pub fn run(cx: &Cx, sink: &dyn Sink) {
    let journal = Journal::new(&cx.settings.dkms_tree);
    for p in journal.pending() {
        steps::sweep(&p.entry.steps);
        let res = p.entry.steps.iter().try_for_each(steps::apply);
        match res.and_then(|()| journal.finish(&p.path, &p.entry)) {
            Ok(()) => log::info!("finished an interrupted change: {}", p.entry.what),
            Err(e) => {
                let aside = journal
                    .set_aside(&p.path, &format!("{e:#}"))
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                sink.warn(&format!(
                    "an interrupted change ({}) could not be finished: {e:#}. It was set aside in {aside}; check the files it names, then delete it.",
                    p.entry.what
                ));
            }
        }
    }
    if cx.opts.no_depmod {
        return;
    }
    for k in journal.depmod_pending() {
        match depmod::run(&k, &cx.settings.install_tree, false) {
            Ok(_) => journal.depmod_done(&k),
            Err(e) => {
                journal.set_aside_depmod(&k, &format!("{e:#}"));
                sink.warn(&format!("depmod for kernel {k}, left over from an interrupted run, failed: {e:#}. Run `depmod -a {k}` once the problem is fixed."));
            }
        }
    }
}
