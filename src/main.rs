//! modsync's entry point: parse the command line (the same whether invoked
//! as `modsync` or as `dkms`), set up logging, run, print the error chain,
//! exit with dkms's exit codes.

use clap::Parser;

fn silence() {
    // SAFETY: plain fd operations on our own process.
    unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if fd >= 0 {
            libc::dup2(fd, 1);
            libc::dup2(fd, 2);
            libc::close(fd);
        }
    }
}

fn main() {
    let cli = modsync::cli::Cli::parse();
    let level = if cli.common.verbose { "info" } else { "warn" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .format_target(false)
        .init();
    if cli.common.quiet {
        silence();
    }
    let code = match modsync::engine::commands::run(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("\nError! {e:#}");
            modsync::error::exit_code(&e)
        }
    };
    std::process::exit(code);
}
