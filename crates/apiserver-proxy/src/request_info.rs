//! What a request asks for, in authorization terms: verb, resource, subresource, namespace, name.
//!
//! Follows kubernetes `staging/src/k8s.io/apiserver/pkg/endpoints/request/requestinfo.go`
//! (`RequestInfoFactory.NewRequestInfo`) for the legacy `/api/v1` group this server serves:
//! GET on a named object or subresource → `get`; GET on a collection → `list` (`watch` with
//! `?watch=true`); POST → `create`; PUT → `update`; PATCH → `patch`; DELETE → `delete`.
//! Everything outside `/api/v1/...` is a non-resource request (verb = lowercase method).
use http::Method;

/// A parsed request, as the authorizer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestInfo {
    /// `/version`, `/api`, `/apis`, `/healthz`, ...
    NonResource {
        verb: String,
        path: String,
    },
    Resource(ResourceRequest),
}

/// A request for an object (or collection) of the core `v1` API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRequest {
    pub verb: String,
    /// Empty for cluster-wide requests (`GET /api/v1/pods`).
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    /// Empty for collections.
    pub name: String,
}

impl ResourceRequest {
    /// `pods` or `pods/exec`, as RBAC rules and forbidden messages spell it.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

impl RequestInfo {
    pub fn parse(method: &Method, path: &str, query: Option<&str>) -> RequestInfo {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let non_resource = || RequestInfo::NonResource {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_string(),
        };
        // Legacy group only: /api/v1/<rest>
        let rest = match segments.as_slice() {
            ["api", "v1", rest @ ..] if !rest.is_empty() => rest,
            _ => return non_resource(),
        };
        let (namespace, rest) = match rest {
            // `/api/v1/namespaces/ns` is the namespace object itself; `/api/v1/namespaces/ns/x` is
            // a namespaced resource.
            ["namespaces", ns, tail @ ..] if !tail.is_empty() => (ns.to_string(), tail),
            _ => (String::new(), rest),
        };
        let (resource, name, subresource) = match rest {
            [resource] => (*resource, "", ""),
            [resource, name] => (*resource, *name, ""),
            [resource, name, sub, ..] => (*resource, *name, *sub),
            [] => return non_resource(),
        };
        let watch = query
            .map(|q| {
                // The first `watch` value decides, as Go's `url.Values` conversion reads it.
                url::form_urlencoded::parse(q.as_bytes())
                    .find(|(k, _)| k == "watch")
                    .is_some_and(|(_, v)| v == "true" || v == "1")
            })
            .unwrap_or(false);
        let verb = match *method {
            Method::GET | Method::HEAD if name.is_empty() => {
                if watch {
                    "watch"
                } else {
                    "list"
                }
            }
            Method::GET | Method::HEAD => "get",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if name.is_empty() => "deletecollection",
            Method::DELETE => "delete",
            _ => "",
        };
        RequestInfo::Resource(ResourceRequest {
            verb: verb.to_string(),
            namespace,
            resource: resource.to_string(),
            subresource: subresource.to_string(),
            name: name.to_string(),
        })
    }
}
