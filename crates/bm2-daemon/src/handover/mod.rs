//! `bm2 update` in place: the daemon hands its apps over to a new bm2 binary by re-executing
//! itself (same pid, so it stays the parent of every app) with the descriptors it must keep
//! and a versioned state that says what each of them is.
//!
//! The steps, each undone if a later one fails before `execve`: the new binary is run once to
//! ask which state formats it reads (a binary that cannot run, or cannot read this format, is
//! refused before anything is touched); the API stops accepting (clients wait in the socket's
//! backlog); balancers stop accepting and park their connections, supervisors freeze their
//! instances and the log pumps stop between two reads ([`crate::ProcessManager::freeze`]); the
//! state file is written; the state goes into a memory file and the process re-executes itself
//! with `bm2 daemon --handover <fd>`. The new daemon takes everything back
//! ([`crate::ProcessManager::thaw`]) and answers the `update` request on the connection it was
//! handed.

pub mod fd;

use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bm2_types::{ApiError, ErrorCode};
use serde::{Deserialize, Serialize};

pub use fd::Fd;

use crate::cluster::FrozenHub;
use crate::logs::FrozenPump;
use crate::supervisor::frozen::FrozenInstance;

/// Version of the handover state's format. A binary reads only the formats it lists in
/// [`READABLE`]; the running daemon asks the new binary before it hands over.
pub const FORMAT: u32 = 1;

/// The handover formats this binary can take over from.
pub const READABLE: &[u32] = &[FORMAT];

/// How long the new binary may take to say which formats it reads.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// A request to hand over, from the API to the daemon's main loop.
#[derive(Debug)]
pub struct Request {
    /// The binary to run.
    pub exe: PathBuf,
    /// The connection of the request, answered by the new daemon.
    pub client: OwnedFd,
    /// The outcome when the daemon is still this one (the handover failed).
    pub done: tokio::sync::oneshot::Sender<ApiError>,
}

/// The raw descriptor of an API connection (its connect info), so that the `update` request
/// can be answered by the new daemon.
#[derive(Debug, Clone, Copy)]
pub struct ConnFd(pub std::os::fd::RawFd);

/// Signals that must not end the daemon between `execve` and the new daemon's handlers: they
/// are blocked across the exec and delivered once the new daemon listens for them.
fn held_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    set
}

/// Lets the signals held across the exec through (the new daemon listens for them now).
pub fn release_signals() {
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
        Some(&held_signals()),
        None,
    );
}

/// What a daemon freezes of its apps.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Frozen {
    /// Every instance.
    pub instances: Vec<FrozenInstance>,
    /// Every output pipe being read.
    pub pumps: Vec<FrozenPump>,
    /// The balancers and their connections.
    pub cluster: Option<FrozenHub>,
    /// The metrics history.
    pub metrics: Option<crate::metrics::History>,
}

/// Everything the new daemon takes over.
#[derive(Debug, Serialize, Deserialize)]
pub struct State {
    /// [`FORMAT`] of the writer.
    pub format: u32,
    /// Version of the daemon that handed over.
    pub from_version: String,
    /// How long the daemon has run, ms.
    pub uptime_ms: u64,
    /// Handovers before this one.
    pub handovers: u32,
    /// When the update was asked for, ms since the epoch.
    pub asked_at_ms: u64,
    /// The home's lock (held).
    pub lock: Fd,
    /// The API's listening socket.
    pub api: Fd,
    /// The connection of the `update` request, answered by the new daemon.
    pub client: Option<Fd>,
    /// The dashboard's options, when it runs (started again by the new daemon).
    pub dashboard: Option<bm2_types::DashboardOptions>,
    /// The apps.
    pub frozen: Frozen,
}

/// What the new daemon keeps of a [`State`] once it holds the lock and the API socket.
#[derive(Debug)]
pub struct Taken {
    /// Version of the daemon that handed over.
    pub from_version: String,
    /// How long the daemon has run, ms.
    pub uptime_ms: u64,
    /// Handovers before this one.
    pub handovers: u32,
    /// When the update was asked for, ms since the epoch.
    pub asked_at_ms: u64,
    /// The connection of the `update` request.
    pub client: Option<Fd>,
    /// The dashboard's options, when it ran.
    pub dashboard: Option<bm2_types::DashboardOptions>,
    /// The apps.
    pub frozen: Frozen,
}

impl State {
    /// The home's lock, the API socket, and the rest.
    pub fn split(self) -> (OwnedFd, OwnedFd, Taken) {
        let State {
            format: _,
            from_version,
            uptime_ms,
            handovers,
            asked_at_ms,
            lock,
            api,
            client,
            dashboard,
            frozen,
        } = self;
        let taken = Taken {
            from_version,
            uptime_ms,
            handovers,
            asked_at_ms,
            client,
            dashboard,
            frozen,
        };
        (lock.into_inner(), api.into_inner(), taken)
    }
}

/// Only the format, read first: a state of another format is not read further.
#[derive(Deserialize)]
struct Header {
    format: u32,
}

/// Runs `exe daemon --handover-formats` and checks that it reads this daemon's format.
/// `UpdateFailed` when it cannot be run or fails; `CannotTakeOver` when it runs but reads other
/// formats (or is a bm2 from before in-place updates).
pub async fn check_binary(
    exe: &Path,
    table: &crate::supervisor::spawn::ChildTable,
) -> Result<(), ApiError> {
    let failed = |why: String| {
        ApiError::new(
            ErrorCode::UpdateFailed,
            format!("cannot update to {}: {why}", exe.display()),
        )
        .with_hint("the daemon runs on unchanged; check the binary and run `bm2 update` again")
    };
    if !exe.is_absolute() {
        return Err(failed("the path is not absolute".into()));
    }
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(["daemon", "--handover-formats"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = table.spawn(&mut cmd).map_err(|e| failed(e.to_string()))?;
    let pid = child.id();
    let out = tokio::time::timeout(CHECK_TIMEOUT, child.wait_with_output()).await;
    if let Some(pid) = pid {
        table.forget(pid);
    }
    let out = out
        .map_err(|_| {
            failed(format!(
                "it did not answer within {} s",
                CHECK_TIMEOUT.as_secs()
            ))
        })?
        .map_err(|e| failed(e.to_string()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // A bm2 from before in-place updates does not know the question.
        if out.status.code() == Some(2) && stderr.contains("--handover-formats") {
            return Err(cannot_take_over(
                exe,
                "it is a bm2 without in-place updates",
            ));
        }
        let why = stderr.lines().last().unwrap_or("").trim();
        return Err(failed(format!(
            "it {} when run{}",
            describe_status(out.status),
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        )));
    }
    let formats: Vec<u32> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    if formats.contains(&FORMAT) {
        Ok(())
    } else {
        Err(cannot_take_over(
            exe,
            &format!("it reads handover formats {formats:?}, this daemon writes format {FORMAT}"),
        ))
    }
}

fn cannot_take_over(exe: &Path, why: &str) -> ApiError {
    ApiError::new(
        ErrorCode::CannotTakeOver,
        format!(
            "{} cannot take over this daemon in place: {why}",
            exe.display()
        ),
    )
}

fn describe_status(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (_, Some(s)) => format!("was killed by signal {s}"),
        _ => "failed".into(),
    }
}

/// The state written into a memory file, and the descriptors to keep open through exec (the
/// memory file's among them).
pub fn write(state: &State) -> std::io::Result<(OwnedFd, Vec<std::os::fd::RawFd>)> {
    let (json, mut fds) = fd::serialize(state).map_err(std::io::Error::other)?;
    let memfd =
        nix::sys::memfd::memfd_create(c"bm2-handover", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
    let mut file = std::fs::File::from(memfd);
    file.write_all(&json)?;
    file.rewind()?;
    let memfd = OwnedFd::from(file);
    fds.push(memfd.as_raw_fd());
    Ok((memfd, fds))
}

/// Why a handover state cannot be taken over.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// It cannot be read.
    #[error("cannot read the handover state: {0}")]
    Io(#[from] std::io::Error),
    /// It is of another format.
    #[error("the handover state is of format {0}; this bm2 reads {READABLE:?}")]
    Format(u32),
    /// It is not what this format says.
    #[error("the handover state is malformed: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Reads the state from the memory file `fd` (taking its descriptors).
pub fn read(fd: OwnedFd) -> Result<State, ReadError> {
    let mut json = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut json)?;
    let header: Header = serde_json::from_slice(&json)?;
    if !READABLE.contains(&header.format) {
        return Err(ReadError::Format(header.format));
    }
    Ok(fd::deserialize(&json)?)
}

/// Re-executes this process as `exe daemon --handover <fd>`, named `program` (the home's
/// layout: `bm2`, or `pm2` for PM2's names); returns only if that failed.
pub fn exec(exe: &Path, program: &str, state_fd: &OwnedFd) -> std::io::Error {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(exe.as_os_str().as_bytes()) else {
        return std::io::Error::other("the binary's path contains a NUL byte");
    };
    let args = [
        std::ffi::CString::new(program).unwrap_or_else(|_| c"bm2".to_owned()),
        c"daemon".to_owned(),
        c"--handover".to_owned(),
        std::ffi::CString::new(state_fd.as_raw_fd().to_string()).unwrap_or_default(),
    ];
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&held_signals()),
        None,
    );
    let err = match nix::unistd::execv(&path, &args) {
        Ok(never) => match never {},
        Err(e) => e.into(),
    };
    release_signals();
    err
}

/// Answers the `update` request on its connection, as an HTTP/1.1 response with a JSON body.
pub fn answer(client: OwnedFd, status: u16, body: &impl Serialize) {
    let body = serde_json::to_vec(body).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: application/json\r\n{}: {}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        if status == 200 { "OK" } else { "Error" },
        bm2_types::VERSION_HEADER,
        bm2_types::VERSION,
        body.len()
    );
    let mut stream = std::os::unix::net::UnixStream::from(client);
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}
