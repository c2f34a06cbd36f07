//! A query parameter given twice counts with its first value, as upstream's conversion from
//! `url.Values` takes `values[0]`; `command` keeps every value in order.
mod common;

use apiserver_proxy::exec::{StreamKind, StreamOptions};
use apiserver_proxy::request_info::RequestInfo;
use common::{KubeletMode, Lab};
use http::Method;
use k8s_stream::remotecommand::{spdy_request_headers, ProtocolVersion};

#[test]
fn exec_options_take_the_first_value_of_a_repeated_parameter() {
    let opts = StreamOptions::from_query(
        StreamKind::Exec,
        "container=a&container=b&stdin=true&stdin=false&stdout=0&stdout=1&stderr=1&stderr=0\
         &tty=false&tty=true&command=sh&command=-c&command=echo%20hi",
    )
    .expect("options");
    assert_eq!(
        opts,
        StreamOptions {
            command: vec!["sh".into(), "-c".into(), "echo hi".into()],
            container: "a".into(),
            stdin: true,
            stdout: false,
            stderr: true,
            tty: false,
        }
    );
    // Only the first value is read, so a bad second one is no error (as in Go).
    let opts = StreamOptions::from_query(StreamKind::Attach, "stdout=true&stdout=maybe&command=x")
        .expect("second value unread");
    assert!(opts.stdout && opts.command.is_empty(), "{opts:?}");
    // A bad first value still is.
    assert!(StreamOptions::from_query(StreamKind::Exec, "tty=maybe&tty=true").is_err());
}

#[test]
fn the_first_watch_value_decides_the_verb() {
    let verb = |query: &str| match RequestInfo::parse(&Method::GET, "/api/v1/pods", Some(query)) {
        RequestInfo::Resource(r) => r.verb,
        other => panic!("{other:?}"),
    };
    assert_eq!(verb("watch=true&watch=false"), "watch");
    assert_eq!(verb("watch=false&watch=true"), "list");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_gets_the_first_container_of_a_repeated_parameter() {
    let lab = Lab::start(KubeletMode::Echo).await;
    let mut headers = spdy_request_headers(&ProtocolVersion::NEWEST_FIRST);
    headers.insert(
        "authorization",
        "Bearer admintoken".parse().expect("header"),
    );
    // Last-wins would pick `ghost` (400: not a container of web) and no stdout.
    let url = url::Url::parse(&format!(
        "https://127.0.0.1:{}/api/v1/namespaces/default/pods/web/exec\
         ?container=app&container=ghost&command=echo&command=hi&stdout=true&stdout=false",
        lab.api_addr.port()
    ))
    .expect("url");
    let outcome = hop_kit::UpgradeRequest::new(url, Method::POST, headers)
        .with_tls(Some(lab.client_tls()))
        .send()
        .await
        .expect("dial proxy");
    assert!(
        matches!(outcome, hop_kit::UpgradeOutcome::Switched { .. }),
        "{outcome:?}"
    );
    let seen = lab.kubelet().stream_requests();
    assert_eq!(
        seen.iter()
            .map(|s| s.path_and_query.as_str())
            .collect::<Vec<_>>(),
        ["/exec/default/web/app?command=echo&command=hi&output=1"]
    );
    drop(outcome);
    lab.shutdown().await;
}
