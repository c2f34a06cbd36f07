//! Upgrade negotiation, both sides, with upstream's exact texts.
use http::{HeaderMap, HeaderValue, StatusCode};
use k8s_stream::remotecommand::{
    negotiate, spdy_request_headers, validate_spdy_response, validate_websocket_response,
    websocket_request_headers, ProtocolVersion, ServerProtocols, StreamProtocol, WsProtocol,
};

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

#[test]
fn spdy_client_preference_wins() {
    let req = spdy_request_headers(&ProtocolVersion::NEWEST_FIRST);
    let up = negotiate(&req, &ServerProtocols::streaming_server()).unwrap();
    assert_eq!(up.protocol, StreamProtocol::Spdy(ProtocolVersion::V5));
    assert_eq!(up.headers["x-stream-protocol-version"], "v5.channel.k8s.io");
    assert_eq!(up.headers["upgrade"], "SPDY/3.1");
    let req = headers(&[
        ("connection", "Upgrade"),
        ("upgrade", "SPDY/3.1"),
        (
            "x-stream-protocol-version",
            "v3.channel.k8s.io, v4.channel.k8s.io",
        ),
        ("x-stream-protocol-version", "channel.k8s.io"),
    ]);
    let up = negotiate(&req, &ServerProtocols::streaming_server()).unwrap();
    assert_eq!(up.protocol, StreamProtocol::Spdy(ProtocolVersion::V3));
}

#[test]
fn spdy_no_common_version_is_403() {
    let req = headers(&[
        ("connection", "Upgrade"),
        ("upgrade", "SPDY/3.1"),
        (
            "x-stream-protocol-version",
            "v9.channel.k8s.io,v8.channel.k8s.io",
        ),
    ]);
    let supported = ServerProtocols {
        spdy: vec![ProtocolVersion::V4, ProtocolVersion::V1],
        websocket: vec![],
    };
    let rej = negotiate(&req, &supported).unwrap_err();
    assert_eq!(rej.status, StatusCode::FORBIDDEN);
    assert_eq!(
        rej.body,
        "unable to upgrade: unable to negotiate protocol: client supports [v9.channel.k8s.io v8.channel.k8s.io], server accepts [v4.channel.k8s.io channel.k8s.io]\n"
    );
    let accepted: Vec<_> = rej
        .headers
        .get_all("x-accepted-stream-protocol-versions")
        .iter()
        .collect();
    assert_eq!(accepted, ["v4.channel.k8s.io", "channel.k8s.io"]);
    assert_eq!(rej.headers["content-type"], "text/plain; charset=utf-8");
}

#[test]
fn spdy_missing_headers() {
    let rej = negotiate(
        &headers(&[("connection", "Upgrade"), ("upgrade", "SPDY/3.1")]),
        &ServerProtocols::streaming_server(),
    )
    .unwrap_err();
    assert_eq!(rej.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        rej.body,
        "unable to upgrade: X-Stream-Protocol-Version is required\n"
    );
    assert_eq!(rej.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(rej.headers["x-content-type-options"], "nosniff");
    assert_eq!(
        rej.message,
        "unable to upgrade: X-Stream-Protocol-Version is required"
    );
    let rej = negotiate(
        &headers(&[
            ("x-stream-protocol-version", "v4.channel.k8s.io"),
            ("user-agent", "curl/8"),
        ]),
        &ServerProtocols::streaming_server(),
    )
    .unwrap_err();
    assert_eq!(rej.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        rej.body,
        "unable to upgrade: missing upgrade headers in request: http.Header{\"User-Agent\":[]string{\"curl/8\"}, \"X-Stream-Protocol-Version\":[]string{\"v4.channel.k8s.io\"}}\n"
    );
}

fn ws_request(protocols: Option<&str>) -> HeaderMap {
    let mut h = headers(&[
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "websocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ]);
    if let Some(p) = protocols {
        h.insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
    }
    h
}

#[test]
fn websocket_choice_and_accept_key() {
    let up = negotiate(
        &ws_request(Some("v4.channel.k8s.io, v5.channel.k8s.io")),
        &ServerProtocols::streaming_server(),
    )
    .unwrap();
    assert_eq!(
        up.protocol,
        StreamProtocol::WebSocket(WsProtocol::V4Channel)
    );
    assert_eq!(
        up.headers["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_eq!(up.headers["sec-websocket-protocol"], "v4.channel.k8s.io");
    let up = negotiate(&ws_request(None), &ServerProtocols::streaming_server()).unwrap();
    assert_eq!(up.protocol, StreamProtocol::WebSocket(WsProtocol::Channel));
    assert!(up.headers.get("sec-websocket-protocol").is_none());
    let up = negotiate(
        &ws_request(Some("base64.channel.k8s.io")),
        &ServerProtocols::streaming_server(),
    )
    .unwrap();
    assert_eq!(
        up.protocol,
        StreamProtocol::WebSocket(WsProtocol::Base64Channel)
    );
}

#[test]
fn translator_accepts_only_v5() {
    let up = negotiate(
        &ws_request(Some("v5.channel.k8s.io")),
        &ServerProtocols::translator(),
    )
    .unwrap();
    assert_eq!(
        up.protocol,
        StreamProtocol::WebSocket(WsProtocol::V5Channel)
    );
    let rej = negotiate(
        &ws_request(Some("v4.channel.k8s.io")),
        &ServerProtocols::translator(),
    )
    .unwrap_err();
    assert_eq!(rej.status, StatusCode::FORBIDDEN);
    assert_eq!(rej.body, "");
    let mut bad = ws_request(None);
    bad.insert("sec-websocket-version", HeaderValue::from_static("8"));
    let rej = negotiate(&bad, &ServerProtocols::translator()).unwrap_err();
    assert_eq!(rej.status, StatusCode::BAD_REQUEST);
    assert_eq!(rej.headers["sec-websocket-version"], "13");
}

#[test]
fn spdy_client_validation() {
    let ok = headers(&[
        ("connection", "Upgrade"),
        ("upgrade", "SPDY/3.1"),
        ("x-stream-protocol-version", "v4.channel.k8s.io"),
    ]);
    assert_eq!(
        validate_spdy_response(StatusCode::SWITCHING_PROTOCOLS, &ok, b""),
        Ok(ProtocolVersion::V4)
    );
    let legacy = headers(&[("connection", "Upgrade"), ("upgrade", "SPDY/3.1")]);
    assert_eq!(
        validate_spdy_response(StatusCode::SWITCHING_PROTOCOLS, &legacy, b""),
        Ok(ProtocolVersion::V1)
    );
    let err = validate_spdy_response(
        StatusCode::UNAUTHORIZED,
        &HeaderMap::new(),
        b"Unauthorized\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to upgrade connection: Unauthorized"
    );
    assert!(!err.is_upgrade_failure());
    let body = br#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"web\" is forbidden","reason":"Forbidden","code":403}"#;
    let err = validate_spdy_response(StatusCode::FORBIDDEN, &HeaderMap::new(), body).unwrap_err();
    assert_eq!(err.to_string(), "pods \"web\" is forbidden");
    assert_eq!(err.status().map(|s| s.code), Some(403));
    let err = validate_spdy_response(
        StatusCode::NOT_FOUND,
        &HeaderMap::new(),
        b"404 page not found\n",
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to upgrade connection: 404 page not found"
    );
}

#[test]
fn websocket_client_validation() {
    let hs = websocket_request_headers(&[WsProtocol::V5Channel]);
    assert_eq!(hs.headers["sec-websocket-protocol"], "v5.channel.k8s.io");
    let up = negotiate(&hs.headers, &ServerProtocols::translator()).unwrap();
    assert_eq!(
        validate_websocket_response(&hs, StatusCode::SWITCHING_PROTOCOLS, &up.headers, b""),
        Ok(WsProtocol::V5Channel)
    );
    let err = validate_websocket_response(&hs, StatusCode::FORBIDDEN, &HeaderMap::new(), b"")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to upgrade streaming request: websocket: bad handshake (403 Forbidden)"
    );
    assert!(err.is_upgrade_failure());
    let err = validate_websocket_response(&hs, StatusCode::BAD_REQUEST, &HeaderMap::new(), b"nope")
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to upgrade streaming request: websocket: bad handshake (400 Bad Request): nope"
    );
    let mut other = up.headers.clone();
    other.insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("v4.channel.k8s.io"),
    );
    let err =
        validate_websocket_response(&hs, StatusCode::SWITCHING_PROTOCOLS, &other, b"").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to upgrade streaming request: invalid protocol, expected one of [\"v5.channel.k8s.io\"], got \"v4.channel.k8s.io\""
    );
}
