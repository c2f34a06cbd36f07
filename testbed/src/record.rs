//! `DIR/lab.json`: what a running lab is made of (the supervisor's pid, each hop's pid and
//! address), so `execlab status` and `execlab down` can find it from another process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::LabError;
use crate::hop::Hop;
use crate::layout::write_atomically;
use crate::procfs;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabRecord {
    pub dir: PathBuf,
    /// The `execlab` process (or test) that started the hops and will stop them.
    pub supervisor_pid: u32,
    /// The supervisor's start time (`/proc/PID/stat` field 22), so a recycled pid is not
    /// mistaken for it.
    #[serde(default)]
    pub supervisor_start_time: Option<u64>,
    pub node_name: String,
    pub redirect_container_streaming: bool,
    pub hops: Vec<HopRecord>,
    /// Time from `up` to ready, once ready.
    #[serde(default)]
    pub ready_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HopRecord {
    pub hop: Hop,
    pub pid: u32,
    /// Where the hop serves its API: `https://127.0.0.1:PORT`, or the CRI socket's `unix://` URL.
    #[serde(default)]
    pub address: Option<String>,
    /// cri-streaming's streaming server, `127.0.0.1:PORT`.
    #[serde(default)]
    pub stream_address: Option<SocketAddr>,
    pub log: PathBuf,
}

impl LabRecord {
    /// Whether the process that started this lab is still running.
    pub fn supervisor_alive(&self) -> bool {
        procfs::is_alive(self.supervisor_pid)
            && procfs::start_time(self.supervisor_pid) == self.supervisor_start_time
    }

    pub fn hop(&self, hop: Hop) -> Option<&HopRecord> {
        self.hops.iter().find(|h| h.hop == hop)
    }

    pub fn write(&self, path: &Path) -> Result<(), LabError> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| LabError::Record {
            path: path.to_path_buf(),
            source,
        })?;
        write_atomically(path, &json, 0o644)
    }

    /// The record, or `None` when there is none.
    pub fn read(path: &Path) -> Result<Option<Self>, LabError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| LabError::Record {
                        path: path.to_path_buf(),
                        source,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LabError::io(path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lab.json");
        let record = LabRecord {
            dir: dir.path().to_path_buf(),
            supervisor_pid: 7,
            supervisor_start_time: Some(1),
            node_name: "n".into(),
            redirect_container_streaming: true,
            hops: vec![HopRecord {
                hop: Hop::CriStreaming,
                pid: 8,
                address: Some("unix:///x/run/cri.sock".into()),
                stream_address: Some("127.0.0.1:5".parse().unwrap()),
                log: dir.path().join("logs/cri-streaming.log"),
            }],
            ready_ms: Some(900),
        };
        record.write(&path).unwrap();
        assert_eq!(LabRecord::read(&path).unwrap(), Some(record));
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .contains("\"cri-streaming\""));
        assert_eq!(LabRecord::read(&dir.path().join("none")).unwrap(), None);
    }
}
