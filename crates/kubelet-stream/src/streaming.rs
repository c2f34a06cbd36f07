//! `/exec` and `/attach`: find the running container, ask the runtime for a streaming URL (CRI
//! Exec/Attach), then either proxy the upgrade to that URL and splice the two connections
//! (default) or answer 302 to it (`--redirect-container-streaming`).
//!
//! Checked against kubernetes `pkg/kubelet/server/server.go` (getExec/getAttach: options →
//! 400, unknown pod → 404 `pod does not exist`, runtime error → streaming.WriteError,
//! redirect via http.Redirect 302, proxyStream with an upgrade-required UpgradeAwareHandler whose
//! responder logs `Error while proxying request` and writes http.Error 500),
//! `pkg/kubelet/kubelet_pods.go` (GetExec: `container not found (%q)`; GetAttach:
//! `container %s not found in pod %s` with the pod's full name `name_namespace`) and
//! `apimachinery/pkg/util/proxy/upgradeaware.go` (request headers passed through; a non-101
//! answer below 400 becomes `invalid upgrade response: status code %d`, others are relayed).
//!
//! Metrics (hop-kit `metrics`): a session counts from the accepted request to the end of the
//! splice (or the 302); setup = request → the streaming server's 101 relayed (or the 302 sent);
//! spliced bytes are counted per direction as they pass.

use std::time::Instant;

use bytes::Bytes;
use hop_kit::metrics::{self, Counted, Direction, OpenSession};
use hop_kit::session_id::{exec_session_span, TraceParent, TRACEPARENT};
use hop_kit::upgrade::{splice, UpgradeOutcome, UpgradeRequest};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use url::Url;

use cri_api::runtime::v1 as cri;

use crate::container_cache::{ContainerIdCache, ContainerKey};
use crate::pod_store::PodStore;
use crate::responses::{found, http_error, restful_error, Body};
use crate::runtime::{
    RuntimeClient, RuntimeError, StreamFlags, LABEL_CONTAINER_NAME, LABEL_POD_NAME,
    LABEL_POD_NAMESPACE, LABEL_POD_UID,
};
use crate::stream_request::{
    parse_command, parse_stream_options, ContainerRef, StreamKind, StreamOptions,
};

/// How the kubelet hands a stream to the runtime's streaming server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamingMode {
    /// Dial the runtime's URL and splice bytes (upstream's only mode today).
    #[default]
    Proxy,
    /// Answer 302 with the runtime's URL (`--redirect-container-streaming`, removed upstream in 1.20).
    Redirect,
}

/// What the streaming handlers need.
#[derive(Debug, Clone)]
pub struct StreamingContext {
    pub store: PodStore,
    pub runtime: RuntimeClient,
    pub mode: StreamingMode,
    /// Spliced sessions, so shutdown can give them a moment to end.
    pub sessions: TaskTracker,
    /// The container each target last resolved to (spares a ListContainers per session).
    pub containers: ContainerIdCache,
}

/// Why no streaming URL was obtained.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("container not found ({0:?})")]
    ExecContainerNotFound(String),
    #[error("container {container} not found in pod {pod_full_name}")]
    AttachContainerNotFound {
        container: String,
        pod_full_name: String,
    },
}

impl LookupError {
    fn http_status(&self) -> StatusCode {
        match self {
            Self::Runtime(err) => err.http_status(),
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl StreamingContext {
    /// Serves one `/exec` or `/attach` request (already authorized).
    pub async fn serve(
        &self,
        kind: StreamKind,
        target: ContainerRef,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let query = hop_kit::path_and_query(&req)
            .1
            .unwrap_or_default()
            .to_owned();
        let options = match parse_stream_options(&query) {
            Ok(options) => options,
            Err(err) => return restful_error(StatusCode::BAD_REQUEST, &err.to_string()),
        };
        let command = parse_command(&query);
        let trace = TraceParent::from_headers_or_new(req.headers());
        let span = exec_session_span(&trace);
        let this = self.clone();
        async move {
            tracing::info!(
                event = "accept",
                kind = kind.as_str(),
                namespace = %k8s_stream::Bounded(&target.namespace),
                pod = %k8s_stream::Bounded(&target.pod),
                container = %k8s_stream::Bounded(&target.container),
                command = ?k8s_stream::Bounded(&command),
                "stream requested"
            );
            // Routed here only once the auth filter let the request through.
            tracing::info!(event = "authn", "authorized");
            this.serve_traced(kind, target, command, options, trace, req)
                .await
        }
        .instrument(span)
        .await
    }

    async fn serve_traced(
        &self,
        kind: StreamKind,
        target: ContainerRef,
        command: Vec<String>,
        options: StreamOptions,
        trace: TraceParent,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let mut session = metrics::global().session_opened();
        let Some(pod) = self.store.pod(&target.namespace, &target.pod) else {
            return restful_error(StatusCode::NOT_FOUND, "pod does not exist");
        };
        let key = ContainerKey {
            pod_uid: pod.uid().to_owned(),
            container: target.container.clone(),
        };
        let forwarded = trace.child();
        let url = match self
            .streaming_url(kind, &target, &key, command, options, &forwarded)
            .await
        {
            Ok(url) => url,
            Err(err) => {
                tracing::warn!(error = %err, "no streaming URL from the runtime");
                return restful_error(err.http_status(), &err.to_string());
            }
        };
        tracing::debug!(%url, "runtime streaming URL");
        tracing::info!(event = "cri_exec", mode = ?self.mode, "runtime returned a streaming URL");
        match self.mode {
            StreamingMode::Redirect => {
                session.set_up();
                found(req.method(), &url)
            }
            StreamingMode::Proxy => self.proxy(req, &url, &forwarded, session).await,
        }
    }

    /// upstream `findContainer` + runtime `GetExec`/`GetAttach`; the container the target last
    /// resolved to is tried first (see [`ContainerIdCache`]).
    async fn streaming_url(
        &self,
        kind: StreamKind,
        target: &ContainerRef,
        key: &ContainerKey,
        command: Vec<String>,
        options: StreamOptions,
        trace: &TraceParent,
    ) -> Result<String, LookupError> {
        let flags = StreamFlags {
            stdin: options.stdin,
            stdout: options.stdout,
            stderr: options.stderr,
            tty: options.tty,
        };
        if let Some(id) = self.containers.get(key) {
            match self
                .runtime_url(kind, &id, command.clone(), flags, trace)
                .await
            {
                Ok(url) => return Ok(url),
                Err(err) => {
                    tracing::debug!(container_id = %id, error = %err, "remembered container refused; looking up afresh");
                    self.containers.forget(key, &id);
                }
            }
        }
        let container = self.find_running_container(target, trace).await?;
        let Some(container) = container else {
            return Err(match kind {
                StreamKind::Exec => LookupError::ExecContainerNotFound(target.container.clone()),
                StreamKind::Attach => LookupError::AttachContainerNotFound {
                    container: target.container.clone(),
                    pod_full_name: format!("{}_{}", target.pod, target.namespace),
                },
            });
        };
        self.containers.remember(key.clone(), container.id.clone());
        Ok(self
            .runtime_url(kind, &container.id, command, flags, trace)
            .await?)
    }

    /// The runtime's streaming URL for `container_id` (CRI Exec or Attach).
    async fn runtime_url(
        &self,
        kind: StreamKind,
        container_id: &str,
        command: Vec<String>,
        flags: StreamFlags,
        trace: &TraceParent,
    ) -> Result<String, RuntimeError> {
        match kind {
            StreamKind::Exec => {
                self.runtime
                    .exec(container_id, command, flags, Some(trace))
                    .await
            }
            StreamKind::Attach => self.runtime.attach(container_id, flags, Some(trace)).await,
        }
    }

    async fn find_running_container(
        &self,
        target: &ContainerRef,
        trace: &TraceParent,
    ) -> Result<Option<cri::Container>, RuntimeError> {
        let mut labels = std::collections::HashMap::from([
            (LABEL_POD_NAME.to_owned(), target.pod.clone()),
            (LABEL_POD_NAMESPACE.to_owned(), target.namespace.clone()),
            (LABEL_CONTAINER_NAME.to_owned(), target.container.clone()),
        ]);
        if let Some(uid) = &target.uid {
            labels.insert(LABEL_POD_UID.to_owned(), uid.clone());
        }
        let filter = cri::ContainerFilter {
            state: Some(cri::ContainerStateValue {
                state: cri::ContainerState::ContainerRunning as i32,
            }),
            label_selector: labels,
            ..Default::default()
        };
        let containers = self.runtime.list_containers(filter, Some(trace)).await?;
        // A runtime may ignore the filter; keep only what really matches.
        Ok(containers
            .into_iter()
            .filter(|c| c.state == cri::ContainerState::ContainerRunning as i32)
            .filter(|c| c.labels.get(LABEL_CONTAINER_NAME) == Some(&target.container))
            .max_by_key(|c| c.created_at))
    }

    /// Proxy mode: the upgrade goes to the runtime, its answer comes back, then bytes flow.
    async fn proxy(
        &self,
        mut req: Request<Incoming>,
        url: &str,
        forwarded: &TraceParent,
        mut session: OpenSession,
    ) -> Response<Body> {
        if !is_upgrade_request(req.headers()) {
            return proxy_error("Upgrade request required");
        }
        let url = match Url::parse(url) {
            Ok(url) => url,
            Err(err) => {
                return proxy_error(&format!("error dialing backend: parse {url:?}: {err}"));
            }
        };
        let mut headers = req.headers().clone();
        for name in [HOST, CONTENT_LENGTH, TRANSFER_ENCODING] {
            headers.remove(name);
        }
        headers.insert(TRACEPARENT, forwarded.header_value());
        let request = UpgradeRequest::new(url, req.method().clone(), headers);
        tracing::info!(event = "dial", "dialing the streaming server");
        let outcome = match request.send().await {
            Ok(outcome) => outcome,
            Err(err) => return proxy_error(&err.proxy_error_text()),
        };
        match outcome {
            UpgradeOutcome::Refused { response, body } => {
                let status = response.status;
                if status.as_u16() < 400 {
                    return proxy_error(&format!(
                        "invalid upgrade response: status code {}",
                        status.as_u16()
                    ));
                }
                tracing::info!(
                    status = status.as_u16(),
                    "runtime refused the upgrade; relaying"
                );
                let mut relayed = Response::new(Full::new(body));
                *relayed.status_mut() = status;
                *relayed.headers_mut() = response.headers;
                relayed.headers_mut().remove(TRANSFER_ENCODING);
                relayed.headers_mut().remove(CONTENT_LENGTH);
                relayed
            }
            UpgradeOutcome::Switched {
                response,
                io: mut runtime_io,
            } => {
                let client_upgrade = hyper::upgrade::on(&mut req);
                let started = Instant::now();
                session.set_up();
                self.sessions.spawn(
                    async move {
                        let _session = session;
                        let client = match client_upgrade.await {
                            Ok(client) => client,
                            Err(err) => {
                                tracing::warn!(error = %err, "client upgrade failed");
                                return;
                            }
                        };
                        let mut client = Counted::new(TokioIo::new(client))
                            .count_reads(metrics::global().direction(Direction::ToBackend))
                            .count_writes(metrics::global().direction(Direction::ToClient));
                        match splice(&mut client, &mut runtime_io).await {
                            Ok((to_runtime, to_client)) => tracing::info!(
                                event = "close",
                                to_runtime,
                                to_client,
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                "stream ended"
                            ),
                            Err(err) => tracing::info!(
                                event = "close",
                                error = %err,
                                elapsed_ms = started.elapsed().as_millis() as u64,
                                "stream ended with an error"
                            ),
                        }
                    }
                    .in_current_span(),
                );
                let mut switched = Response::new(Full::new(Bytes::new()));
                *switched.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                *switched.headers_mut() = response.headers;
                switched.headers_mut().remove(CONTENT_LENGTH);
                tracing::info!(event = "upgrade", "stream upgraded");
                switched
            }
        }
    }
}

/// The responder of upstream's proxy: log, then `http.Error` 500.
fn proxy_error(text: &str) -> Response<Body> {
    tracing::error!(err = %text, "Error while proxying request");
    http_error(StatusCode::INTERNAL_SERVER_ERROR, text)
}

/// `Connection` names the `upgrade` token and an `Upgrade` header is present.
fn is_upgrade_request(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    connection_upgrade && headers.contains_key(UPGRADE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn upgrade_request_detection() {
        let mut h = HeaderMap::new();
        assert!(!is_upgrade_request(&h));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        assert!(!is_upgrade_request(&h));
        h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(is_upgrade_request(&h));
    }

    #[test]
    fn lookup_error_texts() {
        assert_eq!(
            LookupError::ExecContainerNotFound("x".into()).to_string(),
            "container not found (\"x\")"
        );
        assert_eq!(
            LookupError::AttachContainerNotFound {
                container: "x".into(),
                pod_full_name: "web_default".into()
            }
            .to_string(),
            "container x not found in pod web_default"
        );
    }
}
