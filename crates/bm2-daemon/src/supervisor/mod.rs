//! Supervision of app processes: one actor per instance, its restart policy, spawning and killing.

pub mod actor;
pub mod child;
pub mod command;
pub mod frozen;
pub mod handle;
pub mod kill;
pub mod machine;
pub mod phase;
pub mod process;
pub mod spawn;
pub mod stdin;
