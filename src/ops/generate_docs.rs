//! `modsync generate-docs DIR` (hidden; run by the packaging right after
//! `cargo build`): writes the man pages and the shell completions that
//! [`crate::cli::manual`] renders from the clap definitions, in the layout
//! the packages install:
//!
//! ```text
//! DIR/man/modsync.8, DIR/man/dkms.8
//! DIR/bash/modsync, DIR/bash/dkms
//! DIR/zsh/_modsync, DIR/zsh/_dkms
//! DIR/fish/modsync.fish, DIR/fish/dkms.fish
//! ```

use crate::cli::manual::{self, NAMES, SHELLS};
use anyhow::{Context, Result};
use clap_complete::Shell;
use std::path::{Path, PathBuf};

/// The file of `shell`'s completion for `name`, relative to DIR.
fn completion_file(shell: Shell, name: &str) -> PathBuf {
    match shell {
        Shell::Zsh => PathBuf::from(format!("zsh/_{name}")),
        Shell::Fish => PathBuf::from(format!("fish/{name}.fish")),
        _ => PathBuf::from(format!("{shell}/{name}")),
    }
}

fn write(dir: &Path, rel: &Path, data: &[u8]) -> Result<()> {
    let path = dir.join(rel);
    let parent = path.parent().expect("a file under DIR");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    std::fs::write(&path, data).with_context(|| format!("writing {}", path.display()))
}

/// Writes every page and completion under `dir`.
pub fn run(dir: &Path) -> Result<()> {
    for name in NAMES {
        write(dir, &PathBuf::from(format!("man/{name}.8")), &manual::man_page(name))?;
        for shell in SHELLS {
            write(dir, &completion_file(shell, name), &manual::completion(shell, name))?;
        }
    }
    Ok(())
}
