//! The faults whose texts come straight from upstream format strings: `unauthorized` (seed
//! 000, row 1a), `forbidden` (row 4), `not-found` (rows 5a, 5b) and `runtime-down`.

use crate::fault::expect::literal;
use crate::fault::kubectl::Client;
use crate::fault::{kubectl_checks, Check, Expected, FaultError, FaultReport, FaultRun};
use crate::hop::Hop;
use crate::kubeconfig::CONTEXT_JANE;
use crate::pki::CertificateAuthority;

/// How the SPDY client words a refused upgrade whose body is not a Status
/// (apimachinery `httpstream/spdy/roundtripper.go`).
const SPDY_UPGRADE: &str = "error: unable to upgrade connection: ";
/// The same refusal seen through the API server's WebSocket translator, which wraps a
/// non-Status error in an InternalError (`apiserver/pkg/util/proxy/streamtranslator.go`).
const WS_UPGRADE: &str = "error: Internal error occurred: unable to upgrade connection: ";

/// `text` (with its source) for every client.
fn same_for_all(text: &str, source: &str) -> Vec<(Client, Expected)> {
    Client::ALL
        .iter()
        .map(|c| (*c, Expected::new(text, 1, source)))
        .collect()
}

/// A kubelet refusal `body`: SPDY clients see the roundtripper's text, kubectl 1.32 over
/// WebSocket the translator's InternalError form.
fn kubelet_refusal(body: &str, spdy_source: &str, ws_source: &str) -> Vec<(Client, Expected)> {
    vec![
        (
            Client::Ws132,
            Expected::new(format!("{WS_UPGRADE}{body}"), 1, ws_source),
        ),
        (
            Client::Spdy132,
            Expected::new(format!("{SPDY_UPGRADE}{body}"), 1, spdy_source),
        ),
        (
            Client::Spdy120,
            Expected::new(format!("{SPDY_UPGRADE}{body}"), 1, spdy_source),
        ),
    ]
}

const EXEC_TRUE: &[&str] = &["exec", "web", "-c", "app", "--", "true"];

/// Seed 000: the kubelet's client CA is not the one that signed the API server's kubelet
/// client certificate. In the seed the pods were still listed (the kubelet reported them to the
/// API server); here the API server keeps the pods it last read from the kubelet, and the
/// kubelet is restarted with the wrong `--client-ca`.
pub fn unauthorized(run: &FaultRun) -> Result<FaultReport, FaultError> {
    let mut report = FaultReport::new("unauthorized", "000");
    let other = run.root().join("other-ca");
    std::fs::create_dir_all(&other)
        .map_err(|e| FaultError::io(format!("creating {}", other.display()), e))?;
    let ca = CertificateAuthority::generate("some-other-ca")?;
    let files = ca.write(&other, "ca")?;

    let mut lab = run.start_lab(run.lab_config("lab"))?;
    lab.config_mut().kubelet_client_ca = Some(files.cert.clone());
    run.block_on(lab.restart_hop(Hop::KubeletStream))?;
    let expected = kubelet_refusal(
        "Unauthorized",
        "seed 000; failures.md row 1a [spdy] and Observed (401 text/plain `Unauthorized`); kubelet server.go InstallAuthFilter",
        "failures.md row 1a [ws] (derived: streamtranslator.go wraps the SPDY error in NewInternalError)",
    );
    kubectl_checks(
        &mut report,
        &lab,
        "kubelet --client-ca is not the API server's CA",
        EXEC_TRUE,
        &expected,
    )?;
    report.notes.push(format!(
        "The kubelet was restarted with --client-ca {} (a CA that signed nothing the API server\n\
         holds). Look at DIR/logs/kubelet-stream.log for the 401 and apiserver-proxy.log for the\n\
         refused upgrade. Fix: give the kubelet the CA that signed --kubelet-client-certificate.",
        files.cert.display()
    ));
    run.stop_lab(lab)?;
    std::fs::remove_dir_all(&other)
        .map_err(|e| FaultError::io(format!("removing {}", other.display()), e))?;
    Ok(report)
}

/// Row 4: `jane` may get pods but not create pods/exec. kubectl 1.32's WebSocket GET is denied
/// too, so it falls back to SPDY and prints the POST's (`create`) text.
pub fn forbidden(run: &FaultRun) -> Result<FaultReport, FaultError> {
    let mut report = FaultReport::new("forbidden", "failures.md row 4");
    let lab = run.start_lab(run.lab_config("lab"))?;
    let text = "Error from server (Forbidden): pods \"web\" is forbidden: User \"jane\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"default\"";
    let source = "failures.md row 4 and §4 (apiserver responsewriters/errors.go forbiddenMessage; WebSocket GET denied → SPDY POST's text)";
    let args = [
        "--context",
        CONTEXT_JANE,
        "exec",
        "web",
        "-c",
        "app",
        "--",
        "true",
    ];
    kubectl_checks(
        &mut report,
        &lab,
        "jane has no pods/exec",
        &args,
        &same_for_all(text, source),
    )?;
    run.stop_lab(lab)?;
    Ok(report)
}

/// Rows 5a and 5b: no such pod (kubectl's GET fails before any exec), no such container
/// (the API server's pod strategy refuses it).
pub fn not_found(run: &FaultRun) -> Result<FaultReport, FaultError> {
    let mut report = FaultReport::new("not-found", "failures.md rows 5a, 5b");
    let lab = run.start_lab(run.lab_config("lab"))?;
    kubectl_checks(
        &mut report,
        &lab,
        "pod api does not exist",
        &["exec", "api", "-c", "app", "--", "true"],
        &same_for_all(
            "Error from server (NotFound): pods \"api\" not found",
            "failures.md row 5a and Observed (apimachinery errors.NewNotFound)",
        ),
    )?;
    kubectl_checks(
        &mut report,
        &lab,
        "pod web has no container x",
        &["exec", "web", "-c", "x", "--", "true"],
        &same_for_all(
            "Error from server (BadRequest): container x is not valid for pod web",
            "failures.md row 5b (pkg/registry/core/pod/strategy.go)",
        ),
    )?;
    run.stop_lab(lab)?;
    Ok(report)
}

/// The runtime is stopped (its socket removed, as containerd's listener removes it on a clean
/// stop). Upstream kubelet: GetExec → findContainer → GetPods → CRI ListPodSandbox fails with
/// grpc-go's dial error; server.go hands it to streaming.WriteError, which writes a 500 with the
/// error text (any code but NotFound/ResourceExhausted).
pub fn runtime_down(run: &FaultRun) -> Result<FaultReport, FaultError> {
    let mut report = FaultReport::new("runtime-down", "kubelet CRI error through the chain");
    let mut lab = run.start_lab(run.lab_config("lab"))?;
    let socket = lab.cri_socket();
    let ending = lab.stop_hop(Hop::CriStreaming, false);
    let gone = !socket.exists();
    report.checks.push(Check::fact(
        "the runtime is stopped and its socket is gone",
        &format!("kill -TERM <cri-streaming>; ls {}", socket.display()),
        "cri-streaming stopped; no socket",
        "the runtime's clean stop (containerd removes its socket)",
        &format!(
            "cri-streaming {}; socket {}",
            ending
                .map(|e| e.to_string())
                .unwrap_or_else(|| "not found".into()),
            if gone { "gone" } else { "still there" }
        ),
        gone,
    ));
    let body = format!(
        "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial unix {}: connect: no such file or directory\"",
        literal(&socket.display().to_string())
    );
    let expected = kubelet_refusal(
        &body,
        "derived: kubelet_pods.go GetExec → kuberuntime GetPods → ListPodSandbox error (grpc-go `connection error: desc = \"transport: Error while dialing: …\"`), server.go → streaming.WriteError 500 text; spdy roundtripper.go",
        "derived as [spdy], wrapped by streamtranslator.go NewInternalError",
    );
    kubectl_checks(
        &mut report,
        &lab,
        "cri-streaming is down",
        EXEC_TRUE,
        &expected,
    )?;
    report.notes.push(
        "Look at DIR/logs/kubelet-stream.log: the CRI call's error, then the 500. The pod still\n\
         shows as Running: the API server has no newer status. Fix: start the runtime again\n\
         (`systemctl start containerd`); running containers were never affected."
            .into(),
    );
    run.stop_lab(lab)?;
    Ok(report)
}
