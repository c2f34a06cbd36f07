//! The kubelet API's authentication and authorization filter.
//!
//! Checked against kubernetes `pkg/kubelet/server/server.go` (InstallAuthFilter: no user →
//! 401 `Unauthorized`; denied → 403 `Forbidden (user=%s, verb=%s, resource=%s, subresource=%s)`,
//! bodies written without a trailing newline by go-restful's WriteErrorString) and
//! `pkg/kubelet/server/auth.go` (GET→get, POST→create, PUT→update, PATCH→patch, DELETE→delete;
//! resource `nodes`, subresource `proxy` for everything but stats/metrics/logs). Instead of a
//! SubjectAccessReview, the lab authorizes users and groups named by `--allow-exec`.

use hop_kit::tls::{ClientCert, PeerIdentity};

/// The body of a 401 from the kubelet.
pub const UNAUTHORIZED_BODY: &str = "Unauthorized";

/// The authorization attributes of a kubelet API request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestAttributes {
    pub user: String,
    pub verb: &'static str,
    pub resource: &'static str,
    pub subresource: &'static str,
}

impl RequestAttributes {
    /// Attributes of `method path` by `user`.
    pub fn new(user: &str, method: &http::Method, path: &str) -> Self {
        Self {
            user: user.to_owned(),
            verb: verb_for(method),
            resource: "nodes",
            subresource: subresource_for(path),
        }
    }

    /// The 403 body.
    pub fn forbidden_text(&self) -> String {
        format!(
            "Forbidden (user={}, verb={}, resource={}, subresource={})",
            self.user, self.verb, self.resource, self.subresource
        )
    }
}

/// The API verb of an HTTP method, as the kubelet maps it (empty for others).
pub fn verb_for(method: &http::Method) -> &'static str {
    match *method {
        http::Method::POST => "create",
        http::Method::GET => "get",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "",
    }
}

fn is_subpath(path: &str, prefix: &str) -> bool {
    path == prefix
        || path
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The `nodes/<subresource>` a path is authorized as.
pub fn subresource_for(path: &str) -> &'static str {
    if is_subpath(path, "/stats") {
        "stats"
    } else if is_subpath(path, "/metrics") {
        "metrics"
    } else if is_subpath(path, "/logs") {
        "log"
    } else {
        "proxy"
    }
}

/// Outcome of the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthDecision {
    Allowed(PeerIdentity),
    /// 401 `Unauthorized`.
    Unauthenticated,
    /// 403 with [`RequestAttributes::forbidden_text`].
    Forbidden(RequestAttributes),
}

/// Users and groups allowed to use the kubelet API (`--allow-exec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorizer {
    allowed: Vec<String>,
}

impl Default for Authorizer {
    /// Upstream's usual grant: the apiserver's client certificate is in `system:masters`.
    fn default() -> Self {
        Self::new(vec!["system:masters".into()])
    }
}

impl Authorizer {
    pub fn new(allowed: Vec<String>) -> Self {
        Self { allowed }
    }

    pub fn allows(&self, identity: &PeerIdentity) -> bool {
        self.allowed
            .iter()
            .any(|name| *name == identity.user || identity.groups.contains(name))
    }

    /// Judges a request from the peer's certificate verdict.
    pub fn decide(&self, client: &ClientCert, method: &http::Method, path: &str) -> AuthDecision {
        match client {
            ClientCert::Verified(identity) if self.allows(identity) => {
                AuthDecision::Allowed(identity.clone())
            }
            ClientCert::Verified(identity) => {
                AuthDecision::Forbidden(RequestAttributes::new(&identity.user, method, path))
            }
            ClientCert::Absent | ClientCert::Rejected(_) => AuthDecision::Unauthenticated,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(user: &str, groups: &[&str]) -> ClientCert {
        ClientCert::Verified(PeerIdentity {
            user: user.into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        })
    }

    #[test]
    fn group_or_user_grants_access() {
        let authz = Authorizer::new(vec!["system:masters".into(), "alice".into()]);
        let m = http::Method::POST;
        assert!(matches!(
            authz.decide(
                &verified("kube-apiserver-kubelet-client", &["system:masters"]),
                &m,
                "/exec/a/b/c"
            ),
            AuthDecision::Allowed(_)
        ));
        assert!(matches!(
            authz.decide(&verified("alice", &[]), &m, "/exec/a/b/c"),
            AuthDecision::Allowed(_)
        ));
    }

    #[test]
    fn denial_text_names_user_verb_and_subresource() {
        let authz = Authorizer::default();
        let AuthDecision::Forbidden(attrs) = authz.decide(
            &verified("kubernetes", &["devs"]),
            &http::Method::POST,
            "/exec/default/web/app",
        ) else {
            panic!("expected a denial");
        };
        assert_eq!(
            attrs.forbidden_text(),
            "Forbidden (user=kubernetes, verb=create, resource=nodes, subresource=proxy)"
        );
        let AuthDecision::Forbidden(attrs) = authz.decide(
            &verified("kubernetes", &[]),
            &http::Method::GET,
            "/stats/summary",
        ) else {
            panic!("expected a denial");
        };
        assert_eq!(
            attrs.forbidden_text(),
            "Forbidden (user=kubernetes, verb=get, resource=nodes, subresource=stats)"
        );
    }

    #[test]
    fn missing_or_untrusted_certificates_are_unauthenticated() {
        let authz = Authorizer::default();
        for cert in [
            ClientCert::Absent,
            ClientCert::Rejected("x509: certificate signed by unknown authority".into()),
        ] {
            assert_eq!(
                authz.decide(&cert, &http::Method::POST, "/exec/a/b/c"),
                AuthDecision::Unauthenticated
            );
        }
    }

    #[test]
    fn subresources_match_whole_segments() {
        assert_eq!(subresource_for("/statsfoo"), "proxy");
        assert_eq!(subresource_for("/logs/"), "log");
        assert_eq!(subresource_for("/metrics"), "metrics");
        assert_eq!(subresource_for("/pods"), "proxy");
    }
}
