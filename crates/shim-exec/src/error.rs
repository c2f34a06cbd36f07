//! Task API errors and their ttrpc status codes, chosen as containerd's `errgrpc.ToGRPC` maps
//! errdefs classes (containerd/errdefs `pkg/errgrpc/grpc.go`). Runtime failures carry no class,
//! so they travel as code Unknown with the message verbatim; the *client* side
//! (`errgrpc.FromGRPC`) appends `: unknown`. In execlab that client is cri-streaming, which
//! plays containerd: it must append `: unknown` to an Unknown status from this shim (e.g.
//! `OCI runtime exec failed: open /x/runc-process1: no space left on device: unknown`).

use ttrpc::Code;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TaskError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A runc or OS failure: `OCI runtime exec failed: ...` and the like.
    #[error("{0}")]
    Runtime(String),
}

impl TaskError {
    pub fn code(&self) -> Code {
        match self {
            TaskError::NotFound(_) => Code::NOT_FOUND,
            TaskError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            TaskError::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            TaskError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            TaskError::Runtime(_) => Code::UNKNOWN,
        }
    }

    pub fn container_not_found(id: &str) -> TaskError {
        TaskError::NotFound(format!("container {id}: not found"))
    }

    pub fn process_not_found(exec_id: &str) -> TaskError {
        TaskError::NotFound(format!("process {exec_id} does not exist: not found"))
    }
}

impl From<TaskError> for ttrpc::Error {
    fn from(e: TaskError) -> ttrpc::Error {
        ttrpc::Error::RpcStatus(ttrpc::get_status(e.code(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_are_unknown_and_verbatim() {
        let e: ttrpc::Error = TaskError::Runtime("OCI runtime exec failed: x".into()).into();
        match e {
            ttrpc::Error::RpcStatus(s) => {
                assert_eq!(s.code(), Code::UNKNOWN);
                assert_eq!(s.message(), "OCI runtime exec failed: x");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
