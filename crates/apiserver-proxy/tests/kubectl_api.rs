//! Real kubectl (1.32 and 1.20) against the proxy and a fake kubelet: discovery, pods,
//! authentication and authorization errors, exec routing errors (kubelet-side failures are in
//! `kubectl_exec.rs`).
mod common;

use common::{kubectl, kubectl_120, kubectl_in, KubeletMode, Lab, KUBECTL_132};

const SPDY_ONLY: (&str, &str) = ("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");

fn kubectls() -> Vec<&'static str> {
    let old = kubectl_120().expect("kubectl 1.20 missing: run scripts/setup.sh");
    vec![KUBECTL_132, old]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_pods_prints_the_table() {
    let lab = Lab::start(KubeletMode::Echo).await;
    let admin = lab.cert_kubeconfig("admin", &lab.admin);
    for bin in kubectls() {
        let run = kubectl(bin, &admin, &["get", "pods"], &[], None).await;
        assert_eq!(run.code, Some(0), "{bin}: {run:?}");
        let mut lines = run.stdout.lines();
        let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        assert_eq!(
            header,
            ["NAME", "READY", "STATUS", "RESTARTS", "AGE"],
            "{bin}: {run:?}"
        );
        let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
        assert_eq!(&row[..4], ["web", "1/1", "Running", "0"], "{bin}: {run:?}");
        assert!(lines.next().is_none(), "{bin}: only default pods: {run:?}");

        let run = kubectl(bin, &admin, &["get", "pods", "-A"], &[], None).await;
        assert_eq!(run.code, Some(0), "{bin}: {run:?}");
        assert!(run.stdout.starts_with("NAMESPACE"), "{bin}: {run:?}");
        assert!(run.stdout.contains("kube-system"), "{bin}: {run:?}");
        assert!(run.stdout.contains("coredns"), "{bin}: {run:?}");

        let run = kubectl(
            bin,
            &admin,
            &["get", "pod", "web", "-o", "jsonpath={.spec.nodeName}"],
            &[],
            None,
        )
        .await;
        assert_eq!(
            (run.code, run.stdout.as_str()),
            (Some(0), "node-1"),
            "{bin}: {run:?}"
        );
    }
    let pods_fetches = lab
        .kubelet()
        .seen()
        .iter()
        .filter(|s| s.path_and_query == "/pods")
        .count();
    assert!(pods_fetches > 0);
    assert!(lab
        .kubelet()
        .seen()
        .iter()
        .all(|s| s.client_user.as_deref() == Some("kube-apiserver-kubelet-client")));
    lab.shutdown().await;
}

/// What kubectl prints for a 401. kubectl 1.32 reads discovery with client-go's `Result.Raw()`,
/// which keeps the generic 401 text instead of the Status body, so with a cold discovery cache
/// the first failing request (`GET /api`) yields the generic text; with a warm cache the first
/// live request is the pod GET, whose Status message (`Unauthorized`) is shown. kubectl 1.20
/// shows `Unauthorized` either way.
const UNAUTHORIZED: &str = "error: You must be logged in to the server (Unauthorized)";
const UNAUTHORIZED_DISCOVERY: &str =
    "error: You must be logged in to the server (the server has asked for the client to provide credentials)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_bad_credentials_are_unauthorized() {
    let lab = Lab::start(KubeletMode::Echo).await;
    // A kubeconfig user without any credentials makes kubectl prompt for a username (and fail
    // with `error: EOF` on a closed stdin, before any request), so "no usable credentials" is a
    // basic-auth user: this server, like kube-apiserver >= 1.19, has no basic auth.
    let nobody = lab.kubeconfig("basic", "    username: someone\n    password: \"pw\"");
    let bad_token = lab.token_kubeconfig("bad", "not-a-token");
    let foreign = common::Pki::new(&lab.dir.path().join("foreign-pki"));
    let foreign_admin = foreign.client("admin", "admin", Some("system:masters"));
    let foreign_cert = lab.cert_kubeconfig("foreign", &foreign_admin);
    let admin = lab.cert_kubeconfig("admin", &lab.admin);
    for bin in kubectls() {
        // A warm discovery cache, filled by an authorized user.
        let warm = lab.dir.path().join(format!("warm-{}", bin.len()));
        let run = kubectl_in(&warm, bin, &admin, &["get", "pods"], &[], None).await;
        assert_eq!(run.code, Some(0), "{bin}: {run:?}");
        for config in [&nobody, &bad_token, &foreign_cert] {
            for args in [&["get", "pods"][..], &["exec", "web", "--", "true"][..]] {
                let cold = kubectl(bin, config, args, &[], None).await;
                assert_eq!(cold.code, Some(1), "{bin} {args:?}: {cold:?}");
                let want = if bin == KUBECTL_132 {
                    UNAUTHORIZED_DISCOVERY
                } else {
                    UNAUTHORIZED
                };
                assert_eq!(cold.error_line(), want, "{bin} {args:?}: {cold:?}");

                let run = kubectl_in(&warm, bin, config, args, &[], None).await;
                assert_eq!(run.code, Some(1), "{bin} {args:?}: {run:?}");
                assert_eq!(run.error_line(), UNAUTHORIZED, "{bin} {args:?}: {run:?}");
            }
        }
    }
    assert!(lab.kubelet().stream_requests().is_empty());
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_without_permission_is_forbidden() {
    let lab = Lab::start(KubeletMode::Echo).await;
    let jane_token = lab.token_kubeconfig("jane-token", "janetoken");
    let jane_cert = lab.cert_kubeconfig("jane-cert", &lab.jane_cert);
    let want = "Error from server (Forbidden): pods \"web\" is forbidden: User \"jane\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"default\"";
    for bin in kubectls() {
        for config in [&jane_token, &jane_cert] {
            for env in [&[][..], &[SPDY_ONLY][..]] {
                let run = kubectl(bin, config, &["exec", "web", "--", "true"], env, None).await;
                assert_eq!(run.code, Some(1), "{bin}: {run:?}");
                assert_eq!(run.error_line(), want, "{bin} {env:?}: {run:?}");
            }
        }
        // Listing in another namespace is forbidden too, at the namespace level.
        let run = kubectl(
            bin,
            &jane_token,
            &["get", "pods", "-n", "kube-system"],
            &[],
            None,
        )
        .await;
        assert_eq!(
            run.error_line(),
            "Error from server (Forbidden): pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\"",
            "{bin}: {run:?}"
        );
    }
    assert!(
        lab.kubelet().stream_requests().is_empty(),
        "a forbidden exec reached the kubelet"
    );
    lab.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pod_and_container_texts() {
    let lab = Lab::start(KubeletMode::Echo).await;
    let admin = lab.cert_kubeconfig("admin", &lab.admin);
    for bin in kubectls() {
        for env in [&[][..], &[SPDY_ONLY][..]] {
            let run = kubectl(bin, &admin, &["exec", "nosuch", "--", "true"], env, None).await;
            assert_eq!(run.code, Some(1), "{bin}: {run:?}");
            assert_eq!(
                run.error_line(),
                "Error from server (NotFound): pods \"nosuch\" not found",
                "{bin}: {run:?}"
            );

            let run = kubectl(
                bin,
                &admin,
                &["exec", "web", "-c", "x", "--", "true"],
                env,
                None,
            )
            .await;
            assert_eq!(run.code, Some(1), "{bin}: {run:?}");
            assert_eq!(
                run.error_line(),
                "Error from server (BadRequest): container x is not valid for pod web",
                "{bin}: {run:?}"
            );
        }
    }
    lab.shutdown().await;
}

/// kube-apiserver 1.32 authorizes the WebSocket exec (a GET) as `get pods/exec`; only the SPDY
/// POST needs `create` (1.35's AuthorizePodWebsocketUpgradeCreatePermission closes this gap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_on_pods_exec_is_enough_for_websocket_exec() {
    let lab = Lab::start(KubeletMode::Echo).await;
    let viewer = lab.token_kubeconfig("viewer", "viewertoken");
    let run = kubectl(
        KUBECTL_132,
        &viewer,
        &["exec", "web", "--", "true"],
        &[],
        None,
    )
    .await;
    // The echo kubelet is not an exec server; reaching it is the point.
    assert!(!run.stderr.contains("Forbidden"), "{run:?}");
    let ws = lab.kubelet().stream_requests();
    assert_eq!(ws.len(), 1, "the WebSocket exec was let through: {run:?}");
    let run = kubectl(
        KUBECTL_132,
        &viewer,
        &["exec", "web", "--", "true"],
        &[SPDY_ONLY],
        None,
    )
    .await;
    assert_eq!(
        run.error_line(),
        "Error from server (Forbidden): pods \"web\" is forbidden: User \"viewer\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"default\"",
        "{run:?}"
    );
    assert_eq!(lab.kubelet().stream_requests().len(), 1);
    lab.shutdown().await;
}
