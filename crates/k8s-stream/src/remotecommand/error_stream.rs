//! Client-side interpretation of the error stream: what the caller of an exec gets back.
//!
//! Checked against: client-go `tools/remotecommand/v1.go` (capitalised `Error executing remote
//! command: ` / `Error reading from error stream: `), `v2.go` (`watchErrorStream`,
//! `errorDecoderV2`), `v4.go` (`errorDecoderV4`: Success, NonZeroExitCode with an `ExitCode` cause
//! parsed as base-10 uint8, other Failure = its message, anything else = unknown error), `errors.go`
//! / `util/exec` (`CodeExitError`). An empty error stream means success in every version.
use super::status::{
    Status, CAUSE_EXIT_CODE, REASON_NON_ZERO_EXIT_CODE, STATUS_FAILURE, STATUS_SUCCESS,
};
use super::version::ProtocolVersion;
use crate::go_quote;

/// The failure of a remote command as client-go reports it; `Display` is client-go's exact text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The command ran and exited non-zero (`CodeExitError`); kubectl exits with `code`.
    #[error("command terminated with exit code {code}")]
    ExitCode {
        /// The exit code (0–255).
        code: u8,
    },
    /// A v4+ `Failure` Status with a reason other than NonZeroExitCode: its message, verbatim.
    #[error("{0}")]
    Failure(String),
    /// A typed API error (`StatusError`), e.g. an upgrade answered with a Status body.
    #[error("{}", .0.message)]
    Status(Box<Status>),
    /// v2/v3 text error.
    #[error("error executing remote command: {0}")]
    Text(String),
    /// v1 text error.
    #[error("Error executing remote command: {0}")]
    TextV1(String),
    /// The error stream did not follow the protocol.
    #[error("error stream protocol error: {0}")]
    Protocol(String),
    /// Reading the error stream failed (connection lost).
    #[error("error reading from error stream: {0}")]
    Read(String),
    /// v1 read failure.
    #[error("Error reading from error stream: {0}")]
    ReadV1(String),
}

impl RemoteError {
    /// The exit code kubectl would exit with for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::ExitCode { code } => i32::from(*code),
            _ => 1,
        }
    }

    /// The error for a failed read of the error stream, in `version`'s wording.
    pub fn read_failure(version: ProtocolVersion, err: impl std::fmt::Display) -> Self {
        if version == ProtocolVersion::V1 {
            Self::ReadV1(err.to_string())
        } else {
            Self::Read(err.to_string())
        }
    }
}

/// Decodes the complete content of the error stream (read to EOF) as `version` defines it.
pub fn decode_error_stream(version: ProtocolVersion, message: &[u8]) -> Result<(), RemoteError> {
    if message.is_empty() {
        return Ok(());
    }
    match version {
        ProtocolVersion::V1 => Err(RemoteError::TextV1(
            String::from_utf8_lossy(message).into_owned(),
        )),
        ProtocolVersion::V2 | ProtocolVersion::V3 => Err(RemoteError::Text(
            String::from_utf8_lossy(message).into_owned(),
        )),
        ProtocolVersion::V4 | ProtocolVersion::V5 => decode_status(message),
    }
}

/// The v4 rules applied to one JSON Status.
pub fn decode_status(message: &[u8]) -> Result<(), RemoteError> {
    let status: Status = serde_json::from_slice(message).map_err(|e| {
        RemoteError::Protocol(format!(
            "{e} in {}",
            go_quote(&String::from_utf8_lossy(message))
        ))
    })?;
    status_outcome(&status)
}

/// The v4 rules applied to an already decoded Status.
pub fn status_outcome(status: &Status) -> Result<(), RemoteError> {
    match status.status.as_str() {
        STATUS_SUCCESS => Ok(()),
        STATUS_FAILURE if status.reason == REASON_NON_ZERO_EXIT_CODE => {
            let details = status
                .details
                .as_ref()
                .ok_or_else(|| RemoteError::Protocol("details must be set".into()))?;
            let cause = details
                .causes
                .iter()
                .find(|c| c.cause_type == CAUSE_EXIT_CODE)
                .ok_or_else(|| {
                    RemoteError::Protocol(format!("no {CAUSE_EXIT_CODE} cause given"))
                })?;
            // Go's ParseUint(s, 10, 8) accepts only plain decimal digits.
            let code = (!cause.message.is_empty()
                && cause.message.bytes().all(|b| b.is_ascii_digit()))
            .then(|| cause.message.parse::<u8>().ok())
            .flatten()
            .ok_or_else(|| {
                RemoteError::Protocol(format!(
                    "invalid exit code value {}",
                    go_quote(&cause.message)
                ))
            })?;
            Err(RemoteError::ExitCode { code })
        }
        STATUS_FAILURE => Err(RemoteError::Failure(status.message.clone())),
        _ => Err(RemoteError::Protocol("unknown error".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_is_success_everywhere() {
        for v in ProtocolVersion::NEWEST_FIRST {
            assert_eq!(decode_error_stream(v, b""), Ok(()));
        }
    }

    #[test]
    fn text_versions() {
        assert_eq!(
            decode_error_stream(ProtocolVersion::V1, b"boom")
                .unwrap_err()
                .to_string(),
            "Error executing remote command: boom"
        );
        assert_eq!(
            decode_error_stream(ProtocolVersion::V3, b"boom")
                .unwrap_err()
                .to_string(),
            "error executing remote command: boom"
        );
    }

    #[test]
    fn v4_rules() {
        let exit = Status::non_zero_exit(3, "x").to_json();
        let err = decode_error_stream(ProtocolVersion::V4, &exit).unwrap_err();
        assert_eq!(err.to_string(), "command terminated with exit code 3");
        assert_eq!(err.exit_code(), 3);
        assert_eq!(
            decode_error_stream(ProtocolVersion::V5, &Status::success().to_json()),
            Ok(())
        );
        let internal = Status::internal_error("boom").to_json();
        assert_eq!(
            decode_error_stream(ProtocolVersion::V4, &internal)
                .unwrap_err()
                .to_string(),
            "Internal error occurred: boom"
        );
        let no_details = br#"{"status":"Failure","reason":"NonZeroExitCode"}"#;
        assert_eq!(
            decode_status(no_details).unwrap_err().to_string(),
            "error stream protocol error: details must be set"
        );
        let no_cause = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"Other","message":"1"}]}}"#;
        assert_eq!(
            decode_status(no_cause).unwrap_err().to_string(),
            "error stream protocol error: no ExitCode cause given"
        );
        let bad = br#"{"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"256"}]}}"#;
        assert_eq!(
            decode_status(bad).unwrap_err().to_string(),
            "error stream protocol error: invalid exit code value \"256\""
        );
        assert_eq!(
            decode_status(br#"{"status":"Weird"}"#)
                .unwrap_err()
                .to_string(),
            "error stream protocol error: unknown error"
        );
        let garbage = decode_status(b"not json").unwrap_err().to_string();
        assert!(
            garbage.starts_with("error stream protocol error: ")
                && garbage.ends_with(" in \"not json\""),
            "{garbage}"
        );
    }
}
