//! `bm2 mcp`: a Model Context Protocol server, so that AI agents (Claude Code, Claude Desktop,
//! Cursor, VS Code...) can see and run the apps bm2 manages. Over stdio (one client, the
//! process that started it) or streamable HTTP (bearer token, loopback by default).

mod guard;
mod resources;
mod token;
mod tools;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use bm2_client::Client;
use clap::{Args, Subcommand, ValueEnum};
use rmcp::ServiceExt as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

pub use tools::Bm2Mcp;

/// Options of `bm2 mcp`.
#[derive(Debug, Args)]
#[allow(clippy::doc_markdown)] // doc comments are the --help text
pub struct McpArgs {
    #[command(subcommand)]
    pub cmd: Option<McpCmd>,
    /// How clients connect: stdio (the client starts `bm2 mcp`) or http (streamable HTTP)
    #[arg(long, env = "BM2_MCP_TRANSPORT", value_enum, default_value_t = Transport::Stdio)]
    pub transport: Transport,
    /// HTTP: the address to listen on (a non-loopback address needs --allow-remote)
    #[arg(long, env = "BM2_MCP_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// HTTP: the port to listen on
    #[arg(long, env = "BM2_MCP_PORT", default_value_t = 8849)]
    pub port: u16,
    /// HTTP: the path of the MCP endpoint
    #[arg(long, env = "BM2_MCP_PATH", default_value = "/mcp")]
    pub path: String,
    /// Offer only the tools that change nothing (list, describe, logs, metrics, env, health)
    #[arg(long, env = "BM2_MCP_READ_ONLY", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub read_only: bool,
    /// HTTP: allow listening on a non-loopback address (anyone who reaches it and has the
    /// token controls your apps)
    #[arg(long)]
    pub allow_remote: bool,
    /// HTTP: Host header values accepted besides the loopback names and the bound address
    /// (comma-separated, `name` or `name:port`)
    #[arg(
        long,
        env = "BM2_MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        value_name = "HOSTS"
    )]
    pub allowed_hosts: Vec<String>,
    /// HTTP: browser origins accepted besides http://localhost:<port> and the loopback
    /// addresses (comma-separated, `scheme://host:port`)
    #[arg(
        long,
        env = "BM2_MCP_ALLOWED_ORIGINS",
        value_delimiter = ',',
        value_name = "ORIGINS"
    )]
    pub allowed_origins: Vec<String>,
}

/// Subcommands of `bm2 mcp`.
#[derive(Debug, Subcommand)]
#[allow(clippy::doc_markdown)] // doc comments are the --help text
pub enum McpCmd {
    /// Print the HTTP transport's bearer token (made on first use, in $BM2_HOME/mcp.token)
    Token,
}

/// The transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// JSON-RPC over stdin/stdout
    Stdio,
    /// Streamable HTTP (POST JSON-RPC, GET server-sent events, DELETE the session)
    Http,
}

/// Runs `bm2 mcp`.
pub async fn run(client: Client, args: McpArgs) -> anyhow::Result<ExitCode> {
    if let Some(McpCmd::Token) = args.cmd {
        println!("{}", token::load_or_create(client.home())?);
        return Ok(ExitCode::SUCCESS);
    }
    let server = Bm2Mcp::new(Arc::new(client), args.read_only);
    match args.transport {
        Transport::Stdio => stdio(server).await,
        Transport::Http => http(server, &args).await,
    }
}

/// Serves the client on stdin/stdout until it closes them. Nothing else is written to stdout.
async fn stdio(server: Bm2Mcp) -> anyhow::Result<ExitCode> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP session did not start")?;
    running.waiting().await.context("the MCP session failed")?;
    Ok(ExitCode::SUCCESS)
}

/// Serves streamable HTTP until SIGINT or SIGTERM.
async fn http(server: Bm2Mcp, args: &McpArgs) -> anyhow::Result<ExitCode> {
    if !guard::is_loopback(&args.host) && !args.allow_remote {
        bail!(
            "--host {} is not a loopback address: anyone who reaches it could try the token; add --allow-remote to listen there anyway (and put TLS in front)",
            args.host
        );
    }
    if !args.path.starts_with('/') || args.path.len() < 2 {
        bail!("--path {:?}: give a path such as /mcp", args.path);
    }
    let token = token::load_or_create(server.client().home())?;
    let guard = Arc::new(guard::Guard::new(
        token,
        &args.host,
        args.port,
        &args.allowed_hosts,
        &args.allowed_origins,
    ));
    // The guard checks Host and Origin with bm2's own lists, before rmcp sees the request.
    let config = StreamableHttpServerConfig::default().disable_allowed_hosts();
    let cancel = config.cancellation_token.clone();
    let service = StreamableHttpService::new(
        move || Ok(server.fresh()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new()
        .nest_service(&args.path, service)
        .layer(axum::middleware::from_fn_with_state(guard, guard::layer));
    let bind = guard::authority(&args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    let local = listener.local_addr()?;
    eprintln!(
        "[bm2] MCP server on http://{local}{} (Authorization: Bearer $(bm2 mcp token)){}",
        args.path,
        if args.read_only { ", read-only" } else { "" }
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            cancel.cancel();
        })
        .await
        .context("the HTTP server failed")?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        mcp: McpArgs,
    }

    #[test]
    fn flags_and_defaults_parse() {
        let a = Cli::try_parse_from(["bm2"]).unwrap().mcp;
        assert_eq!(a.transport, Transport::Stdio);
        assert_eq!(
            (a.host.as_str(), a.port, a.path.as_str()),
            ("127.0.0.1", 8849, "/mcp")
        );
        assert!(!a.read_only && !a.allow_remote && a.cmd.is_none());
        let a = Cli::try_parse_from([
            "bm2",
            "--transport",
            "http",
            "--port",
            "9000",
            "--read-only",
            "--allowed-hosts",
            "a.example,b.example:80",
            "--allowed-origins",
            "https://x.example",
        ])
        .unwrap()
        .mcp;
        assert_eq!(a.transport, Transport::Http);
        assert_eq!(a.port, 9000);
        assert!(a.read_only);
        assert_eq!(a.allowed_hosts, ["a.example", "b.example:80"]);
        assert_eq!(a.allowed_origins, ["https://x.example"]);
        let a = Cli::try_parse_from(["bm2", "token"]).unwrap().mcp;
        assert!(matches!(a.cmd, Some(McpCmd::Token)));
        assert!(Cli::try_parse_from(["bm2", "--transport", "smoke"]).is_err());
    }
}
