//! Seed 003 (placeholder while the network part is built).
use crate::fault::{FaultError, FaultReport, FaultRun};
pub fn run(_run: &FaultRun) -> Result<FaultReport, FaultError> {
    Err(FaultError::Setup("not yet".into()))
}
