//! 100 execs at once into one container: each gets its own output and exit status, and the
//! shim ends with no extra processes or descriptors.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use containerd_shim_protos::api::StartRequest;

const EXECS: usize = 100;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_execs_keep_their_own_output() {
    let lab = Lab::new();
    let mut shim = lab.start_shim("pod-many", None).await;
    let init = shim.run_sleeper(&lab, "ctr-many").await;
    let fds_before = fd_count(shim.pid);

    let mut jobs = Vec::new();
    let mut readers = Vec::new();
    for i in 0..EXECS {
        let exec_id = format!("m{i}");
        let out = lab.fifo(&format!("{exec_id}.out"));
        let reader = read_fifo(&out);
        let task = shim.task.clone();
        jobs.push(tokio::spawn(async move {
            let req = Shim::exec_request(
                "ctr-many",
                &exec_id,
                &["sh", "-c", &format!("echo exec-{i}; exit {}", i % 7)],
                false,
                [Path::new(""), &out, Path::new("")],
            );
            task.exec(ctx(), &req).await.expect("Exec");
            task.start(
                ctx(),
                &StartRequest {
                    id: "ctr-many".into(),
                    exec_id: exec_id.clone(),
                    ..Default::default()
                },
            )
            .await
            .expect("Start exec");
            let status = task
                .wait(
                    ctx(),
                    &containerd_shim_protos::api::WaitRequest {
                        id: "ctr-many".into(),
                        exec_id: exec_id.clone(),
                        ..Default::default()
                    },
                )
                .await
                .expect("Wait")
                .exit_status;
            task.delete(
                ctx(),
                &containerd_shim_protos::api::DeleteRequest {
                    id: "ctr-many".into(),
                    exec_id,
                    ..Default::default()
                },
            )
            .await
            .expect("Delete exec");
            status
        }));
        readers.push(reader);
    }
    for (i, (job, reader)) in jobs.into_iter().zip(readers).enumerate() {
        assert_eq!(
            job.await.expect("job"),
            (i % 7) as u32,
            "exit status of exec {i}"
        );
        assert_eq!(
            String::from_utf8(reader.join().expect("reader")).expect("utf8"),
            format!("exec-{i}\n")
        );
    }

    assert_eq!(
        children_of(shim.pid)
            .iter()
            .map(|c| c.0)
            .collect::<Vec<_>>(),
        vec![init]
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while fd_count(shim.pid) > fds_before {
        assert!(
            Instant::now() < deadline,
            "shim fds grew: {fds_before} -> {}",
            fd_count(shim.pid)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let left: Vec<_> = std::fs::read_dir(&lab.xdg)
        .expect("xdg")
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    shim.teardown().await;
}
