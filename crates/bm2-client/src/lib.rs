//! Typed client of the bm2 daemon, over its Unix socket. This is bm2's Rust programmatic API:
//! the CLI is built on it. Every call is one HTTP request to `$BM2_HOME/daemon.sock` (see
//! docs/api.md for the routes); errors from the daemon come back as [`ClientError::Api`] with
//! the daemon's code, message and hint.
//!
//! Listing processes, starting the daemon first when none runs:
//!
//! ```no_run
//! # async fn demo() -> Result<(), bm2_client::ClientError> {
//! use bm2_client::Client;
//! let client = Client::new(bm2_types::Home::from_env().unwrap()).with_daemon_exe("bm2".into());
//! for p in client.list().await? {
//!     println!("{} {}", p.instance_name, p.status.as_str());
//! }
//! # Ok(()) }
//! ```
//!
//! Starting an app from its options, as an ecosystem file writes them (PM2's or BM2's
//! spellings; the daemon resolves them), then restarting it and reading the error of an
//! unknown target:
//!
//! ```no_run
//! # async fn demo() -> Result<(), bm2_client::ClientError> {
//! use bm2_client::{Client, ClientError};
//! use bm2_types::{ErrorCode, StartOptionsRequest};
//!
//! let client = Client::new(bm2_types::Home::from_env().unwrap()).with_daemon_exe("bm2".into());
//! let started = client
//!     .start_options(&StartOptionsRequest {
//!         apps: vec![serde_json::json!({ "name": "api", "script": "server.js", "instances": 2 })],
//!         cwd: std::env::current_dir().unwrap(),
//!         client_env: std::env::vars().collect(),
//!         env_name: None,
//!         force: false,
//!         if_exists: Default::default(),
//!     })
//!     .await?;
//! println!("{} processes", started.processes.len());
//! client.restart(vec!["api".into()]).await?;
//! match client.restart(vec!["nope".into()]).await {
//!     Err(ClientError::Api(e)) if e.code == ErrorCode::UnknownTarget => println!("{}", e.message),
//!     other => println!("{other:?}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Following lifecycle events, app messages and log lines (see [`Client::events`]).

mod daemon;
mod stream;

pub use daemon::{EXIT_ALREADY_RUNNING, lock_holder};

use bm2_types::ErrorCode;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use bm2_types::{
    ActionResponse, ApiError, DashboardInfo, DashboardOptions, DescribeResponse, EnvKeyRequest,
    EnvSetRequest, EnvStoreResponse, Home, LogEvent, LogFilesResponse, LogsRequest, MetricsHistory,
    MetricsSnapshot, PingResponse, ProcDetail, ProcId, ProcSummary, ReloadRequest, RestartRequest,
    ResurrectRequest, SaveResponse, ScaleRequest, SignalRequest, StartRequest, StopRequest,
    TargetRequest,
};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixStream;

use stream::Socket;

/// Why a call to the daemon failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon is listening and none may be started.
    #[error("the bm2 daemon is not running (no socket at {0})")]
    NotRunning(PathBuf),
    /// The daemon could not be started.
    #[error("could not start the bm2 daemon: {0}")]
    StartFailed(String),
    /// The connection failed.
    #[error("talking to the daemon at {path}: {message}")]
    Transport {
        /// Socket path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The daemon refused the request.
    #[error("{0}")]
    Api(ApiError),
}

/// A connection factory to one daemon.
#[derive(Debug)]
pub struct Client {
    home: Home,
    daemon_exe: Option<PathBuf>,
    warned: AtomicBool,
}

impl Client {
    /// A client of the daemon of `home`; it does not start a daemon unless told how.
    pub fn new(home: Home) -> Client {
        Client {
            home,
            daemon_exe: None,
            warned: AtomicBool::new(false),
        }
    }

    /// Starts the daemon with `exe daemon` when none is running.
    #[must_use]
    pub fn with_daemon_exe(mut self, exe: PathBuf) -> Client {
        self.daemon_exe = Some(exe);
        self
    }

    /// The home directory of the daemon.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Pid, version and uptime of the daemon.
    pub async fn ping(&self) -> Result<PingResponse, ClientError> {
        self.call(Method::GET, "/v1/ping", None::<&()>).await
    }

    /// The process list.
    pub async fn list(&self) -> Result<Vec<ProcSummary>, ClientError> {
        self.call(Method::GET, "/v1/processes", None::<&()>).await
    }

    /// Every process in detail.
    pub async fn details(&self) -> Result<Vec<ProcDetail>, ClientError> {
        self.call(Method::GET, "/v1/processes/details", None::<&()>)
            .await
    }

    /// The processes named by `targets`, in detail.
    pub async fn describe(&self, targets: Vec<String>) -> Result<DescribeResponse, ClientError> {
        self.call(
            Method::POST,
            "/v1/describe",
            Some(&TargetRequest { targets }),
        )
        .await
    }

    /// Registers and starts apps.
    pub async fn start(&self, req: &StartRequest) -> Result<ActionResponse, ClientError> {
        self.call(Method::POST, "/v1/start", Some(req)).await
    }

    /// Stops processes.
    pub async fn stop(&self, targets: Vec<String>) -> Result<ActionResponse, ClientError> {
        self.stop_with(&StopRequest {
            targets,
            stop_watching: false,
        })
        .await
    }

    /// Stops processes, optionally turning their file watching off (`--watch`).
    pub async fn stop_with(&self, req: &StopRequest) -> Result<ActionResponse, ClientError> {
        self.call(Method::POST, "/v1/stop", Some(req)).await
    }

    /// Restarts processes.
    pub async fn restart(&self, targets: Vec<String>) -> Result<ActionResponse, ClientError> {
        self.restart_with(&RestartRequest {
            targets,
            ..RestartRequest::default()
        })
        .await
    }

    /// Restarts processes, optionally recomputing their environment (`--update-env`).
    pub async fn restart_with(&self, req: &RestartRequest) -> Result<ActionResponse, ClientError> {
        self.call(Method::POST, "/v1/restart", Some(req)).await
    }

    /// Reloads processes without downtime, `parallel` instances at a time.
    pub async fn reload(&self, req: &ReloadRequest) -> Result<ActionResponse, ClientError> {
        self.call(Method::POST, "/v1/reload", Some(req)).await
    }

    /// Sets the number of instances of an app: `N`, `+N` or `-N`.
    pub async fn scale(&self, app: &str, instances: &str) -> Result<ActionResponse, ClientError> {
        let req = ScaleRequest {
            app: app.into(),
            instances: instances.into(),
        };
        self.call(Method::POST, "/v1/scale", Some(&req)).await
    }

    /// Stops and forgets processes.
    pub async fn delete(&self, targets: Vec<String>) -> Result<ActionResponse, ClientError> {
        self.targets("/v1/delete", targets).await
    }

    /// Stops and forgets processes, keeping their log files with `keep_logs`.
    pub async fn delete_with(
        &self,
        req: &bm2_types::DeleteRequest,
    ) -> Result<ActionResponse, ClientError> {
        self.call(Method::POST, "/v1/delete", Some(req)).await
    }

    /// Zeroes restart counters.
    pub async fn reset(&self, targets: Vec<String>) -> Result<ActionResponse, ClientError> {
        self.targets("/v1/reset", targets).await
    }

    /// Sends a signal to processes.
    pub async fn signal(
        &self,
        targets: Vec<String>,
        signal: bm2_types::Signal,
    ) -> Result<ActionResponse, ClientError> {
        let req = SignalRequest { targets, signal };
        self.call(Method::POST, "/v1/signal", Some(&req)).await
    }

    /// Writes `line` (and a newline) to the stdin of processes.
    pub async fn send_line(
        &self,
        targets: Vec<String>,
        line: String,
    ) -> Result<ActionResponse, ClientError> {
        let req = bm2_types::SendRequest { targets, line };
        self.call(Method::POST, "/v1/send", Some(&req)).await
    }

    /// Writes the dump file.
    pub async fn save(&self) -> Result<SaveResponse, ClientError> {
        self.call(Method::POST, "/v1/save", None::<&()>).await
    }

    /// Hands the daemon over to the bm2 binary `exe` in place (`bm2 update`): apps keep
    /// running; the answer comes from the new daemon.
    pub async fn update(
        &self,
        exe: &std::path::Path,
    ) -> Result<bm2_types::UpdateResponse, ClientError> {
        let req = bm2_types::UpdateRequest {
            exe: exe.to_path_buf(),
        };
        self.call(Method::POST, "/v1/update", Some(&req)).await
    }

    /// Restores the dump file.
    pub async fn resurrect(&self, req: &ResurrectRequest) -> Result<ActionResponse, ClientError> {
        self.call(Method::POST, "/v1/resurrect", Some(req)).await
    }

    /// Sets a variable of `app` in the env store (applied at its next start).
    pub async fn env_set(
        &self,
        app: &str,
        key: &str,
        value: &str,
    ) -> Result<EnvStoreResponse, ClientError> {
        let req = EnvSetRequest {
            app: app.into(),
            key: key.into(),
            value: value.into(),
        };
        self.call(Method::POST, "/v1/env/set", Some(&req)).await
    }

    /// The env store's variables of `app`.
    pub async fn env_get(&self, app: &str) -> Result<EnvStoreResponse, ClientError> {
        let req = EnvKeyRequest {
            app: app.into(),
            key: None,
        };
        self.call(Method::POST, "/v1/env/get", Some(&req)).await
    }

    /// Deletes one (or every) env store variable of `app`.
    pub async fn env_delete(
        &self,
        app: &str,
        key: Option<&str>,
    ) -> Result<EnvStoreResponse, ClientError> {
        let req = EnvKeyRequest {
            app: app.into(),
            key: key.map(Into::into),
        };
        self.call(Method::POST, "/v1/env/delete", Some(&req)).await
    }

    /// Stops every process and the daemon. Fails with [`ClientError::NotRunning`] when no
    /// daemon runs (it never starts one).
    pub async fn kill(&self) -> Result<PingResponse, ClientError> {
        let stream = self.connect_existing().await?;
        self.exchange(stream, Method::POST, "/v1/kill", None::<&()>)
            .await
    }

    /// Recent lines of apps' logs and, with `follow`, new lines as they are written.
    pub async fn logs(&self, req: &LogsRequest) -> Result<LogStream, ClientError> {
        let stream = self.connect().await?;
        let res = self
            .send(stream, Method::POST, "/v1/logs", Some(req))
            .await?;
        Ok(LogStream::new(res.into_body()))
    }

    /// Follows the event stream: lifecycle events, app messages and (with `req.logs`) log
    /// lines, starting with [`bm2_types::BusEvent::Subscribed`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), bm2_client::ClientError> {
    /// use bm2_client::Client;
    /// use bm2_types::{BusEvent, EventsRequest, Home};
    ///
    /// let client = Client::new(Home::from_env().expect("a home"));
    /// let mut events = client.events(&EventsRequest { logs: true, targets: vec![] }).await?;
    /// while let Some(event) = events.next().await {
    ///     if let BusEvent::Process { event, process, .. } = event? {
    ///         println!("{} {:?}", process.name, event);
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn events(&self, req: &bm2_types::EventsRequest) -> Result<EventStream, ClientError> {
        let stream = self.connect().await?;
        let res = self
            .send(stream, Method::POST, "/v1/events", Some(req))
            .await?;
        Ok(EventStream::new(res.into_body()))
    }

    /// Sends `data` to the processes of `targets` over their IPC channel (PM2's
    /// `sendDataToProcessId`).
    pub async fn send_data(
        &self,
        req: &bm2_types::SendDataRequest,
    ) -> Result<ActionResponse, ClientError> {
        self.call(Method::POST, "/v1/send-data", Some(req)).await
    }

    /// Starts apps from their options as an ecosystem file writes them; the daemon resolves
    /// them (see [`bm2_types::StartOptionsRequest`]).
    pub async fn start_options(
        &self,
        req: &bm2_types::StartOptionsRequest,
    ) -> Result<ActionResponse, ClientError> {
        self.call(Method::POST, "/v1/start-options", Some(req))
            .await
    }

    /// Empties the log files of `targets` (all apps when empty).
    pub async fn flush(&self, targets: Vec<String>) -> Result<LogFilesResponse, ClientError> {
        self.call(Method::POST, "/v1/flush", Some(&TargetRequest { targets }))
            .await
    }

    /// Reopens every log file.
    pub async fn reload_logs(&self) -> Result<LogFilesResponse, ClientError> {
        self.call(Method::POST, "/v1/reload-logs", None::<&()>)
            .await
    }

    /// Every process's and the machine's figures now.
    pub async fn metrics(&self) -> Result<MetricsSnapshot, ClientError> {
        self.call(Method::GET, "/v1/metrics", None::<&()>).await
    }

    /// The samples of the last `seconds` (1 to 3600), of every process or only the one with id
    /// `only`.
    pub async fn metrics_history(
        &self,
        seconds: u64,
        only: Option<ProcId>,
    ) -> Result<MetricsHistory, ClientError> {
        let path = match only {
            Some(id) => format!("/v1/metrics/history?seconds={seconds}&id={id}"),
            None => format!("/v1/metrics/history?seconds={seconds}"),
        };
        self.call(Method::GET, &path, None::<&()>).await
    }

    /// Starts the web dashboard and the Prometheus endpoint (again, when they run).
    pub async fn dashboard_start(
        &self,
        opts: &DashboardOptions,
    ) -> Result<DashboardInfo, ClientError> {
        self.call(Method::POST, "/v1/dashboard/start", Some(opts))
            .await
    }

    /// Stops the web dashboard; true when it was running.
    pub async fn dashboard_stop(&self) -> Result<bool, ClientError> {
        self.call(Method::POST, "/v1/dashboard/stop", None::<&()>)
            .await
    }

    /// The running dashboard's addresses, if it runs.
    pub async fn dashboard(&self) -> Result<Option<DashboardInfo>, ClientError> {
        self.call(Method::GET, "/v1/dashboard", None::<&()>).await
    }

    /// The metrics as Prometheus exposition text.
    pub async fn prometheus(&self) -> Result<String, ClientError> {
        let stream = self.connect().await?;
        let res = self
            .send(stream, Method::GET, "/v1/prometheus", None::<&()>)
            .await?;
        let body = self.read_body(res).await?;
        String::from_utf8(body.to_vec()).map_err(|e| self.transport(format!("bad response: {e}")))
    }

    async fn targets(
        &self,
        path: &str,
        targets: Vec<String>,
    ) -> Result<ActionResponse, ClientError> {
        self.call(Method::POST, path, Some(&TargetRequest { targets }))
            .await
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        // A read may meet a daemon that is going away (killed a moment ago, its socket still
        // held for an instant by a process it had just forked): the connection then breaks
        // before any answer. A read is asked again, of a new daemon if need be; a change is
        // never sent twice, since the daemon may have made it.
        let retries = if method == Method::GET { 3 } else { 0 };
        let mut attempt = 0;
        loop {
            let stream = self.connect().await?;
            match self.exchange(stream, method.clone(), path, body).await {
                Err(ClientError::Transport { .. }) if attempt < retries => {
                    attempt += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
                }
                result => return result,
            }
        }
    }

    /// A connection to the daemon, started first when allowed.
    async fn connect(&self) -> Result<Socket, ClientError> {
        match &self.daemon_exe {
            Some(exe) => daemon::connect_or_start(&self.home, exe).await.map(Socket),
            None => self.connect_existing().await,
        }
    }

    async fn connect_existing(&self) -> Result<Socket, ClientError> {
        UnixStream::connect(self.home.socket())
            .await
            .map(Socket)
            .map_err(|_| ClientError::NotRunning(self.home.socket()))
    }

    async fn exchange<B: Serialize, T: DeserializeOwned>(
        &self,
        stream: Socket,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let res = self.send(stream, method, path, body).await?;
        let body = self.read_body(res).await?;
        serde_json::from_slice(&body).map_err(|e| self.transport(format!("bad response: {e}")))
    }

    /// Sends a request; a non-success answer becomes [`ClientError::Api`].
    async fn send<B: Serialize>(
        &self,
        stream: Socket,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let bytes = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| self.transport(e.to_string()))?,
            None => Vec::new(),
        };
        if bytes.len() > bm2_types::MAX_REQUEST_BYTES {
            return Err(ClientError::Api(
                ApiError::new(
                    ErrorCode::TooLarge,
                    format!(
                        "this request is {} MiB, more than the daemon accepts ({} MiB)",
                        bytes.len() >> 20,
                        bm2_types::MAX_REQUEST_BYTES >> 20
                    ),
                )
                .with_hint("split the ecosystem file, or start its apps with --only in groups"),
            ));
        }
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| self.transport(e.to_string()))?;
        tokio::spawn(conn);
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(bytes)))
            .map_err(|e| self.transport(e.to_string()))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| self.transport(e.to_string()))?;
        self.check_version(res.headers());
        print_notices(res.headers());
        let status = res.status();
        if status.is_success() {
            return Ok(res);
        }
        let body = self.read_body(res).await?;
        let err = serde_json::from_slice::<ApiError>(&body).unwrap_or_else(|_| {
            ApiError::new(
                ErrorCode::Http,
                format!("{status}: {}", String::from_utf8_lossy(&body)),
            )
        });
        Err(ClientError::Api(err))
    }

    async fn read_body(&self, res: hyper::Response<Incoming>) -> Result<Bytes, ClientError> {
        Ok(res
            .into_body()
            .collect()
            .await
            .map_err(|e| self.transport(e.to_string()))?
            .to_bytes())
    }

    fn transport(&self, message: String) -> ClientError {
        ClientError::Transport {
            path: self.home.socket(),
            message,
        }
    }

    fn check_version(&self, headers: &hyper::HeaderMap) {
        let Some(theirs) = headers
            .get(bm2_types::VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        if theirs != bm2_types::VERSION && !self.warned.swap(true, Ordering::Relaxed) {
            let ours = bm2_types::VERSION;
            let which = match version_order(ours, theirs) {
                Some(std::cmp::Ordering::Greater) => "an older",
                Some(std::cmp::Ordering::Less) => "a newer",
                _ => "another",
            };
            eprintln!(
                "warning: this bm2 is version {ours}, and the daemon runs {which} version ({theirs}); run `bm2 update` to move the daemon to this binary"
            );
        }
    }
}

/// Prints the messages the daemon keeps for the user (once each) on stderr.
fn print_notices(headers: &hyper::HeaderMap) {
    for value in headers.get_all(bm2_types::NOTICE_HEADER) {
        let notices: Vec<String> = value
            .to_str()
            .ok()
            .and_then(|v| serde_json::from_str(v).ok())
            .unwrap_or_default();
        for n in notices {
            eprintln!("[bm2] warning: {n}");
        }
    }
}

/// A stream of JSON lines from the daemon (logs, events), one item at a time.
#[derive(Debug)]
pub struct NdjsonStream<T> {
    body: Incoming,
    buf: Vec<u8>,
    item: std::marker::PhantomData<fn() -> T>,
}

/// The lines of `bm2 logs`.
pub type LogStream = NdjsonStream<LogEvent>;

/// The events of `bm2 events`.
pub type EventStream = NdjsonStream<bm2_types::BusEvent>;

impl<T: DeserializeOwned> NdjsonStream<T> {
    fn new(body: Incoming) -> Self {
        NdjsonStream {
            body,
            buf: Vec::new(),
            item: std::marker::PhantomData,
        }
    }

    /// The next item; `None` when the daemon ends the stream.
    pub async fn next(&mut self) -> Option<Result<T, ClientError>> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line[..i]).map_err(|e| {
                    ClientError::Transport {
                        path: PathBuf::new(),
                        message: format!("bad line in a stream: {e}"),
                    }
                }));
            }
            match self.body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Err(e) => {
                    return Some(Err(ClientError::Transport {
                        path: PathBuf::new(),
                        message: e.to_string(),
                    }));
                }
            }
        }
    }
}

/// The order of two `major.minor.patch` versions (pre-release parts ignored); `None` when one
/// does not read as such.
fn version_order(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    let parse = |v: &str| -> Option<Vec<u64>> {
        v.split(['-', '+'])
            .next()?
            .split('.')
            .map(|n| n.parse().ok())
            .collect()
    };
    Some(parse(a)?.cmp(&parse(b)?))
}

#[cfg(test)]
mod version_tests {
    use super::version_order;
    use std::cmp::Ordering;

    #[test]
    fn versions_are_ordered_by_number() {
        assert_eq!(version_order("0.2.0", "0.1.9"), Some(Ordering::Greater));
        assert_eq!(version_order("0.10.0", "0.9.0"), Some(Ordering::Greater));
        assert_eq!(version_order("1.0.0-rc1", "1.0.1"), Some(Ordering::Less));
        assert_eq!(version_order("x", "1.0.0"), None);
    }
}
