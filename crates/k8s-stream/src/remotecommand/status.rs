//! `metav1.Status` as it travels on the error stream, serialised byte-for-byte like Go's
//! `json.Marshal`, and the three Status shapes a streaming server writes.
//!
//! Checked against: apimachinery `apis/meta/v1/types.go` (field order and `omitempty`: kind,
//! apiVersion, metadata (always present), status, message, reason, details, code; the cause's
//! Go field `Type` has JSON key `reason`), apimachinery `api/errors/errors.go`
//! (`NewInternalError`), kubelet `cri/streaming/remotecommand/exec.go` (NonZeroExitCode shape),
//! apimachinery `util/remotecommand/constants.go` (`NonZeroExitCode`, `ExitCode`).
use serde::{Deserialize, Serialize};

/// `Status.status` of a successful call.
pub const STATUS_SUCCESS: &str = "Success";
/// `Status.status` of a failed call.
pub const STATUS_FAILURE: &str = "Failure";
/// Reason of a command that exited non-zero.
pub const REASON_NON_ZERO_EXIT_CODE: &str = "NonZeroExitCode";
/// Cause type carrying the exit code.
pub const CAUSE_EXIT_CODE: &str = "ExitCode";
/// Reason of a server-side internal error.
pub const REASON_INTERNAL_ERROR: &str = "InternalError";

/// `metav1.ListMeta`; always serialised (Go's `omitempty` does not apply to structs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListMeta {
    /// Deprecated self link.
    #[serde(rename = "selfLink", default, skip_serializing_if = "String::is_empty")]
    pub self_link: String,
    /// Resource version.
    #[serde(
        rename = "resourceVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub resource_version: String,
    /// List continuation token.
    #[serde(rename = "continue", default, skip_serializing_if = "String::is_empty")]
    pub continue_token: String,
    /// Remaining items of a list.
    #[serde(
        rename = "remainingItemCount",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub remaining_item_count: Option<i64>,
}

/// `metav1.StatusCause`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCause {
    /// Go field `Type`, JSON key `reason`.
    #[serde(rename = "reason", default, skip_serializing_if = "String::is_empty")]
    pub cause_type: String,
    /// Human-readable cause (for `ExitCode`: the decimal exit code).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Field path the cause refers to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field: String,
}

/// `metav1.StatusDetails`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusDetails {
    /// Name of the object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// API group of the object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub group: String,
    /// Kind of the object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// UID of the object.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The causes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<StatusCause>,
    /// Suggested retry delay.
    #[serde(rename = "retryAfterSeconds", default, skip_serializing_if = "is_zero")]
    pub retry_after_seconds: i32,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// `metav1.Status`, field order as in Go (which fixes the JSON key order).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// `Status` when sent as an API response; absent on the error stream.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// `v1` when sent as an API response; absent on the error stream.
    #[serde(
        rename = "apiVersion",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub api_version: String,
    /// Always `{}` here.
    #[serde(default)]
    pub metadata: ListMeta,
    /// `Success` or `Failure`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Machine-readable reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// Extra details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<StatusDetails>,
    /// HTTP status code (0 = unset).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub code: i32,
}

impl Status {
    /// `{"metadata":{},"status":"Success"}`.
    pub fn success() -> Self {
        Self {
            status: STATUS_SUCCESS.into(),
            ..Self::default()
        }
    }

    /// The NonZeroExitCode Status a streaming server writes when the process exits with `code`;
    /// `runtime_error` is the runtime's description of the exit (containerd:
    /// `error executing command [argv], exit code N`).
    pub fn non_zero_exit(code: i32, runtime_error: &str) -> Self {
        Self {
            status: STATUS_FAILURE.into(),
            message: format!("command terminated with non-zero exit code: {runtime_error}"),
            reason: REASON_NON_ZERO_EXIT_CODE.into(),
            details: Some(StatusDetails {
                causes: vec![StatusCause {
                    cause_type: CAUSE_EXIT_CODE.into(),
                    message: code.to_string(),
                    ..StatusCause::default()
                }],
                ..StatusDetails::default()
            }),
            ..Self::default()
        }
    }

    /// `apierrors.NewInternalError(err)`: code 500, message `Internal error occurred: <err>`.
    pub fn internal_error(err: &str) -> Self {
        Self {
            status: STATUS_FAILURE.into(),
            message: format!("Internal error occurred: {err}"),
            reason: REASON_INTERNAL_ERROR.into(),
            details: Some(StatusDetails {
                causes: vec![StatusCause {
                    message: err.into(),
                    ..StatusCause::default()
                }],
                ..StatusDetails::default()
            }),
            code: 500,
            ..Self::default()
        }
    }

    /// Whether this is a success.
    pub fn is_success(&self) -> bool {
        self.status == STATUS_SUCCESS
    }

    /// Go's `json.Marshal` bytes of this Status (including its HTML-safe escaping).
    pub fn to_json(&self) -> Vec<u8> {
        go_json(self)
    }

    /// Decodes a Status body; used where upstream decodes an HTTP error body as `metav1.Status`
    /// (it requires `kind: Status`).
    pub fn from_api_body(body: &[u8]) -> Option<Self> {
        let status: Status = serde_json::from_slice(body).ok()?;
        (status.kind == "Status").then_some(status)
    }
}

/// Serialises like Go's `encoding/json` (HTML-safe: `<`, `>`, `&`, U+2028 and U+2029 escaped).
pub(crate) fn go_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    // Serialising these plain structs into a Vec cannot fail.
    if value.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}

struct GoFormatter;

impl serde_json::ser::Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let esc = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            w.write_all(&fragment.as_bytes()[start..i])?;
            w.write_all(esc.as_bytes())?;
            start = i + c.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_json() {
        assert_eq!(
            String::from_utf8(Status::success().to_json()).unwrap(),
            r#"{"metadata":{},"status":"Success"}"#
        );
    }

    #[test]
    fn non_zero_exit_json() {
        let s = Status::non_zero_exit(3, "error executing command [sh -c exit 3], exit code 3");
        assert_eq!(
            String::from_utf8(s.to_json()).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}"#
        );
    }

    #[test]
    fn internal_error_json() {
        let s = Status::internal_error("error executing command in container: boom");
        assert_eq!(
            String::from_utf8(s.to_json()).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing command in container: boom","reason":"InternalError","details":{"causes":[{"message":"error executing command in container: boom"}]},"code":500}"#
        );
    }

    #[test]
    fn html_characters_escaped_like_go() {
        let s = Status::internal_error("a<b>&c\u{2028}\"");
        let json = String::from_utf8(s.to_json()).unwrap();
        assert!(
            json.contains(r#""Internal error occurred: a\u003cb\u003e\u0026c\u2028\"""#),
            "{json}"
        );
        let back: Status = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn api_body_needs_kind_status() {
        let body = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"nope","reason":"Forbidden","code":403}"#;
        let s = Status::from_api_body(body).unwrap();
        assert_eq!(s.code, 403);
        assert!(Status::from_api_body(b"Unauthorized").is_none());
        assert!(Status::from_api_body(br#"{"status":"Failure"}"#).is_none());
    }
}
