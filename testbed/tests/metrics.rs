//! End to end: every hop of a lab serves Prometheus metrics at the address in
//! `DIR/addr/<hop>.metrics`, `execlab status` shows the URLs, and one exec through the chain
//! (WebSocket v5, then SPDY) moves each hop's session and byte counters.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::hop_metrics::{scrape, value, wait_sessions_closed};
use common::{dump_logs, kubectl, run_bounded};
use execlab::{Hop, Lab, LabConfig};

fn exec_echo(kubeconfig: &std::path::Path, websocket: bool) -> std::process::Output {
    let mut command = Command::new(kubectl());
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["exec", "web", "-c", "app", "--", "echo", "metered"]);
    if !websocket {
        command.env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false");
    }
    run_bounded(&mut command, Duration::from_secs(60))
}

#[test]
fn every_hop_counts_an_exec_in_its_metrics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("lab");
    let lab = match Lab::start_blocking(LabConfig::new(&dir)) {
        Ok(lab) => lab,
        Err(e) => panic!("lab did not start: {e}\n{}", dump_logs(&dir)),
    };
    let dir = lab.dir().to_path_buf();
    let started = [
        Hop::ApiserverProxy,
        Hop::KubeletStream,
        Hop::CriStreaming,
        Hop::ShimExec,
    ];
    let before: Vec<String> = started.iter().map(|hop| scrape(&dir, *hop)).collect();

    let status = Command::new(env!("CARGO_BIN_EXE_execlab"))
        .args(["status", "--dir"])
        .arg(&dir)
        .output()
        .expect("execlab status");
    let status = String::from_utf8_lossy(&status.stdout);
    for hop in started {
        let line = status
            .lines()
            .find(|l| l.starts_with(hop.name()))
            .unwrap_or_else(|| panic!("{hop} missing from status:\n{status}"));
        assert!(
            line.contains("metrics http://127.0.0.1:") && line.contains("/metrics"),
            "{line}"
        );
    }

    for websocket in [true, false] {
        let out = exec_echo(&lab.kubeconfig(), websocket);
        assert!(
            out.status.success() && out.stdout == b"metered\n",
            "kubectl exec (websocket: {websocket}): {:?}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            dump_logs(&dir)
        );
    }

    // Counters are updated as bytes pass; the open gauge drops once each hop saw the end.
    let (after, _) = wait_sessions_closed(&dir, &started, Duration::from_secs(10));
    for ((hop, b), a) in started.iter().zip(&before).zip(&after) {
        let hop = *hop;
        let total = "execlab_exec_sessions_total";
        assert!(
            value(a, hop, total, "") >= value(b, hop, total, "") + 2.0,
            "{hop}: two execs not counted\nbefore:\n{b}\nafter:\n{a}"
        );
        assert_eq!(
            value(a, hop, "execlab_exec_sessions_open", ""),
            0.0,
            "{hop}:\n{a}"
        );
        let setups = "execlab_exec_setup_seconds_count";
        assert!(
            value(a, hop, setups, "") >= value(b, hop, setups, "") + 2.0,
            "{hop}: setup not observed\n{a}"
        );
        let (name, label) = match hop {
            // Without a tty the process writes into cri-streaming's FIFOs, not through the shim.
            Hop::ShimExec => continue,
            Hop::CriStreaming => ("execlab_exec_bytes_total", ",stream=\"stdout\""),
            _ => (
                "execlab_exec_spliced_bytes_total",
                ",direction=\"to_client\"",
            ),
        };
        let moved = value(a, hop, name, label) - value(b, hop, name, label);
        let floor = if hop == Hop::CriStreaming { 16.0 } else { 17.0 };
        assert!(moved >= floor, "{hop}: {name}{label} moved {moved}\n{a}");
    }
    if let Err(e) = lab.stop() {
        panic!("stop: {e}");
    }
}

/// A collector on 127.0.0.1:0: every POST body (JSON) goes to the returned receiver.
fn otlp_collector() -> (
    std::net::SocketAddr,
    std::sync::mpsc::Receiver<serde_json::Value>,
) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(tcp);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((name, value)) = line.split_once(':') {
                            if name.eq_ignore_ascii_case("content-length") {
                                length = value.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    if let Ok(v) = serde_json::from_slice(&body) {
                        let _ = tx.send(v);
                    }
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
                    if reader.get_mut().write_all(reply).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

#[test]
fn every_hop_exports_its_exec_session_span_to_the_otlp_collector() {
    let (collector, posts) = otlp_collector();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("lab");
    let mut config = LabConfig::new(&dir);
    for hop in Hop::STARTED {
        config.hop_flags.push(execlab::HopFlag::new(
            hop,
            "--otlp-endpoint",
            format!("http://{collector}"),
        ));
    }
    let lab = match Lab::start_blocking(config) {
        Ok(lab) => lab,
        Err(e) => panic!("lab did not start: {e}\n{}", dump_logs(&dir)),
    };
    let dir = lab.dir().to_path_buf();
    let out = exec_echo(&lab.kubeconfig(), true);
    assert!(out.status.success(), "{}", dump_logs(&dir));

    // hop → the trace ids of its exec_session spans.
    let mut seen: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.len() < 4 && Instant::now() < deadline {
        let Ok(body) = posts.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        for rs in body["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"][0]["value"]["stringValue"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            for span in rs["scopeSpans"][0]["spans"]
                .as_array()
                .into_iter()
                .flatten()
            {
                assert_eq!(span["name"], "exec_session");
                let trace = span["traceId"].as_str().unwrap_or("").to_owned();
                seen.entry(service.clone()).or_default().push(trace);
            }
        }
    }
    if let Err(e) = lab.stop() {
        panic!("stop: {e}");
    }
    let hops: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(
        hops,
        [
            "apiserver-proxy",
            "cri-streaming",
            "kubelet-stream",
            "shim-exec"
        ],
        "{seen:?}"
    );
    // The apiserver's session (one exec) is the trace every other hop's spans belong to.
    let trace = &seen["apiserver-proxy"][0];
    assert_eq!(trace.len(), 32);
    for (hop, traces) in &seen {
        assert!(
            traces.iter().all(|t| t == trace),
            "{hop}: {traces:?} vs {trace}"
        );
    }
}
