//! The go-runc exec path seen from outside: a `runc-process<N>` file appears in
//! `XDG_RUNTIME_DIR`, exists (holding the process JSON plus a newline) while runc runs, and is
//! removed once runc has returned. Observed with inotify on the directory and with a runc
//! wrapper (`EXECLAB_RUNC`) that copies the `--process` file when runc is invoked.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use containerd_shim_protos::api::StartRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_file_exists_while_runc_runs_and_is_removed_after() {
    let lab = Lab::new();
    let records = lab.dir.path().join("records");
    std::fs::create_dir_all(&records).expect("records dir");
    let wrapper = lab.dir.path().join("runc-wrapper");
    std::fs::write(
        &wrapper,
        r#"#!/bin/sh
prev=""
for a in "$@"; do
  if [ "$prev" = "--process" ]; then
    { echo "$a"; ls -l "$a" | cut -c1-10; cat "$a"; } > "$RUNC_RECORDS/$$"
  fi
  prev="$a"
done
exec runc "$@"
"#,
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut shim = lab
        .start_shim_with(
            "pod-spec",
            None,
            &[("EXECLAB_RUNC", &wrapper), ("RUNC_RECORDS", &records)],
        )
        .await;
    shim.run_sleeper(&lab, "ctr-spec").await;

    // Our own child; stopped by its pid below.
    let mut watcher = Command::new("inotifywait")
        .args(["-m", "-e", "create,close_write,delete", "--format", "%e %f"])
        .arg(&lab.xdg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("inotifywait");
    let mut stderr = BufReader::new(watcher.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("Watches established") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).expect("inotifywait stderr") > 0,
            "inotifywait died"
        );
    }

    let out = lab.fifo("s.out");
    let out_r = read_fifo(&out);
    let req = Shim::exec_request(
        "ctr-spec",
        "s1",
        &["echo", "spec file ok"],
        false,
        [Path::new(""), &out, Path::new("")],
    );
    shim.task.exec(ctx(), &req).await.expect("Exec");
    shim.task
        .start(
            ctx(),
            &StartRequest {
                id: "ctr-spec".into(),
                exec_id: "s1".into(),
                ..Default::default()
            },
        )
        .await
        .expect("Start exec");
    // Start has returned: the file must already be gone.
    let left: Vec<_> = std::fs::read_dir(&lab.xdg)
        .expect("xdg")
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(shim.wait("ctr-spec", "s1").await, 0);
    assert_eq!(out_r.join().expect("out"), b"spec file ok\n");

    // Stop the watcher (our child) and read what it saw.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // SAFETY: plain syscall on our own child's pid.
    unsafe { libc::kill(watcher.id() as i32, libc::SIGTERM) };
    let mut events = String::new();
    std::io::Read::read_to_string(&mut watcher.stdout.take().expect("stdout"), &mut events)
        .expect("events");
    watcher.wait().expect("reap inotifywait");
    let events: Vec<&str> = events.lines().collect();
    assert_eq!(events.len(), 3, "{events:?}");
    let name = events[0]
        .strip_prefix("CREATE ")
        .expect("first event is CREATE");
    assert!(name
        .strip_prefix("runc-process")
        .is_some_and(|n| n.parse::<u32>().is_ok()));
    assert_eq!(events[1], format!("CLOSE_WRITE,CLOSE {name}"));
    assert_eq!(events[2], format!("DELETE {name}"));

    // The wrapper saw the file while runc was being invoked: path, mode 0600, JSON + newline.
    let recorded: Vec<String> = std::fs::read_dir(&records)
        .expect("records")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).expect("record"))
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let mut parts = recorded[0].splitn(3, '\n');
    assert_eq!(
        parts.next(),
        Some(lab.xdg.join(name).to_str().expect("utf8"))
    );
    assert_eq!(parts.next(), Some("-rw-------"));
    let json = parts.next().expect("json");
    assert!(json.ends_with("}\n") && !json.ends_with("\n\n"), "{json:?}");
    let spec: serde_json::Value = serde_json::from_str(json).expect("process JSON");
    assert_eq!(spec["args"], serde_json::json!(["echo", "spec file ok"]));
    assert_eq!(spec["terminal"], false);

    shim.delete_exec("ctr-spec", "s1").await;
    shim.teardown().await;
}
