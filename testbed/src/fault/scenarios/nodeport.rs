//! Seed 003: a NodePort equal to the CRI streaming server's random port.
//!
//! The streaming server listens on 127.0.0.1 with a port the kernel picks from
//! `ip_local_port_range`. On the seed's hosts the API server's NodePort range (30000–50000)
//! overlapped that range, a Service got the same number as a NodePort, and kube-proxy's rules
//! (nat OUTPUT → KUBE-SERVICES → KUBE-NODEPORTS for `--dst-type LOCAL`) sent the kubelet's dial
//! to 127.0.0.1:<port> on to a Dubbo provider at <pod>:20880; conntrack showed the entry.
//!
//! Runs inside the node network namespace [`crate::fault::netns`] makes. The port range is set
//! to 30000–50000 so the streaming server's port always falls in the NodePort range, and the
//! NodePort rule is installed for the port it got (as if the Service had been given it). Then
//! the two fixes: redirect mode with the stream endpoint on a fixed port outside the NodePort
//! range, and `ip_local_reserved_ports` for the NodePort range.

use std::net::SocketAddr;
use std::ops::RangeInclusive;

use crate::fault::dubbo::DubboServer;
use crate::fault::isolate::ensure_own_namespace;
use crate::fault::kubectl::Client;
use crate::fault::netns::{app_addr, command, command_with_input, APP_NETNS_ENV, NODE_IP};
use crate::fault::{kubectl_checks, Check, Expected, FaultError, FaultReport, FaultRun};
use crate::hop::Hop;
use crate::lab::{HopFlag, Lab};

/// The seed's `--service-node-port-range` (a cloud provider's 30000-50000, not the default).
const NODE_PORTS: RangeInclusive<u16> = 30000..=50000;
/// Redirect mode's stream endpoint: fixed, below any NodePort (dockershim's redirect served
/// streams on the kubelet's own port 10250; containerd's maintainers advise a fixed
/// `stream_server_port` outside the NodePort range).
const FIXED_STREAM_PORT: u16 = 10010;

/// kube-proxy's iptables-mode nat rules for NodePort `port` → `backend`, as it writes them
/// (checked against kubernetes `pkg/proxy/iptables/proxier.go`: KUBE-SERVICES from PREROUTING
/// and OUTPUT, KUBE-NODEPORTS as the last KUBE-SERVICES rule for `--dst-type LOCAL`, the
/// KUBE-EXT chain marking for masquerade, DNAT in the endpoint chain, MASQUERADE of marked
/// packets in KUBE-POSTROUTING). Real chain suffixes are hashes; these are spelled out.
pub fn kube_proxy_rules(port: u16, backend: SocketAddr) -> String {
    let ip = backend.ip();
    format!(
        "*nat
:KUBE-SERVICES - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-EXT-DUBBO - [0:0]
:KUBE-SVC-DUBBO - [0:0]
:KUBE-SEP-DUBBO - [0:0]
-A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A OUTPUT -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment \"kubernetes postrouting rules\" -j KUBE-POSTROUTING
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE
-A KUBE-SERVICES -m comment --comment \"kubernetes service nodeports; NOTE: this must be the last rule in this chain\" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-NODEPORTS -p tcp -m comment --comment \"default/dubbo-app:dubbo\" -m tcp --dport {port} -j KUBE-EXT-DUBBO
-A KUBE-EXT-DUBBO -m comment --comment \"masquerade traffic for default/dubbo-app:dubbo external destinations\" -j KUBE-MARK-MASQ
-A KUBE-EXT-DUBBO -j KUBE-SVC-DUBBO
-A KUBE-SVC-DUBBO -m comment --comment \"default/dubbo-app:dubbo -> {backend}\" -j KUBE-SEP-DUBBO
-A KUBE-SEP-DUBBO -s {ip}/32 -m comment --comment \"default/dubbo-app:dubbo\" -j KUBE-MARK-MASQ
-A KUBE-SEP-DUBBO -p tcp -m comment --comment \"default/dubbo-app:dubbo\" -m tcp -j DNAT --to-destination {backend}
COMMIT
"
    )
}

fn sysctl(name: &str, value: &str) -> Result<(), FaultError> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| FaultError::io(format!("writing {path}"), e))
}

fn sysctl_read(name: &str) -> String {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::read_to_string(path)
        .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn run(run: &FaultRun) -> Result<FaultReport, FaultError> {
    ensure_own_namespace("net")?;
    let app_netns = std::env::var(APP_NETNS_ENV)
        .map_err(|_| FaultError::Setup(format!("{APP_NETNS_ENV} is not set")))?;
    let mut report = FaultReport::new("nodeport-collision", "003");
    command("ip", &["link", "set", "lo", "up"])?;
    // kube-proxy sets route_localnet so NodePorts answer on 127.0.0.1 (--iptables-localhost-nodeports).
    sysctl("net.ipv4.conf.all.route_localnet", "1")?;
    sysctl("net.ipv4.ip_local_port_range", "30000 50000")?;
    let app = DubboServer::start(&format!("/run/netns/{app_netns}"), app_addr())?;

    // 1. The collision.
    let lab = run.start_lab(run.lab_config("collision"))?;
    let port = lab
        .stream_addr()
        .map(|a| a.port())
        .ok_or_else(|| FaultError::Setup("no streaming address".into()))?;
    report.checks.push(Check::fact(
        "the streaming server's random port is in the NodePort range",
        "sysctl net.ipv4.ip_local_port_range; cat DIR/addr/cri-streaming",
        &format!("a port in {}-{}", NODE_PORTS.start(), NODE_PORTS.end()),
        "seed 003: NodePort range 30000-50000 overlapping the ephemeral range",
        &format!(
            "127.0.0.1:{port} (ip_local_port_range {})",
            sysctl_read("net.ipv4.ip_local_port_range")
        ),
        NODE_PORTS.contains(&port),
    ));
    command_with_input("iptables-restore", &[], &kube_proxy_rules(port, app_addr()))?;
    let rules = command("iptables", &["-t", "nat", "-S", "KUBE-NODEPORTS"])?;
    let expected = collision_texts();
    kubectl_checks(
        &mut report,
        &lab,
        &format!("NodePort {port} captures the kubelet's dial to 127.0.0.1:{port}"),
        &["exec", "web", "-c", "app", "--", "echo", "ok"],
        &expected,
    )?;
    let received = app.received();
    let exec_requests: Vec<String> = received
        .iter()
        .filter_map(|r| r.lines.first().map(|l| format!("{l}  (from {})", r.peer)))
        .collect();
    report.checks.push(Check::fact(
        "the kubelet's exec request reached the Dubbo port",
        &format!("(what {} received)", app_addr()),
        &format!("POST /exec/<token> HTTP/1.1 from {NODE_IP} (masqueraded)"),
        "seed 003's capture: an exec request at A:20880",
        &exec_requests.join("\n"),
        !exec_requests.is_empty()
            && received.iter().all(|r| {
                r.peer.starts_with(&format!("{NODE_IP}:"))
                    && r.lines
                        .first()
                        .is_some_and(|l| l.starts_with("POST /exec/"))
            }),
    ));
    let conntrack = command(
        "conntrack",
        &["-L", "-p", "tcp", "--orig-port-dst", &port.to_string()],
    )
    .unwrap_or_else(|e| e.to_string());
    let dnat = "src=127.0.0.1 dst=127.0.0.1 sport=";
    let want_reply = format!(
        "src={} dst={NODE_IP} sport={}",
        app_addr().ip(),
        app_addr().port()
    );
    let conntrack_ok = conntrack.lines().any(|l| {
        l.contains(dnat) && l.contains(&format!("dport={port} ")) && l.contains(&want_reply)
    });
    report.checks.push(Check::fact(
        "conntrack shows the DNAT: 127.0.0.1:<port> answered by the app",
        &format!("conntrack -L -p tcp --orig-port-dst {port}"),
        &format!(
            "tcp … src=127.0.0.1 dst=127.0.0.1 sport=<n> dport={port} {want_reply} dport=<n> …"
        ),
        "seed 003: \"一条请求 127.0.0.1:33589 的记录，并且转发到的地址 A:20880\"",
        conntrack.trim_end(),
        conntrack_ok,
    ));
    report.notes.push(format!(
        "kube-proxy's NodePort rule (iptables -t nat -S KUBE-NODEPORTS):\n{}",
        rules.trim_end()
    ));
    run.stop_lab(lab)?;

    // 2. Fix one: redirect mode.
    let before = app.received().len();
    let mut config = run.lab_config("redirect");
    config.redirect_container_streaming = true;
    config.hop_flags.push(HopFlag::new(
        Hop::CriStreaming,
        "--stream-addr",
        format!("127.0.0.1:{FIXED_STREAM_PORT}"),
    ));
    let lab = run.start_lab(config)?;
    works(
        &mut report,
        &lab,
        "fix 1: --redirect-container-streaming, stream endpoint on a fixed port outside the NodePort range",
        "seed 003 (fix 1, \"开启参数，通过 302 跳转方式\"); the NodePort rule is still installed",
    )?;
    no_new_connection(&mut report, &app, before);
    run.stop_lab(lab)?;

    // 3. Fix two: reserve the NodePort range.
    sysctl("net.ipv4.ip_local_port_range", "32768 60999")?;
    sysctl("net.ipv4.ip_local_reserved_ports", "30000-50000")?;
    let before = app.received().len();
    let lab = run.start_lab(run.lab_config("reserved"))?;
    let port = lab.stream_addr().map(|a| a.port()).unwrap_or(0);
    report.checks.push(Check::fact(
        "fix 2: with the NodePort range reserved, the streaming port is outside it",
        "sysctl -w net.ipv4.ip_local_reserved_ports=30000-50000",
        "a port outside 30000-50000",
        "containerd/containerd#7097 (reporter's fix); seed 003 fix 2 (\"修改系统参数\")",
        &format!(
            "127.0.0.1:{port} (ip_local_port_range {}, reserved {})",
            sysctl_read("net.ipv4.ip_local_port_range"),
            sysctl_read("net.ipv4.ip_local_reserved_ports")
        ),
        port != 0 && !NODE_PORTS.contains(&port),
    ));
    works(
        &mut report,
        &lab,
        "fix 2: net.ipv4.ip_local_reserved_ports=30000-50000",
        "exec works again: no NodePort can take the streaming server's port",
    )?;
    no_new_connection(&mut report, &app, before);
    run.stop_lab(lab)?;
    drop(app);
    report.notes.push(
        "Capture the hop: `ip netns exec <node netns> tcpdump -ni any port 20880` while running\n\
         the exec; the kubelet's POST /exec/... leaves on veth-node with source 10.244.1.1."
            .into(),
    );
    Ok(report)
}

fn collision_texts() -> Vec<(Client, Expected)> {
    let body = "malformed HTTP status code \"command:\"";
    let spdy = Expected::new(
        format!("error: unable to upgrade connection: {body}"),
        1,
        "derived: the Dubbo port answers `Unsupported command: POST` (dubbo TelnetHandlerAdapter); Go http.ReadResponse in upgradeaware.go → `malformed HTTP status code \"command:\"`; kubelet responder writes it as a 500; spdy roundtripper.go; failures.md row 8 (seed 003's own text was an image, lost)",
    );
    vec![
        (
            Client::Ws132,
            Expected::new(
                format!("error: Internal error occurred: unable to upgrade connection: {body}"),
                1,
                "derived as [spdy], wrapped by streamtranslator.go NewInternalError",
            ),
        ),
        (Client::Spdy132, spdy.clone()),
        (Client::Spdy120, spdy),
    ]
}

fn works(report: &mut FaultReport, lab: &Lab, title: &str, source: &str) -> Result<(), FaultError> {
    let expected: Vec<(Client, Expected)> = Client::ALL
        .iter()
        .map(|c| (*c, Expected::new("", 0, source).with_stdout("ok\n")))
        .collect();
    kubectl_checks(
        report,
        lab,
        title,
        &["exec", "web", "-c", "app", "--", "echo", "ok"],
        &expected,
    )?;
    Ok(())
}

fn no_new_connection(report: &mut FaultReport, app: &DubboServer, before: usize) {
    let after = app.received().len();
    report.checks.push(Check::fact(
        "…and nothing reached the Dubbo port",
        "",
        &format!("{before} connections, as before"),
        "the fix takes the kubelet's dial out of the NodePort's way",
        &format!("{after} connections"),
        after == before,
    ));
}
