//! A fake kubelet: HTTPS with client certificates, `GET /pods`, and `/exec`/`/attach` upgrades
//! answered according to a [`KubeletMode`]. It records every request it sees.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use k8s_stream::exec::{self, ExecOptions, ExecOutcome, ServeConfig};
use k8s_stream::remotecommand::{negotiate, ServerProtocols};

use super::pki::{CertFiles, Pki};

/// How the fake kubelet answers stream requests.
#[derive(Debug, Clone)]
pub enum KubeletMode {
    /// 101 with the first offered protocol, then every byte echoed back.
    Echo,
    /// A real exec session (k8s-stream's server side) running a tiny command interpreter:
    /// `echo ARGS..`, `cat` (stdin → stdout), `warn TEXT` (stderr), `exit N`, `fail TEXT`.
    Exec,
    /// 401 `Unauthorized` (text/plain), as the kubelet's auth filter answers.
    Unauthorized,
    /// 302 to the fake streaming server (plain http), which then runs [`KubeletMode::Exec`].
    Redirect,
}

/// One request the kubelet saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    /// CN of the verified client certificate.
    pub client_user: Option<String>,
}

pub struct FakeKubelet {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    streaming: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
}

pub fn pods_json() -> String {
    serde_json::json!({
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": "web", "namespace": "default", "uid": "11111111-2222-3333-4444-555555555555",
                             "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"nodeName": "node-1", "containers": [{"name": "app", "image": "busybox"}]},
                "status": {"phase": "Running", "podIP": "10.0.0.5",
                           "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0,
                                                  "state": {"running": {}}}]}
            },
            {
                "metadata": {"name": "coredns", "namespace": "kube-system", "uid": "6",
                             "creationTimestamp": "2024-01-01T00:00:00Z"},
                "spec": {"containers": [{"name": "dns", "image": "busybox"}]},
                "status": {"phase": "Running",
                           "containerStatuses": [{"name": "dns", "ready": true, "restartCount": 2,
                                                  "state": {"running": {}}}]}
            }
        ]
    })
    .to_string()
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// 101 for whichever upgrade was asked, then echo.
fn switch_and_echo(mut req: Request<Incoming>) -> Resp {
    let headers = req.headers().clone();
    let on_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("Upgrade"),
    );
    let upgrade = headers
        .get(http::header::UPGRADE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("SPDY/3.1"));
    if upgrade.as_bytes().eq_ignore_ascii_case(b"websocket") {
        h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Some(key) = headers.get("sec-websocket-key") {
            let accept =
                tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
            h.insert(
                "sec-websocket-accept",
                HeaderValue::from_str(&accept).expect("accept"),
            );
        }
        if let Some(p) = headers
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
        {
            let first = p.split(',').next().unwrap_or("").trim().to_string();
            h.insert(
                "sec-websocket-protocol",
                HeaderValue::from_str(&first).expect("proto"),
            );
        }
    } else {
        h.insert(http::header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        if let Some(v) = headers.get("x-stream-protocol-version") {
            let first = v
                .to_str()
                .unwrap_or("")
                .split(',')
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            h.insert(
                "x-stream-protocol-version",
                HeaderValue::from_str(&first).expect("v"),
            );
        }
    }
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let io = TokioIo::new(upgraded);
            let (mut r, mut w) = tokio::io::split(io);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    resp
}

/// The kubelet's stream parameters (`command`, `input`/`output`/`error`/`tty` = `1`).
fn kubelet_options(query: &str) -> ExecOptions {
    let mut opts = ExecOptions::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match k.as_ref() {
            "command" => opts.command.push(v.into_owned()),
            "input" => opts.stdin = v == "1",
            "output" => opts.stdout = v == "1",
            "error" => opts.stderr = v == "1",
            "tty" => opts.tty = v == "1",
            _ => {}
        }
    }
    opts
}

/// Negotiates like a streaming server and runs the command interpreter.
fn exec_session(mut req: Request<Incoming>) -> Resp {
    let mut opts = kubelet_options(req.uri().query().unwrap_or(""));
    if req.uri().path().starts_with("/attach/") {
        // Attaching shows what the container's main process prints.
        opts.command = vec!["echo".into(), "attached".into()];
    }
    let upgrade = match negotiate(req.headers(), &ServerProtocols::streaming_server()) {
        Ok(u) => u,
        Err(rej) => {
            let mut r = Response::new(Full::new(Bytes::from(rej.body.clone())));
            *r.status_mut() = rej.status;
            *r.headers_mut() = rej.headers.clone();
            return r;
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let Ok(streams) = exec::serve(
            TokioIo::new(upgraded),
            upgrade.protocol,
            &opts,
            &ServeConfig::default(),
        )
        .await
        else {
            return;
        };
        let outcome =
            run_command(&opts.command, streams.stdin, streams.stdout, streams.stderr).await;
        let _ = streams.status.finish(outcome).await;
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *resp.headers_mut() = upgrade.headers;
    resp
}

async fn run_command(
    argv: &[String],
    stdin: Option<exec::BoxRead>,
    stdout: Option<exec::BoxWrite>,
    stderr: Option<exec::BoxWrite>,
) -> ExecOutcome {
    use tokio::io::AsyncWriteExt;
    let mut stdout = stdout;
    let mut stderr = stderr;
    let args = argv.get(1..).unwrap_or_default().join(" ");
    let outcome = match argv.first().map(String::as_str) {
        Some("echo") => {
            if let Some(out) = stdout.as_mut() {
                let _ = out.write_all(format!("{args}\n").as_bytes()).await;
            }
            ExecOutcome::Success
        }
        Some("cat") => {
            if let (Some(mut input), Some(out)) = (stdin, stdout.as_mut()) {
                let _ = tokio::io::copy(&mut input, out).await;
            }
            ExecOutcome::Success
        }
        Some("warn") => {
            if let Some(err) = stderr.as_mut() {
                let _ = err.write_all(format!("{args}\n").as_bytes()).await;
            }
            ExecOutcome::Success
        }
        Some("exit") => {
            let code = args.trim().parse().unwrap_or(1);
            ExecOutcome::Exited {
                code,
                message: format!("error executing command {argv:?}, exit code {code}"),
            }
        }
        Some("fail") => ExecOutcome::Failed(args),
        _ => ExecOutcome::Failed(format!("unknown command {argv:?}")),
    };
    for w in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = w.shutdown().await;
    }
    outcome
}

impl FakeKubelet {
    pub async fn start(pki: &Pki, serving: &CertFiles, mode: KubeletMode) -> FakeKubelet {
        let tls = hop_kit::ServerTls::from_files(&serving.cert, &serving.key, Some(&pki.ca_cert))
            .expect("kubelet tls");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind kubelet");
        let addr = listener.local_addr().expect("addr");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();

        // The streaming server for redirect mode: plain http, echoes.
        let streaming_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind streaming");
        let streaming_addr = streaming_listener.local_addr().expect("addr");
        let (s_stop_tx, mut s_stop_rx) = oneshot::channel::<()>();
        let s_seen = seen.clone();
        let streaming_task = tokio::spawn(async move {
            loop {
                let (tcp, _) = tokio::select! {
                    _ = &mut s_stop_rx => return,
                    a = streaming_listener.accept() => match a { Ok(p) => p, Err(_) => continue },
                };
                let seen = s_seen.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        async move {
                            seen.lock().expect("lock").push(Seen {
                                method: req.method().to_string(),
                                path_and_query: req.uri().to_string(),
                                headers: req.headers().clone(),
                                client_user: None,
                            });
                            Ok::<_, std::convert::Infallible>(exec_session(req))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .with_upgrades()
                        .await;
                });
            }
        });

        let (stop_tx, mut stop_rx) = oneshot::channel::<()>();
        let task_seen = seen.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let (tcp, _) = tokio::select! {
                    _ = &mut stop_rx => break,
                    a = listener.accept() => match a { Ok(p) => p, Err(_) => continue },
                };
                let tls = tls.clone();
                let seen = task_seen.clone();
                let mode = mode.clone();
                conns.spawn(async move {
                    let Ok((stream, verdict)) = tls.accept(tcp).await else {
                        return;
                    };
                    let client_user = match verdict {
                        hop_kit::ClientCert::Verified(id) => Some(id.user),
                        _ => None,
                    };
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        let mode = mode.clone();
                        let client_user = client_user.clone();
                        async move {
                            seen.lock().expect("lock").push(Seen {
                                method: req.method().to_string(),
                                path_and_query: req.uri().to_string(),
                                headers: req.headers().clone(),
                                client_user: client_user.clone(),
                            });
                            let resp = if client_user.is_none() {
                                text(StatusCode::UNAUTHORIZED, "Unauthorized")
                            } else if req.uri().path() == "/pods" {
                                let mut r = Response::new(Full::new(Bytes::from(pods_json())));
                                r.headers_mut().insert(
                                    http::header::CONTENT_TYPE,
                                    HeaderValue::from_static("application/json"),
                                );
                                r
                            } else if req.uri().path().starts_with("/exec/")
                                || req.uri().path().starts_with("/attach/")
                            {
                                match mode {
                                    KubeletMode::Unauthorized => {
                                        text(StatusCode::UNAUTHORIZED, "Unauthorized")
                                    }
                                    KubeletMode::Echo => switch_and_echo(req),
                                    KubeletMode::Exec => exec_session(req),
                                    KubeletMode::Redirect => {
                                        let mut r = text(StatusCode::FOUND, "");
                                        r.headers_mut().insert(
                                            http::header::LOCATION,
                                            // The real streaming server keeps the options
                                            // behind the token; the fake carries them along.
                                            HeaderValue::from_str(&format!(
                                                "http://{streaming_addr}/exec/sometoken?{}",
                                                req.uri().query().unwrap_or("")
                                            ))
                                            .expect("location"),
                                        );
                                        r
                                    }
                                }
                            } else {
                                text(StatusCode::NOT_FOUND, "404 page not found\n")
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .with_upgrades()
                        .await;
                });
            }
            conns.abort_all();
        });
        FakeKubelet {
            addr,
            seen,
            stop: Some(stop_tx),
            task: Some(task),
            streaming: Some((s_stop_tx, streaming_task)),
        }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }

    /// Stream requests (exec/attach) seen so far.
    pub fn stream_requests(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| {
                s.path_and_query.starts_with("/exec/") || s.path_and_query.starts_with("/attach/")
            })
            .collect()
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        if let Some((stop, task)) = self.streaming.take() {
            let _ = stop.send(());
            let _ = task.await;
        }
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some((_, task)) = self.streaming.take() {
            task.abort();
        }
    }
}
