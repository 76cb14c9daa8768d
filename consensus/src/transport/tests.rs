use raft::prelude::MessageType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::peer_tls::CertificateAuthority;

fn heartbeat(from: u64, to: u64, term: u64) -> Message {
    let mut m = Message::default();
    m.set_msg_type(MessageType::MsgHeartbeat);
    m.from = from;
    m.to = to;
    m.term = term;
    m
}

/// The next raft message: (group, term).
async fn recv(rx: &mut mpsc::Receiver<Inbound>) -> (u64, u64) {
    let inbound = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("a message arrives")
        .expect("the channel is open");
    match inbound {
        Inbound::Raft { group, message } => (group, message.term),
        other => panic!("expected a raft message, got {other:?}"),
    }
}

/// Nothing arrives for a while.
async fn nothing_arrives(rx: &mut mpsc::Receiver<Inbound>) {
    let got = tokio::time::timeout(Duration::from_millis(500), rx.recv()).await;
    assert!(got.is_err(), "nothing may arrive, got {got:?}");
}

fn tls(ca: &CertificateAuthority, id: u64) -> PeerSecurity {
    PeerSecurity::Tls(ca.node_tls(id).unwrap())
}

struct Bound {
    transport: Arc<Transport>,
    addr: SocketAddr,
    rx: mpsc::Receiver<Inbound>,
}

async fn bind(id: u64, security: PeerSecurity) -> Bound {
    let (tx, rx) = mpsc::channel(100);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let (transport, addr) = Transport::bind(id, any, security, tx).await.unwrap();
    Bound {
        transport,
        addr,
        rx,
    }
}

/// Two nodes that know each other.
async fn pair(a: PeerSecurity, b: PeerSecurity) -> (Bound, Bound) {
    let a = bind(1, a).await;
    let b = bind(2, b).await;
    a.transport.set_peer(2, b.addr);
    b.transport.set_peer(1, a.addr);
    (a, b)
}

/// Waits until the connection is closed by the other end.
async fn closed<S: AsyncReadExt + Unpin>(stream: &mut S) -> bool {
    closed_within(stream, Duration::from_secs(5)).await
}

/// Reads (a TLS alert, say) until the other end closes; false if it has not within `wait`.
async fn closed_within<S: AsyncReadExt + Unpin>(stream: &mut S, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    let until_closed = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(wait, until_closed).await.is_ok()
}

fn frame_bytes(from: u64, messages: &[Message]) -> Vec<u8> {
    let frame = Frame {
        from,
        envelopes: messages
            .iter()
            .map(|m| Envelope {
                group: 0,
                message: m.write_to_bytes().unwrap(),
                ..Default::default()
            })
            .collect(),
    };
    let mut out = (frame.encoded_len() as u32).to_be_bytes().to_vec();
    frame.encode(&mut out).unwrap();
    out
}

#[tokio::test]
async fn messages_reach_their_peer_with_their_group() {
    let (a, mut b) = pair(PeerSecurity::Insecure, PeerSecurity::Insecure).await;
    a.transport
        .send(7, vec![heartbeat(1, 2, 3), heartbeat(1, 2, 4)]);
    a.transport.send(0, vec![heartbeat(1, 9, 1)]); // unknown peer: dropped, counted
    assert_eq!(recv(&mut b.rx).await, (7, 3));
    assert_eq!(recv(&mut b.rx).await, (7, 4));
    assert_eq!(a.transport.stats().dropped.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_bad_frame_closes_only_its_connection() {
    let (a, mut b) = pair(PeerSecurity::Insecure, PeerSecurity::Insecure).await;
    for garbage in [
        vec![0xff, 0xff, 0xff, 0xff],
        vec![0, 0, 0, 3, 0xff, 0xff, 0xff],
    ] {
        let mut raw = TcpStream::connect(b.addr).await.unwrap();
        raw.write_all(&garbage).await.unwrap();
        assert!(closed(&mut raw).await, "the bad connection is closed");
    }
    assert_eq!(b.transport.stats().bad_frames.load(Ordering::Relaxed), 2);
    a.transport.send(0, vec![heartbeat(1, 2, 5)]);
    assert_eq!(recv(&mut b.rx).await.1, 5, "other senders are still served");
}

#[tokio::test]
async fn frames_from_nodes_that_are_not_members_are_dropped_with_their_connection() {
    let (_a, mut b) = pair(PeerSecurity::Insecure, PeerSecurity::Insecure).await;
    let mut raw = TcpStream::connect(b.addr).await.unwrap();
    raw.write_all(&frame_bytes(9, &[heartbeat(9, 2, 1)]))
        .await
        .unwrap();
    assert!(closed(&mut raw).await);
    nothing_arrives(&mut b.rx).await;
    // A member's frame whose raft message claims another sender.
    let mut raw = TcpStream::connect(b.addr).await.unwrap();
    raw.write_all(&frame_bytes(1, &[heartbeat(3, 2, 1)]))
        .await
        .unwrap();
    assert!(closed(&mut raw).await);
    nothing_arrives(&mut b.rx).await;
    assert_eq!(b.transport.stats().bad_frames.load(Ordering::Relaxed), 2);
}

#[tokio::test]
async fn a_frame_header_alone_allocates_nothing_and_a_stalled_body_is_dropped() {
    let (_a, mut b) = pair(PeerSecurity::Insecure, PeerSecurity::Insecure).await;
    let mut raw = TcpStream::connect(b.addr).await.unwrap();
    // 64 MiB announced, 10 bytes sent: the reader holds 10 bytes, not 64 MiB.
    raw.write_all(&(MAX_FRAME_BYTES as u32).to_be_bytes())
        .await
        .unwrap();
    raw.write_all(&[0u8; 10]).await.unwrap();
    nothing_arrives(&mut b.rx).await;
    drop(raw);
    let frame = frame_bytes(1, &[heartbeat(1, 2, 8)]);
    let mut raw = TcpStream::connect(b.addr).await.unwrap();
    raw.write_all(&frame).await.unwrap();
    assert_eq!(recv(&mut b.rx).await.1, 8);
}

#[tokio::test]
async fn a_restarted_peer_is_reached_again() {
    let mut a = bind(1, PeerSecurity::Insecure).await;
    let _ = &mut a.rx;
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    // Reserve an address, then free it: the peer is down.
    let addr = TcpListener::bind(any).await.unwrap().local_addr().unwrap();
    a.transport.set_peer(2, addr);
    a.transport.send(0, vec![heartbeat(1, 2, 1)]);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (b_tx, mut b_rx) = mpsc::channel(100);
    let (b, _) = Transport::bind(2, addr, PeerSecurity::Insecure, b_tx)
        .await
        .unwrap();
    b.set_peer(1, a.addr);
    let mut got = None;
    for term in 2..100 {
        a.transport.send(0, vec![heartbeat(1, 2, term)]);
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(100), b_rx.recv()).await {
            got = Some(m);
            break;
        }
    }
    assert!(got.is_some(), "messages flow once the peer is up");
}

#[tokio::test]
async fn tls_peers_with_certificates_from_one_ca_talk() {
    let ca = CertificateAuthority::generate().unwrap();
    let (a, mut b) = pair(tls(&ca, 1), tls(&ca, 2)).await;
    a.transport.send(3, vec![heartbeat(1, 2, 6)]);
    assert_eq!(recv(&mut b.rx).await, (3, 6));
}

#[tokio::test]
async fn tls_refuses_plain_peers_other_cas_impostors_and_strangers() {
    let ca = CertificateAuthority::generate().unwrap();
    let other_ca = CertificateAuthority::generate().unwrap();
    let (_a, mut b) = pair(tls(&ca, 1), tls(&ca, 2)).await;

    // A plain-text frame is never decoded: it is a bad TLS handshake, or an unfinished one.
    let mut raw = TcpStream::connect(b.addr).await.unwrap();
    raw.write_all(&frame_bytes(1, &[heartbeat(1, 2, 1)]))
        .await
        .unwrap();
    let plain = tokio::spawn(async move {
        closed_within(&mut raw, HANDSHAKE_TIMEOUT + Duration::from_secs(5)).await
    });

    // A node of another CA, claiming to be node 1, cannot connect.
    let stranger = bind(1, tls(&other_ca, 1)).await;
    stranger.transport.set_peer(2, b.addr);
    stranger.transport.send(0, vec![heartbeat(1, 2, 2)]);
    // A member of this CA that is not a member of the cluster (node 3), likewise.
    let outsider = bind(3, tls(&ca, 3)).await;
    outsider.transport.set_peer(2, b.addr);
    outsider.transport.send(0, vec![heartbeat(3, 2, 3)]);
    nothing_arrives(&mut b.rx).await;
    assert!(b.transport.stats().refused.load(Ordering::Relaxed) >= 3);

    // Node 1's certificate, sending frames that claim node 3 (not a member) or whose raft
    // message claims node 3: its connection is closed, nothing is delivered.
    let PeerSecurity::Tls(one) = tls(&ca, 1) else {
        unreachable!()
    };
    for bytes in [
        frame_bytes(3, &[heartbeat(3, 2, 4)]),
        frame_bytes(1, &[heartbeat(3, 2, 4)]),
    ] {
        let tcp = TcpStream::connect(b.addr).await.unwrap();
        let mut stream = one
            .connector()
            .connect(PeerTls::server_name(2), tcp)
            .await
            .unwrap();
        stream.write_all(&bytes).await.unwrap();
        stream.flush().await.unwrap();
        assert!(closed(&mut stream).await);
    }
    nothing_arrives(&mut b.rx).await;
    assert_eq!(b.transport.stats().bad_frames.load(Ordering::Relaxed), 2);

    // A node dialling node 2's address expecting node 5 refuses node 2's certificate.
    let confused = bind(1, tls(&ca, 1)).await;
    confused.transport.set_peer(5, b.addr);
    confused.transport.send(0, vec![heartbeat(1, 5, 9)]);
    nothing_arrives(&mut b.rx).await;
    assert!(plain.await.unwrap(), "the plain-text connection is closed");
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_closed_at_once() {
    let (a, mut b) = pair(PeerSecurity::Insecure, PeerSecurity::Insecure).await;
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS_PER_ADDRESS {
        held.push(TcpStream::connect(b.addr).await.unwrap());
    }
    let mut extra = TcpStream::connect(b.addr).await.unwrap();
    assert!(
        closed(&mut extra).await,
        "the connection past the cap is closed"
    );
    drop(held);
    // Once the idle ones are gone, a member gets through again.
    let mut got = false;
    for term in 1..50 {
        a.transport.send(0, vec![heartbeat(1, 2, term)]);
        if tokio::time::timeout(Duration::from_millis(100), b.rx.recv())
            .await
            .is_ok()
        {
            got = true;
            break;
        }
    }
    assert!(got);
}
