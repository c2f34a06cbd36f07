//! Many sessions at once through a whole lab (issue #6), with real kubectl 1.32:
//! - 100 idle sessions (`kubectl exec -i … -- sh -c 'echo ready; exec cat'`, stdin held open):
//!   every hop's RSS before and with them open, printed per session (a measurement for the
//!   notes, not asserted);
//! - 100 concurrent `kubectl exec … -- echo <i>`: each succeeds with its own output.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{client_command, dump_logs, start_lab, stop_lab, tokio_runtime, HeldSession};
use execlab::bench::measure::{rss_per_hop, IdleSessions};
use execlab::bench::paths::LabTarget;
use execlab::fault::kubectl::{run_bounded, Client};
use execlab::{Hop, LabConfig};

const SESSIONS: usize = 100;
/// Two cores start 100 kubectl processes (Go start-up, discovery, TLS) and 100 runc execs.
const ALL_DONE: Duration = Duration::from_secs(90);

fn print_rss(
    before: &BTreeMap<Hop, u64>,
    open: &BTreeMap<Hop, u64>,
    per_session: &BTreeMap<Hop, f64>,
) {
    eprintln!(
        "RSS with {SESSIONS} idle kubectl exec sessions (KiB): hop, before, open, per session"
    );
    for (hop, per) in per_session {
        eprintln!(
            "  {:<16} {:>8} {:>8} {:>8.1}",
            hop.name(),
            before.get(hop).copied().unwrap_or(0),
            open.get(hop).copied().unwrap_or(0),
            per
        );
    }
}

#[test]
fn a_hundred_sessions_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let lab = start_lab(LabConfig::new(tmp.path().join("lab")));
    let dir = lab.dir().to_path_buf();
    let kubeconfig = lab.kubeconfig();
    let pids = tokio_runtime()
        .block_on(LabTarget::open(&dir, "runc"))
        .expect("the lab's record")
        .hop_pids();

    // One exec first, so what every hop sets up once is not charged to the sessions.
    let mut warm = client_command(Client::Ws132, &kubeconfig);
    warm.args(["exec", "web", "-c", "app", "--", "true"]);
    let warm = common::run_bounded(&mut warm, ALL_DONE);
    assert!(warm.status.success(), "{warm:?}\n{}", dump_logs(&dir));
    std::thread::sleep(Duration::from_millis(500));

    let rss_before = rss_per_hop(&pids);
    let started = Instant::now();
    let held: Vec<HeldSession> = (0..SESSIONS)
        .map(|_| HeldSession::start(Client::Ws132, &kubeconfig))
        .collect();
    let deadline = started + ALL_DONE;
    let ready = held.iter().filter(|s| s.wait_ready(deadline)).count();
    let open_all = started.elapsed();
    // Let allocations settle before reading the RSS.
    std::thread::sleep(Duration::from_millis(500));
    let idle = IdleSessions {
        sessions: SESSIONS,
        setup: Vec::new(),
        open_all,
        rss_before,
        rss_open: rss_per_hop(&pids),
    };
    let per_session = idle.rss_per_session();
    print_rss(&idle.rss_before, &idle.rss_open, &per_session);
    eprintln!("{ready} of {SESSIONS} idle sessions open in {open_all:?}");
    let ended: Vec<_> = held
        .into_iter()
        .map(|mut s| {
            s.send("bye\n");
            s.finish(ALL_DONE)
        })
        .collect();
    let failed: Vec<_> = ended
        .iter()
        .filter(|o| !o.status.success() || o.stdout != b"ready\nbye\n")
        .collect();
    assert!(
        ready == SESSIONS && failed.is_empty(),
        "{ready} of {SESSIONS} ready; failed: {failed:?}\n{}",
        dump_logs(&dir)
    );

    // 100 execs started together, each with its own output.
    let started = Instant::now();
    let runs: Vec<_> = (0..SESSIONS)
        .map(|i| {
            let kubeconfig = kubeconfig.clone();
            std::thread::spawn(move || {
                let mut command = client_command(Client::Ws132, &kubeconfig);
                command.args(["exec", "web", "-c", "app", "--", "echo", &i.to_string()]);
                run_bounded(&mut command, ALL_DONE).expect("kubectl runs")
            })
        })
        .collect();
    let outputs: Vec<_> = runs
        .into_iter()
        .map(|t| t.join().expect("kubectl thread"))
        .collect();
    let took = started.elapsed();
    eprintln!("{SESSIONS} concurrent kubectl exec done in {took:?}");
    let wrong: Vec<_> = outputs
        .iter()
        .enumerate()
        .filter(|(i, o)| o.exit_code != Some(0) || o.stdout != format!("{i}\n"))
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}\n{}", dump_logs(&dir));
    stop_lab(lab);
}
