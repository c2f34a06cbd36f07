//! Session behaviour over an in-memory duplex pipe: open/accept, half-close, reset, ping,
//! GOAWAY, bounded buffering.
use std::time::Duration;

use bytes::BytesMut;
use k8s_stream::spdy::frame::{Frame, GoAway, GoAwayStatus, Ping, RstStatus, StreamId, SynStream};
use k8s_stream::spdy::header_block::{HeaderDecoder, HeaderEncoder};
use k8s_stream::spdy::session::{header, Headers, Role, Session, SessionConfig, SessionError};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

fn hdrs(stream_type: &str) -> Headers {
    vec![("streamType".to_string(), stream_type.to_string())]
}

fn pair(
    cfg: SessionConfig,
) -> (
    (Session, k8s_stream::spdy::Incoming),
    (Session, k8s_stream::spdy::Incoming),
) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    (
        Session::new(a, Role::Client, cfg.clone()),
        Session::new(b, Role::Server, cfg),
    )
}

#[tokio::test]
async fn open_accept_exchange_and_half_close() {
    let ((client, _ci), (server, mut si)) = pair(SessionConfig::default());
    let server_task = tokio::spawn(async move {
        let incoming = si.next().await.expect("incoming stream");
        assert_eq!(incoming.id(), 1);
        assert_eq!(header(incoming.headers(), "streamtype"), Some("stdin"));
        let mut stream = incoming.accept().await.expect("accept");
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.expect("read to FIN");
        stream.write_all(&got).await.expect("echo");
        stream.shutdown().await.expect("half close");
        got
    });
    let mut stream = timeout(T, client.open_stream(hdrs("stdin")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream.id(), 1);
    stream.write_all(b"hello spdy").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut echoed = Vec::new();
    timeout(T, stream.read_to_end(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed, b"hello spdy");
    assert_eq!(
        timeout(T, server_task).await.unwrap().unwrap(),
        b"hello spdy"
    );
    let second = timeout(T, client.open_stream(hdrs("stdout")));
    // The server no longer takes streams (its Incoming moved into the finished task).
    assert!(matches!(
        second.await.unwrap(),
        Err(SessionError::Reset(3, RstStatus::RefusedStream))
    ));
    drop(server);
}

#[tokio::test]
async fn server_opens_even_ids() {
    let ((_client, mut ci), (server, _si)) = pair(SessionConfig::default());
    let accept = tokio::spawn(async move {
        let s = ci.next().await.unwrap();
        let id = s.id();
        let _stream = s.accept().await.unwrap();
        id
    });
    let stream = timeout(T, server.open_stream(hdrs("x")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stream.id(), 2);
    assert_eq!(accept.await.unwrap(), 2);
}

#[tokio::test]
async fn incoming_reset_fails_open_stream_with_cancel() {
    let ((client, _ci), (_server, mut si)) = pair(SessionConfig::default());
    tokio::spawn(async move {
        while let Some(s) = si.next().await {
            s.reset();
        }
    });
    let err = timeout(T, client.open_stream(hdrs("stdin")))
        .await
        .unwrap()
        .err();
    assert_eq!(err, Some(SessionError::Reset(1, RstStatus::Cancel)));
}

#[tokio::test]
async fn reset_mid_stream_is_a_read_error_after_buffered_data() {
    let ((client, _ci), (_server, mut si)) = pair(SessionConfig::default());
    tokio::spawn(async move {
        let mut s = si.next().await.unwrap().accept().await.unwrap();
        s.write_all(b"partial").await.unwrap();
        s.flush().await.unwrap();
        s.reset(RstStatus::InternalError);
        // Keep the session alive until the client is done.
        tokio::time::sleep(T).await;
    });
    let mut stream = timeout(T, client.open_stream(hdrs("stdout")))
        .await
        .unwrap()
        .unwrap();
    let mut buf = [0u8; 7];
    timeout(T, stream.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"partial");
    let err = timeout(T, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    let err = stream.write_all(b"x").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn reply_timeout() {
    let cfg = SessionConfig {
        reply_timeout: Duration::from_millis(100),
        ..Default::default()
    };
    let ((client, _ci), (_server, mut si)) = pair(cfg);
    let hold = tokio::spawn(async move {
        let s = si.next().await;
        tokio::time::sleep(T).await;
        drop(s);
    });
    let err = timeout(T, client.open_stream(hdrs("stdin")))
        .await
        .unwrap()
        .err();
    assert_eq!(err, Some(SessionError::ReplyTimeout(1)));
    hold.abort();
}

#[tokio::test]
async fn goaway_closes_once_streams_are_done() {
    let ((client, _ci), (server, mut si)) = pair(SessionConfig::default());
    let srv = tokio::spawn(async move {
        let mut s = si.next().await.unwrap().accept().await.unwrap();
        s.write_all(b"bye").await.unwrap();
        s.shutdown().await.unwrap();
        server.goaway().await.unwrap();
        // The client has not finished its half yet: still open.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!server.is_closed());
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        timeout(T, server.closed())
            .await
            .expect("closed after streams are done");
        rest
    });
    let mut stream = timeout(T, client.open_stream(hdrs("stdout")))
        .await
        .unwrap()
        .unwrap();
    let mut got = Vec::new();
    timeout(T, stream.read_to_end(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, b"bye");
    // After the peer's GOAWAY no new streams.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        client.open_stream(hdrs("x")).await.err(),
        Some(SessionError::GoneAway)
    );
    // Give the server time to check it stays open while our half is still open.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(b"last").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(timeout(T, srv).await.unwrap().unwrap(), b"last");
    timeout(T, client.closed())
        .await
        .expect("client sees the close");
}

#[tokio::test]
async fn dropping_every_handle_closes_the_connection() {
    let (a, mut b) = tokio::io::duplex(64 * 1024);
    let (client, incoming) = Session::new(a, Role::Client, SessionConfig::default());
    drop(client);
    drop(incoming);
    let mut buf = Vec::new();
    timeout(T, b.read_to_end(&mut buf)).await.unwrap().unwrap();
    let (frame, used) = Frame::parse(&buf, 1 << 20).unwrap().unwrap();
    assert_eq!(used, buf.len());
    assert_eq!(
        frame,
        Frame::GoAway(GoAway {
            last_good: StreamId::new(0),
            status: GoAwayStatus::Ok
        })
    );
}

/// A raw peer: writes frames by hand, reads what the session sends.
struct RawPeer {
    io: DuplexStream,
    buf: BytesMut,
    enc: HeaderEncoder,
    dec: HeaderDecoder,
}

impl RawPeer {
    async fn send(&mut self, frame: Frame) {
        let mut out = BytesMut::new();
        frame.encode(&mut out);
        self.io.write_all(&out).await.unwrap();
    }

    async fn syn_stream(&mut self, id: u32, headers: &[(&str, &str)]) {
        let mut block = Vec::new();
        self.enc
            .encode(headers.iter().copied(), &mut block)
            .unwrap();
        self.send(Frame::SynStream(SynStream {
            stream_id: StreamId::new(id),
            associated_to: StreamId::ZERO,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            header_block: block.into(),
        }))
        .await;
    }

    async fn recv(&mut self) -> Frame {
        loop {
            if let Some(frame) = Frame::decode(&mut self.buf, 1 << 24).unwrap() {
                if let Frame::SynReply(r) = &frame {
                    self.dec.decode(&r.header_block).unwrap();
                }
                return frame;
            }
            let n = timeout(T, self.io.read_buf(&mut self.buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "session closed the connection");
        }
    }
}

fn raw_server() -> (RawPeer, Session, k8s_stream::spdy::Incoming) {
    let (a, b) = tokio::io::duplex(1 << 20);
    let (s, i) = Session::new(a, Role::Server, SessionConfig::default());
    let peer = RawPeer {
        io: b,
        buf: BytesMut::new(),
        enc: HeaderEncoder::new(),
        dec: HeaderDecoder::default(),
    };
    (peer, s, i)
}

#[tokio::test]
async fn ping_of_peer_parity_is_echoed_and_own_parity_is_not() {
    let (mut peer, _s, _i) = raw_server();
    peer.send(Frame::Ping(Ping { id: 2 })).await; // our (server) parity: a reply, no echo
    peer.send(Frame::Ping(Ping { id: 7 })).await;
    assert_eq!(peer.recv().await, Frame::Ping(Ping { id: 7 }));
}

#[tokio::test]
async fn periodic_pings_use_own_parity() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let cfg = SessionConfig {
        ping_period: Some(Duration::from_millis(20)),
        ..Default::default()
    };
    let (_s, _i) = Session::new(a, Role::Client, cfg);
    let mut peer = RawPeer {
        io: b,
        buf: BytesMut::new(),
        enc: HeaderEncoder::new(),
        dec: HeaderDecoder::default(),
    };
    assert_eq!(peer.recv().await, Frame::Ping(Ping { id: 1 }));
    assert_eq!(peer.recv().await, Frame::Ping(Ping { id: 3 }));
}

#[tokio::test]
async fn bad_stream_ids_get_protocol_error() {
    let (mut peer, _s, mut incoming) = raw_server();
    peer.syn_stream(3, &[("streamtype", "error")]).await;
    let first = timeout(T, incoming.next()).await.unwrap().unwrap();
    assert_eq!(first.id(), 3);
    // Going backwards, and the server's own parity, are both refused.
    peer.syn_stream(1, &[("streamtype", "stdin")]).await;
    peer.syn_stream(4, &[("streamtype", "stdin")]).await;
    for id in [1, 4] {
        match peer.recv().await {
            Frame::RstStream(rst) => {
                assert_eq!(
                    (rst.stream_id.get(), rst.status),
                    (id, RstStatus::ProtocolError)
                )
            }
            other => panic!("expected RST_STREAM, got {other:?}"),
        }
    }
    // The zlib context stayed in sync: a later valid stream still decodes.
    peer.syn_stream(5, &[("streamtype", "stdout")]).await;
    let next = timeout(T, incoming.next()).await.unwrap().unwrap();
    assert_eq!(
        (next.id(), header(next.headers(), "streamtype")),
        (5, Some("stdout"))
    );
}

#[tokio::test]
async fn window_update_and_settings_are_ignored_and_data_before_reply_dropped() {
    use k8s_stream::spdy::frame::{Data, Setting, Settings, WindowUpdate};
    let (mut peer, _s, mut incoming) = raw_server();
    peer.send(Frame::Settings(Settings {
        clear: false,
        entries: vec![Setting {
            flags: 0,
            id: 7,
            value: 1,
        }],
    }))
    .await;
    peer.send(Frame::WindowUpdate(WindowUpdate {
        stream_id: StreamId::ZERO,
        delta: 1,
    }))
    .await;
    peer.syn_stream(1, &[("streamtype", "stdin")]).await;
    let pending = timeout(T, incoming.next()).await.unwrap().unwrap();
    peer.send(Frame::Data(Data {
        stream_id: StreamId::new(1),
        fin: false,
        payload: "early".into(),
    }))
    .await;
    // Let the session see the early data before we reply.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut stream = pending.accept().await.unwrap();
    assert!(matches!(peer.recv().await, Frame::SynReply(r) if r.stream_id.get() == 1));
    peer.send(Frame::Data(Data {
        stream_id: StreamId::new(1),
        fin: true,
        payload: "late".into(),
    }))
    .await;
    let mut got = String::new();
    timeout(T, stream.read_to_string(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, "late");
}

#[tokio::test]
async fn stalled_reader_bounds_buffered_bytes() {
    // Small buffers so the bound is quick to reach.
    let cfg = SessionConfig {
        stream_buffer_bytes: 256 * 1024,
        ..Default::default()
    };
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (client, _ci) = Session::new(a, Role::Client, cfg.clone());
    let (server, mut si) = Session::new(b, Role::Server, cfg);
    let acceptor = tokio::spawn(async move {
        // Accept but never read.
        let s = si.next().await.unwrap().accept().await.unwrap();
        tokio::time::sleep(T * 3).await;
        drop(s);
    });
    let mut stream = timeout(T, client.open_stream(hdrs("stdin")))
        .await
        .unwrap()
        .unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    // Write until a write makes no progress for 300 ms (or a generous cap is hit).
    while written < 64 * 1024 * 1024 {
        match timeout(Duration::from_millis(300), stream.write_all(&chunk)).await {
            Ok(r) => {
                r.unwrap();
                written += chunk.len();
            }
            Err(_) => break,
        }
    }
    let stats = server.stats();
    // Bound: the receiving stream buffer (256 KiB, plus at most one 64 KiB frame)...
    assert!(stats.recv_buffered <= 256 * 1024 + 64 * 1024, "{stats:?}");
    // ...and end to end: stream buffer + one frame + read buffer + pipe + send queue (x2 while
    // the writer holds a batch) — far below what we tried to write.
    println!("stalled stream: {written} bytes accepted, {stats:?}");
    assert!(
        written <= 2 * 1024 * 1024,
        "wrote {written} bytes into a stalled stream"
    );
    acceptor.abort();
}

/// A SYN_STREAM that is already in the buffer when the session starts (it arrived in the same
/// read as the 101 response) is accepted, not refused: the reader may run before `new` returns.
#[test]
fn syn_stream_buffered_before_the_session_starts_is_accepted() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..200 {
        rt.block_on(async {
            let (mut peer, ours) = tokio::io::duplex(64 * 1024);
            let mut encoder = HeaderEncoder::new();
            let mut block = Vec::new();
            encoder
                .encode([("streamtype", "error")], &mut block)
                .unwrap();
            let mut wire = BytesMut::new();
            Frame::SynStream(SynStream {
                stream_id: StreamId::new(1),
                associated_to: StreamId::ZERO,
                priority: 0,
                slot: 0,
                fin: false,
                unidirectional: false,
                header_block: block.into(),
            })
            .encode(&mut wire);
            peer.write_all(&wire).await.unwrap();
            let (_server, mut incoming) =
                Session::new(ours, Role::Server, SessionConfig::default());
            let stream = timeout(T, incoming.next()).await.unwrap();
            let stream = stream.expect("the buffered SYN_STREAM reaches Incoming");
            timeout(T, stream.accept()).await.unwrap().expect("accept");
        });
    }
}

/// A connection that drops mid-stream ends the stream's reads with EOF after its buffered
/// data, as spdystream does: remotecommand reads an error stream ended so as success (a kubelet
/// restarted mid-exec leaves kubectl with exit 0, seed 000), so an error here would change what
/// every client of the chain prints.
#[tokio::test]
async fn lost_connection_ends_reads_with_eof() {
    let (mut peer, _session, mut incoming) = raw_server();
    peer.syn_stream(1, &[("streamtype", "error")]).await;
    let pending = timeout(T, incoming.next()).await.unwrap().unwrap();
    let mut stream = pending.accept().await.unwrap();
    assert!(matches!(peer.recv().await, Frame::SynReply(r) if r.stream_id.get() == 1));
    peer.send(Frame::Data(k8s_stream::spdy::frame::Data {
        stream_id: StreamId::new(1),
        fin: false,
        payload: "partial".into(),
    }))
    .await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    drop(peer);
    let mut got = String::new();
    timeout(T, stream.read_to_string(&mut got))
        .await
        .unwrap()
        .expect("EOF, not an error");
    assert_eq!(got, "partial");
}

/// A peer that floods PINGs and never reads our echoes is pushed back by TCP: the session stops
/// taking frames once its unwritten replies reach a bound, instead of queueing one per PING.
#[tokio::test]
async fn ping_flood_from_a_peer_that_does_not_read_is_pushed_back() {
    const PINGS: u32 = 100_000;
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (_session, _incoming) = Session::new(a, Role::Server, SessionConfig::default());
    let (mut rd, mut wr) = tokio::io::split(b);
    let mut flood = BytesMut::new();
    for n in 0..PINGS {
        Frame::Ping(Ping { id: 2 * n + 1 }).encode(&mut flood);
    }
    let total = flood.len();
    let writer = tokio::spawn(async move {
        wr.write_all(&flood).await.unwrap();
        wr
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !writer.is_finished(),
        "the session took all {total} bytes of PINGs while none of its echoes was read"
    );
    let reader = tokio::spawn(async move {
        let mut echoed = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while echoed < total {
            match rd.read(&mut buf).await.unwrap() {
                0 => break,
                n => echoed += n,
            }
        }
        echoed
    });
    let _wr = timeout(T, writer).await.unwrap().unwrap();
    assert_eq!(timeout(T, reader).await.unwrap().unwrap(), total);
}
