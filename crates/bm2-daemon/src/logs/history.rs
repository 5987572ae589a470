//! Recent lines for `bm2 logs`, the REST API and the dashboard. The files' lengths are recorded
//! and the live feed joined while the files' writers are held, so a line is either before a
//! recorded length or in the feed: none is missed or shown twice. The lines are read later,
//! in the blocking pool, in bounded memory (see [`super::tail`]), a chunk at a time.

use bm2_types::ErrorCode;
use std::collections::VecDeque;
use std::fs::File;
use std::sync::{Arc, Mutex};

use bm2_types::{ApiError, LogEvent, LogsRequest, ProcId};
use futures_util::Stream;
use tokio::sync::broadcast;

use super::tail::Tail;
use super::{InstanceLogs, LogHub, SharedFile, Stream as LogStream, lock};

/// Most recent lines a request may ask for, per stream and instance.
pub const MAX_LINES: usize = 100_000;

/// Bytes of lines read per chunk (one trip to the blocking pool).
const CHUNK: usize = 256 * 1024;

/// Whose lines a file holds.
#[derive(Debug, Clone)]
struct Origin {
    id: ProcId,
    name: String,
    app: String,
    stream: LogStream,
}

impl Origin {
    fn event(&self, line: &[u8]) -> LogEvent {
        LogEvent {
            id: self.id,
            name: self.name.clone(),
            app: self.app.clone(),
            stream: self.stream.as_str().to_string(),
            line: String::from_utf8_lossy(line).into_owned(),
            history: true,
            skipped: None,
        }
    }
}

/// The part of one file written before the feed was joined: an open handle (so a rotation
/// meanwhile changes nothing) and the length it had.
#[derive(Debug)]
struct Source {
    origin: Origin,
    file: File,
    len: u64,
}

/// Recent lines still to be read: the last `lines` lines of each source, in order.
#[derive(Debug, Default)]
pub struct History {
    sources: VecDeque<Source>,
    lines: usize,
    current: Option<(Tail, Origin)>,
}

/// Recent lines and, when following, the feed of new lines, taken together.
pub type Taken = (History, Option<broadcast::Receiver<Arc<LogEvent>>>);

/// The recent lines `req` asks for from `instances`, and the live feed when it follows.
/// A file shared by several instances (`merge_logs`) is read once. Refuses more than
/// [`MAX_LINES`] lines.
pub fn take(
    hub: &LogHub,
    instances: &[Arc<Mutex<InstanceLogs>>],
    req: &LogsRequest,
) -> Result<Taken, ApiError> {
    if req.lines > MAX_LINES {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "at most {MAX_LINES} recent lines per stream and instance can be shown (asked for {})",
                req.lines
            ),
        )
        .with_hint(
            "read the log file itself for more (`bm2 describe <app>` shows its path), e.g. with `tail -n`",
        ));
    }
    let wanted = if req.lines == 0 {
        Vec::new()
    } else {
        files_of(instances, req.out, req.err)
    };
    // Lock every file in one order (by address), so that two requests cannot deadlock.
    let mut order: Vec<&SharedFile> = wanted.iter().map(|(_, f)| f).collect();
    order.sort_by_key(|f| Arc::as_ptr(f));
    let guards: Vec<_> = order.iter().map(|f| (Arc::as_ptr(f), lock(f))).collect();
    let mut sources = VecDeque::with_capacity(wanted.len());
    for (origin, f) in &wanted {
        let Ok(i) = guards.binary_search_by_key(&Arc::as_ptr(f), |(p, _)| *p) else {
            continue;
        };
        if let Some((file, len)) = guards[i].1.open_for_reading() {
            sources.push_back(Source {
                origin: origin.clone(),
                file,
                len,
            });
        }
    }
    let live = req.follow.then(|| hub.subscribe());
    drop(guards);
    Ok((
        History {
            sources,
            lines: req.lines,
            current: None,
        },
        live,
    ))
}

/// The stdout and stderr files of each instance, each file once.
fn files_of(
    instances: &[Arc<Mutex<InstanceLogs>>],
    out: bool,
    err: bool,
) -> Vec<(Origin, SharedFile)> {
    let mut files: Vec<(Origin, SharedFile)> = Vec::new();
    for inst in instances {
        let inst = lock(inst);
        for (stream, wanted, file) in [
            (LogStream::Out, out, &inst.out),
            (LogStream::Err, err, &inst.err),
        ] {
            if let Some(f) = file
                && wanted
                && !files.iter().any(|(_, g)| Arc::ptr_eq(f, g))
            {
                let origin = Origin {
                    id: inst.id,
                    name: inst.name.clone(),
                    app: inst.app.clone(),
                    stream,
                };
                files.push((origin, f.clone()));
            }
        }
    }
    files
}

impl History {
    /// The next lines, about `budget` bytes of them; empty when every line has been read.
    /// Blocking file IO: call it in the blocking pool.
    pub fn next_chunk(&mut self, budget: usize) -> Vec<LogEvent> {
        let mut events = Vec::new();
        let mut used = 0;
        while used < budget {
            if self.current.is_none() {
                let Some(src) = self.sources.pop_front() else {
                    break;
                };
                match Tail::new(src.file, src.len, self.lines) {
                    Ok(tail) => self.current = Some((tail, src.origin)),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read log history");
                        continue;
                    }
                }
            }
            let Some((tail, origin)) = &mut self.current else {
                break;
            };
            let result = tail.read_lines(budget - used, |line| {
                used += line.len() + 1;
                events.push(origin.event(line));
            });
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot read log history");
            }
            if tail.done() {
                self.current = None;
            }
        }
        events
    }

    /// Every line, read in the blocking pool.
    pub async fn collect(mut self) -> Vec<LogEvent> {
        let read = tokio::task::spawn_blocking(move || {
            let mut all = Vec::new();
            loop {
                let chunk = self.next_chunk(CHUNK);
                if chunk.is_empty() {
                    return all;
                }
                all.extend(chunk);
            }
        });
        read.await.unwrap_or_default()
    }

    /// The lines a chunk at a time, each read in the blocking pool when the previous one has
    /// been taken: a slow reader holds no thread, and one that goes away stops the reading.
    pub fn chunks(self) -> impl Stream<Item = Vec<LogEvent>> + Send + 'static {
        futures_util::stream::unfold(self, |mut history| async move {
            let read = tokio::task::spawn_blocking(move || {
                let chunk = history.next_chunk(CHUNK);
                (history, chunk)
            });
            match read.await {
                Ok((history, chunk)) if !chunk.is_empty() => Some((chunk, history)),
                _ => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogDefaults, LogPaths};
    use bm2_types::AppSpec;
    use std::path::PathBuf;

    fn request(lines: usize) -> LogsRequest {
        LogsRequest {
            targets: Vec::new(),
            lines,
            follow: true,
            out: true,
            err: true,
        }
    }

    fn instance(hub: &Arc<LogHub>, dir: &std::path::Path, id: ProcId) -> Arc<Mutex<InstanceLogs>> {
        let paths = LogPaths {
            out: Some(dir.join(format!("a-{id}-out.log"))),
            err: Some(PathBuf::from("/dev/null")),
            combined: None,
        };
        let spec = AppSpec {
            name: "a".into(),
            ..AppSpec::default()
        };
        Arc::new(Mutex::new(InstanceLogs::open(
            hub,
            &spec,
            paths,
            id,
            format!("a-{id}"),
        )))
    }

    fn lines(events: &[LogEvent]) -> Vec<&str> {
        events.iter().map(|e| e.line.as_str()).collect()
    }

    #[tokio::test]
    async fn history_stops_where_the_feed_starts() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Arc::new(LogHub::new(LogDefaults::default()));
        let inst = instance(&hub, dir.path(), 0);
        lock(&inst).write(LogStream::Out, b"one\ntwo\n");
        let (history, live) = take(&hub, std::slice::from_ref(&inst), &request(10)).unwrap();
        lock(&inst).write(LogStream::Out, b"three\n");
        let events = history.collect().await;
        assert_eq!(lines(&events), ["one", "two"]);
        assert!(events.iter().all(|e| e.history && e.stream == "out"));
        let mut live = live.unwrap();
        assert_eq!(live.recv().await.unwrap().line, "three");
    }

    #[tokio::test]
    async fn history_survives_a_rotation_after_it_was_taken() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Arc::new(LogHub::new(LogDefaults::default()));
        let inst = instance(&hub, dir.path(), 0);
        lock(&inst).write(LogStream::Out, b"old\n");
        let (history, _) = take(&hub, std::slice::from_ref(&inst), &request(10)).unwrap();
        let file = lock(&inst).out.clone().unwrap();
        lock(&file).rotate();
        lock(&inst).write(LogStream::Out, b"new\n");
        assert_eq!(lines(&history.collect().await), ["old"]);
    }

    #[tokio::test]
    async fn too_many_lines_are_refused_and_chunks_stream_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Arc::new(LogHub::new(LogDefaults::default()));
        let inst = instance(&hub, dir.path(), 0);
        let err = take(&hub, std::slice::from_ref(&inst), &request(MAX_LINES + 1)).unwrap_err();
        assert_eq!(err.code, bm2_types::ErrorCode::BadRequest);
        let body = (0..100_000).fold(String::new(), |mut s, i| {
            use std::fmt::Write as _;
            let _ = writeln!(s, "{i:09}");
            s
        });
        lock(&inst).write(LogStream::Out, body.as_bytes());
        let (history, _) = take(&hub, std::slice::from_ref(&inst), &request(MAX_LINES)).unwrap();
        let chunks: Vec<Vec<LogEvent>> = futures_util::StreamExt::collect(history.chunks()).await;
        assert!(chunks.len() > 1, "read in several chunks");
        let all: Vec<LogEvent> = chunks.into_iter().flatten().collect();
        assert_eq!(all.len(), 100_000);
        assert_eq!(all[0].line, "000000000");
        assert_eq!(all[99_999].line, "000099999");
    }

    #[tokio::test]
    async fn a_shared_file_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        let hub = Arc::new(LogHub::new(LogDefaults::default()));
        let spec = AppSpec {
            name: "m".into(),
            ..AppSpec::default()
        };
        let paths = LogPaths {
            out: Some(dir.path().join("m-out.log")),
            err: None,
            combined: None,
        };
        let a = InstanceLogs::open(&hub, &spec, paths.clone(), 0, "m".into());
        let b = InstanceLogs::open(&hub, &spec, paths, 1, "m".into());
        a.write(LogStream::Out, b"from a\n");
        b.write(LogStream::Out, b"from b\n");
        let both = [Arc::new(Mutex::new(a)), Arc::new(Mutex::new(b))];
        let (history, _) = take(&hub, &both, &request(10)).unwrap();
        assert_eq!(lines(&history.collect().await), ["from a", "from b"]);
    }
}
