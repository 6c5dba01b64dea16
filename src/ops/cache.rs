//! `modsync cache [show|clear]`: what the build cache holds, or emptying it
//! (under the tree's lock, so no build of this host writes into it
//! meanwhile; entries another host is reading or placing stay).

use super::Cx;
use crate::cache::Cache;
use crate::ui::Sink;
use anyhow::Result;

pub fn run(cx: &Cx, clear: bool, sink: &dyn Sink) -> Result<i32> {
    let cache = Cache {
        dir: cx.settings.cache_dir.clone(),
        max_bytes: cx.settings.cache_max_bytes,
    };
    if clear {
        let _lock = cx.lock(sink)?;
        sink.out(&format!(
            "Removed {} cached build(s) from {}",
            cache.clear()?,
            cache.dir.display()
        ));
    } else {
        let (n, bytes) = cache.usage();
        let state = if cx.settings.cache {
            "on"
        } else {
            "off (cache = false in /etc/modsync/config.toml)"
        };
        sink.out(&format!(
            "build cache {}: {state}; {n} build(s), {:.1} MiB of at most {} MiB",
            cache.dir.display(),
            bytes as f64 / 1048576.0,
            cx.settings.cache_max_bytes / 1048576
        ));
    }
    Ok(0)
}
