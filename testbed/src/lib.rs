//! execlab: the lab around the `kubectl exec` chain.
//!
//! [`Lab::start`] makes a lab in a directory (PKI, busybox rootfs, static pod, policy), starts
//! cri-streaming, kubelet-stream and apiserver-proxy as separate processes, waits until each is
//! healthy and the pod runs, and writes the kubeconfig; [`Lab::stop`] stops them in order and
//! removes every container, mount, socket and temp file the lab made. The `execlab` binary is a
//! thin command line over this library ([`cli`]).

pub mod bench;
pub mod bins;
pub mod cli;
pub mod containerd;
pub mod error;
pub mod fault;
pub mod hop;
pub mod kubeconfig;
pub mod lab;
pub mod layout;
pub mod manifests;
pub mod pki;
pub mod policy;
pub mod probe;
pub mod procfs;
pub mod progress;
pub mod record;
pub mod status;
pub mod supervise;
pub mod sweep;
pub mod trace;

pub use error::LabError;
pub use hop::Hop;
pub use lab::{down, HopFlag, Lab, LabConfig, LabRuntime, StopReport};
pub use layout::LabLayout;
pub use progress::ProgressMode;
