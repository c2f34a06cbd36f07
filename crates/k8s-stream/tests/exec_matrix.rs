//! Every protocol version end to end through `exec::serve` and `exec::connect` over an in-memory
//! pipe: stdout, stderr, stdin EOF, resize, and the outcome texts per version.
use std::time::Duration;

use k8s_stream::exec::{self, ExecOutcome, ServeConfig};
use k8s_stream::remotecommand::{
    ExecOptions, ProtocolVersion, RemoteError, StreamProtocol, TerminalSize, WsProtocol,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(20);

struct Run {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    outcome: Result<(), RemoteError>,
    resizes: Vec<TerminalSize>,
    server_stdin: Vec<u8>,
}

fn all_protocols() -> Vec<StreamProtocol> {
    let mut v: Vec<StreamProtocol> = ProtocolVersion::NEWEST_FIRST
        .iter()
        .map(|v| StreamProtocol::Spdy(*v))
        .collect();
    v.extend(
        WsProtocol::ALL
            .iter()
            .map(|p| StreamProtocol::WebSocket(*p)),
    );
    v
}

/// Whether the client can tell the server about stdin EOF on this protocol.
fn signals_stdin_eof(p: StreamProtocol) -> bool {
    match p {
        StreamProtocol::Spdy(_) => true,
        StreamProtocol::WebSocket(w) => w.supports_close(),
    }
}

fn has_resize(p: StreamProtocol) -> bool {
    match p {
        StreamProtocol::Spdy(v) => v.supports_resize(),
        StreamProtocol::WebSocket(_) => true,
    }
}

async fn run(
    protocol: StreamProtocol,
    opts: ExecOptions,
    outcome: ExecOutcome,
    stdin: &'static [u8],
    sizes: Vec<TerminalSize>,
) -> Run {
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server_opts = opts.clone();
    let expect_resizes = if opts.tty && has_resize(protocol) {
        sizes.len()
    } else {
        0
    };
    let server = tokio::spawn(async move {
        let mut s = exec::serve(server_io, protocol, &server_opts, &ServeConfig::default())
            .await
            .expect("serve");
        let mut resizes = Vec::new();
        if let Some(rx) = s.resize.as_mut() {
            for _ in 0..expect_resizes {
                resizes.push(rx.recv().await.expect("resize event"));
            }
        }
        let mut got = Vec::new();
        if let Some(mut input) = s.stdin.take() {
            if signals_stdin_eof(protocol) {
                input.read_to_end(&mut got).await.expect("stdin");
            } else {
                got.resize(stdin.len(), 0);
                input.read_exact(&mut got).await.expect("stdin");
            }
        }
        if let Some(mut out) = s.stdout.take() {
            out.write_all(b"out:").await.unwrap();
            out.write_all(&got).await.unwrap();
            out.shutdown().await.unwrap();
        }
        if let Some(mut err) = s.stderr.take() {
            err.write_all(b"err:").await.unwrap();
            err.shutdown().await.unwrap();
        }
        s.status.finish(outcome).await.expect("finish");
        (got, resizes)
    });
    let mut c = exec::connect(client_io, protocol, &opts)
        .await
        .expect("connect");
    if let Some(r) = c.resize.as_mut() {
        for s in &sizes {
            r.send(*s).await.expect("send resize");
        }
    }
    if let Some(mut w) = c.stdin.take() {
        w.write_all(stdin).await.unwrap();
        w.shutdown().await.unwrap();
        // Keep the writer until the end: dropping it is not what a client does mid-session.
        tokio::spawn(async move {
            tokio::time::sleep(LIMIT).await;
            drop(w);
        });
    }
    let read_all = |r: Option<exec::BoxRead>| async move {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            r.read_to_end(&mut buf).await.expect("read output");
        }
        buf
    };
    let (stdout, stderr) = tokio::join!(read_all(c.stdout.take()), read_all(c.stderr.take()));
    let outcome = c.outcome.await;
    let (server_stdin, resizes) = server.await.expect("server task");
    Run {
        stdout,
        stderr,
        outcome,
        resizes,
        server_stdin,
    }
}

fn opts(tty: bool) -> ExecOptions {
    ExecOptions {
        command: vec!["sh".into()],
        stdin: true,
        stdout: true,
        stderr: true,
        tty,
    }
}

#[tokio::test]
async fn streams_flow_in_every_protocol() {
    for p in all_protocols() {
        let r = tokio::time::timeout(
            LIMIT,
            run(p, opts(false), ExecOutcome::Success, b"hello", vec![]),
        )
        .await
        .expect("timeout");
        assert_eq!(r.server_stdin, b"hello", "{p}");
        assert_eq!(r.stdout, b"out:hello", "{p}");
        assert_eq!(r.stderr, b"err:", "{p}");
        assert_eq!(r.outcome, Ok(()), "{p}");
    }
}

#[tokio::test]
async fn exit_code_per_version() {
    let runtime_err = "error executing command [sh -c exit 3], exit code 3";
    for p in all_protocols() {
        let outcome = ExecOutcome::Exited {
            code: 3,
            message: runtime_err.into(),
        };
        let r = tokio::time::timeout(LIMIT, run(p, opts(false), outcome, b"", vec![]))
            .await
            .expect("timeout");
        let expected = match p.version() {
            // v1 servers reset the error stream right after setup: the exit status is lost, and
            // a reset reads as EOF (spdystream), i.e. success.
            ProtocolVersion::V1 => Ok(()),
            ProtocolVersion::V2 | ProtocolVersion::V3 => {
                Err(format!("error executing remote command: command terminated with non-zero exit code: {runtime_err}"))
            }
            ProtocolVersion::V4 | ProtocolVersion::V5 => Err("command terminated with exit code 3".to_string()),
        };
        assert_eq!(r.outcome.map_err(|e| e.to_string()), expected, "{p}");
    }
}

#[tokio::test]
async fn runtime_failure_is_internal_error() {
    let err = "failed to exec in container: OCI runtime exec failed: boom: unknown";
    for p in all_protocols() {
        let r = tokio::time::timeout(
            LIMIT,
            run(p, opts(false), ExecOutcome::Failed(err.into()), b"", vec![]),
        )
        .await
        .expect("timeout");
        let text = format!("Internal error occurred: error executing command in container: {err}");
        let expected = match p.version() {
            ProtocolVersion::V1 => Ok(()),
            ProtocolVersion::V2 | ProtocolVersion::V3 => {
                Err(format!("error executing remote command: {text}"))
            }
            ProtocolVersion::V4 | ProtocolVersion::V5 => Err(text),
        };
        assert_eq!(r.outcome.map_err(|e| e.to_string()), expected, "{p}");
        if let Err(e) = expected {
            let _ = e;
        }
    }
}

#[tokio::test]
async fn tty_resizes_and_no_stderr() {
    let sizes = vec![
        TerminalSize {
            width: 80,
            height: 24,
        },
        TerminalSize {
            width: 100,
            height: 30,
        },
    ];
    for p in all_protocols() {
        let r = tokio::time::timeout(
            LIMIT,
            run(p, opts(true), ExecOutcome::Success, b"x", sizes.clone()),
        )
        .await
        .expect("timeout");
        assert_eq!(r.stdout, b"out:x", "{p}");
        assert!(r.stderr.is_empty(), "{p}: tty has no stderr");
        if has_resize(p) {
            assert_eq!(r.resizes, sizes, "{p}");
        } else {
            assert!(r.resizes.is_empty(), "{p}");
        }
        assert_eq!(r.outcome, Ok(()), "{p}");
    }
}

#[tokio::test]
async fn stdout_only_session() {
    for p in all_protocols() {
        let o = ExecOptions {
            command: vec!["true".into()],
            stdout: true,
            ..ExecOptions::default()
        };
        let r = tokio::time::timeout(LIMIT, run(p, o, ExecOutcome::Success, b"", vec![]))
            .await
            .expect("timeout");
        assert_eq!(r.stdout, b"out:", "{p}");
        assert_eq!(r.outcome, Ok(()), "{p}");
    }
}

/// The SPDY client sends every SYN_STREAM before waiting for a reply: a server that answers
/// only once all of them have arrived still gets its session (a client waiting for each reply,
/// as client-go does, would wait here until its reply timeout).
#[tokio::test]
async fn spdy_streams_are_opened_without_waiting_for_each_reply() {
    use k8s_stream::spdy::{self, Session, SessionConfig};
    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(async move {
        let (_session, mut incoming) =
            Session::new(server_io, spdy::Role::Server, SessionConfig::default());
        let mut pending = Vec::new();
        // error, stdin, stdout, stderr (no tty, so no resize stream).
        while pending.len() < 4 {
            pending.push(incoming.next().await.expect("a stream"));
        }
        let mut streams = Vec::new();
        for p in pending {
            streams.push(p.accept().await.expect("accept"));
        }
        streams
    });
    let opts = opts(false);
    let cfg = exec::ConnectConfig {
        reply_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let client = tokio::time::timeout(
        LIMIT,
        exec::connect_with(
            client_io,
            StreamProtocol::Spdy(ProtocolVersion::V4),
            &opts,
            &cfg,
        ),
    )
    .await
    .expect("connect bounded");
    assert!(client.is_ok(), "connect failed: {:?}", client.err());
    let streams = tokio::time::timeout(LIMIT, server)
        .await
        .expect("server bounded")
        .expect("server task");
    let ids: Vec<u32> = streams.iter().map(|s| s.id()).collect();
    assert_eq!(
        ids,
        [1, 3, 5, 7],
        "client-go's order: error, stdin, stdout, stderr"
    );
}
