//! What a failed build leaves for later: its make.log, its exit code and
//! message (`reason`) and its diagnosis (`diagnosis.json`) in
//! `m/v/.modsync/failed/K-A/`, which `status --json` and `modsync explain`
//! read. The diagnosis is also added to the failure's message, so the
//! failing command and the hooks print why and what to do (for a failure
//! before make.log existed, only a full disk is told, from the message).

use super::{Env, Failed, Job};
use crate::diagnose::{classify_message, facts, record, Facts};
use crate::sys::fs::remove_within;

/// Keeps a failed build's make.log, its reason and its diagnosis in
/// `m/v/.modsync/failed/K-A/`, and adds the diagnosis to its message.
pub fn keep(env: &Env, job: &Job, f: &mut Failed) {
    let (m, v, k) = (job.module, job.version, job.kernel);
    let kept = env.tree.failed_dir(m, v, &k.release, &k.arch);
    let _ = remove_within(&env.tree.root, &kept);
    let Some(log) = &f.log else {
        let facts = Facts {
            module: m,
            version: v,
            kernel: &k.release,
            code: f.code,
            message: &f.message,
            ..Default::default()
        };
        if let Some(d) = classify_message(&facts) {
            f.message = format!("{}\n{}", f.message, d.render());
        }
        return;
    };
    // the make.log stays per kernel (m/v/build holds only the last build's)
    let kept_log = kept.join("make.log");
    if std::fs::create_dir_all(&kept).is_err() || std::fs::copy(log, &kept_log).is_err() {
        return;
    }
    f.log = Some(kept_log.clone());
    let _ = std::fs::write(kept.join("reason"), format!("{}\n{}\n", f.code, f.message));
    let seen = job.workdir.seen.display().to_string();
    let d = facts::diagnose(
        &facts::Failure {
            module: m,
            version: v,
            kernel: k,
            code: f.code,
            message: &f.message,
            kept_log: &kept_log,
            log_path: &kept_log.display().to_string(),
            build_dir: &seen,
        },
        &env.settings.sysconf_root,
    );
    if let Err(e) = record::write(&kept, &d) {
        log::warn!("{e:#}");
    }
    f.message = format!("{}\n{}", f.message, d.render());
}
