//! modsync: rebuilds out-of-tree kernel modules for every kernel, a drop-in
//! replacement for DKMS. The direction of use is one way, from the top:
//!
//! - [`cli`]: the command line (clap) and its dkms meaning;
//! - [`hook`]: what package-manager hooks ask, and their failure policy;
//! - [`ops`]: one operation per verb, over one immutable context;
//! - [`plan`]: pure decisions from facts to jobs; [`run`]: the executor;
//! - [`package`]: native packages (deb, rpm, pacman) of built modules;
//! - [`build`], [`install`], [`sign`], [`cache`], [`scripts`]: the effects of one job;
//! - [`config`], [`state`], [`kernel`]: inputs (dkms.conf, settings, the tree, kernels);
//! - [`diagnose`]: why a build failed and what to do, from its make.log;
//! - [`sys`], [`ui`], [`error`]: helpers everything uses.

pub mod build;
pub mod cache;
pub mod cli;
pub mod config;
pub mod diagnose;
pub mod error;
pub mod guard;
pub mod hook;
pub mod install;
pub mod kernel;
pub mod ops;
pub mod package;
pub mod plan;
pub mod run;
pub mod scripts;
pub mod sign;
pub mod state;
pub mod sys;
pub mod ui;
