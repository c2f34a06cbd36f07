//! The scenario table: name, seed, summary, isolation, and the function that runs it. Each
//! scenario's module holds its expected texts per client, each with its source.

mod command_not_found;
mod enospc;
mod kubelet_restart;
mod nodeport;
mod upstream;

use super::{Isolation, Scenario};
use crate::lab::LabRuntime;

/// Scenarios whose fault lies above the runtime, or that drive cri-streaming itself.
const EXECLAB_ONLY: &[LabRuntime] = &[LabRuntime::Execlab];
/// Scenarios whose fault lies in the runtime, rebuilt under each.
const EVERY_RUNTIME: &[LabRuntime] = &[
    LabRuntime::Execlab,
    LabRuntime::Containerd,
    LabRuntime::ContainerdShimExec,
];

pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "unauthorized",
        seed: "000 (unable to upgrade connection: Unauthorized); failures.md row 1a",
        summary: "the kubelet does not trust the API server's client certificate",
        isolation: Isolation::None,
        runtimes: EXECLAB_ONLY,
        run: upstream::unauthorized,
    },
    Scenario {
        name: "enospc",
        seed: "000 (OCI runtime exec failed: open /tmp/runc-process…: no space left on device); failures.md row 2, §2",
        summary: "the shims' runtime dir is a full tmpfs: runc's process file cannot be made (open) or written (write)",
        isolation: Isolation::MountNamespace,
        runtimes: EVERY_RUNTIME,
        run: enospc::run,
    },
    Scenario {
        name: "nodeport-collision",
        seed: "003 (NodePort = the streaming server's random port; the kubelet's dial lands on a Dubbo port 20880); failures.md row 8",
        summary: "a kube-proxy NodePort DNAT captures the kubelet's dial to the CRI streaming server; then both fixes",
        isolation: Isolation::NetworkNamespace,
        runtimes: EXECLAB_ONLY,
        run: nodeport::run,
    },
    Scenario {
        name: "kubelet-restart",
        seed: "000 (\"injected but reported failed\": kubelet restarted mid-exec); failures.md §9",
        summary: "the kubelet is killed and restarted while an exec runs: the command ran, the caller got no result",
        isolation: Isolation::None,
        runtimes: EXECLAB_ONLY,
        run: kubelet_restart::run,
    },
    Scenario {
        name: "forbidden",
        seed: "failures.md row 4",
        summary: "RBAC denies pods/exec to user jane",
        isolation: Isolation::None,
        runtimes: EXECLAB_ONLY,
        run: upstream::forbidden,
    },
    Scenario {
        name: "not-found",
        seed: "failures.md rows 5a, 5b",
        summary: "exec into a pod that does not exist, and into a container the pod does not have",
        isolation: Isolation::None,
        runtimes: EXECLAB_ONLY,
        run: upstream::not_found,
    },
    Scenario {
        name: "runtime-down",
        seed: "failures.md §6b/§7 shape; kubelet's CRI error through the chain",
        summary: "the container runtime (cri-streaming) is stopped: the kubelet's CRI call fails",
        isolation: Isolation::None,
        runtimes: EXECLAB_ONLY,
        run: upstream::runtime_down,
    },
    Scenario {
        name: "command-not-found",
        seed: "failures.md §2 (exec: \"…\": executable file not found in $PATH), §3 (exit 126/127)",
        summary: "the command is not in the image or not executable: OCI runtime exec failed (exit 1), or the shell's 127/126",
        isolation: Isolation::None,
        runtimes: EVERY_RUNTIME,
        run: command_not_found::run,
    },
];
