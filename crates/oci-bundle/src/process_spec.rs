//! The OCI `Process` of an exec: the container's own process with the exec's argv and terminal
//! setting, as containerd's CRI plugin builds it.
//!
//! Checked against containerd `internal/cri/server/container_execsync.go` (`execInternal`:
//! `Terminal = tty`, `TERM=xterm` added for a tty, `Args` replaced, `CommandLine` cleared; user,
//! cwd, capabilities and the rest inherited from the container's spec).

use serde_json::Value;

/// The container process fields an exec replaces.
#[derive(Debug, thiserror::Error)]
pub enum ProcessSpecError {
    #[error("container spec has no process")]
    NoProcess,
    #[error("encode exec process spec: {0}")]
    Encode(#[from] serde_json::Error),
}

/// `container_process` with `args`, `terminal` (and for a tty `TERM=xterm`) of the exec; JSON
/// bytes ready for the shim's `ExecProcessRequest.spec`.
pub fn exec_process_spec(
    container_process: &Value,
    args: &[String],
    tty: bool,
) -> Result<Vec<u8>, ProcessSpecError> {
    let Value::Object(process) = container_process else {
        return Err(ProcessSpecError::NoProcess);
    };
    let mut process = process.clone();
    process.insert("args".into(), Value::from(args.to_vec()));
    process.insert("terminal".into(), Value::Bool(tty));
    process.remove("commandLine");
    if tty {
        let mut env: Vec<Value> = match process.remove("env") {
            Some(Value::Array(env)) => env,
            _ => Vec::new(),
        };
        // oci.WithEnv: an existing TERM is replaced, otherwise appended.
        env.retain(|e| !e.as_str().is_some_and(|s| s.starts_with("TERM=")));
        env.push(Value::from("TERM=xterm"));
        process.insert("env".into(), Value::Array(env));
    }
    Ok(serde_json::to_vec(&Value::Object(process))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn decode(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).expect("json")
    }

    #[test]
    fn replaces_args_and_terminal_and_keeps_the_rest() {
        let container = json!({
            "terminal": true,
            "args": ["sleep", "1000"],
            "commandLine": "sleep 1000",
            "env": ["PATH=/bin", "TERM=vt100"],
            "cwd": "/work",
            "user": {"uid": 0, "gid": 0},
        });
        let argv = vec!["sh".to_string(), "-c".to_string(), "echo hi".to_string()];
        let spec = decode(&exec_process_spec(&container, &argv, false).expect("spec"));
        assert_eq!(spec["args"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(spec["terminal"], json!(false));
        assert!(spec.get("commandLine").is_none());
        assert_eq!(spec["env"], json!(["PATH=/bin", "TERM=vt100"]));
        assert_eq!(spec["cwd"], json!("/work"));
    }

    #[test]
    fn tty_sets_term_xterm() {
        let container = json!({"args": ["x"], "env": ["PATH=/bin", "TERM=vt100"]});
        let spec = decode(&exec_process_spec(&container, &["sh".into()], true).expect("spec"));
        assert_eq!(spec["env"], json!(["PATH=/bin", "TERM=xterm"]));
        assert_eq!(spec["terminal"], json!(true));
        let bare = decode(&exec_process_spec(&json!({}), &["sh".into()], true).expect("spec"));
        assert_eq!(bare["env"], json!(["TERM=xterm"]));
    }

    #[test]
    fn a_missing_process_is_an_error() {
        assert!(exec_process_spec(&Value::Null, &["sh".into()], false).is_err());
    }
}
