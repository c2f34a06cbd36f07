//! Create with containerd-style `rootfs` mounts (an overlay over the busybox dir): the shim
//! mounts them on `<bundle>/rootfs`, the container runs from there, and Delete unmounts.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::{ctx, Lab};
use containerd_shim_protos::api::{CreateTaskRequest, DeleteRequest, StartRequest};
use containerd_shim_protos::types::mount::Mount;
use oci_bundle::{write_bundle, ContainerSpec};

fn mounted(path: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let path = path.display().to_string();
    mounts
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some(path.as_str()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_mounts_rootfs_and_delete_unmounts() {
    let lab = Lab::new();
    let mut shim = lab.start_shim("pod-rootfs", None).await;
    let id = "ctr-overlay";
    let bundle = lab.bundle(id);
    let rootfs = bundle.join("rootfs");
    let (upper, work) = (lab.dir.path().join("upper"), lab.dir.path().join("work"));
    fs::create_dir_all(&upper).expect("upper");
    fs::create_dir_all(&work).expect("work");
    // What containerd's overlayfs snapshotter sends: the upper layer holds a file the
    // container must see.
    fs::write(upper.join("marker"), "from-upper\n").expect("marker");
    let spec = ContainerSpec {
        args: vec!["sh".into(), "-c".into(), "cat /marker; sleep 3600".into()],
        rootfs: rootfs.clone(),
        readonly_rootfs: false,
        hostname: Some(id.into()),
        annotations: BTreeMap::new(),
        ..Default::default()
    };
    write_bundle(&bundle, &spec).expect("bundle");
    let out = lab.dir.path().join("init.out");
    let overlay = Mount {
        type_: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            "index=off".into(),
            format!("workdir={}", work.display()),
            format!("upperdir={}", upper.display()),
            format!("lowerdir={}", lab.rootfs.display()),
        ],
        ..Default::default()
    };
    fs::write(&out, "").expect("out");
    shim.task
        .create(
            ctx(),
            &CreateTaskRequest {
                id: id.into(),
                bundle: bundle.display().to_string(),
                rootfs: vec![overlay],
                stdout: out.display().to_string(),
                ..Default::default()
            },
        )
        .await
        .expect("Create");
    shim.containers.push(id.into());
    assert!(mounted(&rootfs), "overlay mounted on {}", rootfs.display());
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
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    while fs::read_to_string(&out).expect("read out") != "from-upper\n" {
        assert!(
            std::time::Instant::now() < deadline,
            "container never read /marker"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    shim.containers.clear();
    shim.task
        .kill(
            ctx(),
            &containerd_shim_protos::api::KillRequest {
                id: id.into(),
                signal: 9,
                ..Default::default()
            },
        )
        .await
        .expect("Kill");
    assert_eq!(shim.wait(id, "").await, 137);
    shim.task
        .delete(
            ctx(),
            &DeleteRequest {
                id: id.into(),
                ..Default::default()
            },
        )
        .await
        .expect("Delete");
    assert!(!mounted(&rootfs), "Delete unmounts {}", rootfs.display());
    shim.teardown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_mount_is_reported_and_leaves_nothing() {
    let lab = Lab::new();
    let shim = lab.start_shim("pod-badmount", None).await;
    let bundle = lab.bundle("ctr-bad");
    fs::create_dir_all(&bundle).expect("bundle");
    let bad = Mount {
        type_: "overlay".into(),
        source: "overlay".into(),
        options: vec!["lowerdir=/nonexistent-execlab".into()],
        ..Default::default()
    };
    let err = shim
        .task
        .create(
            ctx(),
            &CreateTaskRequest {
                id: "ctr-bad".into(),
                bundle: bundle.display().to_string(),
                rootfs: vec![bad],
                ..Default::default()
            },
        )
        .await
        .expect_err("a bad mount fails Create");
    assert!(
        err.to_string().contains("failed to mount rootfs component"),
        "{err}"
    );
    assert!(!mounted(&bundle.join("rootfs")));
    shim.teardown().await;
}
