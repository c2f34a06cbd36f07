//! Exec through a real shim and real runc: output FIFOs, stdin, exit codes, signal deaths,
//! runc's own failure text, tracing, Pids/State, the binary contract's `start` reuse and
//! `delete`.

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use containerd_shim_protos::api::{
    CloseIORequest, DeleteResponse, KillRequest, PidsRequest, StartRequest, StateRequest, Status,
};
use containerd_shim_protos::protobuf::Message;

const POD: &str = "pod-exec";
const CTR: &str = "ctr-exec";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_exit_codes_and_errors() {
    let lab = Lab::new();
    let mut shim = lab.start_shim(POD, None).await;
    let init_pid = shim.run_sleeper(&lab, CTR).await;

    // stdout and stderr go to their FIFOs; the exit code comes back from Wait.
    let (out, err) = (lab.fifo("e1.out"), lab.fifo("e1.err"));
    let (out_r, err_r) = (read_fifo(&out), read_fifo(&err));
    let mut req = Shim::exec_request(
        CTR,
        "e1",
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
        false,
        [Path::new(""), &out, &err],
    );
    // With a traceparent, the shim logs inside an exec_session span with that trace id.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut c = ctx();
    c.add(
        "traceparent".into(),
        format!("00-{trace}-00f067aa0ba902b7-01"),
    );
    shim.task.exec(c.clone(), &req).await.expect("Exec");
    let started = shim
        .task
        .start(
            c,
            &StartRequest {
                id: CTR.into(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("Start exec");
    assert!(started.pid > 0);
    assert_eq!(shim.wait(CTR, "e1").await, 3);
    assert_eq!(out_r.join().expect("out"), b"out\n");
    assert_eq!(err_r.join().expect("err"), b"err\n");
    let state = shim
        .task
        .state(
            ctx(),
            &StateRequest {
                id: CTR.into(),
                exec_id: "e1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("State");
    assert_eq!(state.status.enum_value(), Ok(Status::STOPPED));
    assert_eq!(state.exit_status, 3);
    assert_eq!(state.pid, started.pid);
    shim.delete_exec(CTR, "e1").await;
    let log = std::fs::read_to_string(lab.bundle(POD).join("shim.log")).expect("shim log");
    assert!(
        log.lines()
            .any(|l| l.contains("exec_session") && l.contains(trace) && l.contains("exec started")),
        "no exec_session span with the trace id in the shim log:\n{log}"
    );

    // A process that kills itself with SIGKILL: 128 + 9.
    let req2 = Shim::exec_request(
        CTR,
        "e2",
        &["sh", "-c", "kill -9 $$"],
        false,
        [Path::new(""), Path::new(""), Path::new("")],
    );
    shim.exec_and_start(&req2).await;
    assert_eq!(shim.wait(CTR, "e2").await, 137);
    shim.delete_exec(CTR, "e2").await;

    // Kill through the API: SIGTERM on a sleeping exec gives 128 + 15.
    let req3 = Shim::exec_request(
        CTR,
        "e3",
        &["sleep", "100"],
        false,
        [Path::new(""), Path::new(""), Path::new("")],
    );
    let pid3 = shim.exec_and_start(&req3).await;
    let pids = shim
        .task
        .pids(
            ctx(),
            &PidsRequest {
                id: CTR.into(),
                ..Default::default()
            },
        )
        .await
        .expect("Pids");
    let listed: Vec<u32> = pids.processes.iter().map(|p| p.pid).collect();
    assert!(
        listed.contains(&init_pid) && listed.contains(&pid3),
        "{listed:?}"
    );
    shim.task
        .kill(
            ctx(),
            &KillRequest {
                id: CTR.into(),
                exec_id: "e3".into(),
                signal: libc::SIGTERM as u32,
                ..Default::default()
            },
        )
        .await
        .expect("Kill");
    assert_eq!(shim.wait(CTR, "e3").await, 143);
    shim.delete_exec(CTR, "e3").await;

    // stdin through a FIFO, ended by the writer closing; then CloseIO on a second one.
    let (inp, out) = lab.stdio_fifos("e4");
    let out_r = read_fifo(&out);
    let req4 = Shim::exec_request(CTR, "e4", &["cat"], false, [&inp, &out, Path::new("")]);
    shim.exec_and_start(&req4).await;
    let mut w = open_fifo_writer(&inp);
    w.write_all(b"hello stdin\n").expect("write stdin");
    drop(w);
    assert_eq!(shim.wait(CTR, "e4").await, 0);
    assert_eq!(out_r.join().expect("out"), b"hello stdin\n");
    shim.delete_exec(CTR, "e4").await;

    let (inp, out) = lab.stdio_fifos("e5");
    let out_r = read_fifo(&out);
    let req5 = Shim::exec_request(CTR, "e5", &["cat"], false, [&inp, &out, Path::new("")]);
    shim.exec_and_start(&req5).await;
    let mut w = open_fifo_writer(&inp);
    w.write_all(b"before close\n").expect("write stdin");
    // Give the copy a moment, then CloseIO while our writer is still open.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    shim.task
        .close_io(
            ctx(),
            &CloseIORequest {
                id: CTR.into(),
                exec_id: "e5".into(),
                stdin: true,
                ..Default::default()
            },
        )
        .await
        .expect("CloseIO");
    assert_eq!(shim.wait(CTR, "e5").await, 0);
    drop(w);
    assert_eq!(out_r.join().expect("out"), b"before close\n");
    shim.delete_exec(CTR, "e5").await;

    // The streaming server's order: write everything, close the writer, CloseIO at once, while
    // the process has not read yet (its pipe is full, more waits in the FIFO). What is still in
    // the FIFO must reach the process before its end of input. Repeated: before the fix, each
    // round lost the FIFO's tail with probability 1/2.
    for round in 0..6 {
        let exec_id = format!("e5b{round}");
        let (inp, out) = lab.stdio_fifos(&exec_id);
        let out_r = read_fifo(&out);
        let req = Shim::exec_request(
            CTR,
            &exec_id,
            &["sh", "-c", "sleep 0.3; cat"],
            false,
            [&inp, &out, Path::new("")],
        );
        shim.exec_and_start(&req).await;
        // Fits in the pipe, the copy buffer and the FIFO, so the writer finishes at once.
        let input: Vec<u8> = (0..100u32 << 10).map(|i| (i % 251) as u8).collect();
        let writer = {
            let (inp, input) = (inp.clone(), input.clone());
            std::thread::spawn(move || {
                let mut w = open_fifo_writer(&inp);
                let fd = std::os::fd::AsRawFd::as_raw_fd(&w);
                // SAFETY: fcntl on a descriptor `w` keeps open; this thread may block.
                unsafe {
                    let flags = libc::fcntl(fd, libc::F_GETFL);
                    libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
                }
                w.write_all(&input).expect("write stdin");
            })
        };
        tokio::task::spawn_blocking(move || writer.join().expect("writer"))
            .await
            .expect("join");
        shim.task
            .close_io(
                ctx(),
                &CloseIORequest {
                    id: CTR.into(),
                    exec_id: exec_id.clone(),
                    stdin: true,
                    ..Default::default()
                },
            )
            .await
            .expect("CloseIO");
        assert_eq!(shim.wait(CTR, &exec_id).await, 0);
        let echoed = out_r.join().expect("out");
        assert_eq!(
            echoed.len(),
            input.len(),
            "stdin lost at CloseIO (round {round})"
        );
        assert!(echoed == input, "stdin reordered");
        shim.delete_exec(CTR, &exec_id).await;
    }

    // runc's own failure text, from its JSON log.
    let (out, err) = (lab.fifo("e6.out"), lab.fifo("e6.err"));
    let (out_r, err_r) = (read_fifo(&out), read_fifo(&err));
    req = Shim::exec_request(CTR, "e6", &["nosuch"], false, [Path::new(""), &out, &err]);
    shim.task.exec(ctx(), &req).await.expect("Exec");
    let err6 = shim
        .task
        .start(
            ctx(),
            &StartRequest {
                id: CTR.into(),
                exec_id: "e6".into(),
                ..Default::default()
            },
        )
        .await
        .expect_err("nosuch must fail");
    assert_eq!(
        status_of(err6),
        (
            ttrpc::Code::UNKNOWN,
            "OCI runtime exec failed: exec failed: unable to start container process: exec: \
             \"nosuch\": executable file not found in $PATH"
                .to_string()
        )
    );
    let _ = (out_r.join(), err_r.join());
    shim.delete_exec(CTR, "e6").await;
    assert!(
        std::fs::read_dir(lab.bundle(CTR))
            .expect("bundle")
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains(".exec-log")),
        "per-exec runc logs are removed"
    );

    // Only the container's init is left under the shim.
    let children = children_of(shim.pid);
    assert_eq!(
        children.iter().map(|c| c.0).collect::<Vec<_>>(),
        vec![init_pid],
        "{children:?}"
    );
    shim.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_reuses_running_shim_and_delete_reports() {
    let lab = Lab::new();
    let mut shim = lab.start_shim("pod-contract", None).await;
    let again = lab.start_shim("pod-contract", None).await;
    assert_eq!(again.address, shim.address);
    assert_eq!(
        again.pid, shim.pid,
        "second start must find the same daemon"
    );
    std::mem::forget(again);
    assert!(shim
        .address
        .starts_with(&format!("unix://{}/", lab.socket_dir.display())));
    // The daemon is a child subreaper in its own session.
    let status = std::fs::read_to_string(format!("/proc/{}/stat", shim.pid)).expect("stat");
    let fields: Vec<&str> = status
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], shim.pid.to_string(), "session leader");

    let init = shim.run_sleeper(&lab, "ctr-contract").await;
    // `delete` (as containerd runs it after a shim died) force-deletes the container.
    let out = lab
        .shim_command("ctr-contract", "delete", None)
        .output()
        .expect("shim delete");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resp = DeleteResponse::parse_from_bytes(&out.stdout).expect("DeleteResponse");
    assert_eq!(resp.exit_status, 137);
    assert_eq!(resp.pid, init);
    assert!(resp.exited_at.is_some());
    // The shim reaps the killed init and reports it.
    assert_eq!(shim.wait("ctr-contract", "").await, 137);
    shim.teardown().await;
    assert!(!children_of(1).iter().any(|(p, _)| *p == init));
}
