//! Discovery documents: `/version`, `/api`, `/apis`, `/api/v1`.
//!
//! Shapes checked against kubernetes `staging/src/k8s.io/apimachinery/pkg/apis/meta/v1/types.go`
//! (`APIVersions`, `APIGroupList`, `APIResourceList`) and `staging/src/k8s.io/apimachinery/pkg/version/types.go`.
//!
//! kubectl ≥ 1.26 asks `/api` and `/apis` for aggregated discovery
//! (`Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,...,application/json`).
//! We always answer the legacy documents with `Content-Type: application/json`: client-go's
//! discovery client looks at the response content type, sees it is not the aggregated media type,
//! and falls back to the legacy path (`/api/v1` next). kubectl 1.20 only knows the legacy form.
//!
//! `/version` matters more than it looks: the Cloud SDK `kubectl` dispatcher in `/usr/bin` picks
//! its kubectl minor version from the server's `major`/`minor`, so we claim 1.32.
use serde_json::{json, Value};

/// The Kubernetes version this server imitates.
pub const SERVER_MAJOR: &str = "1";
pub const SERVER_MINOR: &str = "32";
pub const SERVER_GIT_VERSION: &str = "v1.32.4-execlab";

pub fn version() -> Value {
    json!({
        "major": SERVER_MAJOR,
        "minor": SERVER_MINOR,
        "gitVersion": SERVER_GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `GET /api`: the legacy core group's versions.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    })
}

/// `GET /apis`: no named groups are served.
pub fn api_group_list() -> Value {
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
}

/// `GET /api/v1`: the resources this server serves.
pub fn core_v1_resources() -> Value {
    json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {
                "name": "pods",
                "singularName": "pod",
                "namespaced": true,
                "kind": "Pod",
                "verbs": ["get", "list"],
                "shortNames": ["po"],
                "categories": ["all"],
            },
            {
                "name": "pods/attach",
                "singularName": "",
                "namespaced": true,
                "kind": "PodAttachOptions",
                "verbs": ["create", "get"],
            },
            {
                "name": "pods/exec",
                "singularName": "",
                "namespaced": true,
                "kind": "PodExecOptions",
                "verbs": ["create", "get"],
            },
        ],
    })
}
