//! OCI runtime material as containerd's CRI plugin writes it: a container's bundle (a busybox
//! rootfs and its `config.json`) and the process spec of an exec into it. A leaf crate: what
//! plays containerd (cri-streaming), the bench and the tests write bundles with it; the shims only
//! read what it wrote.

mod bundle;
mod process_spec;

pub use bundle::{
    oci_config, prepare_busybox_rootfs, write_bundle, BundleError, ContainerSpec, DEFAULT_PATH_ENV,
};
pub use process_spec::{exec_process_spec, ProcessSpecError};
