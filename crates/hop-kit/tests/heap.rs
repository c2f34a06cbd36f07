//! The allocator setting of `hop_kit::heap`, in a process of its own (it is process-wide).
//!
//! Replays what a session's output does to the heap: messages of a little over 64 KiB queued a
//! few at a time, all freed whenever the writer has caught up. Without the setting glibc trims the heap top
//! and faults the pages back in over and over; with it the pages stay.

use std::collections::VecDeque;

/// Minor page faults of this process so far (`/proc/self/stat`, field 10).
fn minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    // Fields after the command name, which ends with the last ')'.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    rest.split_whitespace()
        .nth(7)
        .and_then(|f| f.parse().ok())
        .expect("minflt")
}

#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn queued_output_messages_do_not_fault_the_heap_back_in() {
    assert!(
        hop_kit::heap::retain_freed_memory(),
        "glibc refused the setting"
    );
    const MESSAGES: usize = 4000;
    const BURST: usize = 4;
    let replay = |count: usize| {
        let mut queue: VecDeque<Vec<u8>> = VecDeque::with_capacity(BURST);
        for i in 0..count {
            // Written in full, as a copied chunk of output is.
            queue.push_back(vec![i as u8; 64 * 1024 + 1]);
            // The writer catches up now and then and empties the queue.
            if queue.len() == BURST {
                queue.clear();
            }
        }
    };
    // On a thread of its own, as on a runtime's worker: glibc gives such a thread its own heap
    // (an arena), whose top is trimmed with MADV_DONTNEED.
    let faults = std::thread::spawn(move || {
        replay(BURST * 2); // the heap's first growth is not what is measured
        let before = minor_faults();
        replay(MESSAGES);
        minor_faults() - before
    })
    .join()
    .expect("replay thread");
    // 4000 messages of 17 pages: trimming costs tens of thousands of faults (32,000 here
    // without the setting).
    assert!(
        faults < 1000,
        "{faults} page faults for {MESSAGES} queued messages: the heap was given back and faulted in again"
    );
}
