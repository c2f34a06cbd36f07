//! The WebSocket session against a raw tungstenite peer: the exact messages on the wire.
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use k8s_stream::exec::{self, ExecOutcome, ServeConfig};
use k8s_stream::remotecommand::{ExecOptions, StreamProtocol, WsProtocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

const LIMIT: Duration = Duration::from_secs(10);

async fn raw_client(io: tokio::io::DuplexStream) -> WebSocketStream<tokio::io::DuplexStream> {
    WebSocketStream::from_raw_socket(io, Role::Client, None).await
}

fn opts(stdin: bool, stdout: bool, stderr: bool) -> ExecOptions {
    ExecOptions {
        command: vec!["x".into()],
        stdin,
        stdout,
        stderr,
        tty: false,
    }
}

async fn next_data(ws: &mut WebSocketStream<tokio::io::DuplexStream>) -> Message {
    loop {
        match ws.next().await.expect("message").expect("ws") {
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

#[tokio::test]
async fn ready_signal_on_lowest_writable_channel() {
    for (o, first) in [
        (opts(true, true, true), 1u8),
        (opts(true, false, true), 2),
        (opts(true, false, false), 3),
    ] {
        let (a, b) = tokio::io::duplex(4096);
        let proto = StreamProtocol::WebSocket(WsProtocol::V5Channel);
        let server = tokio::spawn(async move {
            exec::serve(b, proto, &o, &ServeConfig::default())
                .await
                .map(|_| ())
        });
        let mut ws = raw_client(a).await;
        let m = tokio::time::timeout(LIMIT, next_data(&mut ws))
            .await
            .unwrap();
        assert_eq!(m, Message::Binary(Bytes::from(vec![first])));
        server.await.unwrap().unwrap();
    }
    // base64: the ready signal is the text "1".
    let (a, b) = tokio::io::duplex(4096);
    let proto = StreamProtocol::WebSocket(WsProtocol::Base64Channel);
    let o = opts(false, true, false);
    let server = tokio::spawn(async move {
        exec::serve(b, proto, &o, &ServeConfig::default())
            .await
            .map(|_| ())
    });
    let mut ws = raw_client(a).await;
    assert_eq!(
        tokio::time::timeout(LIMIT, next_data(&mut ws))
            .await
            .unwrap(),
        Message::Text("1".into())
    );
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn v5_close_ends_stdin_then_status_and_close_1000() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let proto = StreamProtocol::WebSocket(WsProtocol::V5Channel);
    let server = tokio::spawn(async move {
        let mut s = exec::serve(b, proto, &opts(true, true, false), &ServeConfig::default())
            .await
            .unwrap();
        let mut input = Vec::new();
        s.stdin
            .take()
            .unwrap()
            .read_to_end(&mut input)
            .await
            .unwrap();
        let mut out = s.stdout.take().unwrap();
        out.write_all(&input).await.unwrap();
        out.shutdown().await.unwrap();
        s.status
            .finish(ExecOutcome::Exited {
                code: 2,
                message: "x".into(),
            })
            .await
            .unwrap();
    });
    let mut ws = raw_client(a).await;
    assert_eq!(
        next_data(&mut ws).await,
        Message::Binary(Bytes::from_static(&[1]))
    );
    ws.send(Message::Ping(Bytes::from_static(b"p")))
        .await
        .unwrap();
    ws.send(Message::Binary(Bytes::from_static(&[0, b'h', b'i'])))
        .await
        .unwrap();
    ws.send(Message::Binary(Bytes::from_static(&[0xFF, 0])))
        .await
        .unwrap();
    let mut pong = false;
    let mut got = Vec::new();
    let close = loop {
        match tokio::time::timeout(LIMIT, ws.next())
            .await
            .unwrap()
            .expect("message")
            .expect("ws")
        {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"p");
                pong = true;
            }
            Message::Binary(b) => got.push(b.to_vec()),
            Message::Close(f) => break f,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(pong, "ping answered");
    assert_eq!(got[0], b"\x01hi");
    let status = String::from_utf8(got[1][1..].to_vec()).unwrap();
    assert_eq!(got[1][0], 3);
    assert_eq!(
        status,
        r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: x","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"2"}]}}"#
    );
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Normal));
    // Our side answers the close; the server finishes.
    let _ = ws.next().await;
    tokio::time::timeout(LIMIT, server).await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_close_signal_ends_the_session() {
    let (a, b) = tokio::io::duplex(4096);
    let proto = StreamProtocol::WebSocket(WsProtocol::V5Channel);
    let server = tokio::spawn(async move {
        let mut s = exec::serve(b, proto, &opts(true, true, false), &ServeConfig::default())
            .await
            .unwrap();
        let mut input = Vec::new();
        s.stdin.take().unwrap().read_to_end(&mut input).await
    });
    let mut ws = raw_client(a).await;
    let _ = next_data(&mut ws).await;
    ws.send(Message::Binary(Bytes::from_static(&[0xFF, 0, 0])))
        .await
        .unwrap();
    let err = tokio::time::timeout(LIMIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("Single channel byte should follow stream close signal"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_and_unread_channels_are_dropped() {
    let (a, b) = tokio::io::duplex(4096);
    let proto = StreamProtocol::WebSocket(WsProtocol::V4Channel);
    let server = tokio::spawn(async move {
        let mut s = exec::serve(b, proto, &opts(true, true, false), &ServeConfig::default())
            .await
            .unwrap();
        let mut buf = [0u8; 2];
        s.stdin.take().unwrap().read_exact(&mut buf).await.unwrap();
        buf
    });
    let mut ws = raw_client(a).await;
    let _ = next_data(&mut ws).await;
    for m in [
        vec![],
        vec![9, 1, 2],
        vec![4, b'{'],
        vec![1, b'z'],
        vec![0, b'o', b'k'],
    ] {
        ws.send(Message::Binary(Bytes::from(m))).await.unwrap();
    }
    assert_eq!(
        &tokio::time::timeout(LIMIT, server).await.unwrap().unwrap(),
        b"ok"
    );
}

#[tokio::test]
async fn client_sees_abnormal_closure_text() {
    let (a, b) = tokio::io::duplex(4096);
    let proto = StreamProtocol::WebSocket(WsProtocol::V5Channel);
    let client = tokio::spawn(async move {
        let c = exec::connect(a, proto, &opts(false, true, false))
            .await
            .unwrap();
        c.outcome.await
    });
    let mut server_ws = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
    server_ws
        .send(Message::Binary(Bytes::from_static(&[1])))
        .await
        .unwrap();
    drop(server_ws); // TCP-level close without a close frame
    let err = tokio::time::timeout(LIMIT, client)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "error reading from error stream: next reader: websocket: close 1006 (abnormal closure): unexpected EOF"
    );
}

#[tokio::test]
async fn client_sees_close_code_and_reason() {
    let (a, b) = tokio::io::duplex(4096);
    let proto = StreamProtocol::WebSocket(WsProtocol::V5Channel);
    let client = tokio::spawn(async move {
        let c = exec::connect(a, proto, &opts(false, true, false))
            .await
            .unwrap();
        c.outcome.await
    });
    let mut server_ws = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
    let frame = CloseFrame {
        code: CloseCode::Error,
        reason: "kubelet restarting".into(),
    };
    server_ws.send(Message::Close(Some(frame))).await.unwrap();
    let err = tokio::time::timeout(LIMIT, client)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "error reading from error stream: next reader: websocket: close 1011 (internal server error): kubelet restarting"
    );
}

#[tokio::test(start_paused = true)]
async fn client_pings_every_five_seconds() {
    let (a, b) = tokio::io::duplex(4096);
    let proto = StreamProtocol::WebSocket(WsProtocol::V5Channel);
    let c = exec::connect(a, proto, &opts(false, true, false))
        .await
        .unwrap();
    let mut server_ws = WebSocketStream::from_raw_socket(b, Role::Server, None).await;
    let start = tokio::time::Instant::now();
    let m = tokio::time::timeout(Duration::from_secs(6), server_ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(m, Message::Ping(_)), "{m:?}");
    assert!(start.elapsed() >= Duration::from_secs(5));
    drop(c);
}
