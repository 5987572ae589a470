//! The API's Unix socket as axum listens on it: accepting can be paused (during a handover,
//! clients wait in the socket's backlog), and each connection carries its descriptor, so that
//! the `update` request can be answered by the daemon that takes over.

use std::os::fd::AsRawFd;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::handover::ConnFd;

/// The API's listening socket.
pub struct ApiListener {
    inner: UnixListener,
    paused: watch::Receiver<bool>,
}

impl ApiListener {
    /// Accepts on `inner` while `paused` is false.
    pub fn new(inner: UnixListener, paused: watch::Receiver<bool>) -> ApiListener {
        ApiListener { inner, paused }
    }
}

impl Listener for ApiListener {
    type Io = UnixStream;
    type Addr = ConnFd;

    async fn accept(&mut self) -> (UnixStream, ConnFd) {
        loop {
            let paused = *self.paused.borrow_and_update();
            if paused {
                if self.paused.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = self.paused.changed() => {}
                accepted = self.inner.accept() => match accepted {
                    Ok((stream, _)) => {
                        let fd = ConnFd(stream.as_raw_fd());
                        return (stream, fd);
                    }
                    // Out of descriptors and the like: try again shortly, as axum does.
                    Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<ConnFd> {
        Ok(ConnFd(self.inner.as_raw_fd()))
    }
}

impl Connected<IncomingStream<'_, ApiListener>> for ConnFd {
    fn connect_info(stream: IncomingStream<'_, ApiListener>) -> Self {
        *stream.remote_addr()
    }
}
