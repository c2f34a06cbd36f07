//! The lab kubeconfig: real kubectl reads it and finds the server, the CA and every lab user.

use std::process::Command;

use execlab::kubeconfig::{Kubeconfig, CONTEXT_ADMIN, CONTEXT_JANE, CONTEXT_VIEWER};
use execlab::pki::LabPki;

fn kubectl() -> String {
    std::env::var("EXECLAB_KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

#[test]
fn kubectl_reads_the_lab_kubeconfig() {
    let dir = tempfile::tempdir().unwrap();
    let pki = LabPki::generate(&dir.path().join("pki"), "n").unwrap();
    let path = dir.path().join("kubeconfig");
    Kubeconfig {
        server: "https://127.0.0.1:6443".into(),
        pki: pki.clone(),
    }
    .write(&path)
    .unwrap();

    let out = Command::new(kubectl())
        .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
        .arg(&path)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(config["current-context"], CONTEXT_ADMIN);
    let cluster = &config["clusters"][0]["cluster"];
    assert_eq!(cluster["server"], "https://127.0.0.1:6443");
    assert_eq!(
        cluster["certificate-authority"],
        pki.paths.ca.cert.display().to_string()
    );
    let users = config["users"].as_array().unwrap();
    let user = |name: &str| {
        users
            .iter()
            .find(|u| u["name"] == name)
            .map(|u| u["user"].clone())
            .unwrap()
    };
    assert_eq!(
        user("admin")["client-certificate"],
        pki.paths.admin.cert.display().to_string()
    );
    assert_eq!(user("viewer")["token"], pki.viewer_token.token.as_str());
    assert_eq!(user("admin-token")["token"], pki.admin_token.token.as_str());

    let contexts = Command::new(kubectl())
        .args(["config", "get-contexts", "-o", "name", "--kubeconfig"])
        .arg(&path)
        .output()
        .unwrap();
    let names = String::from_utf8_lossy(&contexts.stdout);
    for context in [CONTEXT_ADMIN, CONTEXT_VIEWER, CONTEXT_JANE] {
        assert!(names.lines().any(|l| l == context), "{names}");
    }
}

#[test]
fn the_kubeconfig_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let pki = LabPki::generate(dir.path(), "n").unwrap();
    let path = dir.path().join("kubeconfig");
    Kubeconfig {
        server: "https://127.0.0.1:1".into(),
        pki,
    }
    .write(&path)
    .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}
