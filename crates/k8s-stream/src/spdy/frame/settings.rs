//! SETTINGS (type 4): a list of (flags, id, value). spdystream never sends it and drops it on
//! receipt; so do we, but we parse it fully so a malformed one is caught.
use bytes::BytesMut;

use super::head::encode_control;
use super::{be_u32, ControlType, FrameError, Head};

/// SETTINGS frame flag: forget persisted settings.
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// One entry: 8-bit flags (PERSIST_VALUE 0x1, PERSISTED 0x2), 24-bit id, 32-bit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    /// 1 UPLOAD_BANDWIDTH .. 7 INITIAL_WINDOW_SIZE, 8 CLIENT_CERTIFICATE_VECTOR_SIZE.
    pub id: u32,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub clear: bool,
    pub entries: Vec<Setting>,
}

impl Settings {
    pub fn load(head: &Head, payload: &[u8]) -> Result<Self, FrameError> {
        let bad = || FrameError::BadLength {
            frame: ControlType::Settings,
            len: payload.len(),
        };
        if payload.len() < 4 {
            return Err(bad());
        }
        let count = be_u32(payload, 0) as usize;
        // The count must describe exactly the rest of the payload (8 bytes per entry).
        if (payload.len() - 4) / 8 != count || (payload.len() - 4) % 8 != 0 {
            return Err(bad());
        }
        let entries = payload[4..]
            .chunks_exact(8)
            .map(|entry| {
                let word = be_u32(entry, 0);
                Setting {
                    flags: (word >> 24) as u8,
                    id: word & 0xFF_FFFF,
                    value: be_u32(entry, 4),
                }
            })
            .collect();
        Ok(Settings {
            clear: head.flags & FLAG_CLEAR_SETTINGS != 0,
            entries,
        })
    }

    pub fn encode(&self, dst: &mut BytesMut) {
        let flags = if self.clear { FLAG_CLEAR_SETTINGS } else { 0 };
        encode_control(
            ControlType::Settings,
            flags,
            4 + 8 * self.entries.len(),
            dst,
        );
        dst.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for entry in &self.entries {
            let word = (u32::from(entry.flags) << 24) | (entry.id & 0xFF_FFFF);
            dst.extend_from_slice(&word.to_be_bytes());
            dst.extend_from_slice(&entry.value.to_be_bytes());
        }
    }
}
