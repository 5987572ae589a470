//! The daemon's own log (`$BM2_HOME/daemon.log`), rotated like app logs.

use std::io;
use std::sync::{Arc, Mutex};

use bm2_types::Home;

use super::{LogDefaults, LogFile, RotationPolicy, lock};

/// Sends the daemon's `tracing` output to `daemon.log`, rotated by the daemon-wide defaults.
/// The level comes from `BM2_LOG` (default `info`).
pub fn init(home: &Home, defaults: &LogDefaults) -> io::Result<()> {
    use tracing_subscriber::EnvFilter;
    home.create()?;
    let policy = RotationPolicy {
        max_size: defaults.max_size.0,
        retain: defaults.retain,
        compress: defaults.compress,
        interval: None,
    };
    let file = Arc::new(Mutex::new(LogFile::open(home.daemon_log(), policy)));
    let filter = EnvFilter::try_from_env("BM2_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || Writer(file.clone()))
        .try_init()
        .map_err(io::Error::other)?;
    // A panic is a bug: it goes to the daemon's log too, not only to a stderr nobody reads.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(panic = %info, "bug: the daemon panicked");
        previous(info);
    }));
    Ok(())
}

struct Writer(Arc<Mutex<LogFile>>);

impl io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        lock(&self.0).write_lines(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
