//! The `apiserver-proxy` binary: flags, `--addr-file`, JSON logs, serving kubectl, SIGTERM.
mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{kubectl, KubeletMode, Lab, KUBECTL_132};
use http::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_and_stops_on_sigterm() {
    let lab = Lab::start(KubeletMode::Exec).await;
    let c = &lab.config;
    let addr_file = lab.dir.path().join("bin-addr");
    let mut args: Vec<String> = vec![
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--addr-file".into(),
        addr_file.display().to_string(),
        "--log-format".into(),
        "json".into(),
    ];
    let paths = [
        ("--tls-cert", &c.tls_cert),
        ("--tls-key", &c.tls_key),
        ("--kubelet-client-cert", &c.kubelet_client_cert),
        ("--kubelet-client-key", &c.kubelet_client_key),
        ("--kubelet-ca", &c.kubelet_ca),
    ];
    for (flag, path) in paths {
        args.push(flag.into());
        args.push(path.display().to_string());
    }
    for (flag, path) in [
        ("--client-ca", &c.client_ca),
        ("--token-auth-file", &c.token_auth_file),
        ("--policy-file", &c.policy_file),
    ] {
        args.push(flag.into());
        args.push(path.as_ref().expect("path").display().to_string());
    }
    args.push("--node".into());
    args.push(format!("node-1={}", lab.kubelet_addr));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_apiserver-proxy"))
        .args(&args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn apiserver-proxy");

    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        if let Ok(addr) = hop_kit::read_addr_file(&addr_file) {
            break addr;
        }
        assert!(Instant::now() < deadline, "no address file");
        assert!(child.try_wait().expect("wait").is_none(), "exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (status, _, body) =
        common::https_request(addr, lab.client_tls(), Method::GET, "/healthz", &[]).await;
    assert_eq!((status.as_u16(), &body[..]), (200, &b"ok"[..]));

    let admin = lab.kubeconfig_for(
        addr,
        "bin-admin",
        &format!(
            "    client-certificate: {}\n    client-key: {}",
            lab.admin.cert.display(),
            lab.admin.key.display()
        ),
    );
    let run = kubectl(
        KUBECTL_132,
        &admin,
        &["exec", "web", "--", "echo", "from", "binary"],
        &[],
        None,
    )
    .await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "from binary\n"),
        "{run:?}"
    );

    let pid = child.id().expect("pid").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = tokio::time::timeout(Duration::from_secs(15), child.wait_with_output())
        .await
        .expect("exits after SIGTERM")
        .expect("output");
    assert_eq!(out.status.code(), Some(0));
    let logs = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "apiserver-proxy listening"));
    assert!(lines
        .iter()
        .any(|l| l["fields"]["message"] == "SIGTERM received"));
    // The exec was logged inside its exec_session span.
    assert!(
        lines.iter().any(|l| {
            l["fields"]["message"] == "exec request"
                && l["span"]["name"] == "exec_session"
                && l["span"]["session"].as_str().is_some_and(|s| s.len() == 32)
        }),
        "{logs}"
    );
    lab.shutdown().await;
}
