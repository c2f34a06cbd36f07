//! Shared test harness: PKI, a fake kubelet, an in-process apiserver-proxy, kubeconfigs, and a
//! bounded kubectl runner.
#![allow(dead_code)]

pub mod fake_kubelet;
pub mod pki;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use apiserver_proxy::kubelet::NodeAddress;
use apiserver_proxy::{ApiServer, ProxyConfig};
use tokio::sync::oneshot;

pub use fake_kubelet::{FakeKubelet, KubeletMode};
pub use pki::{CertFiles, Pki};

pub const KUBECTL_132: &str = "/usr/bin/kubectl";
/// Where `scripts/setup.sh` extracts Debian's kubernetes-client (kubectl 1.20, SPDY only).
pub const KUBECTL_120: &str = "/opt/execlab/kubectl-1.20/usr/bin/kubectl";

/// Tokens: admin (system:masters), jane (may read pods, not exec), viewer (only get pods/exec),
/// execer (create pods/exec, get pods).
pub const TOKENS_CSV: &str = "\
admintoken,admin-by-token,100,\"system:masters\"
janetoken,jane,101,\"devs\"
viewertoken,viewer,102
";

pub const POLICY_JSON: &str = r#"[
  {"users": ["jane"], "verbs": ["get", "list"], "resources": ["pods"], "namespaces": ["default"]},
  {"users": ["viewer"], "verbs": ["get", "list"], "resources": ["pods"]},
  {"users": ["viewer"], "verbs": ["get"], "resources": ["pods/exec"], "namespaces": ["default"]}
]"#;

/// A whole test lab: PKI, a fake kubelet (node `node-1`) and the proxy under test.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub admin: CertFiles,
    pub jane_cert: CertFiles,
    pub kubelet: Option<FakeKubelet>,
    pub kubelet_addr: std::net::SocketAddr,
    pub api_addr: std::net::SocketAddr,
    /// The in-process server's configuration (its files serve the binary test too).
    pub config: ProxyConfig,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Lab {
    pub async fn start(mode: KubeletMode) -> Lab {
        Self::start_with_limits(mode, hop_kit::ConnectionLimits::KUBE_APISERVER).await
    }

    /// A lab whose proxy serves connections with `limits`.
    pub async fn start_with_limits(mode: KubeletMode, limits: hop_kit::ConnectionLimits) -> Lab {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = Pki::new(&dir.path().join("pki"));
        let api_serving = pki.server("apiserver");
        let kubelet_serving = pki.server("kubelet");
        let kubelet_client = pki.client(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
        );
        let admin = pki.client("admin", "admin", Some("system:masters"));
        let jane_cert = pki.client("jane", "jane", Some("devs"));
        let kubelet = FakeKubelet::start(&pki, &kubelet_serving, mode).await;
        let kubelet_addr = kubelet.addr;
        std::fs::write(dir.path().join("tokens.csv"), TOKENS_CSV).expect("tokens");
        std::fs::write(dir.path().join("policy.json"), POLICY_JSON).expect("policy");
        let config = ProxyConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            addr_file: Some(dir.path().join("addr").join("apiserver-proxy")),
            tls_cert: api_serving.cert.clone(),
            tls_key: api_serving.key.clone(),
            client_ca: Some(pki.ca_cert.clone()),
            token_auth_file: Some(dir.path().join("tokens.csv")),
            policy_file: Some(dir.path().join("policy.json")),
            kubelet_client_cert: kubelet_client.cert.clone(),
            kubelet_client_key: kubelet_client.key.clone(),
            kubelet_ca: pki.ca_cert.clone(),
            nodes: vec![NodeAddress {
                name: "node-1".into(),
                address: kubelet_addr.to_string(),
            }],
            limits,
        };
        let server = ApiServer::bind(&config)
            .await
            .expect("bind apiserver-proxy");
        let api_config = config.clone();
        let api_addr = server.local_addr();
        let (stop_tx, stop_rx) = oneshot::channel();
        let server = tokio::spawn(server.serve(async move {
            let _ = stop_rx.await;
        }));
        Lab {
            dir,
            pki,
            admin,
            jane_cert,
            kubelet: Some(kubelet),
            kubelet_addr,
            api_addr,
            config: api_config,
            stop: Some(stop_tx),
            server: Some(server),
        }
    }

    pub fn kubelet(&self) -> &FakeKubelet {
        self.kubelet.as_ref().expect("kubelet running")
    }

    /// Stops the fake kubelet (its port then refuses connections).
    pub async fn stop_kubelet(&mut self) {
        if let Some(k) = self.kubelet.take() {
            k.stop().await;
        }
    }

    /// A kubeconfig for a user given as kubeconfig `user:` YAML lines.
    pub fn kubeconfig(&self, name: &str, user_yaml: &str) -> PathBuf {
        self.kubeconfig_for(self.api_addr, name, user_yaml)
    }

    /// [`Lab::kubeconfig`] for a server at `api_addr`.
    pub fn kubeconfig_for(
        &self,
        api_addr: std::net::SocketAddr,
        name: &str,
        user_yaml: &str,
    ) -> PathBuf {
        let path = self.dir.path().join(format!("kubeconfig-{name}"));
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority: {ca}\nusers:\n- name: u\n  user:{user}\ncontexts:\n- name: lab\n  context:\n    cluster: lab\n    user: u\n    namespace: default\ncurrent-context: lab\n",
            port = api_addr.port(),
            ca = self.pki.ca_cert.display(),
            user = if user_yaml.is_empty() { " {}".to_string() } else { format!("\n{user_yaml}") },
        );
        std::fs::write(&path, text).expect("kubeconfig");
        path
    }

    pub fn cert_kubeconfig(&self, name: &str, files: &CertFiles) -> PathBuf {
        self.kubeconfig(
            name,
            &format!(
                "    client-certificate: {}\n    client-key: {}",
                files.cert.display(),
                files.key.display()
            ),
        )
    }

    /// A TLS client config trusting the lab CA (no client certificate).
    pub fn client_tls(&self) -> std::sync::Arc<rustls::ClientConfig> {
        hop_kit::tls::client_config_from_files(&self.pki.ca_cert, None).expect("client tls")
    }

    /// One HTTPS request to the proxy (no client certificate); status, headers and body.
    pub async fn request(
        &self,
        method: http::Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> (http::StatusCode, http::HeaderMap, bytes::Bytes) {
        https_request(
            self.api_addr,
            self.client_tls(),
            method,
            path_and_query,
            headers,
        )
        .await
    }

    pub fn token_kubeconfig(&self, name: &str, token: &str) -> PathBuf {
        self.kubeconfig(name, &format!("    token: {token}"))
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
        self.stop_kubelet().await;
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

/// What a kubectl run printed.
#[derive(Debug)]
pub struct KubectlRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlRun {
    /// The last non-empty stderr line (kubectl's error; earlier lines may be warnings).
    pub fn error_line(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
    }
}

/// Runs kubectl with its own HOME and cache dir (one per kubeconfig), a 60 s limit, optional
/// stdin.
pub async fn kubectl(
    bin: &str,
    kubeconfig: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
) -> KubectlRun {
    kubectl_in(
        &kubeconfig.with_extension("home"),
        bin,
        kubeconfig,
        args,
        env,
        stdin,
    )
    .await
}

/// [`kubectl`] with a given HOME (whose `cache` dir holds kubectl's discovery cache).
pub async fn kubectl_in(
    home: &Path,
    bin: &str,
    kubeconfig: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: Option<&[u8]>,
) -> KubectlRun {
    use tokio::io::AsyncWriteExt;
    std::fs::create_dir_all(home).expect("home");
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(home.join("cache"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn kubectl");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).await.expect("write stdin");
        drop(pipe);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl timed out")
        .expect("kubectl output");
    KubectlRun {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// kubectl 1.20 as `scripts/setup.sh` installs it, else None.
pub fn kubectl_120() -> Option<&'static str> {
    Path::new(KUBECTL_120).exists().then_some(KUBECTL_120)
}

/// One HTTPS request over a fresh connection, bounded to 10 s.
pub async fn https_request(
    addr: std::net::SocketAddr,
    tls: std::sync::Arc<rustls::ClientConfig>,
    method: http::Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> (http::StatusCode, http::HeaderMap, bytes::Bytes) {
    use http_body_util::BodyExt;
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .expect("tls");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("handshake");
        tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .expect("request");
        let resp = sender.send_request(req).await.expect("response");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, body)
    };
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .expect("request timed out")
}
