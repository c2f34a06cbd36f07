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

    let (inp, out) = (lab.fifo("t.in"), lab.fifo("t.out"));
    let out_r = read_fifo(&out);
    let req = Shim::exec_request(
        "ctr-tty",
        "t1",
        &["sh", "-c", "tty; read x; stty size; exit 4"],
        true,
        [&inp, &out, Path::new("")],
    );
    shim.task.exec(ctx(), &req).await.expect("Exec");
    shim.task
        .start(
            ctx(),
            &StartRequest {
                id: "ctr-tty".into(),
                exec_id: "t1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("Start tty exec");
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminal_init_and_kill_all_in_a_pod_shim() {
    use containerd_shim_protos::api::{CreateTaskRequest, KillRequest};
    use shim_exec::bundle::{write_bundle, ContainerSpec};

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
