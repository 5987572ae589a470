//! The web dashboard, served by the daemon on TCP when asked (`bm2 dashboard`, or `[dashboard]`
//! in config.toml): a page, the REST API and a WebSocket on one port, and the read-only
//! Prometheus endpoint on another. Everything but the page itself needs the access token.

mod auth;
mod page;
mod rest;
pub mod token;
mod ws;

use bm2_types::ErrorCode;
use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{from_fn_with_state, map_response};
use axum::response::Response;
use axum::routing::{get, post};
use bm2_types::{ApiError, DashboardInfo, DashboardOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::api::{self, AppState, Failure};

pub use auth::Guard;

/// The dashboard of a daemon: stopped, or running with its listeners.
#[derive(Debug, Default)]
pub struct Web {
    running: tokio::sync::Mutex<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    info: DashboardInfo,
    stop: watch::Sender<bool>,
    servers: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops accepting at once, lets open requests finish for a moment, then drops the servers
    /// (a client that holds a request open does not hold up the daemon).
    async fn shut(self) {
        let _ = self.stop.send(true);
        for mut s in self.servers {
            if tokio::time::timeout(SHUTDOWN_GRACE, &mut s).await.is_err() {
                s.abort();
            }
        }
    }
}

/// How long open requests may take to finish when the dashboard stops.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl Web {
    /// Starts the dashboard with `opts` (restarting it when it runs); returns its addresses.
    pub async fn start(
        &self,
        opts: DashboardOptions,
        state: AppState,
    ) -> Result<DashboardInfo, ApiError> {
        let mut running = self.running.lock().await;
        let Some(previous) = running.take() else {
            let r = launch(&opts, &state).await?;
            let info = r.info.clone();
            *running = Some(r);
            return Ok(info);
        };
        // The new ports are bound before the old dashboard stops; when they are the old ones,
        // the old one stops first, and comes back if the new one cannot start.
        let launched = if let Ok(r) = launch(&opts, &state).await {
            previous.shut().await;
            Ok(r)
        } else {
            let old = previous.info.options.clone();
            previous.shut().await;
            match launch(&opts, &state).await {
                Ok(r) => Ok(r),
                Err(e) => {
                    match launch(&old, &state).await {
                        Ok(r) => *running = Some(r),
                        Err(again) => {
                            tracing::warn!(error = %again, "the previous dashboard could not be restored");
                        }
                    }
                    Err(e)
                }
            }
        };
        let r = launched?;
        let info = r.info.clone();
        *running = Some(r);
        Ok(info)
    }

    /// The options of the running dashboard.
    pub async fn options(&self) -> Option<DashboardOptions> {
        self.running
            .lock()
            .await
            .as_ref()
            .map(|r| r.info.options.clone())
    }

    /// Stops the dashboard; true when it was running.
    pub async fn stop(&self) -> bool {
        let Some(r) = self.running.lock().await.take() else {
            return false;
        };
        r.shut().await;
        tracing::info!("dashboard stopped");
        true
    }

    /// The running dashboard's addresses.
    pub async fn info(&self) -> Option<DashboardInfo> {
        self.running.lock().await.as_ref().map(|r| r.info.clone())
    }
}

/// Binds the dashboard's two ports and starts serving them.
async fn launch(opts: &DashboardOptions, state: &AppState) -> Result<Running, ApiError> {
    let ip: IpAddr = opts.host.parse().map_err(|_| {
        ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "--host {:?} is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)",
                opts.host
            ),
        )
    })?;
    let path = state.manager.home().dashboard_token();
    let token = token::load_or_create(&path).map_err(|e| {
        ApiError::new(
            ErrorCode::IoError,
            format!("cannot create the access token {}: {e}", path.display()),
        )
    })?;
    let bind = |port: u16, what: &'static str| async move {
        TcpListener::bind(SocketAddr::new(ip, port))
            .await
            .map_err(|e| {
                ApiError::new(
                    ErrorCode::ListenFailed,
                    format!(
                        "the {what} cannot listen on {}: {e}",
                        SocketAddr::new(ip, port)
                    ),
                )
            })
    };
    let web_listener = bind(opts.port, "dashboard").await?;
    let metrics_listener = bind(opts.metrics_port, "Prometheus endpoint").await?;
    let web_addr = web_listener.local_addr().map_err(|e| io_error(&e))?;
    let metrics_addr = metrics_listener.local_addr().map_err(|e| io_error(&e))?;
    let (stop, stopped) = watch::channel(false);
    let guard = Guard::new(
        token.clone(),
        opts.public_read,
        web_addr.port(),
        ip.is_loopback(),
    );
    if opts.max_sessions == 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "max_sessions must be at least 1 (the dashboard page needs a WebSocket session)",
        ));
    }
    let sessions = ws::Sessions::new(opts.max_sessions as usize);
    let web = dashboard_router(state.clone(), guard, stopped.clone(), sessions);
    let metrics = metrics_router(state.clone());
    let servers = vec![
        serve(web_listener, web, stopped.clone()),
        serve(metrics_listener, metrics, stopped),
    ];
    let shown = |addr: SocketAddr| match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => {
            SocketAddr::new([127, 0, 0, 1].into(), addr.port())
        }
        IpAddr::V6(v6) if v6.is_unspecified() => {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    };
    let warning = (!ip.is_loopback()).then(|| {
        format!(
            "the dashboard listens on {ip}, reachable from other machines over plain HTTP: the \
             token and everything shown travel unencrypted. Put a TLS reverse proxy in front \
             of it, or listen on 127.0.0.1 and use an SSH tunnel."
        )
    });
    if let Some(w) = &warning {
        tracing::warn!("{w}");
    }
    let info = DashboardInfo {
        url: format!("http://{}/?token={token}", shown(web_addr)),
        metrics_url: format!("http://{}/metrics", shown(metrics_addr)),
        options: DashboardOptions {
            port: web_addr.port(),
            metrics_port: metrics_addr.port(),
            ..opts.clone()
        },
        warning,
    };
    tracing::info!(dashboard = %shown(web_addr), metrics = %shown(metrics_addr), "dashboard started");
    Ok(Running {
        info,
        stop,
        servers,
    })
}

fn io_error(e: &std::io::Error) -> ApiError {
    ApiError::new(ErrorCode::IoError, e.to_string())
}

/// Serves `app` on `listener` until `stopped` turns true.
fn serve(
    listener: TcpListener,
    app: Router,
    mut stopped: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(error = %e, "dashboard server failed");
        }
    })
}

/// The dashboard's port: the page, the REST API, the WebSocket and the CLI's `/v1` routes.
fn dashboard_router(
    state: AppState,
    guard: Guard,
    stopped: watch::Receiver<bool>,
    sessions: ws::Sessions,
) -> Router {
    let public = Router::new()
        .route("/", get(page::index))
        .route("/assets/app.js", get(page::script))
        .route("/assets/app.css", get(page::style))
        .route("/api/openapi.json", get(page::openapi))
        .route_layer(axum::Extension(guard.clone()));
    let read = Router::new()
        .route("/api/processes", get(api::processes::list))
        .route("/api/metrics", get(api::metrics::snapshot))
        .route("/api/metrics/history", get(api::metrics::history))
        .route("/api/prometheus", get(api::metrics::prometheus))
        .route("/metrics", get(api::metrics::prometheus))
        .route_layer(from_fn_with_state(guard.clone(), auth::read));
    // Environments and log lines may hold secrets: the token, even with --public-read.
    let private = Router::new()
        .route("/api/processes/{target}", get(rest::detail))
        .route("/api/logs", get(rest::logs))
        .route_layer(from_fn_with_state(guard.clone(), auth::private));
    let write = Router::new()
        .route("/api/restart", post(rest::restart))
        .route("/api/stop", post(rest::stop))
        .route("/api/reload", post(rest::reload))
        .route("/api/delete", post(rest::delete))
        .route("/api/scale", post(rest::scale))
        .route("/api/flush", post(rest::flush))
        .route("/ws", get(ws::upgrade))
        .merge(api::routes())
        .route_layer(axum::Extension(stopped))
        .route_layer(axum::Extension(sessions))
        .route_layer(from_fn_with_state(guard.clone(), auth::write));
    let host_guard = guard;
    public
        .merge(read)
        .merge(private)
        .merge(write)
        .fallback(api::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(map_response(security_headers))
        .layer(map_response(api::add_version))
        .layer(from_fn_with_state(host_guard, auth::host))
        .with_state(state)
}

/// The Prometheus port: `/metrics` only, read-only.
fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(api::metrics::prometheus))
        .fallback(api::not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn method_not_allowed() -> Failure {
    Failure(ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not take that method (GET reads, POST acts)",
    ))
}

/// Headers every dashboard response carries: no framing (clickjacking), no MIME sniffing, no
/// referrer (the page's URL may carry the token).
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("same-origin"),
    );
    res
}
