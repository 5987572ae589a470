//! bm2: a production process manager. One binary: the CLI, and the daemon (`bm2 daemon`).

mod cli;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    if let cli::Cmd::Daemon = args.cmd {
        return cli::daemon::run_daemon();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("[bm2] error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(code) => code,
        Err(e) => {
            render::error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}
