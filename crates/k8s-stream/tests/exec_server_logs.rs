//! What a request may put in a streaming server's log: a SPDY `streamtype` header of 250,000
//! NUL bytes (1.5 KB on the wire once compressed, 250,001 values once split) takes one short
//! field of the `unexpected stream type` line, not tens of megabytes.
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_stream::exec::{self, ExecError, ServeConfig};
use k8s_stream::remotecommand::{ExecOptions, ProtocolVersion, StreamProtocol};
use k8s_stream::spdy;

/// Everything logged, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_huge_stream_type_header_takes_one_short_log_field() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    let (client_io, server_io) = tokio::io::duplex(64 * 1024);
    let opts = ExecOptions {
        command: vec!["true".into()],
        stdout: true,
        ..ExecOptions::default()
    };
    let config = ServeConfig {
        stream_creation_timeout: Duration::from_millis(500),
        ..ServeConfig::default()
    };
    let proto = StreamProtocol::Spdy(ProtocolVersion::V4);
    let server = tokio::spawn(async move { exec::serve(server_io, proto, &opts, &config).await });
    let (session, _incoming) = spdy::Session::new(
        client_io,
        spdy::Role::Client,
        spdy::SessionConfig::default(),
    );
    let nul = "\0".repeat(250_000);
    let _stream = session
        .open_stream(vec![("streamtype".into(), nul)])
        .await
        .expect("the server replies to every stream");
    let served = tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("serve ends at its stream creation timeout")
        .expect("server task");
    assert!(matches!(served, Err(ExecError::StreamCreationTimeout)));

    let log = String::from_utf8(captured.0.lock().expect("log").clone()).expect("utf-8");
    let line = log
        .lines()
        .find(|l| l.contains("unexpected stream type"))
        .unwrap_or_else(|| panic!("no unexpected stream type line in:\n{log}"));
    assert!(
        line.len() < 2048,
        "{} bytes logged: {line:.300}",
        line.len()
    );
    assert!(log.len() < 8192, "{} bytes logged in all", log.len());
}
