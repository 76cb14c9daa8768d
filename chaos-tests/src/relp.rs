//! A RELP publisher that behaves as rsyslog's `omrelp` does: a window of messages in flight,
//! each acknowledged by `rsp 200` once the node has committed it; after a broken connection,
//! everything not acknowledged is sent again, on the next node.
//!
//! Each message names its tenant and token in a `meniscus` structured-data element, and an
//! idempotency key (`id`) there too, so a message sent again after a lost acknowledgement
//! replaces its first copy instead of being stored twice. The checker then holds RELP to the
//! same rule as HTTP: every acknowledged message exactly once on every replica.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::workload::{AckLog, Endpoints, TenantLoad, Tokens};

/// How long an answer may take before the connection is given up on (a paused or partitioned
/// node): the messages go to the next node.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(8);
/// How long a publisher keeps trying one window after it was asked to stop.
const GIVE_UP_AFTER_STOP: Duration = Duration::from_secs(30);
/// Largest answer frame accepted (an `open` answer carries a few offers).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// One RELP session, as a sender such as rsyslog's `omrelp` opens it.
pub struct RelpSession {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    next_txnr: u64,
}

/// What a node answered one frame.
struct Answer {
    txnr: u64,
    command: String,
    data: String,
}

impl RelpSession {
    /// Connects and opens a session.
    pub fn open(addr: SocketAddr) -> std::io::Result<RelpSession> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let mut session = RelpSession {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            next_txnr: 1,
        };
        let txnr = session.send(
            "open",
            "relp_version=0\nrelp_software=meniscus-chaos\ncommands=syslog",
        )?;
        let answer = session.answer()?;
        if answer.txnr != txnr || answer.command != "rsp" || !answer.data.starts_with("200") {
            return Err(invalid(format!(
                "open answered {} {} {:?}",
                answer.txnr, answer.command, answer.data
            )));
        }
        Ok(session)
    }

    /// Sends one syslog message and waits for its answer: the `rsp` code (200 once it is
    /// committed) and text.
    pub fn publish(&mut self, message: &str) -> std::io::Result<(u16, String)> {
        let txnr = self.send("syslog", message)?;
        let answer = self.answer()?;
        if answer.txnr != txnr || answer.command != "rsp" {
            return Err(invalid(format!(
                "expected the answer to {txnr}, got {} {} {:?}",
                answer.txnr, answer.command, answer.data
            )));
        }
        let (code, text) = answer.data.split_once(' ').unwrap_or((&answer.data, ""));
        Ok((parse(code.as_bytes())?, text.to_owned()))
    }

    /// Sends one frame; returns its transaction number.
    fn send(&mut self, command: &str, data: &str) -> std::io::Result<u64> {
        let txnr = self.next_txnr;
        self.next_txnr += 1;
        let frame = format!("{txnr} {command} {} {data}\n", data.len());
        self.writer.write_all(frame.as_bytes())?;
        Ok(txnr)
    }

    /// Reads the next frame from the node: `TXNR SP COMMAND SP DATALEN [SP DATA] LF`.
    fn answer(&mut self) -> std::io::Result<Answer> {
        let txnr = self.token()?;
        let command = self.token()?;
        // DATALEN ends at a space (data follows) or at the trailer (no data).
        let mut digits = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            self.reader.read_exact(&mut byte)?;
            if byte[0] == b' ' || byte[0] == b'\n' {
                break;
            }
            digits.push(byte[0]);
        }
        let len: usize = parse(&digits)?;
        if len > MAX_ANSWER_BYTES {
            return Err(invalid(format!("an answer of {len} bytes")));
        }
        let mut data = vec![0u8; len];
        if len > 0 {
            self.reader.read_exact(&mut data)?;
            self.reader.read_exact(&mut byte)?;
            if byte[0] != b'\n' {
                return Err(invalid("a frame without its trailer".into()));
            }
        }
        Ok(Answer {
            txnr: parse(txnr.as_bytes())?,
            command,
            data: String::from_utf8_lossy(&data).into_owned(),
        })
    }

    /// The next space-terminated header field.
    fn token(&mut self) -> std::io::Result<String> {
        let mut field = Vec::new();
        let n = self.reader.read_until(b' ', &mut field)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if field.pop() != Some(b' ') || field.len() > 32 {
            return Err(invalid("a malformed frame header".into()));
        }
        Ok(String::from_utf8_lossy(&field).into_owned())
    }
}

fn parse<T: std::str::FromStr>(digits: &[u8]) -> std::io::Result<T> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| {
            invalid(format!(
                "{:?} is not a number",
                String::from_utf8_lossy(digits)
            ))
        })
}

fn invalid(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// A publisher thread's settings and shared state.
pub(crate) struct RelpPublisher {
    pub(crate) nodes: Endpoints,
    pub(crate) tenant: TenantLoad,
    /// Prefix of its ids; starts with the tenant's name and `-p`, as the checker expects.
    pub(crate) name: String,
    /// Messages in flight at once.
    pub(crate) window: usize,
    pub(crate) tokens: Tokens,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) log: Arc<Mutex<AckLog>>,
}

impl RelpPublisher {
    /// Publishes windows of messages until stopped, starting on the `offset`-th node.
    pub(crate) fn run(self, offset: usize) {
        let mut next_node = offset;
        let mut seq = 0u64;
        let mut session: Option<RelpSession> = None;
        while !self.stop.load(Ordering::Relaxed) {
            let mut pending: Vec<String> = (0..self.window as u64)
                .map(|i| format!("{}-{}", self.name, seq + i))
                .collect();
            seq += self.window as u64;
            let mut acked = Vec::new();
            let mut stopped_at: Option<Instant> = None;
            while !pending.is_empty() {
                if self.stop.load(Ordering::Relaxed) {
                    let since = *stopped_at.get_or_insert_with(Instant::now);
                    if since.elapsed() > GIVE_UP_AFTER_STOP {
                        break;
                    }
                }
                let result = match session.as_mut() {
                    Some(open) => self.send_window(open, &pending),
                    None => match self.connect(next_node) {
                        Ok(opened) => {
                            let open = session.insert(opened);
                            self.send_window(open, &pending)
                        }
                        Err(e) => Err(e),
                    },
                };
                match result {
                    Ok((stored, refused)) => {
                        pending.retain(|id| !stored.contains(id));
                        acked.extend(stored);
                        if let Some(reason) = refused {
                            // Not stored (an old token after a rotation, say): send again.
                            self.failed(next_node, &reason);
                            std::thread::sleep(Duration::from_millis(200));
                        }
                    }
                    Err(e) => {
                        self.failed(next_node, &e.to_string());
                        session = None;
                        next_node += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
            self.log
                .lock()
                .expect("ack log poisoned")
                .record(&self.tenant.name, acked, pending);
        }
    }

    fn connect(&self, node: usize) -> std::io::Result<RelpSession> {
        let addr = self
            .nodes
            .get(node)
            .and_then(|e| e.relp)
            .ok_or_else(|| invalid("no node with a RELP listener".into()))?;
        RelpSession::open(addr)
    }

    /// Sends every pending message and reads an answer for each: the ids stored (`rsp 200`),
    /// and why any others were refused. `Err` when the connection failed or went silent.
    fn send_window(
        &self,
        session: &mut RelpSession,
        pending: &[String],
    ) -> std::io::Result<(Vec<String>, Option<String>)> {
        let token = self
            .tokens
            .get(&self.tenant.name)
            .unwrap_or_else(|| self.tenant.token.clone());
        let mut in_flight = HashMap::new();
        for id in pending {
            let message = format!(
                "<14>1 - chaos-relp chaos - - [meniscus tenant=\"{}\" token=\"{token}\" id=\"{id}\"] chaos event {id}",
                self.tenant.name
            );
            in_flight.insert(session.send("syslog", &message)?, id.clone());
        }
        let mut stored = Vec::new();
        let mut refused = None;
        while !in_flight.is_empty() {
            let answer = session.answer()?;
            if answer.command == "serverclose" {
                return Err(std::io::ErrorKind::ConnectionAborted.into());
            }
            let Some(id) = in_flight.remove(&answer.txnr) else {
                return Err(invalid(format!(
                    "an answer to unknown txnr {}",
                    answer.txnr
                )));
            };
            if answer.command == "rsp" && answer.data.starts_with("200") {
                stored.push(id);
            } else {
                refused = Some(format!("{} {:?}", answer.command, answer.data));
            }
        }
        Ok((stored, refused))
    }

    fn failed(&self, node: usize, reason: &str) {
        let node = self.nodes.get(node).map(|e| e.id).unwrap_or(0);
        self.log
            .lock()
            .expect("ack log poisoned")
            .failed(format!("relp to node {node}: {reason}"));
    }
}
