//! bm2: a production process manager. One binary: the CLI, and the daemon (`bm2 daemon`).

mod cli;
mod render;
mod static_server;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Invoked as `pm2` (a symlink), bm2 is a drop-in: PM2_HOME and PM2's file names.
    let layout = std::env::args_os()
        .next()
        .map_or(bm2_types::Layout::Bm2, |a| {
            bm2_types::Layout::of_program(&a)
        });
    // Invoked as `bm2-runtime` (or `pm2-runtime`, with PM2's home), bm2 is a container's runtime.
    if let Some(layout) = runtime_layout() {
        return cli::runtime::main(layout, cli::runtime::RuntimeArgs::parse());
    }
    let args = cli::Cli::parse();
    match args.cmd {
        cli::Cmd::Runtime(runtime) => return cli::runtime::main(layout, *runtime),
        cli::Cmd::Start(start) if start.no_daemon => {
            return cli::runtime::main(layout, cli::runtime::RuntimeArgs::for_start(*start));
        }
        _ => {}
    }
    if let cli::Cmd::Daemon {
        resurrect,
        handover,
        handover_formats,
    } = args.cmd
    {
        if handover_formats {
            for format in bm2_daemon::handover::READABLE {
                println!("{format}");
            }
            return std::process::ExitCode::SUCCESS;
        }
        // The daemon keeps Rust's SIGPIPE disposition (ignored): a client that hangs up is an
        // EPIPE on its connection, never the daemon's death. Apps get the default back at exec.
        return cli::daemon::run_daemon(layout, resurrect, handover);
    }
    if let cli::Cmd::ServeFiles { args } = &args.cmd {
        // Like the daemon, the server keeps SIGPIPE ignored: a client that hangs up is an error
        // on its connection only.
        return static_server::run(args);
    }
    restore_sigpipe();
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
    match runtime.block_on(cli::run(args, layout)) {
        Ok(code) => code,
        Err(e) => {
            render::error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// The home layout when the program is called by a runtime name (`bm2-runtime`, `pm2-runtime`).
fn runtime_layout() -> Option<bm2_types::Layout> {
    let argv0 = std::env::args_os().next()?;
    match std::path::Path::new(&argv0).file_name()?.to_str()? {
        "bm2-runtime" => Some(bm2_types::Layout::Bm2),
        "pm2-runtime" => Some(bm2_types::Layout::Pm2),
        _ => None,
    }
}

/// Lets a closed pipe (`bm2 jlist | head`) end the CLI quietly, as it does other Unix tools,
/// instead of making every print fail. (The client's socket writes use `MSG_NOSIGNAL`, so a
/// daemon that goes away is reported, not a silent death.)
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL installs no handler.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
}
