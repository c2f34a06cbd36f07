//! Reading a running lab's hops' Prometheus metrics, at the addresses they wrote.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use execlab::{Hop, LabLayout};

/// The metrics address file of a hop; for shim-exec, the one shim of the lab's pod.
pub fn metrics_file(dir: &Path, hop: Hop) -> PathBuf {
    if hop != Hop::ShimExec {
        return dir.join("addr").join(format!("{hop}.metrics"));
    }
    let shims = LabLayout::new(dir)
        .expect("lab layout")
        .shim_metrics_files();
    assert_eq!(shims.len(), 1, "one shim metrics file: {shims:?}");
    shims[0].clone()
}

/// `GET /metrics` from the address a hop wrote, as text.
pub fn scrape(dir: &Path, hop: Hop) -> String {
    let file = metrics_file(dir, hop);
    let addr = hop_kit::read_addr_file(&file)
        .unwrap_or_else(|e| panic!("{hop} metrics address file: {e}"));
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut reply = String::new();
    tcp.read_to_string(&mut reply).expect("reply");
    assert!(reply.starts_with("HTTP/1.1 200"), "{hop}: {reply}");
    reply
}

/// The value of the series `name{hop="<hop>"<extra>}`.
pub fn value(text: &str, hop: Hop, name: &str, extra: &str) -> f64 {
    let series = format!("{name}{{hop=\"{hop}\"{extra}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// Waits, at most `limit`, until every one of `hops` shows no open exec session; the last
/// scrape of each, and whether they all got there.
pub fn wait_sessions_closed(dir: &Path, hops: &[Hop], limit: Duration) -> (Vec<String>, bool) {
    let deadline = Instant::now() + limit;
    loop {
        let texts: Vec<String> = hops.iter().map(|hop| scrape(dir, *hop)).collect();
        let all_closed = hops
            .iter()
            .zip(&texts)
            .all(|(hop, text)| value(text, *hop, "execlab_exec_sessions_open", "") == 0.0);
        if all_closed || Instant::now() > deadline {
            return (texts, all_closed);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
