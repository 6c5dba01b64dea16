//! Small helpers every layer uses: file system operations with context
//! ([`fs`]), running commands with context ([`cmd`]), the one validation
//! of names that become paths ([`names`]), compressed streams
//! ([`compress`]) and the hardened extraction of untrusted tar archives
//! ([`untar`]).

pub mod cmd;
pub mod compress;
pub mod fs;
pub mod names;
pub mod untar;
