//! `execlab bench --quick` end to end: it starts its own labs, measures every path and writes
//! bench.json with figures for each path plus the SVG plots. No assertion about speed.

mod common;

use std::process::Command;
use std::time::Duration;

use common::run_bounded;

const PATHS: [&str; 7] = [
    "runc",
    "shim",
    "cri",
    "kubelet-proxy",
    "kubelet-redirect",
    "apiserver-ws",
    "apiserver-spdy",
];

fn number(v: &serde_json::Value, what: &str) -> f64 {
    let n = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(n.is_finite() && n > 0.0, "{what} = {n}");
    n
}

#[test]
fn quick_bench_writes_every_path_and_the_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut command = Command::new(env!("CARGO_BIN_EXE_execlab"));
    command
        .args(["bench", "--quick", "--kubectl", "none", "--out"])
        .arg(&out);
    let run = run_bounded(&mut command, Duration::from_secs(600));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "execlab bench failed: {}\n{stdout}\n{}",
        run.status,
        String::from_utf8_lossy(&run.stderr)
    );
    let text = std::fs::read_to_string(out.join("bench.json")).expect("bench.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("bench.json is JSON");
    number(&json["loopback_mb_s"], "loopback_mb_s");
    for path in PATHS {
        let p = &json["paths"][path];
        assert!(p.is_object(), "no figures for {path} in {text}");
        for q in ["p50", "p90", "p99"] {
            number(&p["setup_ms"][q], &format!("{path} setup_ms.{q}"));
        }
        number(&p["stdout_mb_s"], &format!("{path} stdout_mb_s"));
        number(&p["stdin_mb_s"], &format!("{path} stdin_mb_s"));
        assert!(stdout.contains(path), "the table names {path}:\n{stdout}");
    }
    // CPU per GiB moved: each hop on the whole chain spent some, and the table shows it.
    for hop in [
        "apiserver-proxy",
        "kubelet-stream",
        "cri-streaming",
        "bench client",
    ] {
        number(
            &json["paths"]["apiserver-ws"]["stdout_cpu"]["ms_per_gib"][hop],
            &format!("apiserver-ws stdout CPU ms/GiB of {hop}"),
        );
    }
    assert!(stdout.contains("CPU ms per GiB moved"), "{stdout}");
    // Setup split exec by exec from the hops' logs: runc's part and the rest.
    let split = &json["setup_without_runc"]["apiserver-ws"];
    number(&split["runc_ms"]["p50"], "apiserver-ws runc_ms.p50");
    number(
        &split["without_runc_ms"]["p50"],
        "apiserver-ws without_runc_ms.p50",
    );
    assert!(
        split["samples"].as_u64() >= Some(10),
        "most samples found in the logs: {split}"
    );
    // containerd's counterparts, measured in the same run where containerd is installed
    // (issue #9; their stdin figure is not asserted: see docs/labs/containerd.md).
    if execlab::containerd::installed() {
        for path in ["containerd-cri", "containerd-chain"] {
            let p = &json["paths"][path];
            for q in ["p50", "p90", "p99"] {
                number(&p["setup_ms"][q], &format!("{path} setup_ms.{q}"));
            }
            number(&p["stdout_mb_s"], &format!("{path} stdout_mb_s"));
        }
        assert!(
            stdout.contains("ours/containerd cri vs containerd-cri: setup p50"),
            "{stdout}"
        );
    } else {
        eprintln!("containerd not installed: containerd paths not checked");
    }
    let levels: Vec<u64> = json["concurrency"]
        .as_array()
        .expect("concurrency levels")
        .iter()
        .map(|c| c["sessions"].as_u64().expect("sessions"))
        .collect();
    assert_eq!(levels, [1, 10, 100]);
    for svg in ["setup.svg", "throughput.svg", "concurrency.svg"] {
        let body = std::fs::read_to_string(out.join(svg)).unwrap_or_default();
        assert!(body.starts_with("<svg") && body.contains("</svg>"), "{svg}");
    }
    // The labs' logs are kept for `execlab trace`, the shim's among them.
    for mode in ["lab-proxy", "lab-redirect"] {
        let shim_log = out.join(mode).join("logs").join("shim-exec.log");
        assert!(shim_log.is_file(), "{} kept", shim_log.display());
    }
    // Nothing of the bench's labs is left running.
    let leftovers: Vec<_> = execlab::procfs::processes()
        .into_iter()
        .filter(|p| p.cmdline.iter().any(|a| a.contains("/tmp/execlab-bench-")))
        .collect();
    assert!(
        leftovers.is_empty(),
        "bench labs left processes: {leftovers:?}"
    );
}
