//! Configuration: a module's dkms.conf (evaluated by bash as dkms does, then
//! turned into a value by pure rules) or its shell-free modsync.toml
//! manifest, dkms's framework.conf and modsync's own config.toml.

pub mod command;
pub mod directives;
pub mod dkms_conf;
pub mod exclusive;
pub mod framework;
pub mod manifest;
pub mod records;
pub mod settings;
pub mod shell;
