//! The names in a cache directory, which several hosts may share: entries
//! are named by their key (64 hex digits); everything else starts with a
//! dot and carries a token unique across hosts (host name, process id and
//! random bits), so two writers never pick the same temporary name:
//! `.modsync-tmp-<token>-<key>` (an entry being written),
//! `.modsync-trash-<token>` (an entry on its way out),
//! `.modsync-lease-<key>.<token>` (a reader or writer using an entry) and
//! `.modsync-clock-<token>` (a probe of the file server's clock).

use crate::sys::fs::TEMP_PREFIX;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

const TRASH: &str = ".modsync-trash-";
const LEASE: &str = ".modsync-lease-";
const CLOCK: &str = ".modsync-clock-";

/// What a name in the cache directory is.
#[derive(Debug, PartialEq, Eq)]
pub enum Name<'a> {
    Entry,
    Temp,
    Trash,
    Lease {
        key: &'a str,
    },
    Clock,
    /// Not modsync's: never counted, never removed.
    Foreign,
}

/// True for a key as [`super::KeyBuilder::finish`] makes it.
pub fn is_key(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

pub fn classify(name: &str) -> Name<'_> {
    if is_key(name) {
        Name::Entry
    } else if name.starts_with(TEMP_PREFIX) {
        Name::Temp
    } else if name.starts_with(TRASH) {
        Name::Trash
    } else if name.starts_with(CLOCK) {
        Name::Clock
    } else if let Some(key) = name
        .strip_prefix(LEASE)
        .and_then(|rest| rest.split_once('.'))
        .map(|(key, _)| key)
        .filter(|k| is_key(k))
    {
        Name::Lease { key }
    } else {
        Name::Foreign
    }
}

pub fn temp(key: &str) -> String {
    format!("{TEMP_PREFIX}{}-{key}", token())
}

pub fn trash() -> String {
    format!("{TRASH}{}", token())
}

pub fn lease(key: &str) -> String {
    format!("{LEASE}{key}.{}", token())
}

pub fn clock() -> String {
    format!("{CLOCK}{}", token())
}

/// `<host>-<pid>-<random>`: the host name (as a file name: other bytes
/// become `_`), the process id and 64 random bits, fresh on every call.
fn token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
        .collect();
    let mut random = [0u8; 8];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut random));
    let mut bits = u64::from_le_bytes(random);
    if read.is_err() {
        // no /dev/urandom (a bare chroot): the time still differs between hosts
        bits ^= std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    }
    // distinct within this process even if the random bits repeated
    bits ^= COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(48);
    format!(
        "{}-{}-{bits:016x}",
        if host.is_empty() { "host" } else { &host },
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn every_name_is_recognised_and_fresh() {
        assert!(is_key(KEY));
        assert!(!is_key(&KEY[1..]) && !is_key(&KEY.to_uppercase()) && !is_key("lost+found"));
        assert_eq!(classify(KEY), Name::Entry);
        assert_eq!(classify(&temp(KEY)), Name::Temp);
        assert_eq!(classify(&trash()), Name::Trash);
        assert_eq!(classify(&clock()), Name::Clock);
        assert_eq!(classify(&lease(KEY)), Name::Lease { key: KEY });
        assert_eq!(classify(".modsync-lease-notakey.x"), Name::Foreign);
        assert_eq!(classify("README"), Name::Foreign);
        assert_ne!(temp(KEY), temp(KEY));
        assert_ne!(lease(KEY), lease(KEY));
        let t = trash();
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert!(
            t.contains(&format!("-{}-", std::process::id())) && t.contains(&host.trim().replace('.', "_")),
            "{t}"
        );
        assert!(temp(KEY).len() < 255);
    }
}
