//! One API request: authentication → authorization → route, as kube-apiserver's filter chain
//! orders them (`staging/src/k8s.io/apiserver/pkg/server/config.go` `DefaultBuildHandlerChain`:
//! authentication before authorization, both before the handler; so an unauthorized user gets
//! a 403 even for a pod that does not exist).
//!
//! `/healthz`, `/livez` and `/readyz` answer `ok` without credentials (the lab's health probes).
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::Value;

use crate::authn::{Authenticator, Credentials, UserInfo};
use crate::authz::{Decision, Policy};
use crate::discovery;
use crate::exec::{self, StreamKind};
use crate::pods::{self, PodCache};
use crate::request_info::{RequestInfo, ResourceRequest};
use crate::status::ApiStatus;

/// Everything a request needs, shared by all connections.
#[derive(Debug)]
pub struct AppState {
    pub authenticator: Authenticator,
    pub policy: Policy,
    pub pods: PodCache,
    /// `host:port` this server is reachable at (for `/api`'s `serverAddressByClientCIDRs`).
    pub server_address: String,
}

/// Per-connection facts from the TLS layer.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// The verified client certificate's identity, if any.
    pub cert_user: Option<UserInfo>,
    /// Why a presented client certificate was rejected (logged on 401).
    pub cert_rejection: Option<String>,
}

pub type ApiResponse = Response<Full<Bytes>>;

pub async fn handle(
    state: &AppState,
    conn: &ConnectionInfo,
    req: Request<Incoming>,
) -> ApiResponse {
    let (path, query) = hop_kit::path_and_query(&req);
    let (path, query) = (path.to_owned(), query.map(str::to_owned));
    if matches!(path.as_str(), "/healthz" | "/livez" | "/readyz") && req.method() == Method::GET {
        return text(StatusCode::OK, "ok");
    }
    let authorization = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let creds = Credentials {
        client_cert: conn.cert_user.as_ref(),
        authorization,
    };
    let Some(user) = state.authenticator.authenticate(&creds) else {
        tracing::info!(
            method = %req.method(), path = %k8s_stream::Bounded(&path),
            cert_rejection = conn.cert_rejection.as_deref().unwrap_or(""),
            bearer = authorization.is_some(),
            "unauthenticated request"
        );
        return ApiStatus::unauthorized().into_response();
    };
    let info = RequestInfo::parse(req.method(), &path, query.as_deref());
    if let Decision::Deny(status) = state.policy.authorize(&user, &info) {
        tracing::info!(user = %user.name, method = %req.method(), path = %k8s_stream::Bounded(&path), "forbidden");
        return status.into_response();
    }
    tracing::debug!(user = %user.name, method = %req.method(), path = %k8s_stream::Bounded(&path), "request");
    match info {
        RequestInfo::NonResource { .. } => non_resource(state, &req, &path),
        RequestInfo::Resource(target) => resource(state, &user, req, target).await,
    }
}

fn non_resource(state: &AppState, req: &Request<Incoming>, path: &str) -> ApiResponse {
    if req.method() != Method::GET {
        return ApiStatus::method_not_allowed().into_response();
    }
    match path.trim_end_matches('/') {
        "/version" => json(&discovery::version()),
        "/api" => json(&discovery::api_versions(&state.server_address)),
        "/apis" => json(&discovery::api_group_list()),
        "/api/v1" => json(&discovery::core_v1_resources()),
        _ => ApiStatus::path_not_found().into_response(),
    }
}

async fn resource(
    state: &AppState,
    user: &UserInfo,
    req: Request<Incoming>,
    target: ResourceRequest,
) -> ApiResponse {
    if target.resource != "pods" {
        return ApiStatus::path_not_found().into_response();
    }
    if let Some(kind) = StreamKind::from_subresource(&target.subresource) {
        if req.method() != Method::GET && req.method() != Method::POST {
            return ApiStatus::method_not_allowed().into_response();
        }
        return exec::handle(state, user, req, &target, kind).await;
    }
    if !target.subresource.is_empty() {
        return ApiStatus::path_not_found().into_response();
    }
    // Watches are not served: pods only change when a kubelet's list does.
    if req.method() != Method::GET || target.verb == "watch" {
        return ApiStatus::method_not_allowed().into_response();
    }
    let accept = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let table = pods::table_version(accept);
    if target.name.is_empty() {
        let namespace = (!target.namespace.is_empty()).then_some(target.namespace.as_str());
        let list = state.pods.list(namespace).await;
        return match table {
            Some(version) => json(&pods::pod_table(version, &list, SystemTime::now())),
            None => json(&pods::pod_list(list)),
        };
    }
    match state.pods.get(&target.namespace, &target.name).await {
        None => ApiStatus::not_found("pods", &target.name).into_response(),
        Some(pod) => match table {
            Some(version) => json(&pods::pod_table(
                version,
                std::slice::from_ref(&pod),
                SystemTime::now(),
            )),
            None => json(&pod),
        },
    }
}

pub fn json(value: &Value) -> ApiResponse {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn text(status: StatusCode, body: &'static str) -> ApiResponse {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
