//! Real kubectl exec sessions through the proxy to a fake kubelet that runs a tiny command
//! interpreter: WebSocket v5 translation (kubectl 1.32 default), SPDY passthrough (forced, and
//! kubectl 1.20), redirect mode, and the kubelet-side failures.
mod common;

use common::{kubectl, kubectl_120, KubeletMode, Lab, KUBECTL_132};

const SPDY_ONLY: (&str, &str) = ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");

/// (label, kubectl, env): one client path.
type Client = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The three client paths: 1.32 WebSocket, 1.32 forced SPDY, 1.20 SPDY.
fn clients() -> Vec<Client> {
    let old = kubectl_120().expect("kubectl 1.20 missing: run scripts/setup.sh");
    vec![
        ("1.32 websocket", KUBECTL_132, &[]),
        ("1.32 spdy", KUBECTL_132, &[SPDY_ONLY]),
        ("1.20 spdy", old, &[]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_output_stdin_and_exit_codes() {
    let lab = Lab::start(KubeletMode::Exec).await;
    let admin = lab.cert_kubeconfig("admin", &lab.admin);
    let token = lab.token_kubeconfig("admin-token", "admintoken");
    for (label, bin, env) in clients() {
        for config in [&admin, &token] {
            let run = kubectl(
                bin,
                config,
                &["exec", "web", "--", "echo", "hello", "world"],
                env,
                None,
            )
            .await;
            assert_eq!(
                (run.code, run.stdout.as_str()),
                (Some(0), "hello world\n"),
                "{label}: {run:?}"
            );

            let run = kubectl(
                bin,
                config,
                &["exec", "-i", "web", "--", "cat"],
                env,
                Some(b"line one\nline two\n"),
            )
            .await;
            assert_eq!(
                (run.code, run.stdout.as_str()),
                (Some(0), "line one\nline two\n"),
                "{label}: {run:?}"
            );

            let run = kubectl(
                bin,
                config,
                &["exec", "web", "--", "warn", "careful"],
                env,
                None,
            )
            .await;
            assert_eq!(
                (run.code, run.stderr.as_str()),
                (Some(0), "careful\n"),
                "{label}: {run:?}"
            );

            let run = kubectl(bin, config, &["exec", "web", "--", "exit", "3"], env, None).await;
            assert_eq!(run.code, Some(3), "{label}: {run:?}");
            assert_eq!(
                run.error_line(),
                "command terminated with exit code 3",
                "{label}: {run:?}"
            );
        }
    }
    // The kubelet saw kubelet-style parameters and the apiserver's identity, with a traceparent.
    let requests = lab.kubelet().stream_requests();
    assert!(!requests.is_empty());
    for seen in &requests {
        assert_eq!(seen.method, "POST", "{seen:?}");
        assert_eq!(
            seen.client_user.as_deref(),
            Some("kube-apiserver-kubelet-client")
        );
        assert!(
            seen.headers.get("authorization").is_none(),
            "credentials leaked: {seen:?}"
        );
        let tp = seen
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(tp.parse::<hop_kit::TraceParent>().is_ok(), "{seen:?}");
    }
    assert!(requests.iter().any(|s| s.path_and_query
        == "/exec/default/web/app?command=echo&command=hello&command=world&error=1&output=1"));
    assert!(requests
        .iter()
        .any(|s| s.path_and_query == "/exec/default/web/app?command=cat&error=1&input=1&output=1"));
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_failure_texts() {
    let lab = Lab::start(KubeletMode::Exec).await;
    let admin = lab.cert_kubeconfig("admin", &lab.admin);
    let failure =
        "OCI runtime exec failed: write /tmp/runc-process1: no space left on device: unknown";
    for (label, bin, env) in clients() {
        let run = kubectl(
            bin,
            &admin,
            &["exec", "web", "--", "fail", failure],
            env,
            None,
        )
        .await;
        assert_eq!(run.code, Some(1), "{label}: {run:?}");
        let want = if label.contains("websocket") {
            // The translator wraps the plain error once more (failures.md row 2).
            format!("error: Internal error occurred: Internal error occurred: error executing command in container: {failure}")
        } else {
            format!(
                "error: Internal error occurred: error executing command in container: {failure}"
            )
        };
        assert_eq!(run.error_line(), want, "{label}: {run:?}");
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_unauthorized_texts() {
    let lab = Lab::start(KubeletMode::Unauthorized).await;
    let admin = lab.cert_kubeconfig("admin", &lab.admin);
    for (label, bin, env) in clients() {
        let run = kubectl(bin, &admin, &["exec", "web", "--", "true"], env, None).await;
        assert_eq!(run.code, Some(1), "{label}: {run:?}");
        let want = if label.contains("websocket") {
            "error: Internal error occurred: unable to upgrade connection: Unauthorized"
        } else {
            "error: unable to upgrade connection: Unauthorized"
        };
        assert_eq!(run.error_line(), want, "{label}: {run:?}");
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_down_texts() {
    let mut lab = Lab::start(KubeletMode::Exec).await;
    let admin = lab.cert_kubeconfig("admin", &lab.admin);
    let run = kubectl(KUBECTL_132, &admin, &["get", "pods"], &[], None).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    lab.stop_kubelet().await;
    let addr = lab.kubelet_addr;
    for (label, bin, env) in clients() {
        let run = kubectl(bin, &admin, &["exec", "web", "--", "echo", "x"], env, None).await;
        assert_eq!(run.code, Some(1), "{label}: {run:?}");
        let want = if label.contains("websocket") {
            format!("error: Internal error occurred: error sending request: Post \"https://{addr}/exec/default/web/app?command=echo&command=x&error=1&output=1\": dial tcp {addr}: connect: connection refused")
        } else {
            format!("Error from server: error dialing backend: dial tcp {addr}: connect: connection refused")
        };
        assert_eq!(run.error_line(), want, "{label}: {run:?}");
    }
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_mode_is_followed() {
    let lab = Lab::start(KubeletMode::Redirect).await;
    let admin = lab.cert_kubeconfig("admin", &lab.admin);
    for (label, bin, env) in clients() {
        let run = kubectl(
            bin,
            &admin,
            &["exec", "web", "--", "echo", "via", "redirect"],
            env,
            None,
        )
        .await;
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (Some(0), "via redirect\n"),
            "{label}: {run:?}"
        );
    }
    let followed: Vec<_> = lab
        .kubelet()
        .seen()
        .into_iter()
        .filter(|s| s.path_and_query.starts_with("/exec/sometoken?"))
        .collect();
    assert_eq!(followed.len(), 3);
    assert!(followed
        .iter()
        .all(|s| s.method == "GET" && s.headers.contains_key("traceparent")));
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_goes_to_the_kubelet_attach_endpoint() {
    let lab = Lab::start(KubeletMode::Exec).await;
    let admin = lab.cert_kubeconfig("admin", &lab.admin);
    for (label, bin, env) in clients() {
        let run = kubectl(bin, &admin, &["attach", "web"], env, None).await;
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (Some(0), "attached\n"),
            "{label}: {run:?}"
        );
    }
    let attaches: Vec<_> = lab
        .kubelet()
        .stream_requests()
        .into_iter()
        .filter(|s| s.path_and_query.starts_with("/attach/default/web/app?"))
        .collect();
    assert_eq!(attaches.len(), 3);
    lab.shutdown().await;
}
