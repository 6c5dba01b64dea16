//! Small helpers every layer uses: file system operations with context
//! ([`fs`]), running commands with context ([`cmd`]) and the one validation
//! of names that become paths ([`names`]).

pub mod cmd;
pub mod fs;
pub mod names;
