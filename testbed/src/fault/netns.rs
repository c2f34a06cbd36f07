//! Network namespaces (placeholder).
use super::FaultError;
pub fn run_outer(_name: &str) -> Result<u8, FaultError> {
    Err(FaultError::Setup("not yet".into()))
}
