//! A fault-injecting TCP proxy in front of one node's Raft address.
//!
//! Every node reaches node `j` through the proxy `P(->j)`, which forwards to `j`'s real Raft
//! address. The Raft transport opens one outbound connection per peer and never answers on it
//! (replies travel on the peer's own connection back), and the first frame on a connection
//! names its sender, so the proxy knows which directed link `i->j` each connection is and
//! applies that link's [`LinkState`]: blocking `i->j` while `j->i` passes is one-way loss.
//! (One proxy per destination rather than per link because nodes replicate each other's Raft
//! addresses in the cluster metadata: every node dials the same address for `j`.)
//!
//! A link's [`LinkState`] can change at any time:
//! - [`LinkState::Pass`] forwards bytes as they come.
//! - [`LinkState::Degraded`] forwards every chunk `delay` after it was read (order is kept)
//!   and, on a framed proxy, loses `loss_percent` of the frames.
//! - [`LinkState::Drop`] is a partition that looks like one: connections already open are cut
//!   (bytes in flight are discarded, never half-delivered), and new ones are accepted but
//!   everything sent on them is discarded, as if the packets vanished; they are closed once the
//!   link passes again, so the sender reconnects.
//! - [`LinkState::Refuse`] is a partition that looks like a dead peer: open connections are cut
//!   and new ones are closed as soon as their sender is known.
//!
//! Bytes are only ever forwarded whole and in order on one connection, or the connection is
//! closed: the receiver never sees a frame with a hole in it. A framed proxy
//! ([`Proxy::start_framed`]) knows the transport's framing (a 4-byte big-endian length, then a
//! protobuf `Frame` whose field 1 is the sender's id), so it can tell senders apart and lose
//! whole frames, as a network loses packets, without corrupting the stream. An unframed proxy
//! ([`Proxy::start`]) treats every connection as coming from an unknown sender.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::Result;

/// What a link does to the bytes sent over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Forward at once.
    Pass,
    /// Forward each chunk `delay` after it was read; on a framed proxy, lose `loss_percent`
    /// of the frames (ignored otherwise).
    Degraded {
        /// Added latency.
        delay: Duration,
        /// Percentage of frames lost (0-100).
        loss_percent: u8,
    },
    /// Partition: cut open connections; accept new ones and discard what they send.
    Drop,
    /// Partition: cut open connections; close new ones at once.
    Refuse,
}

impl LinkState {
    /// Added latency only.
    pub fn delay(delay: Duration) -> LinkState {
        LinkState::Degraded {
            delay,
            loss_percent: 0,
        }
    }

    fn blocks(self) -> bool {
        matches!(self, LinkState::Drop | LinkState::Refuse)
    }
}

/// How long an upstream connect may take before the downstream connection is closed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a discarding connection looks whether the link passes again.
const POLL: Duration = Duration::from_millis(100);

/// A running proxy. Dropping it closes its listener and every connection.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

struct Shared {
    target: SocketAddr,
    /// Whether the stream is length-prefixed frames (then senders are known and frames can be
    /// lost whole).
    framed: bool,
    states: Mutex<States>,
    stopped: AtomicBool,
    next_id: AtomicU64,
    /// Open connections (downstream, upstream once connected), to cut them on a partition.
    open: Mutex<HashMap<u64, Connection>>,
    /// Bytes forwarded towards the target.
    forwarded: AtomicU64,
    /// Frames lost on purpose.
    lost_frames: AtomicU64,
    /// For a stream that is not framed (TLS): senders told apart by the address they connect
    /// from (each node dials from the IP it listens on).
    senders_by_ip: Mutex<HashMap<IpAddr, u64>>,
}

/// The state of every sender's link: its own, or the default.
struct States {
    default: LinkState,
    by_sender: HashMap<u64, LinkState>,
}

impl States {
    fn of(&self, sender: Option<u64>) -> LinkState {
        sender
            .and_then(|s| self.by_sender.get(&s).copied())
            .unwrap_or(self.default)
    }
}

#[derive(Default)]
struct Connection {
    down: Option<TcpStream>,
    up: Option<TcpStream>,
    /// The sending node, once its first frame arrived.
    sender: Option<u64>,
}

impl Connection {
    fn cut(&self) {
        for stream in [&self.down, &self.up].into_iter().flatten() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Proxy {
    /// Listens on `listen` (port 0 picks one) and forwards a byte stream to `target`.
    pub fn start(listen: SocketAddr, target: SocketAddr) -> Result<Proxy> {
        Proxy::spawn(listen, target, false)
    }

    /// As [`Proxy::start`], for a stream of length-prefixed frames (4-byte big-endian length):
    /// [`LinkState::Degraded`] can then lose whole frames.
    pub fn start_framed(listen: SocketAddr, target: SocketAddr) -> Result<Proxy> {
        Proxy::spawn(listen, target, true)
    }

    fn spawn(listen: SocketAddr, target: SocketAddr, framed: bool) -> Result<Proxy> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            framed,
            states: Mutex::new(States {
                default: LinkState::Pass,
                by_sender: HashMap::new(),
            }),
            stopped: AtomicBool::new(false),
            next_id: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
            forwarded: AtomicU64::new(0),
            lost_frames: AtomicU64::new(0),
            senders_by_ip: Mutex::new(HashMap::new()),
        });
        let accept_shared = shared.clone();
        let accept = std::thread::Builder::new()
            .name(format!("proxy-{addr}"))
            .spawn(move || accept_loop(listener, accept_shared))?;
        Ok(Proxy {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Where senders connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where it forwards to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// The state of links without a state of their own.
    pub fn state(&self) -> LinkState {
        self.shared.state_of(None)
    }

    /// The state of the link from node `sender`.
    pub fn state_from(&self, sender: u64) -> LinkState {
        self.shared.state_of(Some(sender))
    }

    /// Bytes forwarded to the target so far.
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::Relaxed)
    }

    /// Connections from `ip` come from node `sender` (for a proxy that is not framed, which
    /// cannot read the sender from the stream: TLS).
    pub fn name_sender(&self, ip: IpAddr, sender: u64) {
        self.shared
            .senders_by_ip
            .lock()
            .expect("proxy senders poisoned")
            .insert(ip, sender);
    }

    /// Frames lost on purpose so far.
    pub fn lost_frames(&self) -> u64 {
        self.shared.lost_frames.load(Ordering::Relaxed)
    }

    /// Sets every link to `state` (senders' own states are forgotten); a partition cuts the
    /// connections open now.
    pub fn set(&self, state: LinkState) {
        {
            let mut states = self.shared.states.lock().expect("proxy state poisoned");
            states.default = state;
            states.by_sender.clear();
        }
        if state.blocks() {
            self.shared.cut(|_| true);
        }
    }

    /// Sets the link from node `sender`; a partition cuts its connections open now.
    pub fn set_from(&self, sender: u64, state: LinkState) {
        self.shared
            .states
            .lock()
            .expect("proxy state poisoned")
            .by_sender
            .insert(sender, state);
        if state.blocks() {
            // Connections whose sender is not known yet are cut too: it may be this one.
            self.shared.cut(|s| s.is_none_or(|s| s == sender));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        self.shared.cut(|_| true);
    }
}

impl Shared {
    /// The node a connection comes from, by its address (see [`Proxy::name_sender`]).
    fn sender_at(&self, down: &TcpStream) -> Option<u64> {
        let ip = down.peer_addr().ok()?.ip();
        self.senders_by_ip
            .lock()
            .expect("proxy senders poisoned")
            .get(&ip)
            .copied()
    }

    fn state_of(&self, sender: Option<u64>) -> LinkState {
        self.states.lock().expect("proxy state poisoned").of(sender)
    }

    /// Cuts the open connections whose sender matches.
    fn cut(&self, matches: impl Fn(Option<u64>) -> bool) {
        for connection in self
            .open
            .lock()
            .expect("proxy connections poisoned")
            .values()
            .filter(|c| matches(c.sender))
        {
            connection.cut();
        }
    }

    fn register(&self, down: &TcpStream) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Connection {
            down: down.try_clone().ok(),
            up: None,
            sender: None,
        };
        self.open
            .lock()
            .expect("proxy connections poisoned")
            .insert(id, connection);
        id
    }

    /// Records the connection's sender; its link's state.
    fn identify(&self, id: u64, sender: Option<u64>) -> LinkState {
        let mut open = self.open.lock().expect("proxy connections poisoned");
        if let Some(connection) = open.get_mut(&id) {
            connection.sender = sender;
        }
        self.state_of(sender)
    }

    /// Records the upstream stream; false if the link was partitioned meanwhile (then the
    /// connection must not forward anything).
    fn attach_upstream(&self, id: u64, sender: Option<u64>, up: &TcpStream) -> bool {
        let mut open = self.open.lock().expect("proxy connections poisoned");
        if let Some(connection) = open.get_mut(&id) {
            connection.up = up.try_clone().ok();
        }
        // Checked under the connections lock: `set` cuts after storing the state, so either
        // it sees this upstream or this sees its state.
        !self.state_of(sender).blocks()
    }

    fn unregister(&self, id: u64) {
        if let Some(connection) = self
            .open
            .lock()
            .expect("proxy connections poisoned")
            .remove(&id)
        {
            connection.cut();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopped.load(Ordering::Relaxed) {
            return;
        }
        let Ok(down) = stream else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if !shared.framed && shared.state_of(shared.sender_at(&down)) == LinkState::Refuse {
            let _ = down.shutdown(Shutdown::Both);
            continue;
        }
        let shared = shared.clone();
        let _ = std::thread::Builder::new()
            .name("proxy-conn".into())
            .spawn(move || serve(down, shared));
    }
}

/// How long a new connection may take to send its first frame.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// One accepted connection, until either side closes or a partition cuts it.
fn serve(mut down: TcpStream, shared: Arc<Shared>) {
    let id = shared.register(&down);
    let (sender, first) = if shared.framed {
        match read_sender(&mut down) {
            Some(found) => found,
            None => {
                shared.unregister(id);
                return;
            }
        }
    } else {
        (shared.sender_at(&down), Vec::new())
    };
    match shared.identify(id, sender) {
        LinkState::Refuse => {}
        LinkState::Drop => discard(down, &shared, sender),
        LinkState::Pass | LinkState::Degraded { .. } => forward(down, id, sender, first, &shared),
    }
    shared.unregister(id);
}

/// Reads the start of the first frame; the sender it names (field 1 of the protobuf `Frame`)
/// and the bytes read, which still have to be forwarded. `None` if the connection closed first.
fn read_sender(down: &mut TcpStream) -> Option<(Option<u64>, Vec<u8>)> {
    let _ = down.set_read_timeout(Some(FIRST_FRAME_TIMEOUT));
    let mut bytes = Vec::new();
    let mut buf = [0u8; 64];
    // Length (4 bytes), key (1), varint (at most 10): or the whole frame, if shorter.
    while bytes.len() < 15 && frame_len(&bytes).is_none() {
        match down.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    let _ = down.set_read_timeout(None);
    Some((frame_sender(&bytes), bytes))
}

/// The sender named by a frame starting at `bytes`: field 1 (varint) right after the length.
fn frame_sender(bytes: &[u8]) -> Option<u64> {
    let body = bytes.get(4..)?;
    if body.first() != Some(&0x08) {
        return None;
    }
    let mut value = 0u64;
    for (i, byte) in body[1..].iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Reads and throws away everything until the link passes again, then closes.
fn discard(mut down: TcpStream, shared: &Shared, sender: Option<u64>) {
    let _ = down.set_read_timeout(Some(POLL));
    let mut buf = [0u8; 16 * 1024];
    while shared.state_of(sender).blocks() && !shared.stopped.load(Ordering::Relaxed) {
        match down.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

fn forward(
    mut down: TcpStream,
    id: u64,
    sender: Option<u64>,
    first: Vec<u8>,
    shared: &Arc<Shared>,
) {
    let Ok(up) = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) else {
        return; // the peer is down: the sender sees its connection close
    };
    let _ = up.set_nodelay(true);
    let _ = down.set_nodelay(true);
    if !shared.attach_upstream(id, sender, &up) {
        return;
    }
    let (Ok(up_reader), Ok(mut down_writer)) = (up.try_clone(), down.try_clone()) else {
        return;
    };
    // Target -> sender: the transport never answers on this connection, but a close must
    // reach the sender so it reconnects.
    let back = std::thread::spawn(move || {
        let mut up_reader = up_reader;
        let _ = std::io::copy(&mut up_reader, &mut down_writer);
        let _ = down_writer.shutdown(Shutdown::Both);
    });
    // Sender -> target, through a queue so a delay holds chunks without slowing the reader.
    let (chunks, pending) = mpsc::channel::<(Instant, Vec<u8>)>();
    let writer_shared = shared.clone();
    let writer = std::thread::spawn(move || {
        let mut up = up;
        for (due, chunk) in pending {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            if writer_shared.state_of(sender).blocks() || up.write_all(&chunk).is_err() {
                let _ = up.shutdown(Shutdown::Both);
                return;
            }
            writer_shared
                .forwarded
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        // The sender closed: pass the close on, and let the target's answer (if any) and its
        // own close travel back.
        let _ = up.shutdown(Shutdown::Write);
    });
    let mut buf = vec![0u8; 64 * 1024];
    // Framed: bytes of frames not complete yet (starting with what identified the sender),
    // and a per-connection loss sequence.
    let mut partial: Vec<u8> = first;
    let mut dice = crate::plan::Rng::new(id);
    let mut n = 0;
    'read: loop {
        let (delay, loss_percent) = match shared.state_of(sender) {
            LinkState::Pass => (Duration::ZERO, 0),
            LinkState::Degraded {
                delay,
                loss_percent,
            } => (delay, loss_percent),
            LinkState::Drop | LinkState::Refuse => break,
        };
        let due = Instant::now() + delay;
        if !shared.framed {
            if n > 0 && chunks.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        } else {
            partial.extend_from_slice(&buf[..n]);
            let mut used = 0;
            while let Some(len) = frame_len(&partial[used..]) {
                let frame = &partial[used..used + len];
                used += len;
                if loss_percent > 0 && dice.below(100) < u64::from(loss_percent) {
                    shared.lost_frames.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if chunks.send((due, frame.to_vec())).is_err() {
                    break 'read;
                }
            }
            partial.drain(..used);
        }
        n = match down.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
    }
    drop(chunks);
    let _ = writer.join();
    let _ = back.join();
    let _ = down.shutdown(Shutdown::Both);
}

/// The length of the complete frame (header included) at the start of `bytes`, if it is all
/// there.
fn frame_len(bytes: &[u8]) -> Option<usize> {
    let header: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    let len = 4 + u32::from_be_bytes(header) as usize;
    (bytes.len() >= len).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A target that echoes what it receives and counts it.
    fn echo_server() -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut buf) {
                        counter.fetch_add(n as u64, Ordering::Relaxed);
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, received)
    }

    fn connect(proxy: &Proxy) -> TcpStream {
        let stream = TcpStream::connect(proxy.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        stream
    }

    fn round_trip(stream: &mut TcpStream, message: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(message)?;
        let mut answer = vec![0u8; message.len()];
        stream.read_exact(&mut answer)?;
        Ok(answer)
    }

    #[test]
    fn bytes_pass_both_ways() {
        let (target, received) = echo_server();
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), target).unwrap();
        let mut stream = connect(&proxy);
        assert_eq!(round_trip(&mut stream, b"hello").unwrap(), b"hello");
        assert_eq!(round_trip(&mut stream, b"again").unwrap(), b"again");
        assert_eq!(received.load(Ordering::Relaxed), 10);
        // The echo can overtake the forwarding thread's count: give the count a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while proxy.forwarded() < 10 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(proxy.forwarded(), 10);
    }

    #[test]
    fn a_refusing_link_closes_new_connections() {
        let (target, received) = echo_server();
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), target).unwrap();
        proxy.set(LinkState::Refuse);
        let mut stream = connect(&proxy);
        let mut buf = [0u8; 8];
        let _ = stream.write_all(b"lost");
        let read = stream.read(&mut buf);
        assert!(
            matches!(read, Ok(0)) || read.is_err(),
            "a refused connection is closed: {read:?}"
        );
        assert_eq!(received.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_dropped_link_cuts_open_connections_and_discards_new_ones() {
        let (target, received) = echo_server();
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), target).unwrap();
        let mut open = connect(&proxy);
        assert_eq!(round_trip(&mut open, b"before").unwrap(), b"before");

        proxy.set(LinkState::Drop);
        assert!(
            round_trip(&mut open, b"during").is_err(),
            "the open connection is cut"
        );
        let mut blackholed = connect(&proxy);
        blackholed
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(round_trip(&mut blackholed, b"vanishes").is_err());
        assert_eq!(received.load(Ordering::Relaxed), 6, "only 'before' arrived");

        proxy.set(LinkState::Pass);
        let mut buf = [0u8; 8];
        blackholed
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        assert!(
            matches!(blackholed.read(&mut buf), Ok(0) | Err(_)),
            "a discarding connection is closed once the link heals"
        );
        let mut healed = connect(&proxy);
        assert_eq!(round_trip(&mut healed, b"after").unwrap(), b"after");
    }

    #[test]
    fn a_delayed_link_forwards_late_and_in_order() {
        let (target, _) = echo_server();
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), target).unwrap();
        proxy.set(LinkState::delay(Duration::from_millis(200)));
        let mut stream = connect(&proxy);
        let started = Instant::now();
        stream.write_all(b"one").unwrap();
        stream.write_all(b"two").unwrap();
        let mut answer = [0u8; 6];
        stream.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"onetwo");
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn a_lossy_framed_link_loses_whole_frames_only() {
        let (target, _) = echo_server();
        let proxy = Proxy::start_framed("127.0.0.1:0".parse().unwrap(), target).unwrap();
        proxy.set(LinkState::Degraded {
            delay: Duration::ZERO,
            loss_percent: 50,
        });
        let mut stream = connect(&proxy);
        let mut sent = Vec::new();
        for i in 0..200u32 {
            let body = format!("frame-{i:03}");
            sent.extend_from_slice(&(body.len() as u32).to_be_bytes());
            sent.extend_from_slice(body.as_bytes());
        }
        // Split mid-frame on purpose: frames are reassembled before the dice are thrown.
        stream.write_all(&sent[..1001]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        stream.write_all(&sent[1001..]).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut echoed = Vec::new();
        stream.read_to_end(&mut echoed).unwrap();
        let mut frames = Vec::new();
        let mut rest = echoed.as_slice();
        while let Some(len) = frame_len(rest) {
            frames.push(String::from_utf8(rest[4..len].to_vec()).unwrap());
            rest = &rest[len..];
        }
        assert!(rest.is_empty(), "only whole frames arrive");
        assert!(frames.iter().all(|f| f.starts_with("frame-")));
        assert!(frames.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(frames.len() as u64 + proxy.lost_frames(), 200);
        assert!(
            (50..150).contains(&frames.len()),
            "{} arrived",
            frames.len()
        );
    }

    /// A transport frame from `sender` carrying `body` (field 1: sender; the rest opaque).
    fn frame(sender: u8, body: &[u8]) -> Vec<u8> {
        let mut payload = vec![0x08, sender];
        payload.extend_from_slice(body);
        let mut out = (payload.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&payload);
        out
    }

    #[test]
    fn senders_are_told_apart_by_their_first_frame() {
        assert_eq!(frame_sender(&frame(7, b"x")), Some(7));
        assert_eq!(frame_sender(&[0, 0, 0, 3, 0x08, 0xac, 0x02]), Some(300));
        assert_eq!(frame_sender(&[0, 0, 0, 1, 0x12]), None);

        let (target, _) = echo_server();
        let proxy = Proxy::start_framed("127.0.0.1:0".parse().unwrap(), target).unwrap();
        let mut one = connect(&proxy);
        let mut two = connect(&proxy);
        let (a, b) = (frame(1, b"from one"), frame(2, b"from two"));
        assert_eq!(round_trip(&mut one, &a).unwrap(), a);
        assert_eq!(round_trip(&mut two, &b).unwrap(), b);

        proxy.set_from(1, LinkState::Drop);
        assert_eq!(proxy.state_from(1), LinkState::Drop);
        assert_eq!(proxy.state_from(2), LinkState::Pass);
        assert!(round_trip(&mut one, &a).is_err(), "1's connection is cut");
        assert_eq!(round_trip(&mut two, &b).unwrap(), b, "2 still passes");
        let mut again = connect(&proxy);
        again
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(
            round_trip(&mut again, &a).is_err(),
            "1's new connection is discarded"
        );

        proxy.set(LinkState::Pass);
        let mut healed = connect(&proxy);
        assert_eq!(round_trip(&mut healed, &a).unwrap(), a);
    }

    #[test]
    fn a_dead_target_closes_the_connection() {
        let target = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let proxy = Proxy::start("127.0.0.1:0".parse().unwrap(), target).unwrap();
        let mut stream = connect(&proxy);
        let mut buf = [0u8; 4];
        assert!(matches!(stream.read(&mut buf), Ok(0) | Err(_)));
    }
}
