#![no_main]

use libfuzzer_sys::fuzz_target;

// The invariants are checked in modsync_fuzz (tests/fuzz/src/lib.rs).
fuzz_target!(|data: &[u8]| {
    let _ = modsync_fuzz::settings_toml(data);
});
