//! The API server's authorization policy file (`DIR/policy.json`, apiserver-proxy
//! `--policy-file`).
//!
//! The format is apiserver-proxy's (its `authz` module): a JSON list of allow rules, each
//! granting `verbs` on `resources` (subresources spelled `pods/exec`, as in RBAC; `*` matches
//! anything) to the listed `users` and `groups`, optionally only in `namespaces`. Members of
//! `system:masters` may do everything and every authenticated user may read the discovery
//! endpoints, as with upstream's default roles (kubernetes
//! `plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`), so the file only adds the two
//! users of the authorization labs: `viewer` (get and list pods) and `jane` (get pods), neither
//! of whom has `create` on `pods/exec`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::LabError;
use crate::layout::write_atomically;

/// The policy: allow rules, written as a JSON list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuthorizationPolicy {
    pub rules: Vec<PolicyRule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    pub verbs: Vec<String>,
    pub resources: Vec<String>,
    /// Omitted: every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<String>>,
}

/// The superuser group: always allowed, whatever the rules say.
pub const MASTERS_GROUP: &str = "system:masters";

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl AuthorizationPolicy {
    /// The lab's default policy.
    pub fn lab_default() -> Self {
        Self {
            rules: vec![
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

    /// Whether the policy lets `user` (in `groups`) do `verb` on `resource`: the lab's own
    /// reading of the file, so tests can pin down what each lab user may do.
    pub fn allows(&self, user: &str, groups: &[&str], verb: &str, resource: &str) -> bool {
        if groups.contains(&MASTERS_GROUP) {
            return true;
        }
        let matches = |list: &[String], value: &str| list.iter().any(|v| v == "*" || v == value);
        self.rules.iter().any(|rule| {
            let subject =
                matches(&rule.users, user) || groups.iter().any(|g| matches(&rule.groups, g));
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
    fn the_file_is_a_json_list_of_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        AuthorizationPolicy::lab_default().write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.trim_start().starts_with('['), "{text}");
        let back: AuthorizationPolicy = serde_json::from_str(&text).unwrap();
        assert_eq!(back, AuthorizationPolicy::lab_default());
    }
}
