//! modsync's entry point: parse the command line (the same whether invoked
//! as `modsync` or as `dkms`), set up logging, run, exit with dkms's codes.

use clap::Parser;

fn main() {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let as_dkms = std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("dkms"));
    let cli = modsync::cli::Cli::parse();
    let level = if cli.common.verbose || cli.common.debug {
        "info"
    } else {
        "warn"
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .format_target(false)
        .init();
    std::process::exit(modsync::cli::dispatch::run(cli, as_dkms));
}
