//! Decodes the client byte streams captured from real kubectl (1.32 and 1.20, see
//! `fixtures/spdy/README.md`): every frame parses, all header blocks decompress with ONE
//! context, and the streams are the ones client-go creates, in its order.
use k8s_stream::spdy::frame::{Frame, RstStatus, MAX_PAYLOAD_LEN};
use k8s_stream::spdy::header_block::HeaderDecoder;
use k8s_stream::spdy::session::{header, Role, Session, SessionConfig};
use tokio::io::AsyncWriteExt;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/spdy");

struct Decoded {
    /// (stream id, streamtype) per SYN_STREAM, in wire order.
    syn_streams: Vec<(u32, String)>,
    /// Payload and FIN per DATA frame.
    data: Vec<(u32, Vec<u8>, bool)>,
    resets: Vec<(u32, RstStatus)>,
    goaways: usize,
}

fn decode_fixture(name: &str) -> Decoded {
    let bytes = std::fs::read(format!("{FIXTURES}/{name}.bin")).expect("fixture");
    let mut decoder = HeaderDecoder::default();
    let mut out = Decoded {
        syn_streams: vec![],
        data: vec![],
        resets: vec![],
        goaways: 0,
    };
    let mut rest = &bytes[..];
    while !rest.is_empty() {
        let (frame, used) = Frame::parse(rest, MAX_PAYLOAD_LEN)
            .unwrap_or_else(|e| panic!("{name}: bad frame: {e}"))
            .unwrap_or_else(|| panic!("{name}: truncated frame at the end"));
        rest = &rest[used..];
        match frame {
            Frame::SynStream(syn) => {
                let headers = decoder.decode(&syn.header_block).expect("header block");
                assert_eq!(
                    headers.len(),
                    1,
                    "client-go sends only streamType: {headers:?}"
                );
                let kind = header(&headers, "streamtype")
                    .expect("streamtype")
                    .to_string();
                out.syn_streams.push((syn.stream_id.get(), kind));
            }
            Frame::SynReply(r) => {
                decoder.decode(&r.header_block).expect("header block");
            }
            Frame::Headers(h) => {
                decoder.decode(&h.header_block).expect("header block");
            }
            Frame::Data(d) => out
                .data
                .push((d.stream_id.get(), d.payload.to_vec(), d.fin)),
            Frame::RstStream(r) => out.resets.push((r.stream_id.get(), r.status)),
            Frame::GoAway(_) => out.goaways += 1,
            Frame::Ping(_) | Frame::Settings(_) | Frame::WindowUpdate(_) => {}
        }
    }
    out
}

fn kinds(d: &Decoded) -> Vec<(u32, &str)> {
    d.syn_streams
        .iter()
        .map(|(id, k)| (*id, k.as_str()))
        .collect()
}

#[test]
fn kubectl_echo_creates_error_stdout_stderr() {
    for name in ["kubectl132_echo", "kubectl120_echo"] {
        let d = decode_fixture(name);
        assert_eq!(
            kinds(&d),
            [(1, "error"), (3, "stdout"), (5, "stderr")],
            "{name}"
        );
        assert!(d.data.is_empty(), "{name}: no stdin, no data");
        assert_eq!(d.goaways, 1, "{name}: closes with GOAWAY");
    }
}

#[test]
fn kubectl_stdin_sends_data_then_empty_fin() {
    for name in ["kubectl132_stdin", "kubectl120_stdin"] {
        let d = decode_fixture(name);
        assert_eq!(
            kinds(&d),
            [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "stderr")],
            "{name}"
        );
        let stdin: Vec<u8> = d
            .data
            .iter()
            .filter(|f| f.0 == 3)
            .flat_map(|f| f.1.clone())
            .collect();
        assert_eq!(stdin, b"ping\n", "{name}");
        // spdystream's Close(): the last DATA frame is empty with FIN.
        assert_eq!(d.data.last(), Some(&(3, Vec::new(), true)), "{name}");
        // Kubernetes' connection Close(): RST CANCEL for its streams, then GOAWAY.
        assert!(
            d.resets.iter().all(|(_, s)| *s == RstStatus::Cancel),
            "{name}"
        );
        assert_eq!(d.goaways, 1, "{name}");
    }
}

#[tokio::test]
async fn a_server_session_accepts_the_captured_streams() {
    for (name, expected) in [
        (
            "kubectl132_stdin",
            vec!["error", "stdin", "stdout", "stderr"],
        ),
        ("kubectl120_echo", vec!["error", "stdout", "stderr"]),
    ] {
        let bytes = std::fs::read(format!("{FIXTURES}/{name}.bin")).unwrap();
        let (ours, mut theirs) = tokio::io::duplex(1 << 20);
        let (_session, mut incoming) = Session::new(ours, Role::Server, SessionConfig::default());
        theirs.write_all(&bytes).await.unwrap();
        let mut got = Vec::new();
        while let Ok(Some(s)) =
            tokio::time::timeout(std::time::Duration::from_secs(5), incoming.next()).await
        {
            got.push(
                header(s.headers(), "streamtype")
                    .unwrap_or_default()
                    .to_string(),
            );
            drop(s.accept().await);
        }
        // The capture ends with GOAWAY, after which `next` yields None.
        assert_eq!(got, expected, "{name}");
    }
}
