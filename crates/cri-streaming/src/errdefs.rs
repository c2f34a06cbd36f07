//! Error classes and texts as containerd's client sees a shim's ttrpc error, and the Go
//! formatting (`%v` of a `[]string`, `time.Duration`) the CRI plugin's messages use.
//!
//! Checked against containerd/errdefs `errors.go` (class texts) and `pkg/errgrpc/grpc.go`
//! (code → class mapping; `rebaseMessage` strips a trailing `": <class>"` before the class is
//! appended). Production texts (containerd 1.6/1.7, protocol-facts §5.2) always end in
//! `: <class>`, e.g. `OCI runtime exec failed: ...: unknown`; errdefs ≥ 1.0 keeps a bare message
//! for the Unknown class instead — execlab reproduces the production wording.

use std::fmt;
use std::time::Duration;

/// containerd's errdefs error classes (the subset the gRPC mapping produces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Unknown,
    InvalidArgument,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    NotImplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
    Canceled,
    DeadlineExceeded,
}

impl ErrorClass {
    /// errgrpc's mapping of a (t)gRPC status code.
    pub fn from_grpc_code(code: i32) -> Self {
        match code {
            1 => Self::Canceled,
            3 => Self::InvalidArgument,
            4 => Self::DeadlineExceeded,
            5 => Self::NotFound,
            6 => Self::AlreadyExists,
            7 => Self::PermissionDenied,
            8 => Self::ResourceExhausted,
            9 => Self::FailedPrecondition,
            10 => Self::Aborted,
            11 => Self::OutOfRange,
            12 => Self::NotImplemented,
            13 => Self::Internal,
            14 => Self::Unavailable,
            15 => Self::DataLoss,
            16 => Self::Unauthenticated,
            _ => Self::Unknown,
        }
    }

    /// The class's own error text.
    pub fn text(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::InvalidArgument => "invalid argument",
            Self::NotFound => "not found",
            Self::AlreadyExists => "already exists",
            Self::PermissionDenied => "permission denied",
            Self::ResourceExhausted => "resource exhausted",
            Self::FailedPrecondition => "failed precondition",
            Self::Aborted => "aborted",
            Self::OutOfRange => "out of range",
            Self::NotImplemented => "not implemented",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::DataLoss => "data loss",
            Self::Unauthenticated => "unauthenticated",
            Self::Canceled => "context canceled",
            Self::DeadlineExceeded => "context deadline exceeded",
        }
    }

    /// The gRPC code containerd's CRI server answers for an error of this class (errgrpc.ToGRPC).
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::Unknown => tonic::Code::Unknown,
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::Aborted => tonic::Code::Aborted,
            Self::OutOfRange => tonic::Code::OutOfRange,
            Self::NotImplemented => tonic::Code::Unimplemented,
            Self::Internal => tonic::Code::Internal,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::DataLoss => tonic::Code::DataLoss,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::Canceled => tonic::Code::Cancelled,
            Self::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        }
    }
}

/// The text of a remote error after errgrpc's `FromGRPC`: `<message>: <class>`, where a
/// message already ending in `: <class>` (or equal to it) is not doubled.
pub fn client_error_text(class: ErrorClass, message: &str) -> String {
    let suffix = class.text();
    if message == suffix || message.is_empty() {
        return suffix.to_string();
    }
    let base = message
        .strip_suffix(suffix)
        .and_then(|m| m.strip_suffix(": "))
        .unwrap_or(message);
    format!("{base}: {suffix}")
}

/// Go's `%v` of a `[]string`: `[a b c]`.
pub struct GoStrings<'a>(pub &'a [String]);

impl fmt::Display for GoStrings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(s)?;
        }
        f.write_str("]")
    }
}

/// Go's `time.Duration.String()` for whole seconds and up (`5s`, `1m30s`, `1h0m0s`); sub-second
/// parts are shown as Go would (`1.5s`, `500ms`).
pub struct GoDuration(pub Duration);

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d < Duration::from_secs(1) {
            let nanos = d.subsec_nanos();
            return if nanos % 1_000_000 == 0 {
                write!(f, "{}ms", nanos / 1_000_000)
            } else if nanos % 1_000 == 0 {
                write!(f, "{}µs", nanos / 1_000)
            } else {
                write!(f, "{nanos}ns")
            };
        }
        let total = d.as_secs();
        let (h, m, s) = (total / 3600, (total / 60) % 60, total % 60);
        if h > 0 {
            write!(f, "{h}h{m}m")?;
        } else if m > 0 {
            write!(f, "{m}m")?;
        }
        let frac = d.subsec_nanos();
        if frac == 0 {
            write!(f, "{s}s")
        } else {
            let digits = format!("{frac:09}");
            write!(f, "{s}.{}s", digits.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_suffix_is_added_once() {
        let msg = "OCI runtime exec failed: write /x/runc-process1: no space left on device";
        let once = client_error_text(ErrorClass::from_grpc_code(2), msg);
        assert_eq!(once, format!("{msg}: unknown"));
        assert_eq!(client_error_text(ErrorClass::Unknown, &once), once);
        assert_eq!(client_error_text(ErrorClass::Unknown, "unknown"), "unknown");
    }

    #[test]
    fn classes_follow_the_grpc_code() {
        assert_eq!(
            client_error_text(ErrorClass::from_grpc_code(5), "task abc"),
            "task abc: not found"
        );
        assert_eq!(
            client_error_text(ErrorClass::from_grpc_code(4), "x"),
            "x: context deadline exceeded"
        );
        assert_eq!(ErrorClass::from_grpc_code(99), ErrorClass::Unknown);
        assert_eq!(
            ErrorClass::NotImplemented.grpc_code(),
            tonic::Code::Unimplemented
        );
    }

    #[test]
    fn go_formatting() {
        let argv = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        assert_eq!(GoStrings(&argv).to_string(), "[sh -c exit 3]");
        assert_eq!(GoStrings(&[]).to_string(), "[]");
        assert_eq!(GoDuration(Duration::from_secs(5)).to_string(), "5s");
        assert_eq!(GoDuration(Duration::from_secs(90)).to_string(), "1m30s");
        assert_eq!(GoDuration(Duration::from_secs(3600)).to_string(), "1h0m0s");
        assert_eq!(GoDuration(Duration::from_millis(1500)).to_string(), "1.5s");
        assert_eq!(GoDuration(Duration::from_millis(500)).to_string(), "500ms");
        assert_eq!(GoDuration(Duration::ZERO).to_string(), "0s");
    }
}
