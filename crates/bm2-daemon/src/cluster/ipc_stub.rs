//! TEMPORARY until the cluster freeze/thaw lands.
#![allow(clippy::unused_async, missing_docs)]
use std::io;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::channels::Event;
use super::ipc::Ipc;

#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenIpc {}

impl Ipc {
    pub async fn freeze(&self) -> Option<FrozenIpc> {
        None
    }
}

pub fn thaw(_f: FrozenIpc, _e: mpsc::UnboundedSender<Event>) -> io::Result<Arc<Ipc>> {
    Err(io::Error::other("x"))
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FrozenHub {}
impl super::ClusterHub {
    pub async fn freeze(&self) -> FrozenHub {
        FrozenHub {}
    }
    pub async fn thaw(&self, _f: FrozenHub) -> io::Result<()> {
        Ok(())
    }
}
