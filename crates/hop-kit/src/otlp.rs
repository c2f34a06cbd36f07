//! `--otlp-endpoint URL`: every `exec_session` span of a hop exported as an OTLP span
//! (OTLP/HTTP, JSON encoding, `POST URL/v1/traces`), so one exec shows up as one trace in Jaeger,
//! Tempo or an OpenTelemetry collector. Trace id = the session's `traceparent` trace id (the
//! span's `session` field), name `exec_session`, start/end = the span's creation and close, the
//! hop as `service.name` and `hop`, pod/container/command... taken from the events logged inside
//! the span, and each event (`accept`, `upgrade`, `close`, ...) as a span event.
//!
//! A [`tracing_subscriber::Layer`], kept off the data path: finished spans go into a bounded
//! channel ([`QUEUE`]); when it is full the span is dropped and counted
//! ([`dropped_spans`], also in `/metrics` as `execlab_otlp_spans_dropped_total`). A thread of
//! its own batches whatever is queued into one POST with hyper's client (plain `http://` only).
//!
//! Encoding checked against the OpenTelemetry protocol specification (OTLP/HTTP: `/v1/traces`,
//! `Content-Type: application/json`; JSON mapping of `ExportTraceServiceRequest`: lowerCamelCase
//! field names, trace and span ids as hex strings, 64-bit integers as decimal strings, enums as
//! numbers: span kind 2 = SERVER, status code 2 = ERROR).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;
use url::Url;

/// Finished spans waiting for the exporter; beyond this they are dropped (and counted).
pub const QUEUE: usize = 1024;
/// At most this many spans per POST.
const BATCH: usize = 512;
/// Events kept per span (a session's trace events are a dozen; this bounds a chatty one).
const MAX_EVENTS: usize = 128;
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Event fields that also describe the whole session: copied onto the span (first value wins).
const SESSION_FIELDS: [&str; 10] = [
    "pod",
    "namespace",
    "container",
    "command",
    "user",
    "kind",
    "protocol",
    "exec_id",
    "pid",
    "method",
];

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Spans not exported since the process started: queue full, or the POST failed.
pub fn dropped_spans() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// `--otlp-endpoint` is not usable.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("invalid --otlp-endpoint {0:?}: {1}")]
    InvalidEndpoint(String, String),
    #[error("starting the OTLP exporter thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The traces URL for an `--otlp-endpoint` value: `URL/v1/traces` (kept if already there).
pub fn traces_url(endpoint: &str) -> Result<Url, OtlpError> {
    let invalid = |why: &str| OtlpError::InvalidEndpoint(endpoint.to_owned(), why.to_owned());
    let url = Url::parse(endpoint).map_err(|e| invalid(&e.to_string()))?;
    if url.scheme() != "http" {
        return Err(invalid("only http:// endpoints are supported"));
    }
    let path = url.path().trim_end_matches('/');
    if path.ends_with("/v1/traces") {
        return Ok(url);
    }
    let mut traces = url.clone();
    traces.set_path(&format!("{path}/v1/traces"));
    Ok(traces)
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue {
    Str(String),
    Int(i64),
    Double(f64),
    Bool(bool),
}

impl AttrValue {
    fn to_json(&self) -> Value {
        match self {
            AttrValue::Str(s) => json!({ "stringValue": s }),
            AttrValue::Int(i) => json!({ "intValue": i.to_string() }),
            AttrValue::Double(d) => json!({ "doubleValue": d }),
            AttrValue::Bool(b) => json!({ "boolValue": b }),
        }
    }
}

/// One event logged inside the span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanEvent {
    pub time: SystemTime,
    pub name: String,
    pub attributes: Vec<(String, AttrValue)>,
}

/// A closed `exec_session` span, ready to export.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedSpan {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<(String, AttrValue)>,
    pub events: Vec<SpanEvent>,
    /// A warning or error was logged inside the span.
    pub error: bool,
}

/// The `ExportTraceServiceRequest` JSON for `spans` of the hop `service`.
pub fn export_request(service: &str, spans: &[FinishedSpan]) -> Value {
    let spans: Vec<Value> = spans.iter().map(span_json).collect();
    json!({
        "resourceSpans": [{
            "resource": { "attributes": [attr_json("service.name", &AttrValue::Str(service.to_owned()))] },
            "scopeSpans": [{
                "scope": { "name": "execlab", "version": env!("CARGO_PKG_VERSION") },
                "spans": spans,
            }],
        }],
    })
}

fn span_json(span: &FinishedSpan) -> Value {
    let mut v = json!({
        "traceId": hex(&span.trace_id),
        "spanId": hex(&span.span_id),
        "name": "exec_session",
        "kind": 2,
        "startTimeUnixNano": unix_nanos(span.start),
        "endTimeUnixNano": unix_nanos(span.end),
        "attributes": attrs_json(&span.attributes),
        "events": span.events.iter().map(|e| json!({
            "timeUnixNano": unix_nanos(e.time),
            "name": e.name,
            "attributes": attrs_json(&e.attributes),
        })).collect::<Vec<_>>(),
    });
    if span.error {
        v["status"] = json!({ "code": 2 });
    }
    v
}

fn attrs_json(attrs: &[(String, AttrValue)]) -> Vec<Value> {
    attrs.iter().map(|(k, v)| attr_json(k, v)).collect()
}

fn attr_json(key: &str, value: &AttrValue) -> Value {
    json!({ "key": key, "value": value.to_json() })
}

fn unix_nanos(t: SystemTime) -> String {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
        .to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_trace_id(text: &str) -> Option<[u8; 16]> {
    if text.len() != 32 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, slot) in out.iter_mut().enumerate() {
        *slot = u8::from_str_radix(&text[i * 2..i * 2 + 2], 16).ok()?;
    }
    Some(out)
}

/// The layer: collects `exec_session` spans and hands them to the exporter thread.
pub struct OtlpLayer {
    hop: &'static str,
    queue: mpsc::Sender<FinishedSpan>,
}

impl OtlpLayer {
    /// Starts the exporter thread posting to `traces_url(endpoint)` and returns the layer.
    pub fn start(endpoint: &str, hop: &'static str) -> Result<Self, OtlpError> {
        let url = traces_url(endpoint)?;
        let (queue, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || export_thread(url, hop, rx))
            .map_err(OtlpError::Thread)?;
        Ok(Self { hop, queue })
    }
}

/// What the layer keeps in an `exec_session` span's extensions while it is open.
struct OpenSpan {
    trace_id: Option<[u8; 16]>,
    span_id: [u8; 8],
    start: SystemTime,
    attributes: Vec<(String, AttrValue)>,
    events: Vec<SpanEvent>,
    error: bool,
}

/// Collects a span's or an event's fields.
#[derive(Default)]
struct Fields(Vec<(String, AttrValue)>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .push((field.name().to_owned(), AttrValue::Str(value.to_owned())));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0
            .push((field.name().to_owned(), AttrValue::Int(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        let value = i64::try_from(value).map_or(AttrValue::Str(value.to_string()), AttrValue::Int);
        self.0.push((field.name().to_owned(), value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0
            .push((field.name().to_owned(), AttrValue::Double(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0
            .push((field.name().to_owned(), AttrValue::Bool(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((
            field.name().to_owned(),
            AttrValue::Str(format!("{value:?}")),
        ));
    }
}

impl OpenSpan {
    fn absorb_span_fields(&mut self, fields: Fields) {
        for (key, value) in fields.0 {
            match (key.as_str(), &value) {
                ("session", AttrValue::Str(s)) => self.trace_id = parse_trace_id(s),
                _ => set_once(&mut self.attributes, key, value),
            }
        }
    }
}

fn set_once(attrs: &mut Vec<(String, AttrValue)>, key: String, value: AttrValue) {
    if !attrs.iter().any(|(k, _)| *k == key) {
        attrs.push((key, value));
    }
}

impl<S> Layer<S> for OtlpLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "exec_session" {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut open = OpenSpan {
            trace_id: None,
            span_id: random_span_id(),
            start: SystemTime::now(),
            attributes: vec![("hop".to_owned(), AttrValue::Str(self.hop.to_owned()))],
            events: Vec::new(),
            error: false,
        };
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        open.absorb_span_fields(fields);
        span.extensions_mut().insert(open);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(open) = ext.get_mut::<OpenSpan>() {
            let mut fields = Fields::default();
            values.record(&mut fields);
            open.absorb_span_fields(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            let mut ext = span.extensions_mut();
            let Some(open) = ext.get_mut::<OpenSpan>() else {
                continue;
            };
            let mut fields = Fields::default();
            event.record(&mut fields);
            let name = fields
                .0
                .iter()
                .find(|(k, _)| k == "event")
                .or_else(|| fields.0.iter().find(|(k, _)| k == "message"))
                .map(|(_, v)| match v {
                    AttrValue::Str(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for (key, value) in &fields.0 {
                if SESSION_FIELDS.contains(&key.as_str()) {
                    set_once(&mut open.attributes, key.clone(), value.clone());
                }
            }
            if *event.metadata().level() <= Level::WARN {
                open.error = true;
            }
            if open.events.len() < MAX_EVENTS {
                let attributes = fields.0.into_iter().filter(|(k, _)| k != "event").collect();
                open.events.push(SpanEvent {
                    time: SystemTime::now(),
                    name,
                    attributes,
                });
            }
            return;
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<OpenSpan>() else {
            return;
        };
        let finished = FinishedSpan {
            trace_id: open.trace_id.unwrap_or_else(rand::random),
            span_id: open.span_id,
            start: open.start,
            end: SystemTime::now(),
            attributes: open.attributes,
            events: open.events,
            error: open.error,
        };
        if self.queue.try_send(finished).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn random_span_id() -> [u8; 8] {
    let mut id: [u8; 8] = rand::random();
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// The exporter: batches queued spans into POSTs until every sender is gone.
fn export_thread(url: Url, hop: &'static str, mut rx: mpsc::Receiver<FinishedSpan>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("otlp exporter: no runtime: {e}");
            return;
        }
    };
    runtime.block_on(async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut batch = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut batch, BATCH).await > 0 {
            let count = batch.len() as u64;
            let body = export_request(hop, &batch).to_string();
            batch.clear();
            if let Err(why) = post(&client, &url, body).await {
                DROPPED.fetch_add(count, Ordering::Relaxed);
                warn_once(&url, &why);
            }
        }
    });
}

async fn post(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &Url,
    body: String,
) -> Result<(), String> {
    let request = http::Request::post(url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(EXPORT_TIMEOUT, client.request(request))
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", response.status()))
    }
}

/// One warning per process: a missing collector must not flood the hop's log.
fn warn_once(url: &Url, why: &str) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(%url, error = %why, "exporting spans failed (counted in execlab_otlp_spans_dropped_total; warned once)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_url_appends_the_signal_path_once() {
        let u = |s: &str| traces_url(s).map(|u| u.to_string());
        assert_eq!(
            u("http://127.0.0.1:4318").ok().as_deref(),
            Some("http://127.0.0.1:4318/v1/traces")
        );
        assert_eq!(
            u("http://c:4318/otlp/").ok().as_deref(),
            Some("http://c:4318/otlp/v1/traces")
        );
        assert_eq!(
            u("http://c:4318/v1/traces").ok().as_deref(),
            Some("http://c:4318/v1/traces")
        );
        assert!(traces_url("https://c:4318").is_err());
        assert!(traces_url("not a url").is_err());
    }

    #[test]
    fn encodes_ids_as_hex_and_times_as_decimal_strings() {
        let start = UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let span = FinishedSpan {
            trace_id: [0xab; 16],
            span_id: [1, 2, 3, 4, 5, 6, 7, 8],
            start,
            end: start + Duration::from_millis(5),
            attributes: vec![
                ("hop".into(), AttrValue::Str("kubelet-stream".into())),
                ("pid".into(), AttrValue::Int(42)),
            ],
            events: vec![SpanEvent {
                time: start,
                name: "accept".into(),
                attributes: vec![],
            }],
            error: true,
        };
        let v = export_request("kubelet-stream", &[span]);
        let rs = &v["resourceSpans"][0];
        assert_eq!(
            rs["resource"]["attributes"][0],
            json!({"key": "service.name", "value": {"stringValue": "kubelet-stream"}})
        );
        let s = &rs["scopeSpans"][0]["spans"][0];
        assert_eq!(s["traceId"], "abababababababababababababababab");
        assert_eq!(s["spanId"], "0102030405060708");
        assert_eq!(s["startTimeUnixNano"], "1700000000123456789");
        assert_eq!(s["endTimeUnixNano"], "1700000000128456789");
        assert_eq!(s["kind"], 2);
        assert_eq!(s["attributes"][1]["value"]["intValue"], "42");
        assert_eq!(s["events"][0]["name"], "accept");
        assert_eq!(s["status"]["code"], 2);
    }
}
