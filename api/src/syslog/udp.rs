//! Syslog over UDP: one message per datagram, read in batches.
//!
//! The receive loop never waits for the node: it reads every datagram that is ready into a
//! batch and hands the batch to a publisher task through a queue of [`QUEUED_BATCHES`]. When
//! the queue is full, or the publisher cannot get a batch accepted within
//! [`SyslogConfig::udp_publish_patience`], the batch is dropped and counted — UDP has no way to
//! make the sender wait, and counting beats the kernel's silent drops.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;

use meniscus_actors::Node;
use time::OffsetDateTime;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::ingest::{Batch, Ingest, Patience, Sink};
use super::{Result, Shutdown, SyslogConfig, SyslogError, SyslogStats};

/// Batches waiting for the publisher.
const QUEUED_BATCHES: usize = 4;
/// Largest datagram: the most a UDP payload can carry.
const MAX_DATAGRAM: usize = 65_536;

/// A bound syslog UDP socket. [`UdpSyslog::run`] serves it.
pub struct UdpSyslog {
    socket: UdpSocket,
    addr: SocketAddr,
    ingest: Arc<Ingest>,
}

impl UdpSyslog {
    /// Binds `addr` (port 0 picks a free port; see [`UdpSyslog::local_addr`]).
    pub async fn bind(addr: SocketAddr, node: Arc<Node>, config: SyslogConfig) -> Result<Self> {
        Self::bind_sink(addr, node, config).await
    }

    /// Binds `addr` for events that go to `sink`.
    pub(crate) async fn bind_sink(
        addr: SocketAddr,
        sink: Arc<dyn Sink>,
        config: SyslogConfig,
    ) -> Result<Self> {
        let socket = UdpSocket::bind(addr)
            .await
            .map_err(|source| SyslogError::Bind {
                transport: "udp",
                addr,
                source,
            })?;
        let addr = socket
            .local_addr()
            .map_err(|source| SyslogError::LocalAddr {
                transport: "udp",
                source,
            })?;
        let ingest = Ingest::new(sink, config, "syslog-udp");
        Ok(UdpSyslog {
            socket,
            addr,
            ingest,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<SyslogStats> {
        self.ingest.stats.clone()
    }

    /// Receives until `shutdown`; then publishes what was received and returns.
    pub async fn run(self, mut shutdown: Shutdown) {
        let (queue, batches) = mpsc::channel(QUEUED_BATCHES);
        let publisher = tokio::spawn(publish_batches(
            self.ingest.clone(),
            batches,
            shutdown.clone(),
        ));
        let mut buf = vec![0; MAX_DATAGRAM];
        loop {
            let mut batch = Batch::default();
            let received = tokio::select! {
                r = self.socket.recv_from(&mut buf) => r,
                _ = shutdown.requested() => {
                    // Datagrams already queued in the socket go out with the last batch.
                    self.read_ready(&mut batch, &mut buf);
                    if !batch.is_empty() && queue.send(batch).await.is_err() {
                        tracing::error!("syslog-udp publisher ended early");
                    }
                    break;
                }
            };
            match received {
                Ok((n, peer)) => self.add(&mut batch, &buf[..n], peer),
                Err(e) => {
                    // On Linux an ICMP error from an earlier send can surface here; the
                    // socket is still usable.
                    tracing::debug!(error = %e, "syslog-udp receive failed");
                    continue;
                }
            }
            self.read_ready(&mut batch, &mut buf);
            if batch.is_empty() {
                continue;
            }
            if let Err(e) = queue.try_send(batch) {
                let (mpsc::error::TrySendError::Full(batch)
                | mpsc::error::TrySendError::Closed(batch)) = e;
                self.ingest
                    .stats
                    .dropped(batch.len(), "the publish queue is full: ingest is behind");
            }
        }
        drop(queue);
        if publisher.await.is_err() {
            tracing::error!("syslog-udp publisher task failed");
        }
        tracing::info!(addr = %self.addr, counts = ?self.ingest.stats.snapshot(), "syslog-udp stopped");
    }

    /// Adds every datagram that is ready without waiting, until the batch is full.
    fn read_ready(&self, batch: &mut Batch, buf: &mut [u8]) {
        while !batch.is_full(&self.ingest.config) {
            match self.socket.try_recv_from(buf) {
                Ok((n, peer)) => self.add(batch, &buf[..n], peer),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "syslog-udp receive failed");
                    break;
                }
            }
        }
    }

    fn add(&self, batch: &mut Batch, datagram: &[u8], peer: SocketAddr) {
        let peer = peer.to_string();
        let max = self.ingest.config.max_frame_bytes;
        if datagram.len() > max {
            let error = format!(
                "datagram of {} bytes exceeds the limit of {max} bytes; skipping it",
                datagram.len()
            );
            return self.ingest.stats.frame_error(&peer, &error);
        }
        if datagram.iter().all(|b| matches!(b, b'\n' | b'\r' | 0)) {
            return; // keep-alives and stray newlines are not messages
        }
        let origin = self.ingest.origin(&peer);
        batch.add(&self.ingest, datagram, origin, OffsetDateTime::now_utc());
    }
}

/// Publishes queued batches, each with the configured patience, until the queue closes.
async fn publish_batches(
    ingest: Arc<Ingest>,
    mut batches: mpsc::Receiver<Batch>,
    mut shutdown: Shutdown,
) {
    let patience = Patience::For(ingest.config.udp_publish_patience);
    while let Some(mut batch) = batches.recv().await {
        ingest.publish(&mut batch, &mut shutdown, patience).await;
    }
}
