//! RELP, the Reliable Event Logging Protocol that rsyslog's `omrelp` speaks: syslog with an
//! acknowledgement per message.
//!
//! A session is `open` (answered with our offers: `relp_version=0`, `relp_software`,
//! `commands=syslog`), any number of `syslog` frames, each carrying one message, and `close`.
//! The sender keeps every message it has not had a `rsp` for (its window, 128 by default in
//! rsyslog) and sends them again after a reconnect. So the rule here is the one that makes
//! RELP worth having: **`rsp 200 OK` is sent only after the message is committed.**
//!
//! Each round reads what the sender has pipelined (without waiting for more), publishes the
//! messages as one batch, then answers every frame of the round in order. While a publish is
//! slow the session does not read, so the sender's window fills and it stops sending: its
//! queue holds the data. A message refused for its tenant credentials is answered
//! `500 not stored: ...` (it would be refused again on every resend). A message that could
//! not be committed before shutdown gets no answer at all, and the session closes: the
//! sender resends it after reconnecting. A malformed frame closes the connection with a log
//! line; at shutdown, or after the idle timeout, the server sends `serverclose`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meniscus_actors::Node;
use time::OffsetDateTime;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::ingest::{Added, Batch, Ingest, Origin, Outcome, Patience, Sink};
use super::listener::{self, Read, ReadBuf};
use super::relp_frame::{write_rsp, RelpFrame, RelpParser, SERVERCLOSE};
use super::{Result, Shutdown, SyslogConfig, SyslogStats};

/// How long answers may take to write before the peer is given up on.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack over the largest message for a frame's data (an `open` carries offers, not a message).
const MIN_FRAME_DATA: usize = 4096;

/// What this server says it is in its `open` answer.
const SOFTWARE: &str = concat!("meniscus,", env!("CARGO_PKG_VERSION"), ",meniscus-api");

/// A bound RELP listener. [`RelpSyslog::run`] serves it.
pub struct RelpSyslog {
    listener: TcpListener,
    addr: SocketAddr,
    ingest: Arc<Ingest>,
}

impl RelpSyslog {
    /// Binds `addr` (port 0 picks a free port; see [`RelpSyslog::local_addr`]).
    pub async fn bind(addr: SocketAddr, node: Arc<Node>, config: SyslogConfig) -> Result<Self> {
        Self::bind_sink(addr, node, config).await
    }

    /// Binds `addr` for events that go to `sink`.
    pub(crate) async fn bind_sink(
        addr: SocketAddr,
        sink: Arc<dyn Sink>,
        config: SyslogConfig,
    ) -> Result<Self> {
        let (listener, addr) = listener::bind(addr, "relp").await?;
        Ok(RelpSyslog {
            listener,
            addr,
            ingest: Ingest::new(sink, config, "syslog-relp"),
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

    /// Serves sessions until `shutdown`; then each session answers what it has committed,
    /// sends `serverclose` and closes.
    pub async fn run(self, shutdown: Shutdown) {
        let ingest = self.ingest.clone();
        let serve = move |stream, peer: SocketAddr, shutdown| {
            let ingest = ingest.clone();
            async move {
                let peer = peer.to_string();
                Session::new(&ingest, stream, ingest.origin(&peer), shutdown)
                    .run()
                    .await;
            }
        };
        listener::accept_loop(self.listener, self.addr, self.ingest, shutdown, serve).await;
    }
}

/// Why a session ends after the current round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The sender sent `close`.
    Closed,
    /// The sender closed the connection, or it failed.
    Disconnected,
    /// The sender broke the protocol (logged and counted).
    Protocol,
    /// Shutdown: answer what is committed, send `serverclose`.
    Shutdown,
    /// The sender sent nothing for the idle timeout: send `serverclose` (counted already).
    Idle,
}

/// The answer owed to one frame of the round, in arrival order.
#[derive(Debug)]
enum Reply {
    /// `open`: 200 with our offers.
    Open { txnr: u32 },
    /// `syslog`: 200 once committed.
    Syslog { txnr: u32, added: Added },
    /// `close`: 200, then the connection closes.
    Close { txnr: u32 },
    /// A fixed answer.
    Text {
        txnr: u32,
        code: u16,
        text: &'static str,
    },
}

/// What one round has read and owes answers for.
struct Round {
    batch: Batch,
    replies: Vec<Reply>,
    open: bool,
    end: Option<End>,
}

impl Round {
    /// Takes one frame: queues its message, and the answer it is owed.
    fn handle(&mut self, ingest: &Ingest, origin: Origin<'_>, frame: RelpFrame<'_>) {
        if matches!(self.end, Some(End::Closed | End::Protocol)) {
            return; // nothing after `close`, or after a frame that ended the session
        }
        let txnr = frame.txnr;
        let reply = match frame.command {
            b"open" if self.open => Reply::Text {
                txnr,
                code: 200,
                text: "connection already open - ignored",
            },
            b"open" => {
                self.open = true;
                let offers = String::from_utf8_lossy(frame.data);
                tracing::debug!(peer = origin.peer, offers = %offers.escape_debug(), "relp session opened");
                Reply::Open { txnr }
            }
            b"syslog" if !self.open => {
                let error = "RELP syslog command before open";
                ingest.stats.protocol_error(origin.peer, &error);
                self.end = Some(End::Protocol);
                Reply::Text {
                    txnr,
                    code: 500,
                    text: "session not open",
                }
            }
            b"syslog" => {
                let now = OffsetDateTime::now_utc();
                let added = self.batch.add(ingest, frame.data, origin, now);
                Reply::Syslog { txnr, added }
            }
            b"close" => {
                self.end = Some(End::Closed);
                Reply::Close { txnr }
            }
            _ => Reply::Text {
                txnr,
                code: 500,
                text: "command not supported",
            },
        };
        self.replies.push(reply);
    }

    /// Whether the round should be answered before more is read.
    fn is_full(&self, config: &SyslogConfig) -> bool {
        self.end.is_some()
            || self.batch.is_full(config)
            || self.replies.len() >= config.max_batch_events
    }
}

/// One sender's session.
struct Session<'a> {
    ingest: &'a Ingest,
    stream: TcpStream,
    origin: Origin<'a>,
    shutdown: Shutdown,
    parser: RelpParser,
    round: Round,
    buf: ReadBuf,
    out: Vec<u8>,
}

impl<'a> Session<'a> {
    fn new(ingest: &'a Ingest, stream: TcpStream, origin: Origin<'a>, shutdown: Shutdown) -> Self {
        let max_data = ingest.config.max_frame_bytes.max(MIN_FRAME_DATA);
        Session {
            ingest,
            stream,
            origin,
            shutdown,
            parser: RelpParser::new(max_data),
            round: Round {
                batch: Batch::default(),
                replies: Vec::new(),
                open: false,
                end: None,
            },
            buf: ReadBuf::default(),
            out: Vec::new(),
        }
    }

    /// Rounds of read, publish, answer, until the session ends.
    async fn run(mut self) {
        let peer = self.origin.peer;
        tracing::debug!(%peer, "relp connection opened");
        let end = loop {
            if self.shutdown.is_requested() {
                break End::Shutdown;
            }
            let read = tokio::select! {
                r = listener::read_or_idle(self.ingest, &mut self.stream, &mut self.buf, peer) => r,
                _ = self.shutdown.requested() => break End::Shutdown,
            };
            self.take(read);
            while !self.round.is_full(&self.ingest.config) {
                match self.buf.read_now(&mut self.stream, peer).await {
                    Read::WouldBlock => break,
                    read => self.take(read),
                }
            }
            self.answer().await;
            if let Some(end) = self.round.end {
                break end;
            }
        };
        if matches!(end, End::Shutdown | End::Idle) {
            self.write(SERVERCLOSE.to_vec()).await;
        }
        if end != End::Disconnected {
            let _ = tokio::time::timeout(WRITE_TIMEOUT, self.stream.shutdown()).await;
        }
        tracing::debug!(%peer, ?end, "relp connection closed");
    }

    /// Parses the frames of a read into the round.
    fn take(&mut self, read: Read) {
        let n = match read {
            Read::Data(n) => n,
            Read::WouldBlock => return,
            Read::Idle => {
                self.round.end.get_or_insert(End::Idle);
                return;
            }
            Read::Eof | Read::Failed => {
                self.round.end.get_or_insert(End::Disconnected);
                return;
            }
        };
        if self.round.end.is_some() {
            return;
        }
        let (ingest, origin, round) = (self.ingest, self.origin, &mut self.round);
        let parsed = self.parser.push(&self.buf.data()[..n], |frame| {
            round.handle(ingest, origin, frame)
        });
        if let Err(e) = parsed {
            ingest.stats.protocol_error(origin.peer, &e);
            self.round.end.get_or_insert(End::Protocol);
        }
    }

    /// Publishes the round's messages, then answers its frames in order: 200 only for what
    /// is committed.
    async fn answer(&mut self) {
        let outcomes = if self.round.batch.is_empty() {
            Vec::new()
        } else {
            let patience = Patience::UntilShutdown;
            let batch = &mut self.round.batch;
            self.ingest
                .publish(batch, &mut self.shutdown, patience)
                .await
        };
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let mut unanswered = 0;
        for reply in self.round.replies.drain(..) {
            match reply {
                Reply::Open { txnr } => {
                    let offers =
                        format!("relp_version=0\nrelp_software={SOFTWARE}\ncommands=syslog");
                    write_rsp(&mut out, txnr, 200, "OK", &offers);
                }
                Reply::Syslog { txnr, added } => {
                    let outcome = match added {
                        Added::Queued { group } => outcomes.get(group).cloned(),
                        Added::Refused(reason) => Some(Outcome::Refused(reason)),
                    };
                    match outcome {
                        Some(Outcome::Stored) => write_rsp(&mut out, txnr, 200, "OK", ""),
                        Some(Outcome::Refused(reason)) => {
                            let text = format!("not stored: {reason}");
                            write_rsp(&mut out, txnr, 500, &text, "");
                        }
                        // Not committed: no answer, so the sender keeps it and resends it.
                        Some(Outcome::Dropped) | None => unanswered += 1,
                    }
                }
                Reply::Close { txnr } => write_rsp(&mut out, txnr, 200, "OK", ""),
                Reply::Text { txnr, code, text } => write_rsp(&mut out, txnr, code, text, ""),
            }
        }
        if unanswered > 0 {
            tracing::warn!(peer = self.origin.peer, unanswered, "relp messages not committed before shutdown; closing the session so the sender resends them");
            self.round.end = Some(End::Shutdown);
        }
        if !out.is_empty() {
            out = self.write(out).await;
        }
        self.out = out;
    }

    /// Writes `out` to the peer (ending the session if that fails); gives the buffer back.
    async fn write(&mut self, out: Vec<u8>) -> Vec<u8> {
        let written = tokio::time::timeout(WRITE_TIMEOUT, self.stream.write_all(&out)).await;
        let error = match written {
            Ok(Ok(())) => return out,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("the peer read no answer for {WRITE_TIMEOUT:?}"),
        };
        tracing::info!(peer = self.origin.peer, %error, "relp write failed; closing the connection");
        self.round.end = Some(End::Disconnected);
        out
    }
}
