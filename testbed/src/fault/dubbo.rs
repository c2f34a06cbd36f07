//! The unrelated application of seed 003: a Dubbo provider's port (20880) that a NodePort
//! forwards to. Sent text, a Dubbo 2.x port answers as its telnet console does (checked against
//! apache/dubbo `TelnetHandlerAdapter`: an unknown command gets `Unsupported command: <cmd>`, a
//! CRLF and the `dubbo>` prompt; an empty line gets the prompt alone), and keeps the connection
//! open. So an HTTP request line `POST /exec/TOKEN HTTP/1.1` is answered
//! `Unsupported command: POST\r\ndubbo>`.
//!
//! [`telnet_reply`] is the sans-IO part; [`DubboServer`] serves it on a thread that has entered
//! the application's network namespace, and records what it was sent.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::FaultError;

/// Dubbo's default telnet prompt.
pub const PROMPT: &str = "dubbo>";

/// The telnet console's answer to one line.
pub fn telnet_reply(line: &str) -> String {
    let line = line.trim();
    match line.split_whitespace().next() {
        None => PROMPT.to_owned(),
        Some(command) => format!("Unsupported command: {command}\r\n{PROMPT}"),
    }
}

/// What one connection sent: its peer and its first lines (an HTTP request head).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Received {
    pub peer: String,
    pub lines: Vec<String>,
}

/// A Dubbo-like port served from a thread inside another network namespace.
pub struct DubboServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Received>>>,
    thread: Option<JoinHandle<()>>,
}

impl DubboServer {
    /// Serves on `addr` inside the network namespace at `netns_path` (`/run/netns/NAME`).
    pub fn start(netns_path: &str, addr: SocketAddr) -> Result<Self, FaultError> {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let netns = std::fs::File::open(netns_path)
            .map_err(|e| FaultError::io(format!("opening {netns_path}"), e))?;
        let (thread_stop, thread_received) = (stop.clone(), received.clone());
        let thread = std::thread::spawn(move || {
            // Only this thread enters the namespace; its sockets are made there.
            let listener = nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| format!("setns: {e}"))
                .and_then(|()| TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}")))
                .and_then(|l| {
                    l.set_nonblocking(true)
                        .map(|()| l)
                        .map_err(|e| e.to_string())
                });
            let listener = match listener {
                Ok(listener) => {
                    let _ = ready_tx.send(Ok(()));
                    listener
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            serve(&listener, &thread_stop, &thread_received);
        });
        match ready_rx.recv_timeout(Duration::from_secs(5)) {
            Ok(Ok(())) => Ok(Self {
                addr,
                stop,
                received,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(FaultError::Setup(format!("the app server: {e}"))),
            Err(_) => Err(FaultError::Setup("the app server did not start".into())),
        }
    }

    /// What it was sent so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Drop for DubboServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool, received: &Arc<Mutex<Vec<Received>>>) {
    let mut connections = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, peer)) => {
                let received = received.clone();
                connections.push(std::thread::spawn(move || {
                    converse(stream, peer, &received);
                }));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

/// Answers each line until the peer closes (bounded: a telnet console would wait forever).
fn converse(stream: TcpStream, peer: SocketAddr, received: &Mutex<Vec<Received>>) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let index = match received.lock() {
        Ok(mut all) => {
            all.push(Received {
                peer: peer.to_string(),
                lines: Vec::new(),
            });
            all.len() - 1
        }
        Err(_) => return,
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Ok(mut all) = received.lock() {
                    if let Some(entry) = all.get_mut(index) {
                        if entry.lines.len() < 32 {
                            entry.lines.push(line.trim_end().to_owned());
                        }
                    }
                }
                if writer.write_all(telnet_reply(&line).as_bytes()).is_err() {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_request_line_is_an_unsupported_command() {
        assert_eq!(
            telnet_reply("POST /exec/AbCdEfGh HTTP/1.1\r\n"),
            "Unsupported command: POST\r\ndubbo>"
        );
        assert_eq!(telnet_reply("\r\n"), "dubbo>");
    }
}
