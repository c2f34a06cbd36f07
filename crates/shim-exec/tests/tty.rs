//! A terminal exec: the pty master comes back over the console socket, output is copied to the
//! stdout FIFO, ResizePty sets the size the process sees, and the console socket dir is gone.

mod common;

use std::io::Write;
use std::path::Path;

use common::*;
use containerd_shim_protos::api::{ResizePtyRequest, StartRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_exec_sees_resize() {
    let lab = Lab::new();
    let mut shim = lab.start_shim("pod-tty", None).await;
    shim.run_sleeper(&lab, "ctr-tty").await;

    let (inp, out) = lab.stdio_fifos("t");
    let out_r = read_fifo(&out);
    let req = Shim::exec_request(
        "ctr-tty",
        "t1",
        &["sh", "-c", "tty; read x; stty size; exit 4"],
        true,
        [&inp, &out, Path::new("")],
    );
    shim.exec_and_start(&req).await;
    shim.task
        .resize_pty(
            ctx(),
            &ResizePtyRequest {
                id: "ctr-tty".into(),
                exec_id: "t1".into(),
                width: 123,
                height: 45,
                ..Default::default()
            },
        )
        .await
        .expect("ResizePty");
    let mut w = open_fifo_writer(&inp);
    w.write_all(b"go\n").expect("stdin");
    assert_eq!(shim.wait("ctr-tty", "t1").await, 4);
    drop(w);
    let text = String::from_utf8_lossy(&out_r.join().expect("out")).into_owned();
    assert!(text.contains("/dev/pts/"), "not a terminal: {text:?}");
    assert!(
        text.contains("45 123"),
        "stty size did not see the resize: {text:?}"
    );
    // Terminal output uses CRLF line ends: the pty's line discipline was in the path.
    assert!(text.contains("\r\n"), "{text:?}");
    shim.delete_exec("ctr-tty", "t1").await;
    let leftovers: Vec<_> = std::fs::read_dir(&lab.xdg)
        .expect("xdg")
        .flatten()
        .collect();
    assert!(leftovers.is_empty(), "runtime dir not clean: {leftovers:?}");
    shim.teardown().await;
}

/// A second container in the same pod's shim, with a terminal on its init: the pty output
/// reaches the FIFO and Kill(all) through `runc kill --all` ends it with 128+9.
/// A terminal's last output still sits in the pty when the exit is reaped; a Delete right after
/// Wait (as containerd's CRI does) must let the copy finish, not cut it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_right_after_wait_keeps_a_terminals_last_output() {
    const BYTES: usize = 512 * 1024;
    let lab = Lab::new();
    let mut shim = lab.start_shim("pod-tty-drain", None).await;
    shim.run_sleeper(&lab, "ctr-drain").await;
    for round in 0..3 {
        let exec_id = format!("d{round}");
        let out = lab.fifo(&format!("{exec_id}.out"));
        // A slow reader: at the exit, output still waits in the pty and in the copy.
        let out_r = read_fifo_paced(&out, std::time::Duration::from_millis(1));
        let script = format!("head -c {BYTES} /dev/zero | tr '\\0' a; exit 5");
        let req = Shim::exec_request(
            "ctr-drain",
            &exec_id,
            &["sh", "-c", &script],
            true,
            [Path::new(""), &out, Path::new("")],
        );
        shim.exec_and_start(&req).await;
        assert_eq!(shim.wait("ctr-drain", &exec_id).await, 5);
        shim.delete_exec("ctr-drain", &exec_id).await;
        let got = out_r.join().expect("out");
        let a_count = got.iter().filter(|&&b| b == b'a').count();
        assert_eq!(a_count, BYTES, "round {round}: output cut at Delete");
    }
    shim.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_init_and_kill_all_in_a_pod_shim() {
    use containerd_shim_protos::api::{CreateTaskRequest, KillRequest};
    use oci_bundle::{write_bundle, ContainerSpec};

    let lab = Lab::new();
    let mut shim = lab.start_shim("pod-init-tty", None).await;
    shim.run_sleeper(&lab, "ctr-plain").await;

    let id = "ctr-term";
    let bundle = lab.bundle(id);
    let spec = ContainerSpec {
        args: vec![
            "sh".into(),
            "-c".into(),
            "tty; echo ready; exec sleep 3600".into(),
        ],
        rootfs: lab.rootfs.clone(),
        terminal: true,
        readonly_rootfs: true,
        ..Default::default()
    };
    write_bundle(&bundle, &spec).expect("bundle");
    let out = lab.fifo("init.out");
    let out_r = read_fifo(&out);
    shim.task
        .create(
            ctx(),
            &CreateTaskRequest {
                id: id.into(),
                bundle: bundle.display().to_string(),
                terminal: true,
                stdout: out.display().to_string(),
                ..Default::default()
            },
        )
        .await
        .expect("Create with terminal");
    shim.containers.push(id.into());
    shim.task
        .start(
            ctx(),
            &StartRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .await
        .expect("Start");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    shim.task
        .kill(
            ctx(),
            &KillRequest {
                id: id.into(),
                signal: libc::SIGKILL as u32,
                all: true,
                ..Default::default()
            },
        )
        .await
        .expect("Kill all");
    assert_eq!(shim.wait(id, "").await, 137);
    let text = String::from_utf8_lossy(&out_r.join().expect("out")).into_owned();
    assert!(
        text.contains("/dev/pts/") && text.contains("ready\r\n"),
        "{text:?}"
    );
    shim.teardown().await;
}

/// Input the caller writes after the exec exited is taken (and dropped) until Delete, with a
/// terminal and without: containerd's CRI closes its stdout FIFO when a stdin write of a tty
/// exec fails, so an EPIPE here would cut output not yet copied (`kubectl exec -it … -- sh -c
/// 'tty; exit 4'` losing its `/dev/pts/N` line). Delete closes the FIFO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_written_after_the_exit_is_taken_until_delete() {
    let lab = Lab::new();
    let mut shim = lab.start_shim("pod-late-stdin", None).await;
    shim.run_sleeper(&lab, "ctr-late").await;
    for terminal in [true, false] {
        let exec_id = format!("late-{terminal}");
        let (inp, out) = lab.stdio_fifos(&exec_id);
        let out_r = read_fifo(&out);
        let req = Shim::exec_request(
            "ctr-late",
            &exec_id,
            &["sh", "-c", "tty; read x; exit 4"],
            terminal,
            [&inp, &out, Path::new("")],
        );
        shim.exec_and_start(&req).await;
        let mut w = open_fifo_writer(&inp);
        w.write_all(b"go\n").expect("stdin");
        assert_eq!(shim.wait("ctr-late", &exec_id).await, 4);
        // A few keystrokes arriving after the exit (script(1) sends ^D at its end of input).
        for i in 0..10 {
            if let Err(e) = w.write_all(b"\x04") {
                panic!("terminal {terminal}: stdin write {i} after the exit: {e}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        shim.delete_exec("ctr-late", &exec_id).await;
        let text = String::from_utf8_lossy(&out_r.join().expect("out")).into_owned();
        let wanted = if terminal { "/dev/pts/" } else { "not a tty" };
        assert!(text.contains(wanted), "terminal {terminal}: {text:?}");
        let mut after_delete = None;
        for _ in 0..50 {
            if let Err(e) = w.write_all(b"x") {
                after_delete = e.raw_os_error();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(
            after_delete,
            Some(libc::EPIPE),
            "terminal {terminal}: stdin FIFO still open after Delete"
        );
    }
    shim.teardown().await;
}
