//! The API server's authorization policy file (`DIR/policy.json`, apiserver-proxy
//! `--policy-file`).
//!
//! RBAC-like rules: a rule grants `verbs` on `resources` (subresources spelled `pods/exec`, as in
//! RBAC) or on `nonResourceURLs` to the listed users and groups; `*` matches anything. The lab's
//! policy follows the upstream default roles (kubernetes
//! `plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`): `system:masters` may do
//! everything, every authenticated user may read the discovery endpoints (`system:discovery`),
//! and two users exist for the authorization labs: `viewer` (get and list pods) and `jane` (get
//! pods), neither of whom has `create` on `pods/exec`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::LabError;
use crate::layout::write_atomically;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationPolicy {
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    pub verbs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl AuthorizationPolicy {
    /// The lab's default policy.
    pub fn lab_default() -> Self {
        Self {
            rules: vec![
                PolicyRule {
                    groups: strings(&["system:masters"]),
                    verbs: strings(&["*"]),
                    resources: strings(&["*"]),
                    non_resource_urls: strings(&["*"]),
                    ..PolicyRule::default()
                },
                PolicyRule {
                    groups: strings(&["system:authenticated"]),
                    verbs: strings(&["get"]),
                    non_resource_urls: strings(&[
                        "/api",
                        "/api/*",
                        "/apis",
                        "/apis/*",
                        "/version",
                        "/version/",
                        "/healthz",
                        "/livez",
                        "/readyz",
                        "/openapi/*",
                    ]),
                    ..PolicyRule::default()
                },
                PolicyRule {
                    users: strings(&["viewer"]),
                    verbs: strings(&["get", "list"]),
                    resources: strings(&["pods"]),
                    ..PolicyRule::default()
                },
                PolicyRule {
                    users: strings(&["jane"]),
                    verbs: strings(&["get"]),
                    resources: strings(&["pods"]),
                    ..PolicyRule::default()
                },
            ],
        }
    }

    pub fn write(&self, path: &Path) -> Result<(), LabError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| LabError::BadFile {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        write_atomically(path, &json, 0o644)
    }

    /// Whether the policy lets `user` (in `groups`) do `verb` on `resource`. The lab's own
    /// reading of the file, used by tests to pin down what each lab user may do.
    pub fn allows(&self, user: &str, groups: &[&str], verb: &str, resource: &str) -> bool {
        let matches = |list: &[String], value: &str| list.iter().any(|v| v == "*" || v == value);
        self.rules.iter().any(|rule| {
            let subject = rule.users.iter().any(|u| u == user)
                || groups.iter().any(|g| rule.groups.iter().any(|rg| rg == g));
            subject && matches(&rule.verbs, verb) && matches(&rule.resources, resource)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masters_may_exec_and_the_lab_users_may_not() {
        let policy = AuthorizationPolicy::lab_default();
        let authn = "system:authenticated";
        assert!(policy.allows("admin", &["system:masters", authn], "create", "pods/exec"));
        assert!(policy.allows("viewer", &[authn], "list", "pods"));
        assert!(!policy.allows("viewer", &[authn], "create", "pods/exec"));
        assert!(policy.allows("jane", &[authn], "get", "pods"));
        assert!(!policy.allows("jane", &[authn], "list", "pods"));
        assert!(!policy.allows("jane", &[authn], "create", "pods/exec"));
    }

    #[test]
    fn the_file_round_trips_with_rbac_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        AuthorizationPolicy::lab_default().write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"nonResourceURLs\""));
        let back: AuthorizationPolicy = serde_json::from_str(&text).unwrap();
        assert_eq!(back, AuthorizationPolicy::lab_default());
    }
}
