//! modsync: rebuilds out-of-tree kernel modules for every kernel, a drop-in
//! replacement for DKMS. The library holds the whole engine; `main.rs` only
//! parses the command line and reports errors.

pub mod build;
pub mod cli;
pub mod config;
pub mod engine;
pub mod error;
pub mod hook;
pub mod install;
pub mod kernel;
pub mod secureboot;
pub mod state;
