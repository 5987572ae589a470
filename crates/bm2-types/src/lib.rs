//! The nouns of bm2, defined once and shared by the CLI, the daemon, ecosystem files,
//! the HTTP API and the dump file.

mod api;
mod app;
mod events;
pub mod home;
mod info;
pub mod limits;
mod metrics;
pub mod runtime;
mod signal;
mod triggers;
mod units;

pub use api::*;
pub use app::*;
pub use events::*;
pub use home::{Home, Layout};
pub use info::*;
pub use metrics::*;
pub use signal::{Signal, UnknownSignal};
pub use triggers::*;
pub use units::*;

/// Version of the bm2 binaries, sent with every API response.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Version of the CLI/daemon protocol; bumped on incompatible changes.
pub const PROTOCOL_VERSION: u32 = 1;

/// HTTP header carrying the daemon's version on every response.
pub const VERSION_HEADER: &str = "x-bm2-version";

/// Header of a response that carries messages for the user (JSON array of strings, non-ASCII
/// escaped), such as a state file the daemon could not read.
pub const NOTICE_HEADER: &str = "x-bm2-notice";

/// Largest request body the daemon accepts: 64 MiB, room for an ecosystem file of tens of
/// thousands of apps.
pub const MAX_REQUEST_BYTES: usize = 64 << 20;

/// Identifier of one managed process instance (PM2's `pm_id`).
pub type ProcId = u32;
