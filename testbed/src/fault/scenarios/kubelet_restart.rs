//! Seed 000's lesson: the kubelet restarts while an exec runs. The command has already done its
//! work in the container, but the caller never gets its result.
//!
//! What kubectl prints is derived, not observed (failures.md §9 says so too). When the kubelet
//! dies, the connection carrying the SPDY session ends; spdystream (`connection.go` `Serve`)
//! then closes every stream, so each stream read returns EOF whatever the connection error was;
//! client-go's `watchErrorStream` turns an error stream that ends without a Status into no error.
//! Over SPDY kubectl therefore exits 0 with nothing on stderr. Over WebSocket the API server's
//! translator runs that same SPDY client, gets no error and writes a Success status
//! (`streamtranslator.go`), so kubectl 1.32 exits 0 as well. The output the command would have
//! printed after the restart never arrives: a caller that waits for a result line (ChaosBlade's
//! operator in the seed) finds none and reports a failure for an injection that happened.

use std::time::{Duration, Instant};

use crate::fault::kubectl::{self, Client, KUBECTL_LIMIT};
use crate::fault::{Check, Expected, FaultError, FaultReport, FaultRun};
use crate::hop::Hop;
use crate::procfs;

const SOURCE: &str = "derived, not observed: spdystream connection.go Serve closes all streams with EOF on any connection end; client-go errorstream.go watchErrorStream: EOF without a Status = no error (failures.md §9); streamtranslator.go writes Success when its SPDY executor returns nil; seed 000 (\"实际注入成功但因为报错认为没有注入成功\")";

pub fn run(run: &FaultRun) -> Result<FaultReport, FaultError> {
    let mut report = FaultReport::new("kubelet-restart", "000");
    let mut lab = run.start_lab(run.lab_config("lab"))?;
    for (n, client) in Client::ALL.into_iter().enumerate() {
        let expected = Expected::new("", 0, SOURCE).with_stdout("");
        let title = "kubelet killed and restarted mid-exec";
        if !client.available() {
            report.checks.push(Check::skipped(title, client, &expected));
            continue;
        }
        let marker = format!("injected-{}-{n}", std::process::id());
        let script =
            format!("echo {marker} > /tmp/evidence-{n}; sleep 3; echo '{{\"success\":true}}'");
        let args: Vec<String> = ["exec", "web", "-c", "app", "--", "sh", "-c", &script]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let kubeconfig = lab.kubeconfig();
        let exec = std::thread::spawn(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            kubectl::run(client, &kubeconfig, &args, KUBECTL_LIMIT)
        });
        // The command runs once its shell shows up with the marker on its command line.
        let deadline = Instant::now() + Duration::from_secs(15);
        while !procfs::processes()
            .iter()
            .any(|p| p.cmdline.iter().any(|a| a.contains(&marker)))
        {
            if Instant::now() > deadline || exec.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        let killed = lab.stop_hop(Hop::KubeletStream, true);
        tracing::info!(?killed, "kubelet-stream killed");
        let restarted = run.block_on(lab.restart_hop(Hop::KubeletStream));
        let output = exec
            .join()
            .map_err(|_| FaultError::Setup("the kubectl thread panicked".into()))?
            .map_err(|e| FaultError::io("running kubectl", e))?;
        restarted?;
        let args: Vec<&str> = vec!["exec", "web", "-c", "app", "--", "sh", "-c", &script];
        report
            .checks
            .push(Check::kubectl(title, client, &args, &expected, &output));

        // The evidence, read back through the restarted kubelet.
        let evidence_path = format!("/tmp/evidence-{n}");
        let cat = [
            "exec",
            "web",
            "-c",
            "app",
            "--",
            "cat",
            evidence_path.as_str(),
        ];
        let evidence = kubectl::run(Client::Ws132, &lab.kubeconfig(), &cat, KUBECTL_LIMIT)
            .map_err(|e| FaultError::io("running kubectl", e))?;
        let want = format!("{marker}\n");
        report.checks.push(Check::fact(
            "…yet the command ran in the container (read back after the restart)",
            &format!("kubectl exec web -c app -- cat {evidence_path}"),
            &format!("stdout {want:?}"),
            "the scenario's own evidence file",
            &format!(
                "stdout {:?}, stderr {:?}, exit {:?}",
                evidence.stdout,
                evidence.stderr.trim_end(),
                evidence.exit_code
            ),
            evidence.stdout == want && evidence.exit_code == Some(0),
        ));
    }
    report.notes.push(
        "kubelet-stream was killed with SIGKILL 0.3 s into each exec and started again on the\n\
         same address. Look at DIR/logs/kubelet-stream.log (the second start) and\n\
         DIR/logs/cri-streaming.log (the stream's client vanished; the exec process runs on).\n\
         Lesson: exec is not an RPC. A caller that needs a result must make the command\n\
         idempotent and check its effect, not rely on the exec's output or exit code."
            .into(),
    );
    run.stop_lab(lab)?;
    Ok(report)
}
