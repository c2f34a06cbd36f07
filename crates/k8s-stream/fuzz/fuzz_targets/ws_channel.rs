//! Placeholder for the WebSocket channel-framing fuzz target (owned by the `ws` module's
//! author); it fuzzes nothing yet but keeps the fuzz crate building.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = data;
});
