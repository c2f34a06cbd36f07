//! The bundle written by `write_bundle` runs under real runc, read-only rootfs included.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use oci_bundle::{prepare_busybox_rootfs, write_bundle, ContainerSpec};

#[test]
fn busybox_bundle_runs_under_runc() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rootfs = tmp.path().join("rootfs");
    prepare_busybox_rootfs(&rootfs, Path::new("/bin/busybox")).expect("rootfs");
    let bundle = tmp.path().join("bundle");
    let spec = ContainerSpec {
        args: vec![
            "sh".into(),
            "-c".into(),
            "echo hi; hostname; touch /x 2>/dev/null || echo ro; echo x > /tmp/t && cat /tmp/t"
                .into(),
        ],
        rootfs: rootfs.clone(),
        readonly_rootfs: true,
        hostname: Some("web".into()),
        annotations: BTreeMap::from([("a".to_string(), "b".to_string())]),
        ..Default::default()
    };
    write_bundle(&bundle, &spec).expect("bundle");
    let id = format!("bundle-test-{}", std::process::id());
    let out = Command::new("runc")
        .arg("--root")
        .arg(tmp.path().join("runc"))
        .args(["run", "--bundle"])
        .arg(&bundle)
        .arg(&id)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runc run");
    let _ = Command::new("runc")
        .arg("--root")
        .arg(tmp.path().join("runc"))
        .args(["delete", "--force", &id])
        .output();
    assert!(
        out.status.success(),
        "runc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\nweb\nro\nx\n");
}
