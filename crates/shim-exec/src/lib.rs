//! shim-exec: a containerd shim v2 (task API over ttrpc) that runs runc containers and execs
//! into them the way containerd-shim-runc-v2 and go-runc do.
//!
//! * [`rootfs`]: mounting containerd's `rootfs` mounts into the bundle.
//! * [`shim_binary`] + [`cli`]: the `start`/`delete`/serve binary contract.
//! * [`service`]: the task API ([`task_api`] registers it as v2 and v3); [`process_spec_file`], [`runc`], [`console`], [`stdio`],
//!   [`reaper`]: the pieces of the go-runc exec path.
//! * [`error`]: ttrpc codes; runtime failures are code Unknown and the *client* (cri-streaming,
//!   playing containerd) appends `: unknown`.

pub mod cli;
pub mod config;
pub mod console;
pub mod error;
pub mod go_error;
pub mod process;
pub mod process_spec_file;
pub mod reaper;
pub mod rootfs;
pub mod runc;
pub mod server;
pub mod service;
pub mod shim_binary;
pub mod stdio;
pub mod task_api;

use cli::{Action, ShimArgs};
use config::ShimConfig;

/// What a `shim-exec` invocation printed or did.
pub enum Outcome {
    /// `start`: the address to print.
    Address(String),
    /// `delete`: protobuf bytes to write to stdout.
    DeleteResponse(Vec<u8>),
    /// The daemon has shut down.
    Served,
}

/// Runs one `shim-exec` invocation.
pub fn run(args: &ShimArgs) -> Result<Outcome, shim_binary::ShimBinaryError> {
    let config = ShimConfig::from_env(&args.namespace);
    match args.action {
        Action::Start => shim_binary::start(args, &config).map(Outcome::Address),
        Action::Delete => shim_binary::delete(args, &config).map(Outcome::DeleteResponse),
        Action::Serve => shim_binary::serve(args, config).map(|()| Outcome::Served),
    }
}
