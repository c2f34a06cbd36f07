//! `pods/exec` and `pods/attach`: options, validation, the kubelet URL, and which proxy path a
//! request takes.
//!
//! Checked against kubernetes `pkg/registry/core/pod/strategy.go` (`streamLocation`,
//! `validateContainer`, `streamParams`) and `pkg/registry/core/pod/rest/subresources.go`
//! (`ExecREST`/`AttachREST`: upgrade required; the WebSocket v5 translator is used when the
//! request is a WebSocket offering `v5.channel.k8s.io`, as `wsstream.IsWebSocketRequestWithStreamCloseProtocol`
//! decides). Order of checks as upstream: pod lookup (NotFound), container (BadRequest), node
//! assignment (BadRequest), node lookup.
//!
//! Proxy paths:
//! - WebSocket offering `v5.channel.k8s.io` → [`crate::translate`] (we accept the WebSocket and
//!   speak SPDY to the kubelet);
//! - anything else that asks for an upgrade — `SPDY/3.1`, and the older WebSocket subprotocols
//!   (`channel.k8s.io`, `base64.channel.k8s.io`, `v4.channel.k8s.io`, `v4.base64.channel.k8s.io`)
//!   that client libraries still send → [`crate::passthrough`]: the upgrade goes to the kubelet
//!   unchanged, because the kubelet and the CRI streaming server serve every one of them;
//! - no upgrade → 400 `Upgrade request required`.
use http::{HeaderMap, Request};
use hyper::body::Incoming;
use serde_json::Value;
use tracing::Instrument;

use crate::authn::UserInfo;
use crate::handler::{ApiResponse, AppState};
use crate::kubelet::KubeletError;
use crate::request_info::ResourceRequest;
use crate::status::ApiStatus;
use crate::{passthrough, pods, translate};

/// Which streaming subresource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Exec,
    Attach,
}

impl StreamKind {
    pub fn from_subresource(sub: &str) -> Option<Self> {
        match sub {
            "exec" => Some(StreamKind::Exec),
            "attach" => Some(StreamKind::Attach),
            _ => None,
        }
    }

    /// The kubelet path segment (`/exec/...`, `/attach/...`).
    pub fn kubelet_path(self) -> &'static str {
        match self {
            StreamKind::Exec => "exec",
            StreamKind::Attach => "attach",
        }
    }
}

/// `PodExecOptions` / `PodAttachOptions` from the query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamOptions {
    pub command: Vec<String>,
    pub container: String,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamOptions {
    /// Parses the apiserver's query parameters (`command` repeated, booleans as Go's
    /// `strconv.ParseBool` reads them). Unknown parameters are ignored. A repeated option
    /// counts with its first value, as upstream's conversion from `url.Values` takes `values[0]`
    /// (`Convert_Slice_string_To_string`/`_bool`); `command` is every value, in order.
    pub fn from_query(kind: StreamKind, query: &str) -> Result<Self, ApiStatus> {
        let pairs: Vec<_> = url::form_urlencoded::parse(query.as_bytes()).collect();
        let first = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_ref())
        };
        let flag = |key: &str| {
            first(key).map_or(Ok(false), |v| {
                parse_go_bool(v).ok_or_else(|| {
                    ApiStatus::bad_request(format!(
                        "strconv.ParseBool: parsing \"{v}\": invalid syntax"
                    ))
                })
            })
        };
        let command = match kind {
            StreamKind::Exec => pairs
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone().into_owned())
                .collect(),
            StreamKind::Attach => Vec::new(),
        };
        Ok(StreamOptions {
            command,
            container: first("container").unwrap_or_default().to_owned(),
            stdin: flag("stdin")?,
            stdout: flag("stdout")?,
            stderr: flag("stderr")?,
            tty: flag("tty")?,
        })
    }

    /// The kubelet's query: `command` repeated, `input`/`output`/`error`/`tty` = `1` when set,
    /// keys sorted as Go's `url.Values.Encode` writes them.
    pub fn kubelet_query(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for c in &self.command {
            q.append_pair("command", c);
        }
        if self.stderr {
            q.append_pair("error", "1");
        }
        if self.stdin {
            q.append_pair("input", "1");
        }
        if self.stdout {
            q.append_pair("output", "1");
        }
        if self.tty {
            q.append_pair("tty", "1");
        }
        q.finish()
    }
}

fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Where an exec/attach goes: the node, and the kubelet path + query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLocation {
    pub node: String,
    pub container: String,
    /// `/exec/{namespace}/{pod}/{container}?...`
    pub path_and_query: String,
}

/// Upstream's `streamLocation` minus the pod lookup: container defaulting and validation, node
/// assignment, the kubelet path.
pub fn stream_location(
    kind: StreamKind,
    pod: &Value,
    opts: &StreamOptions,
) -> Result<StreamLocation, ApiStatus> {
    let name = pods::pod_name(pod);
    let container = validate_container(pod, &opts.container)?;
    let node = pods::pod_node(pod);
    if node.is_empty() {
        return Err(ApiStatus::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let mut path_and_query = format!(
        "/{}/{}/{}/{}",
        kind.kubelet_path(),
        pods::pod_namespace(pod),
        name,
        container
    );
    let query = opts.kubelet_query();
    if !query.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&query);
    }
    Ok(StreamLocation {
        node: node.to_string(),
        container,
        path_and_query,
    })
}

/// `validateContainer`: an empty name defaults to the only app container.
pub fn validate_container(pod: &Value, container: &str) -> Result<String, ApiStatus> {
    let name = pods::pod_name(pod);
    if container.is_empty() {
        let app = pods::app_containers(pod);
        return match app.as_slice() {
            [only] => Ok(only.to_string()),
            [] => Err(ApiStatus::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => Err(ApiStatus::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                pods::all_containers(pod).join(" ")
            ))),
        };
    }
    if pods::all_containers(pod).contains(&container) {
        Ok(container.to_string())
    } else {
        Err(ApiStatus::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )))
    }
}

/// How the request wants to talk once upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyPath {
    /// WebSocket offering `v5.channel.k8s.io`: translate to SPDY ourselves.
    TranslateWebSocketV5,
    /// Any other upgrade: splice through to the kubelet.
    Passthrough,
    /// Not an upgrade request.
    NoUpgrade,
}

pub fn proxy_path(headers: &HeaderMap) -> ProxyPath {
    use k8s_stream::remotecommand::{is_websocket_request, websocket_subprotocols, WsProtocol};
    if is_websocket_request(headers) {
        let v5 = WsProtocol::V5Channel.wire_name();
        if websocket_subprotocols(headers).iter().any(|p| p == v5) {
            return ProxyPath::TranslateWebSocketV5;
        }
        return ProxyPath::Passthrough;
    }
    let connection_upgrade = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if connection_upgrade && headers.contains_key(http::header::UPGRADE) {
        ProxyPath::Passthrough
    } else {
        ProxyPath::NoUpgrade
    }
}

/// Serves one `pods/exec` or `pods/attach` request (already authorized).
pub async fn handle(
    state: &AppState,
    user: &UserInfo,
    mut req: Request<Incoming>,
    target: &ResourceRequest,
    kind: StreamKind,
) -> ApiResponse {
    let trace = hop_kit::TraceParent::from_headers_or_new(req.headers());
    let span = hop_kit::exec_session_span(&trace);
    async move {
        tracing::info!(
            event = "accept",
            user = %user.name,
            namespace = %k8s_stream::Bounded(&target.namespace),
            pod = %k8s_stream::Bounded(&target.name),
            method = %req.method(),
            "{} request",
            kind.kubelet_path()
        );
        // The handler runs once authentication and authorization passed.
        tracing::info!(event = "authn", user = %user.name, groups = ?user.groups, "authorized");
        let opts = match StreamOptions::from_query(kind, hop_kit::path_and_query(&req).1.unwrap_or("")) {
            Ok(opts) => opts,
            Err(status) => return status.into_response(),
        };
        let Some(pod) = state.pods.lookup(&target.namespace, &target.name).await else {
            return ApiStatus::not_found("pods", &target.name).into_response();
        };
        let location = match stream_location(kind, &pod, &opts) {
            Ok(location) => location,
            Err(status) => return status.into_response(),
        };
        let kubelets = state.pods.kubelets();
        let url = match kubelets.url(&location.node, &location.path_and_query) {
            Ok(url) => url,
            Err(KubeletError::UnknownNode(node)) => {
                return ApiStatus::not_found("nodes", &node).into_response()
            }
            Err(err) => return ApiStatus::internal_error(err).into_response(),
        };
        let path = proxy_path(req.headers());
        tracing::info!(kubelet = %k8s_stream::Bounded(&url), container = %k8s_stream::Bounded(&location.container), ?path, "routing stream");
        let on_upgrade = hyper::upgrade::on(&mut req);
        match path {
            ProxyPath::NoUpgrade => {
                ApiStatus::bad_request("Upgrade request required").into_response()
            }
            ProxyPath::Passthrough => {
                passthrough::proxy_upgrade(
                    req.method().clone(),
                    req.headers(),
                    on_upgrade,
                    url,
                    kubelets.tls(),
                    &trace,
                )
                .await
            }
            ProxyPath::TranslateWebSocketV5 => {
                translate::serve(
                    req.headers(),
                    on_upgrade,
                    url,
                    kubelets.tls(),
                    &trace,
                    &opts,
                )
                .await
            }
        }
    }
    .instrument(span)
    .await
}
