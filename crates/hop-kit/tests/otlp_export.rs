//! The OTLP layer posts a well-formed OTLP/HTTP JSON export request for an `exec_session` span.

use std::time::Duration;

use bytes::Bytes;
use hop_kit::otlp::OtlpLayer;
use hop_kit::{exec_session_span, TraceParent};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing_subscriber::layer::SubscriberExt;

/// A collector on 127.0.0.1:0 that hands every request (path, content type, body) to `tx`.
async fn collector() -> (
    std::net::SocketAddr,
    mpsc::Receiver<(String, String, Bytes)>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let ctype = req
                            .headers()
                            .get(http::header::CONTENT_TYPE)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = req.into_body().collect().await?.to_bytes();
                        let _ = tx.send((path, ctype, body)).await;
                        Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from_static(
                            b"{}",
                        ))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn exec_session_span_is_posted_as_otlp_json() {
    let (addr, mut requests) = collector().await;
    let layer = OtlpLayer::start(&format!("http://{addr}"), "kubelet-stream").expect("layer");
    let subscriber = tracing_subscriber::registry().with(layer);
    let trace: TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        .parse()
        .expect("traceparent");
    tracing::subscriber::with_default(subscriber, || {
        let span = exec_session_span(&trace);
        let _entered = span.enter();
        tracing::info!(event = "accept", pod = "web", container = "app", command = ?["echo", "hi"], "stream requested");
        tracing::info!(event = "close", to_client = 12u64, "stream ended");
        // Outside any exec_session span: not exported.
        drop(_entered);
        tracing::info!("unrelated");
    });

    let (path, ctype, body) = tokio::time::timeout(Duration::from_secs(10), requests.recv())
        .await
        .expect("the exporter posted within 10 s")
        .expect("a request");
    assert_eq!(path, "/v1/traces");
    assert_eq!(ctype, "application/json");
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
    let rs = &v["resourceSpans"][0];
    assert_eq!(rs["resource"]["attributes"][0]["key"], "service.name");
    assert_eq!(
        rs["resource"]["attributes"][0]["value"]["stringValue"],
        "kubelet-stream"
    );
    let spans = rs["scopeSpans"][0]["spans"].as_array().expect("spans");
    assert_eq!(spans.len(), 1, "{v}");
    let s = &spans[0];
    assert_eq!(s["name"], "exec_session");
    assert_eq!(s["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(s["spanId"].as_str().map(str::len), Some(16));
    let start: u128 = s["startTimeUnixNano"]
        .as_str()
        .expect("start")
        .parse()
        .expect("nanos");
    let end: u128 = s["endTimeUnixNano"]
        .as_str()
        .expect("end")
        .parse()
        .expect("nanos");
    assert!(start > 0 && end >= start);
    let attr = |key: &str| {
        s["attributes"]
            .as_array()
            .and_then(|a| a.iter().find(|kv| kv["key"] == key))
            .map(|kv| kv["value"]["stringValue"].clone())
    };
    assert_eq!(attr("hop"), Some("kubelet-stream".into()));
    assert_eq!(attr("pod"), Some("web".into()));
    assert_eq!(attr("container"), Some("app".into()));
    assert_eq!(attr("command"), Some(r#"["echo", "hi"]"#.into()));
    let events: Vec<&str> = s["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(events, ["accept", "close"]);
    assert_eq!(hop_kit::otlp::dropped_spans(), 0);
}
