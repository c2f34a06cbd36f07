//! Inputs Go reads differently from a first guess: a repeated query flag counts with its first
//! value (`req.FormValue`), and an X.509 v1 client certificate from the client CA is a valid
//! identity (crypto/x509 takes a v1 leaf; webpki alone would fail the handshake).

mod support;

use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, StatusCode};
use kubelet_stream::stream_request::{parse_command, parse_stream_options, StreamOptions};
use kubelet_stream::streaming::StreamingMode;
use support::*;

#[test]
fn a_repeated_flag_counts_with_its_first_value() {
    let o = parse_stream_options("input=1&input=0&output=0&output=1&error=1&error=0&tty=0&tty=1")
        .expect("streams");
    assert_eq!(
        o,
        StreamOptions {
            stdin: true,
            stdout: false,
            stderr: true,
            tty: false,
        }
    );
    // Only a later value asks for a stream: none is asked for.
    assert!(parse_stream_options("output=0&output=1").is_err());
    assert_eq!(
        parse_command("command=a&output=1&command=b&command=a"),
        ["a", "b", "a"]
    );
}

#[tokio::test]
async fn a_repeated_flag_reaches_the_runtime_with_its_first_value() {
    let lab = Lab::new();
    let fake = FakeRuntime::default();
    fake.set_stream_base("http://127.0.0.1:35243");
    let runtime = serve_runtime(fake, &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Redirect).await;
    let tls = lab.pki.client(Some(&lab.pki.apiserver));
    wait_running(&kubelet, tls.clone()).await;
    let path = "/exec/default/web/app?command=ls&command=-l&output=1&output=0&input=0&input=1";
    let (status, _, _) = refused(request(&kubelet, tls, Method::POST, path, spdy_headers()).await);
    assert_eq!(status, StatusCode::FOUND);
    let execs = runtime.runtime.exec_requests();
    assert_eq!(execs.len(), 1);
    assert_eq!(execs[0].cmd, ["ls", "-l"]);
    assert!(execs[0].stdout && !execs[0].stdin, "{:?}", execs[0]);
    kubelet.stop().await;
}

#[tokio::test]
async fn a_v1_client_certificate_from_the_client_ca_is_an_identity() {
    let lab = Lab::new();
    let fake = FakeRuntime::default();
    fake.set_stream_base("http://127.0.0.1:35243");
    let _runtime = serve_runtime(fake, &lab.socket);
    let kubelet = lab.start_kubelet(StreamingMode::Redirect).await;
    let now = SystemTime::now();
    let valid = now - Duration::from_secs(3600)..now + Duration::from_secs(3600);
    let v1 = lab
        .pki
        .ca
        .issue_client_v1(
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
            valid.clone(),
        )
        .expect("v1");
    let tls = lab.pki.client(Some(&v1));
    // /healthz with the certificate: the handshake must not fail on it.
    let (status, body, _) = refused(
        request(
            &kubelet,
            tls.clone(),
            Method::GET,
            "/healthz",
            HeaderMap::new(),
        )
        .await,
    );
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    wait_running(&kubelet, tls.clone()).await;
    let exec = "/exec/default/web/app?command=ls&output=1";
    let (status, _, _) = refused(request(&kubelet, tls, Method::POST, exec, spdy_headers()).await);
    assert_eq!(status, StatusCode::FOUND, "authorized as system:masters");

    // From another CA: 401, as for the v3 stranger.
    let other = hop_kit::test_pki::TestCa::new("someone-else").expect("ca");
    let stranger = other
        .issue_client_v1(
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
            valid,
        )
        .expect("v1");
    let (status, body, _) = refused(
        request(
            &kubelet,
            lab.pki.client(Some(&stranger)),
            Method::POST,
            exec,
            spdy_headers(),
        )
        .await,
    );
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::UNAUTHORIZED, "Unauthorized")
    );
    kubelet.stop().await;
}
