//! The network of `nodeport-collision`: two network namespaces the scenario makes and deletes,
//! a "node" (where the whole lab runs) and an "app" (the Dubbo pod), joined by a veth pair, and
//! the kube-proxy rules installed inside the node namespace.
//!
//! ```text
//!  node netns (lab + kubectl)             app netns
//!  lo 127.0.0.1                           lo
//!  veth-node 10.244.1.1/24 ─────────────── veth-app 10.244.1.2/24, Dubbo port :20880
//! ```
//!
//! The host runs `ip netns add/del` and `ip link add` only; every rule, sysctl and socket of the
//! scenario is inside the namespaces and goes with them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;

use super::{isolate, FaultError};

pub const NODE_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 1);
pub const APP_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);
/// Seed 003: the NodePort's backend was a Dubbo provider's port.
pub const APP_PORT: u16 = 20880;
/// Names the app namespace in the inner run's environment.
pub const APP_NETNS_ENV: &str = "EXECLAB_FAULT_APP_NETNS";

pub fn app_addr() -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(APP_IP, APP_PORT))
}

/// Runs `program args`; its stdout, or an error with its stderr.
pub fn command(program: &str, args: &[&str]) -> Result<String, FaultError> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| FaultError::io(format!("running {program}"), e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(FaultError::Command {
            what: format!("{program} {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Runs `program` with `input` on stdin.
pub fn command_with_input(program: &str, args: &[&str], input: &str) -> Result<(), FaultError> {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| FaultError::io(format!("running {program}"), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| FaultError::io(format!("writing to {program}"), e))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| FaultError::io(format!("waiting for {program}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FaultError::Command {
            what: program.to_owned(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// The two namespaces; deleted on drop.
pub struct Namespaces {
    pub node: String,
    pub app: String,
}

impl Namespaces {
    pub fn create() -> Result<Self, FaultError> {
        let id = std::process::id();
        let namespaces = Self {
            node: format!("execlab-node-{id}"),
            app: format!("execlab-app-{id}"),
        };
        command("ip", &["netns", "add", &namespaces.node])?;
        command("ip", &["netns", "add", &namespaces.app])?;
        let (node, app) = (namespaces.node.as_str(), namespaces.app.as_str());
        let node_cidr = format!("{NODE_IP}/24");
        let app_cidr = format!("{APP_IP}/24");
        let steps: [&[&str]; 7] = [
            &[
                "-n",
                node,
                "link",
                "add",
                "veth-node",
                "type",
                "veth",
                "peer",
                "name",
                "veth-app",
                "netns",
                app,
            ],
            &["-n", node, "addr", "add", &node_cidr, "dev", "veth-node"],
            &["-n", app, "addr", "add", &app_cidr, "dev", "veth-app"],
            &["-n", node, "link", "set", "veth-node", "up"],
            &["-n", app, "link", "set", "veth-app", "up"],
            &["-n", node, "link", "set", "lo", "up"],
            &["-n", app, "link", "set", "lo", "up"],
        ];
        for step in steps {
            command("ip", step)?;
        }
        Ok(namespaces)
    }

    /// Deletes both; the veth pair, rules and sockets go with them. The names still listed
    /// afterwards (empty on success).
    pub fn delete(&self) -> Vec<String> {
        for name in [&self.node, &self.app] {
            let _ = command("ip", &["netns", "del", name]);
        }
        let listed = command("ip", &["netns", "list"]).unwrap_or_default();
        [&self.node, &self.app]
            .into_iter()
            .filter(|name| {
                listed
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(name.as_str()))
            })
            .cloned()
            .collect()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.delete();
    }
}

/// The host side of `execlab fault nodeport-collision`: makes the namespaces, runs the scenario
/// again inside the node namespace, deletes the namespaces. Returns the exit code.
pub fn run_outer(scenario: &str) -> Result<u8, FaultError> {
    let namespaces = Namespaces::create()?;
    eprintln!(
        "execlab: running {scenario} in network namespace {} (app namespace {})",
        namespaces.node, namespaces.app
    );
    // nsenter, not `ip netns exec`: the latter also remounts /sys, which hides the cgroup
    // mount runc needs.
    let net = format!("--net=/run/netns/{}", namespaces.node);
    let status = isolate::rerun_inside(
        scenario,
        &["nsenter", &net, "--"],
        &[(APP_NETNS_ENV, namespaces.app.clone())],
    );
    let left = namespaces.delete();
    let code = match status {
        Ok(status) => status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1)),
        Err(e) => {
            eprintln!("execlab: {e}");
            1
        }
    };
    if left.is_empty() {
        println!(
            "cleanup: network namespaces {} and {} deleted (their veth pair, iptables rules and conntrack entries with them)",
            namespaces.node, namespaces.app
        );
        Ok(code)
    } else {
        println!("cleanup: could not delete network namespaces {left:?}");
        Ok(1)
    }
}
