//! Authorization: a small RBAC-like policy file, and the forbidden texts kube-apiserver writes.
//!
//! # Policy file (`--policy-file`)
//!
//! `{"rules": [RULE, ...]}` (the form `execlab` writes), or just the list `[RULE, ...]`.
//! A request is allowed when its user is in the group `system:masters` (upstream's superuser
//! group, always allowed) or when ANY rule matches all of:
//!
//! - subject: `users` contains the user name, or `groups` contains one of the user's groups
//!   (every authenticated user is in `system:authenticated`); `"*"` matches anyone;
//! - `verbs`: the request verb (`get`, `list`, `watch`, `create`, ...) or `"*"`;
//! - resource requests: `resources` contains `pods`, `pods/exec`, `pods/attach`, `pods/*` (any
//!   pods subresource) or `"*"`; and `namespaces` (optional; omitted = every namespace and the
//!   cluster scope) contains the request's namespace or `"*"` — cluster-scope requests
//!   (`kubectl get pods -A`) match only `"*"`;
//! - non-resource requests: `nonResourceURLs` contains the path, `"*"`, or a prefix ending in
//!   `*` (`/api/*`), as RBAC matches them.
//!
//! ```json
//! {"rules": [
//!   {"users": ["jane"], "verbs": ["get", "list"], "resources": ["pods"], "namespaces": ["default"]},
//!   {"groups": ["ops"], "verbs": ["get", "create"], "resources": ["pods/exec", "pods/attach"]},
//!   {"groups": ["system:authenticated"], "verbs": ["get"], "nonResourceURLs": ["/api", "/api/*"]}
//! ]}
//! ```
//!
//! Discovery and health paths (`/version`, `/api`, `/api/v1`, `/apis`, `/healthz`, `/livez`,
//! `/readyz`, `/openapi/...`) are always allowed for authenticated users, as upstream's default
//! `system:discovery` and `system:public-info-viewer` bindings do, so a policy need not list them.
//!
//! # Exec verbs
//!
//! The verb comes from the HTTP method, as in kube-apiserver 1.32: kubectl's SPDY exec is a
//! POST → `create pods/exec`; its WebSocket exec is a GET → `get pods/exec`. (Kubernetes 1.35
//! adds the `AuthorizePodWebsocketUpgradeCreatePermission` gate that also requires `create` for
//! WebSocket upgrades; this server follows 1.32, so `get pods/exec` alone lets a WebSocket exec
//! through — the gap that gate closes.) With `get` denied the WebSocket upgrade gets a 403,
//! kubectl falls back to SPDY, and the user sees the `create` text.
//!
//! Texts checked against kubernetes
//! `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go`
//! (`forbiddenMessage`) and `staging/src/k8s.io/apimachinery/pkg/api/errors/errors.go`
//! (`NewForbidden`).
use std::path::Path;

use serde::Deserialize;

use crate::authn::UserInfo;
use crate::request_info::{RequestInfo, ResourceRequest};
use crate::status::ApiStatus;

/// Members of this group may do anything (upstream's superuser group).
pub const MASTERS_GROUP: &str = "system:masters";

/// One allow rule of the policy file.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
}

/// The two spellings of the file.
#[derive(Deserialize)]
#[serde(untagged)]
enum PolicyFile {
    Rules(Vec<PolicyRule>),
    Object { rules: Vec<PolicyRule> },
}

/// Paths every authenticated user may GET (upstream's `system:discovery` and
/// `system:public-info-viewer`).
fn is_discovery_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    matches!(
        path,
        "/api" | "/apis" | "/version" | "/healthz" | "/livez" | "/readyz" | "/openapi/v2"
    ) || ["/api/", "/apis/", "/openapi/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading policy file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing policy file {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The allow rules of `--policy-file`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<PolicyRule>,
}

/// The authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The 403 Status to send.
    Deny(ApiStatus),
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text).map_err(|source| PolicyError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let rules = match serde_json::from_str(text)? {
            PolicyFile::Rules(rules) | PolicyFile::Object { rules } => rules,
        };
        Ok(Policy { rules })
    }

    pub fn authorize(&self, user: &UserInfo, request: &RequestInfo) -> Decision {
        if user.groups.iter().any(|g| g == MASTERS_GROUP) {
            return Decision::Allow;
        }
        match request {
            RequestInfo::NonResource { verb, path } => {
                let builtin = (verb == "get" || verb == "head") && is_discovery_path(path);
                if builtin || self.rules.iter().any(|r| r.allows_path(user, verb, path)) {
                    Decision::Allow
                } else {
                    Decision::Deny(ApiStatus::forbidden(
                        "",
                        "",
                        &format!("User \"{}\" cannot {verb} path \"{path}\"", user.name),
                    ))
                }
            }
            RequestInfo::Resource(req) => {
                if self.rules.iter().any(|rule| rule.allows(user, req)) {
                    Decision::Allow
                } else {
                    Decision::Deny(forbidden(user, req))
                }
            }
        }
    }
}

impl PolicyRule {
    fn subject_matches(&self, user: &UserInfo) -> bool {
        self.users.iter().any(|u| u == "*" || *u == user.name)
            || self
                .groups
                .iter()
                .any(|g| g == "*" || user.groups.iter().any(|ug| ug == g))
    }

    fn verb_matches(&self, verb: &str) -> bool {
        self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    fn allows_path(&self, user: &UserInfo, verb: &str, path: &str) -> bool {
        let path_matches = self.non_resource_urls.iter().any(|u| {
            u == "*"
                || u == path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| path.starts_with(prefix))
        });
        path_matches && self.subject_matches(user) && self.verb_matches(verb)
    }

    fn allows(&self, user: &UserInfo, req: &ResourceRequest) -> bool {
        let subject = self.subject_matches(user);
        let verb = self.verb_matches(&req.verb);
        let wanted = req.resource_path();
        let resource = self.resources.iter().any(|r| {
            r == "*"
                || *r == wanted
                || (!req.subresource.is_empty()
                    && r.strip_suffix("/*") == Some(req.resource.as_str()))
        });
        let namespace = match &self.namespaces {
            None => true,
            Some(list) => list
                .iter()
                .any(|n| n == "*" || (!req.namespace.is_empty() && *n == req.namespace)),
        };
        subject && verb && resource && namespace
    }
}

/// The 403 Status for a denied resource request.
pub fn forbidden(user: &UserInfo, req: &ResourceRequest) -> ApiStatus {
    let why = if req.namespace.is_empty() {
        format!(
            "User \"{}\" cannot {} resource \"{}\" in API group \"\" at the cluster scope",
            user.name,
            req.verb,
            req.resource_path()
        )
    } else {
        format!(
            "User \"{}\" cannot {} resource \"{}\" in API group \"\" in the namespace \"{}\"",
            user.name,
            req.verb,
            req.resource_path(),
            req.namespace
        )
    };
    ApiStatus::forbidden(&req.resource, &req.name, &why)
}
