//! The apiserver translator end to end: WebSocket v5 client → translate → SPDY streaming server.
use std::time::Duration;

use k8s_stream::exec::{self, ExecError, ExecOutcome, ServeConfig};
use k8s_stream::remotecommand::{
    ExecOptions, ProtocolVersion, Status, StreamProtocol, TerminalSize, UpgradeError, WsProtocol,
};
use k8s_stream::translate::translate;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: Duration = Duration::from_secs(20);
const WS: StreamProtocol = StreamProtocol::WebSocket(WsProtocol::V5Channel);

struct Seen {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    outcome: Result<(), String>,
    exit_code: i32,
}

/// A backend streaming server that echoes stdin (to EOF) and reports `outcome`.
fn backend(
    opts: ExecOptions,
    outcome: ExecOutcome,
    want_resize: usize,
) -> (
    tokio::io::DuplexStream,
    tokio::task::JoinHandle<Vec<TerminalSize>>,
) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(async move {
        let proto = StreamProtocol::Spdy(ProtocolVersion::V5);
        let mut s = exec::serve(server, proto, &opts, &ServeConfig::default())
            .await
            .expect("backend serve");
        let mut sizes = Vec::new();
        if let Some(rx) = s.resize.as_mut() {
            for _ in 0..want_resize {
                sizes.push(rx.recv().await.expect("resize"));
            }
        }
        let mut input = Vec::new();
        if let Some(mut r) = s.stdin.take() {
            r.read_to_end(&mut input).await.expect("backend stdin");
        }
        if let Some(mut w) = s.stdout.take() {
            w.write_all(&input).await.unwrap();
            w.shutdown().await.unwrap();
        }
        if let Some(mut w) = s.stderr.take() {
            w.write_all(b"warn").await.unwrap();
            w.shutdown().await.unwrap();
        }
        s.status.finish(outcome).await.expect("backend finish");
        sizes
    });
    (client, task)
}

async fn session<F>(
    opts: ExecOptions,
    dial: F,
    stdin: &'static [u8],
    sizes: Vec<TerminalSize>,
) -> Seen
where
    F: std::future::Future<Output = Result<exec::ClientStreams, ExecError>> + Send + 'static,
{
    let (client_io, front_io) = tokio::io::duplex(64 * 1024);
    let front_opts = opts.clone();
    let translator = tokio::spawn(async move {
        let front = exec::serve(front_io, WS, &front_opts, &ServeConfig::default())
            .await
            .expect("front serve");
        translate(front, dial).await.expect("translate")
    });
    let mut c = exec::connect(client_io, WS, &opts)
        .await
        .expect("ws connect");
    if let Some(r) = c.resize.as_mut() {
        for s in &sizes {
            r.send(*s).await.unwrap();
        }
    }
    let mut keep = None;
    if let Some(mut w) = c.stdin.take() {
        w.write_all(stdin).await.unwrap();
        w.shutdown().await.unwrap(); // v5 CLOSE → SPDY FIN
        keep = Some(w);
    }
    let read_all = |r: Option<exec::BoxRead>| async move {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf).await;
        }
        buf
    };
    let (stdout, stderr) = tokio::join!(read_all(c.stdout.take()), read_all(c.stderr.take()));
    let outcome = c.outcome.await;
    drop(keep);
    translator.await.expect("translator task");
    Seen {
        stdout,
        stderr,
        exit_code: outcome.as_ref().err().map(|e| e.exit_code()).unwrap_or(0),
        outcome: outcome.map_err(|e| e.to_string()),
    }
}

fn opts() -> ExecOptions {
    ExecOptions {
        command: vec!["cat".into()],
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    }
}

async fn dial(
    o: ExecOptions,
    io: tokio::io::DuplexStream,
) -> Result<exec::ClientStreams, ExecError> {
    exec::connect(io, StreamProtocol::Spdy(ProtocolVersion::V5), &o).await
}

#[tokio::test]
async fn stdin_close_output_and_exit_code() {
    let (io, server) = backend(
        opts(),
        ExecOutcome::Exited {
            code: 3,
            message: "exit code 3".into(),
        },
        0,
    );
    let seen = tokio::time::timeout(
        LIMIT,
        session(opts(), dial(opts(), io), b"hello through", vec![]),
    )
    .await
    .expect("timeout");
    server.await.unwrap();
    assert_eq!(seen.stdout, b"hello through");
    assert_eq!(seen.stderr, b"warn");
    assert_eq!(
        seen.outcome,
        Err("command terminated with exit code 3".into())
    );
    assert_eq!(seen.exit_code, 3);
}

#[tokio::test]
async fn success() {
    let (io, server) = backend(opts(), ExecOutcome::Success, 0);
    let seen = tokio::time::timeout(LIMIT, session(opts(), dial(opts(), io), b"x", vec![]))
        .await
        .expect("timeout");
    server.await.unwrap();
    assert_eq!(seen.outcome, Ok(()));
}

#[tokio::test]
async fn runtime_failure_gets_a_second_internal_error_prefix() {
    let (io, server) = backend(
        opts(),
        ExecOutcome::Failed("failed to exec in container: boom: unknown".into()),
        0,
    );
    let seen = tokio::time::timeout(LIMIT, session(opts(), dial(opts(), io), b"", vec![]))
        .await
        .expect("timeout");
    server.await.unwrap();
    assert_eq!(
        seen.outcome,
        Err("Internal error occurred: Internal error occurred: error executing command in container: failed to exec in container: boom: unknown".into())
    );
    assert_eq!(seen.exit_code, 1);
}

#[tokio::test]
async fn dial_failure_is_internal_error() {
    let failing = async {
        Err(ExecError::Upgrade(UpgradeError::Spdy(
            "Unauthorized".into(),
        )))
    };
    let seen = tokio::time::timeout(LIMIT, session(opts(), failing, b"", vec![]))
        .await
        .expect("timeout");
    assert_eq!(
        seen.outcome,
        Err("Internal error occurred: unable to upgrade connection: Unauthorized".into())
    );
}

#[tokio::test]
async fn status_error_passes_through() {
    let status = Status {
        kind: "Status".into(),
        api_version: "v1".into(),
        status: "Failure".into(),
        message: "container not found (\"app\")".into(),
        reason: "NotFound".into(),
        code: 404,
        ..Status::default()
    };
    let failing = async move { Err(ExecError::Upgrade(UpgradeError::Status(Box::new(status)))) };
    let seen = tokio::time::timeout(LIMIT, session(opts(), failing, b"", vec![]))
        .await
        .expect("timeout");
    assert_eq!(seen.outcome, Err("container not found (\"app\")".into()));
}

#[tokio::test]
async fn tty_resize_is_reencoded() {
    let tty = ExecOptions {
        command: vec!["sh".into()],
        stdin: true,
        stdout: true,
        stderr: false,
        tty: true,
    };
    let sizes = vec![
        TerminalSize {
            width: 120,
            height: 40,
        },
        TerminalSize {
            width: 80,
            height: 24,
        },
    ];
    let (io, server) = backend(tty.clone(), ExecOutcome::Success, sizes.len());
    let seen = tokio::time::timeout(
        LIMIT,
        session(tty.clone(), dial(tty, io), b"ls\n", sizes.clone()),
    )
    .await
    .expect("timeout");
    assert_eq!(server.await.unwrap(), sizes);
    assert_eq!(seen.stdout, b"ls\n");
    assert_eq!(seen.outcome, Ok(()));
}

/// A client that goes away mid-session, as a killed kubectl does: the command still gets stdin
/// EOF, its output is read (and dropped) to the end, and the session ends with the command.
#[tokio::test]
async fn a_client_that_goes_away_leaves_the_command_to_finish() {
    const OUTPUT: usize = 4 * 1024 * 1024;
    let (backend_io, server) = tokio::io::duplex(64 * 1024);
    let backend = tokio::spawn(async move {
        let proto = StreamProtocol::Spdy(ProtocolVersion::V5);
        let mut s = exec::serve(server, proto, &opts(), &ServeConfig::default())
            .await
            .expect("backend serve");
        let mut out = s.stdout.take().expect("stdout");
        out.write_all(b"ready").await.expect("ready");
        let mut input = Vec::new();
        if let Some(mut r) = s.stdin.take() {
            r.read_to_end(&mut input).await.expect("stdin EOF");
        }
        let chunk = vec![b't'; 64 * 1024];
        let mut written = 0;
        while written < OUTPUT {
            if out.write_all(&chunk).await.is_err() {
                break;
            }
            written += chunk.len();
        }
        let _ = out.shutdown().await;
        let _ = s.status.finish(ExecOutcome::Success).await;
        written
    });
    // The client's connection runs through a relay, whose end is the client's death.
    let (client_io, mut relay_client) = tokio::io::duplex(64 * 1024);
    let (mut relay_front, front_io) = tokio::io::duplex(64 * 1024);
    let relay = tokio::spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut relay_client, &mut relay_front).await;
    });
    let translator = tokio::spawn(async move {
        let front = exec::serve(front_io, WS, &opts(), &ServeConfig::default())
            .await
            .expect("front serve");
        translate(front, dial(opts(), backend_io)).await
    });
    let mut client = exec::connect(client_io, WS, &opts())
        .await
        .expect("ws connect");
    let mut ready = [0u8; 5];
    let read = client
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut ready);
    tokio::time::timeout(LIMIT, read)
        .await
        .expect("no output before the client went")
        .expect("first output");
    relay.abort();
    let written = tokio::time::timeout(LIMIT, backend)
        .await
        .expect("the command was held up by a client that is gone")
        .expect("backend task");
    assert_eq!(
        written, OUTPUT,
        "the command's output was not read to its end"
    );
    // It ends with the command; its status has nowhere to go.
    let ended = tokio::time::timeout(LIMIT, translator)
        .await
        .expect("the translator outlived the command")
        .expect("translator task");
    assert!(
        matches!(&ended, Err(ExecError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe),
        "{ended:?}"
    );
}
