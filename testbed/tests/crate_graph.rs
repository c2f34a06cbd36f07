//! The crates follow the chain: a hop crate (marked `[package.metadata.execlab] hop = true`)
//! depends on k8s-stream, hop-kit, cri-api and leaf crates, never on another hop, in any kind of
//! dependency. Hops talk over the wire; what two of them need alike lives in a leaf crate.

use std::collections::BTreeSet;
use std::process::Command;

/// The hops of the chain today; any crate added later as a hop carries the mark too.
const KNOWN_HOPS: &[&str] = &[
    "apiserver-proxy",
    "kubelet-stream",
    "cri-streaming",
    "shim-exec",
];

#[test]
fn no_hop_crate_depends_on_another_hop() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let hops: BTreeSet<&str> = packages
        .iter()
        .filter(|p| p["metadata"]["execlab"]["hop"] == serde_json::Value::Bool(true))
        .filter_map(|p| p["name"].as_str())
        .collect();
    for known in KNOWN_HOPS {
        assert!(hops.contains(known), "{known} is not marked as a hop");
    }
    let mut links = Vec::new();
    for package in packages {
        let Some(name) = package["name"].as_str().filter(|n| hops.contains(n)) else {
            continue;
        };
        for dep in package["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if hops.contains(dep_name) {
                let kind = dep["kind"].as_str().unwrap_or("normal");
                links.push(format!("{name} -> {dep_name} ({kind})"));
            }
        }
    }
    assert!(links.is_empty(), "hop crates linking other hops: {links:?}");
}
