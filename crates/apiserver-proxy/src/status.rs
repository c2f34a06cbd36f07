//! `metav1.Status` error bodies, with the exact texts kube-apiserver writes.
//!
//! Texts checked against kubernetes `staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go`
//! (`NewNotFound`, `NewForbidden`, `NewBadRequest`, `NewInternalError`, `NewUnauthorized`),
//! `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go`
//! (`forbiddenMessage`) and `.../responsewriters/status.go` (`ErrorToAPIStatus`: an error that is
//! not a Status becomes code 500 with an EMPTY reason, which kubectl prints as
//! `Error from server: <message>`).
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::Serialize;

/// `metav1.StatusReason` values this server emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusReason {
    Unauthorized,
    Forbidden,
    NotFound,
    BadRequest,
    MethodNotAllowed,
    InternalError,
    /// `StatusReasonUnknown` (""): what `ErrorToAPIStatus` gives a plain Go error.
    Unknown,
}

impl StatusReason {
    fn as_str(self) -> &'static str {
        match self {
            StatusReason::Unauthorized => "Unauthorized",
            StatusReason::Forbidden => "Forbidden",
            StatusReason::NotFound => "NotFound",
            StatusReason::BadRequest => "BadRequest",
            StatusReason::MethodNotAllowed => "MethodNotAllowed",
            StatusReason::InternalError => "InternalError",
            StatusReason::Unknown => "",
        }
    }
}

/// A failure `metav1.Status` (`kind: Status`, `apiVersion: v1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiStatus {
    pub code: u16,
    pub reason: StatusReason,
    pub message: String,
    /// `details.name` / `details.kind` (kind holds the resource, e.g. `pods`, as upstream does).
    pub details: Option<StatusDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusDetails {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
}

/// Wire form; field order follows what the apiserver's JSON encoder writes.
#[derive(Serialize)]
struct StatusWire<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: Empty,
    status: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<&'a StatusDetails>,
    code: u16,
}

#[derive(Serialize)]
struct Empty {}

impl ApiStatus {
    /// 401, as the authentication filter writes it.
    pub fn unauthorized() -> Self {
        ApiStatus {
            code: 401,
            reason: StatusReason::Unauthorized,
            message: "Unauthorized".into(),
            details: None,
        }
    }

    /// 403 for a denied resource request: `pods "web" is forbidden: <why>`.
    pub fn forbidden(resource: &str, name: &str, why: &str) -> Self {
        let message = if resource.is_empty() {
            format!("forbidden: {why}")
        } else if name.is_empty() {
            format!("{resource} is forbidden: {why}")
        } else {
            format!("{resource} \"{name}\" is forbidden: {why}")
        };
        ApiStatus {
            code: 403,
            reason: StatusReason::Forbidden,
            message,
            details: Some(StatusDetails {
                name: name.into(),
                group: String::new(),
                kind: resource.into(),
            }),
        }
    }

    /// 404 for a named object: `pods "web" not found`.
    pub fn not_found(resource: &str, name: &str) -> Self {
        ApiStatus {
            code: 404,
            reason: StatusReason::NotFound,
            message: format!("{resource} \"{name}\" not found"),
            details: Some(StatusDetails {
                name: name.into(),
                group: String::new(),
                kind: resource.into(),
            }),
        }
    }

    /// 404 for a path the server does not serve.
    pub fn path_not_found() -> Self {
        ApiStatus {
            code: 404,
            reason: StatusReason::NotFound,
            message: "the server could not find the requested resource".into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiStatus {
            code: 400,
            reason: StatusReason::BadRequest,
            message: message.into(),
            details: None,
        }
    }

    pub fn method_not_allowed() -> Self {
        ApiStatus {
            code: 405,
            reason: StatusReason::MethodNotAllowed,
            message: "the server does not allow this method on the requested resource".into(),
            details: None,
        }
    }

    /// `NewInternalError`: 500, reason InternalError, `Internal error occurred: <err>`.
    pub fn internal_error(err: impl std::fmt::Display) -> Self {
        ApiStatus {
            code: 500,
            reason: StatusReason::InternalError,
            message: format!("Internal error occurred: {err}"),
            details: None,
        }
    }

    /// A plain (non-Status) error answered by the apiserver: 500 with an empty reason.
    pub fn from_plain_error(err: impl std::fmt::Display) -> Self {
        ApiStatus {
            code: 500,
            reason: StatusReason::Unknown,
            message: err.to_string(),
            details: None,
        }
    }

    /// The Status as the apiserver serializes it (compact JSON).
    pub fn to_json(&self) -> String {
        let wire = StatusWire {
            kind: "Status",
            api_version: "v1",
            metadata: Empty {},
            status: "Failure",
            message: &self.message,
            reason: self.reason.as_str(),
            details: self.details.as_ref(),
            code: self.code,
        };
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    pub fn into_response(self) -> Response<Full<Bytes>> {
        let status = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = Response::new(Full::new(Bytes::from(self.to_json())));
        *resp.status_mut() = status;
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

impl std::fmt::Display for ApiStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiStatus {}
