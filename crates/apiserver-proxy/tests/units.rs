//! Unit tests of the sans-IO parts: token file, certificate identity, request info, the policy
//! matrix, Status texts, kubelet query rewriting, the pod table.
mod common;

use std::time::{Duration, SystemTime};

use apiserver_proxy::authn::{bearer_token, Authenticator, Credentials, TokenFile, UserInfo};
use apiserver_proxy::authz::{Decision, Policy};
use apiserver_proxy::exec::{
    proxy_path, stream_location, validate_container, ProxyPath, StreamKind, StreamOptions,
};
use apiserver_proxy::pods::{human_duration, parse_rfc3339, pod_table, table_version};
use apiserver_proxy::request_info::{RequestInfo, ResourceRequest};
use apiserver_proxy::status::ApiStatus;
use http::{HeaderMap, HeaderValue, Method};
use serde_json::json;

// ---- authn ----

#[test]
fn token_file_parses_upstream_csv() {
    let file = TokenFile::parse(
        "abc,alice,1,\"system:masters,ops\"\n\nxyz,bob,2\n\"q,t\",carol,3,\"\"\n,ghost,4\n",
    )
    .expect("parse");
    assert_eq!(file.len(), 3);
    let alice = file.lookup("abc").expect("alice");
    assert_eq!(alice.name, "alice");
    assert_eq!(alice.uid, "1");
    assert_eq!(
        alice.groups,
        ["system:masters", "ops", "system:authenticated"]
    );
    assert_eq!(
        file.lookup("xyz").expect("bob").groups,
        ["system:authenticated"]
    );
    assert_eq!(file.lookup("q,t").expect("carol").name, "carol");
    assert!(file.lookup("").is_none());
}

#[test]
fn token_file_rejects_short_lines_and_bad_quotes() {
    let err = TokenFile::parse("ok,u,1\nonly,two\n").expect_err("two columns");
    assert_eq!(
        err.to_string(),
        "token file line 2: must have at least 3 columns (token, user name, user uid), found 2"
    );
    assert!(TokenFile::parse("a,\"b,1\n").is_err());
}

#[test]
fn bearer_header_forms() {
    assert_eq!(bearer_token("Bearer abc"), Some("abc"));
    assert_eq!(bearer_token("bearer   abc "), Some("abc"));
    assert_eq!(bearer_token("Basic abc"), None);
    assert_eq!(bearer_token("Bearer "), None);
    assert_eq!(bearer_token("Bearer"), None);
}

#[test]
fn certificate_wins_over_token_and_nothing_is_anonymous() {
    let authn = Authenticator::new(TokenFile::parse("tok,tokenuser,9").expect("parse"));
    let cert_user = UserInfo::new("certuser", "", vec!["g".into()]);
    let by_cert = authn.authenticate(&Credentials {
        client_cert: Some(&cert_user),
        authorization: Some("Bearer tok"),
    });
    assert_eq!(by_cert.expect("cert").name, "certuser");
    let by_token = authn.authenticate(&Credentials {
        client_cert: None,
        authorization: Some("Bearer tok"),
    });
    assert_eq!(by_token.expect("token").name, "tokenuser");
    assert!(authn
        .authenticate(&Credentials {
            client_cert: None,
            authorization: Some("Bearer nope"),
        })
        .is_none());
    assert!(authn.authenticate(&Credentials::default()).is_none());
}

#[test]
fn certificate_identity_is_cn_and_o() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = common::Pki::new(dir.path());
    let files = pki.client("jane", "jane", Some("devs"));
    let der = hop_kit::tls::load_certs(&files.cert).expect("load");
    let identity = hop_kit::PeerIdentity::from_certificate(&der[0]).expect("identity");
    let user = apiserver_proxy::server::user_from_certificate(identity);
    assert_eq!(user.name, "jane");
    assert_eq!(user.groups, ["devs", "system:authenticated"]);
}

// ---- request info ----

fn resource(verb: &str, ns: &str, res: &str, sub: &str, name: &str) -> RequestInfo {
    RequestInfo::Resource(ResourceRequest {
        verb: verb.into(),
        namespace: ns.into(),
        resource: res.into(),
        subresource: sub.into(),
        name: name.into(),
    })
}

#[test]
fn request_info_follows_upstream_verbs() {
    let cases = [
        (
            Method::GET,
            "/api/v1/namespaces/default/pods/web",
            None,
            resource("get", "default", "pods", "", "web"),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods",
            Some("limit=500"),
            resource("list", "default", "pods", "", ""),
        ),
        (
            Method::GET,
            "/api/v1/pods",
            None,
            resource("list", "", "pods", "", ""),
        ),
        (
            Method::GET,
            "/api/v1/pods",
            Some("watch=true"),
            resource("watch", "", "pods", "", ""),
        ),
        (
            Method::POST,
            "/api/v1/namespaces/default/pods/web/exec",
            Some("command=ls"),
            resource("create", "default", "pods", "exec", "web"),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default/pods/web/exec",
            Some("command=ls"),
            resource("get", "default", "pods", "exec", "web"),
        ),
        (
            Method::POST,
            "/api/v1/namespaces/ns1/pods/p/attach",
            None,
            resource("create", "ns1", "pods", "attach", "p"),
        ),
        (
            Method::GET,
            "/api/v1/namespaces/default",
            None,
            resource("get", "", "namespaces", "", "default"),
        ),
    ];
    for (method, path, query, want) in cases {
        assert_eq!(
            RequestInfo::parse(&method, path, query),
            want,
            "{method} {path}"
        );
    }
    for path in ["/api", "/api/v1", "/apis", "/version", "/healthz"] {
        assert!(matches!(
            RequestInfo::parse(&Method::GET, path, None),
            RequestInfo::NonResource { .. }
        ));
    }
}

// ---- authz ----

const POLICY: &str = r#"[
  {"users": ["jane"], "verbs": ["get", "list"], "resources": ["pods"], "namespaces": ["default"]},
  {"groups": ["ops"], "verbs": ["create", "get"], "resources": ["pods/exec", "pods/attach"]},
  {"users": ["wild"], "verbs": ["*"], "resources": ["pods/*"], "namespaces": ["*"]},
  {"groups": ["system:authenticated"], "verbs": ["list"], "resources": ["pods"], "namespaces": ["public"]}
]"#;

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo::new(name, "", groups.iter().map(|g| g.to_string()).collect())
}

#[test]
fn policy_matrix() {
    let policy = Policy::parse(POLICY).expect("policy");
    let jane = user("jane", &[]);
    let op = user("olga", &["ops"]);
    let admin = user("root", &["system:masters"]);
    let wild = user("wild", &[]);
    let nobody = user("nobody", &[]);
    let cases: Vec<(&UserInfo, RequestInfo, bool)> = vec![
        (&jane, resource("get", "default", "pods", "", "web"), true),
        (&jane, resource("list", "default", "pods", "", ""), true),
        (&jane, resource("list", "", "pods", "", ""), false),
        (&jane, resource("get", "other", "pods", "", "web"), false),
        (
            &jane,
            resource("create", "default", "pods", "exec", "web"),
            false,
        ),
        (
            &jane,
            resource("get", "default", "pods", "exec", "web"),
            false,
        ),
        (&op, resource("create", "any", "pods", "exec", "web"), true),
        (&op, resource("get", "any", "pods", "attach", "web"), true),
        (&op, resource("get", "any", "pods", "", "web"), false),
        (&op, resource("list", "", "pods", "", ""), false),
        (&admin, resource("delete", "", "nodes", "", "n1"), true),
        (&wild, resource("create", "x", "pods", "exec", "p"), true),
        (&wild, resource("get", "x", "pods", "", "p"), false),
        (&nobody, resource("list", "public", "pods", "", ""), true),
        (&nobody, resource("list", "default", "pods", "", ""), false),
        (
            &nobody,
            RequestInfo::NonResource {
                verb: "get".into(),
                path: "/api".into(),
            },
            true,
        ),
    ];
    for (who, req, allowed) in cases {
        let decision = policy.authorize(who, &req);
        assert_eq!(decision == Decision::Allow, allowed, "{} {req:?}", who.name);
    }
}

#[test]
fn forbidden_texts_are_upstreams() {
    let policy = Policy::parse("[]").expect("empty policy");
    let jane = user("jane", &[]);
    let text = |req: RequestInfo| match policy.authorize(&jane, &req) {
        Decision::Deny(status) => (status.code, status.message),
        Decision::Allow => panic!("allowed"),
    };
    assert_eq!(
        text(resource("create", "default", "pods", "exec", "web")),
        (403, "pods \"web\" is forbidden: User \"jane\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"default\"".to_string())
    );
    assert_eq!(
        text(resource("list", "", "pods", "", "")).1,
        "pods is forbidden: User \"jane\" cannot list resource \"pods\" in API group \"\" at the cluster scope"
    );
}

#[test]
fn policy_file_rejects_unknown_fields() {
    assert!(Policy::parse(r#"[{"user": ["x"], "verbs": [], "resources": []}]"#).is_err());
}

// ---- status ----

#[test]
fn status_json_is_byte_exact() {
    assert_eq!(
        ApiStatus::unauthorized().to_json(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#
    );
    assert_eq!(
        ApiStatus::not_found("pods", "web").to_json(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"web\" not found","reason":"NotFound","details":{"name":"web","kind":"pods"},"code":404}"#
    );
    assert_eq!(
        ApiStatus::bad_request("container x is not valid for pod web").to_json(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"container x is not valid for pod web","reason":"BadRequest","code":400}"#
    );
    // A plain error: code 500, no reason at all (kubectl: `Error from server: ...`).
    assert_eq!(
        ApiStatus::from_plain_error(
            "error dialing backend: dial tcp 127.0.0.1:1: connect: connection refused"
        )
        .to_json(),
        r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"error dialing backend: dial tcp 127.0.0.1:1: connect: connection refused","code":500}"#
    );
    assert_eq!(
        ApiStatus::internal_error("boom").message,
        "Internal error occurred: boom"
    );
}

// ---- exec routing ----

fn web_pod() -> serde_json::Value {
    json!({
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app"}]}
    })
}

#[test]
fn exec_query_becomes_kubelet_query() {
    let opts = StreamOptions::from_query(
        StreamKind::Exec,
        "command=sh&command=-c&command=echo%20hi%20%26%20bye&container=app&stdin=true&stdout=true&stderr=true&tty=false",
    )
    .expect("options");
    assert_eq!(opts.command, ["sh", "-c", "echo hi & bye"]);
    let loc = stream_location(StreamKind::Exec, &web_pod(), &opts).expect("location");
    assert_eq!(loc.node, "node-1");
    assert_eq!(
        loc.path_and_query,
        "/exec/default/web/app?command=sh&command=-c&command=echo+hi+%26+bye&error=1&input=1&output=1"
    );
    let tty = StreamOptions::from_query(StreamKind::Exec, "command=sh&stdin=1&stdout=T&tty=true")
        .expect("options");
    let loc = stream_location(StreamKind::Exec, &web_pod(), &tty).expect("defaulted container");
    assert_eq!(
        loc.path_and_query,
        "/exec/default/web/app?command=sh&input=1&output=1&tty=1"
    );
    let attach = StreamOptions::from_query(StreamKind::Attach, "command=ignored&stdout=true")
        .expect("options");
    let loc = stream_location(StreamKind::Attach, &web_pod(), &attach).expect("attach");
    assert_eq!(loc.path_and_query, "/attach/default/web/app?output=1");
    assert_eq!(
        StreamOptions::from_query(StreamKind::Exec, "stdin=yes")
            .expect_err("bad bool")
            .code,
        400
    );
}

#[test]
fn container_validation_texts() {
    let pod = web_pod();
    assert_eq!(
        validate_container(&pod, "x").expect_err("invalid").message,
        "container x is not valid for pod web"
    );
    let multi = json!({
        "metadata": {"name": "m", "namespace": "default"},
        "spec": {"nodeName": "n", "initContainers": [{"name": "init"}], "containers": [{"name": "a"}, {"name": "b"}]}
    });
    assert_eq!(
        validate_container(&multi, "")
            .expect_err("ambiguous")
            .message,
        "a container name must be specified for pod m, choose one of: [init a b]"
    );
    assert_eq!(validate_container(&multi, "init").expect("init ok"), "init");
    let unscheduled = json!({"metadata": {"name": "u", "namespace": "d"}, "spec": {"containers": [{"name": "a"}]}});
    assert_eq!(
        stream_location(StreamKind::Exec, &unscheduled, &StreamOptions::default())
            .expect_err("no node")
            .message,
        "pod u does not have a host assigned"
    );
}

#[test]
fn proxy_path_choice() {
    let headers = |pairs: &[(&str, &str)]| {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    };
    let ws = |proto: &str| {
        headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-protocol", proto),
        ])
    };
    assert_eq!(
        proxy_path(&ws("v5.channel.k8s.io")),
        ProxyPath::TranslateWebSocketV5
    );
    assert_eq!(
        proxy_path(&ws("v4.channel.k8s.io, v5.channel.k8s.io")),
        ProxyPath::TranslateWebSocketV5
    );
    assert_eq!(proxy_path(&ws("v4.channel.k8s.io")), ProxyPath::Passthrough);
    assert_eq!(
        proxy_path(&ws("base64.channel.k8s.io")),
        ProxyPath::Passthrough
    );
    assert_eq!(
        proxy_path(&headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "SPDY/3.1")
        ])),
        ProxyPath::Passthrough
    );
    assert_eq!(proxy_path(&HeaderMap::new()), ProxyPath::NoUpgrade);
}

// ---- pods ----

#[test]
fn accept_header_selects_table_version() {
    assert_eq!(
        table_version("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"),
        Some("meta.k8s.io/v1")
    );
    assert_eq!(
        table_version("application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json"),
        Some("meta.k8s.io/v1beta1")
    );
    assert_eq!(table_version("application/json"), None);
    assert_eq!(table_version(""), None);
}

#[test]
fn pod_table_rows() {
    let pod = json!({
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"},
        "spec": {"nodeName": "node-1", "containers": [{"name": "app"}, {"name": "side"}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": "app", "ready": true, "restartCount": 1, "state": {"running": {}}},
            {"name": "side", "ready": false, "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
        ]}
    });
    let now = parse_rfc3339("2024-01-01T00:03:20Z").expect("time");
    let table = pod_table("meta.k8s.io/v1", &[pod], now);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        cells,
        &json!([
            "web",
            "1/2",
            "CrashLoopBackOff",
            "3",
            "3m20s",
            "<none>",
            "node-1"
        ])
    );
    assert_eq!(
        table["rows"][0]["object"]["metadata"]["namespace"],
        "default"
    );
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter(|c| c["priority"] == 0)
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["Name", "Ready", "Status", "Restarts", "Age"]);
}

#[test]
fn human_duration_matches_kubectl() {
    let cases = [
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (600, "10m"),
        (3 * 3600, "3h"),
        (3 * 3600 + 60 * 5, "3h5m"),
        (47 * 3600, "47h"),
        (2 * 86400 + 3600, "2d1h"),
        (9 * 86400, "9d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}");
    }
    assert_eq!(
        parse_rfc3339("1970-01-02T00:00:01Z"),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(86401))
    );
    assert_eq!(parse_rfc3339("garbage"), None);
}

#[test]
fn policy_accepts_the_execlab_form_with_non_resource_urls() {
    let policy = Policy::parse(
        r#"{"rules": [
          {"groups": ["system:masters"], "verbs": ["*"], "resources": ["*"], "nonResourceURLs": ["*"]},
          {"groups": ["system:authenticated"], "verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/metrics"]},
          {"users": ["viewer"], "verbs": ["get", "list"], "resources": ["pods"]},
          {"users": ["jane"], "verbs": ["get"], "resources": ["pods"]}
        ]}"#,
    )
    .expect("execlab policy");
    let viewer = user("viewer", &[]);
    let jane = user("jane", &[]);
    let allowed = |who: &UserInfo, req: RequestInfo| policy.authorize(who, &req) == Decision::Allow;
    assert!(allowed(&viewer, resource("list", "", "pods", "", "")));
    assert!(!allowed(
        &viewer,
        resource("create", "default", "pods", "exec", "web")
    ));
    assert!(allowed(
        &jane,
        resource("get", "default", "pods", "", "web")
    ));
    assert!(!allowed(&jane, resource("list", "default", "pods", "", "")));
    let path = |p: &str| RequestInfo::NonResource {
        verb: "get".into(),
        path: p.into(),
    };
    assert!(allowed(&jane, path("/metrics")));
    // Discovery is built in, whatever the file says.
    assert!(allowed(&jane, path("/version")));
    assert!(allowed(&jane, path("/apis")));
    match Policy::parse("[]")
        .expect("empty")
        .authorize(&jane, &path("/metrics"))
    {
        Decision::Deny(status) => assert_eq!(
            status.message,
            "forbidden: User \"jane\" cannot get path \"/metrics\""
        ),
        Decision::Allow => panic!("/metrics allowed by an empty policy"),
    }
}

#[test]
fn pods_are_bound_to_the_node_they_were_listed_from() {
    let pod = apiserver_proxy::pods::bind_to_node(
        json!({"metadata": {"name": "p"}, "spec": {"nodeName": "other"}}),
        "node-1",
    );
    assert_eq!(pod["spec"]["nodeName"], "node-1");
    assert_eq!(
        (pod["kind"].as_str(), pod["apiVersion"].as_str()),
        (Some("Pod"), Some("v1"))
    );
    let pod = apiserver_proxy::pods::bind_to_node(json!({"metadata": {"name": "p"}}), "node-2");
    assert_eq!(pod["spec"]["nodeName"], "node-2");
}
