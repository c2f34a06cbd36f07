//! The task API's service map under both names containerd uses for it: `containerd.task.v2.Task`
//! (containerd 1.x, e.g. Debian's 1.6, calls this one) and `containerd.task.v3.Task` (containerd
//! 2.0, and cri-streaming through containerd-shim-protos 0.12). The two versions carry the same
//! messages and methods (checked against containerd's `api/runtime/task/v2/shim.proto` and
//! `v3/shim.proto`), so one implementation answers both; ttrpc routes on the service name.

use std::collections::HashMap;
use std::sync::Arc;

use containerd_shim_protos::shim_async::{create_task, Task};

/// The task service name containerd 1.x calls.
pub const TASK_SERVICE_V2: &str = "containerd.task.v2.Task";
/// The task service name containerd 2.0 and containerd-shim-protos 0.12 use.
pub const TASK_SERVICE_V3: &str = "containerd.task.v3.Task";

/// The ttrpc services for `task`: the generated v3 map, plus the same handlers keyed as v2.
pub fn task_services(
    task: Arc<dyn Task + Send + Sync>,
) -> HashMap<String, ttrpc::r#async::Service> {
    let mut services = create_task(task.clone());
    // A second generated map shares `task`; only its key changes.
    let renamed = create_task(task)
        .into_values()
        .map(|service| (TASK_SERVICE_V2.to_string(), service));
    services.extend(renamed);
    services
}
