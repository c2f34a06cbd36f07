//! Parsing of the kubelet's streaming requests: `/exec/{namespace}/{pod}[/{uid}]/{container}` and
//! `/attach/...`, with the query the apiserver sends (`command` repeated, `input`, `output`,
//! `error`, `tty` = `1`).
//!
//! Checked against kubernetes `pkg/kubelet/server/server.go` (routes, getExecRequestParams) and
//! `staging/src/k8s.io/kubelet/pkg/cri/streaming/remotecommand/httpstream.go` (NewOptions: a flag
//! is on when its value is `1`; tty drops stderr; no stream at all is an error). As a lab
//! convenience the apiserver-side names (`stdin`, `stdout`, `stderr`) and the value `true` are
//! accepted too.

use url::form_urlencoded;

/// Which streaming endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Exec,
    Attach,
}

impl StreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exec => "exec",
            Self::Attach => "attach",
        }
    }
}

/// Which streams the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The container a streaming request targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRef {
    pub namespace: String,
    pub pod: String,
    pub uid: Option<String>,
    pub container: String,
}

/// A parsed `/exec` or `/attach` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRequest {
    pub kind: StreamKind,
    pub target: ContainerRef,
    pub command: Vec<String>,
    pub options: StreamOptions,
}

/// The query asks for no stream at all (upstream answers 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("you must specify at least 1 of stdin, stdout, stderr")]
pub struct NoStreamsRequested;

/// Splits `/exec/ns/pod/container` or `/exec/ns/pod/uid/container`; `None` if the path is not a
/// streaming route.
pub fn parse_stream_path(path: &str) -> Option<(StreamKind, ContainerRef)> {
    let mut segments = path.strip_prefix('/')?.split('/');
    let kind = match segments.next()? {
        "exec" => StreamKind::Exec,
        "attach" => StreamKind::Attach,
        _ => return None,
    };
    let parts: Vec<String> = segments.map(decode_segment).collect::<Option<_>>()?;
    if parts.iter().any(String::is_empty) {
        return None;
    }
    let target = match parts.as_slice() {
        [namespace, pod, container] => ContainerRef {
            namespace: namespace.clone(),
            pod: pod.clone(),
            uid: None,
            container: container.clone(),
        },
        [namespace, pod, uid, container] => ContainerRef {
            namespace: namespace.clone(),
            pod: pod.clone(),
            uid: Some(uid.clone()),
            container: container.clone(),
        },
        _ => return None,
    };
    Some((kind, target))
}

fn decode_segment(segment: &str) -> Option<String> {
    // Path segments are percent-encoded like query values, minus the '+' rule.
    let escaped = segment.replace('+', "%2B");
    let decoded: String = form_urlencoded::parse(format!("x={escaped}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    Some(decoded)
}

fn flag(value: &str) -> bool {
    value == "1" || value.eq_ignore_ascii_case("true")
}

/// The repeated `command` values, in order.
pub fn parse_command(query: &str) -> Vec<String> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// Stream flags from the query. A repeated flag counts with its first value, as the kubelet's
/// `req.FormValue` (Go's `url.Values.Get`) reads it; each alias is a key of its own.
pub fn parse_stream_options(query: &str) -> Result<StreamOptions, NoStreamsRequested> {
    let pairs: Vec<_> = form_urlencoded::parse(query.as_bytes()).collect();
    let on = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == key)
            .is_some_and(|(_, v)| flag(v))
    };
    let mut options = StreamOptions {
        stdin: on("input") || on("stdin"),
        stdout: on("output") || on("stdout"),
        stderr: on("error") || on("stderr"),
        tty: on("tty"),
    };
    if options.tty && options.stderr {
        // A terminal merges stderr into stdout; upstream silently drops the stderr request.
        options.stderr = false;
    }
    if !options.stdin && !options.stdout && !options.stderr {
        return Err(NoStreamsRequested);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_and_without_uid() {
        let (kind, target) = parse_stream_path("/exec/default/web/app").expect("route");
        assert_eq!(kind, StreamKind::Exec);
        assert_eq!(
            target,
            ContainerRef {
                namespace: "default".into(),
                pod: "web".into(),
                uid: None,
                container: "app".into()
            }
        );
        let (kind, target) = parse_stream_path("/attach/default/web/1234/app").expect("route");
        assert_eq!(kind, StreamKind::Attach);
        assert_eq!(target.uid.as_deref(), Some("1234"));
        for bad in [
            "/exec/default/web",
            "/exec/a/b/c/d/e",
            "/logs/a/b/c",
            "/exec//web/app",
            "exec/a/b/c",
        ] {
            assert!(parse_stream_path(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn command_keeps_order_and_decodes() {
        let q = "command=sh&command=-c&command=echo%20hi&output=1";
        assert_eq!(parse_command(q), ["sh", "-c", "echo hi"]);
    }

    #[test]
    fn kubelet_and_apiserver_flag_names() {
        let o = parse_stream_options("input=1&output=1&error=1").expect("streams");
        assert_eq!(
            o,
            StreamOptions {
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false
            }
        );
        let o = parse_stream_options("stdout=true&tty=true&stderr=true").expect("streams");
        assert!(o.stdout && o.tty && !o.stderr, "tty drops stderr: {o:?}");
        let o = parse_stream_options("output=0&input=yes&error=1").expect("streams");
        assert!(!o.stdout && !o.stdin && o.stderr);
    }

    #[test]
    fn no_stream_is_rejected_with_upstream_text() {
        let err = parse_stream_options("command=ls&tty=1").expect_err("no streams");
        assert_eq!(
            err.to_string(),
            "you must specify at least 1 of stdin, stdout, stderr"
        );
    }
}
