//! `bm2 update` in place: the daemon hands its apps over to a new bm2 binary by re-executing
//! itself (same pid, so it stays the parent of every app) with the descriptors it must keep
//! and a versioned state that says what each of them is.

pub mod fd;

pub use fd::Fd;

/// Version of the handover state's format. A binary reads only the formats it lists in
/// [`READABLE`]; the running daemon asks the new binary before it hands over.
pub const FORMAT: u32 = 1;

/// The handover formats this binary can take over from.
pub const READABLE: &[u32] = &[FORMAT];
