//! The lab's kubeconfig (`DIR/kubeconfig`): written last and atomically, so its existence means
//! the lab is ready.
//!
//! One cluster, `execlab`, and one context per lab user: `execlab` (admin by client certificate,
//! the current context), `execlab-admin-token` (admin by bearer token), `execlab-viewer` and
//! `execlab-jane` (the authorization labs). Files are referenced by absolute path, as
//! `kubectl config set-credentials --client-certificate` writes them (format checked against
//! kubernetes `staging/src/k8s.io/client-go/tools/clientcmd/api/v1/types.go`).

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::error::LabError;
use crate::layout::write_atomically;
use crate::pki::LabPki;

pub const CLUSTER: &str = "execlab";
pub const CONTEXT_ADMIN: &str = "execlab";
pub const CONTEXT_ADMIN_TOKEN: &str = "execlab-admin-token";
pub const CONTEXT_VIEWER: &str = "execlab-viewer";
pub const CONTEXT_JANE: &str = "execlab-jane";

/// What goes into the kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubeconfig {
    /// `https://127.0.0.1:PORT` of apiserver-proxy.
    pub server: String,
    pub pki: LabPki,
}

impl Kubeconfig {
    pub fn render(&self) -> String {
        let paths = &self.pki.paths;
        let path = |p: &PathBuf| p.display().to_string();
        let context = |name: &str, user: &str| json!({ "name": name, "context": { "cluster": CLUSTER, "user": user, "namespace": "default" } });
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "preferences": {},
            "clusters": [{
                "name": CLUSTER,
                "cluster": {
                    "server": self.server,
                    "certificate-authority": path(&paths.ca.cert),
                },
            }],
            "users": [
                { "name": "admin", "user": {
                    "client-certificate": path(&paths.admin.cert),
                    "client-key": path(&paths.admin.key),
                } },
                { "name": "admin-token", "user": { "token": self.pki.admin_token.token } },
                { "name": "viewer", "user": { "token": self.pki.viewer_token.token } },
                { "name": "jane", "user": {
                    "client-certificate": path(&paths.jane.cert),
                    "client-key": path(&paths.jane.key),
                } },
            ],
            "contexts": [
                context(CONTEXT_ADMIN, "admin"),
                context(CONTEXT_ADMIN_TOKEN, "admin-token"),
                context(CONTEXT_VIEWER, "viewer"),
                context(CONTEXT_JANE, "jane"),
            ],
            "current-context": CONTEXT_ADMIN,
        });
        // A json! value always serializes.
        serde_yaml::to_string(&config).unwrap_or_default()
    }

    /// Writes the kubeconfig atomically (mode 0600: it holds bearer tokens).
    pub fn write(&self, path: &Path) -> Result<(), LabError> {
        write_atomically(path, self.render().as_bytes(), 0o600)
    }
}
