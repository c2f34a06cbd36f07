//! Client certificate chains a server has verified, remembered until the leaf expires.
//!
//! A resumed TLS session brings back the chain of its first handshake, and a full handshake's
//! chain is checked during the handshake (to sign-check it) and judged again afterwards. Go's
//! crypto/tls verifies a chain once: a resumed session restores its verified chains and is only
//! refused once the leaf has expired (`handshake_server_tls13.go`, `checkForResumption`). Here
//! a chain that verified is remembered, so it is not verified again (an ECDSA verification,
//! ~40 µs, on every exec's connection to the kubelet). A chain that failed is not remembered:
//! failures are rare and re-judged each time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rustls::pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};

/// At most this many chains are kept; when full, expired ones go, and if none has, all.
const CAPACITY: usize = 1024;

/// The chains (leaf first) that verified, by SHA-256 of the chain, with when each leaf stops
/// being valid.
#[derive(Debug, Default)]
pub struct VerifiedChains {
    expiry: Mutex<HashMap<[u8; 32], UnixTime>>,
    verifications: AtomicU64,
}

/// SHA-256 over each certificate's length and DER: two chains share it only if they are equal.
fn chain_digest(chain: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for cert in chain {
        hash.update((cert.len() as u64).to_be_bytes());
        hash.update(cert.as_ref());
    }
    hash.finalize().into()
}

impl VerifiedChains {
    /// True if `chain` verified before and its leaf is still valid at `now`.
    pub fn contains(&self, chain: &[CertificateDer<'_>], now: UnixTime) -> bool {
        let key = chain_digest(chain);
        let expiry = self.expiry.lock().unwrap_or_else(|e| e.into_inner());
        expiry
            .get(&key)
            .is_some_and(|not_after| now.as_secs() <= not_after.as_secs())
    }

    /// Runs `verify` unless `chain` is known to be good; remembers it when it verifies.
    pub fn verify<E>(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
        verify: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), E> {
        if self.contains(chain, now) {
            return Ok(());
        }
        self.verifications.fetch_add(1, Ordering::Relaxed);
        verify()?;
        if let Some(not_after) = chain.first().and_then(|leaf| leaf_not_after(leaf)) {
            self.remember(chain, not_after, now);
        }
        Ok(())
    }

    /// How many times a chain was verified rather than found here.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    fn remember(&self, chain: &[CertificateDer<'_>], not_after: UnixTime, now: UnixTime) {
        let key = chain_digest(chain);
        let mut expiry = self.expiry.lock().unwrap_or_else(|e| e.into_inner());
        if expiry.len() >= CAPACITY {
            expiry.retain(|_, t| now.as_secs() <= t.as_secs());
            if expiry.len() >= CAPACITY {
                expiry.clear();
            }
        }
        expiry.insert(key, not_after);
    }
}

/// The leaf's NotAfter, `None` when it does not parse (then it is never remembered).
fn leaf_not_after(leaf: &CertificateDer<'_>) -> Option<UnixTime> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).ok()?;
    let secs = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        secs,
    )))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_pki::TestCa;

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    fn chain() -> Vec<CertificateDer<'static>> {
        let ca = TestCa::new("ca").expect("ca");
        let client = ca.issue_client("jane", None).expect("client");
        vec![client.pem().expect("pem").cert_chain[0].clone()]
    }

    #[test]
    fn a_good_chain_is_verified_once_until_its_leaf_expires() {
        let chains = VerifiedChains::default();
        let chain = chain();
        let now = UnixTime::now();
        let not_after = leaf_not_after(&chain[0]).expect("validity");
        for _ in 0..3 {
            chains
                .verify(&chain, now, || Ok::<_, ()>(()))
                .expect("good");
        }
        assert_eq!(chains.verifications(), 1);
        assert!(chains.contains(&chain, at(not_after.as_secs())));
        assert!(!chains.contains(&chain, at(not_after.as_secs() + 1)));
        chains
            .verify(&chain, at(not_after.as_secs() + 1), || Ok::<_, ()>(()))
            .expect("good");
        assert_eq!(
            chains.verifications(),
            2,
            "an expired leaf is verified again"
        );
    }

    #[test]
    fn a_chain_that_failed_is_judged_again() {
        let chains = VerifiedChains::default();
        let chain = chain();
        let now = UnixTime::now();
        assert_eq!(chains.verify(&chain, now, || Err("bad")), Err("bad"));
        assert_eq!(chains.verify(&chain, now, || Err("bad")), Err("bad"));
        assert_eq!(chains.verifications(), 2);
        assert!(!chains.contains(&chain, now));
    }

    #[test]
    fn another_chain_for_the_same_leaf_is_not_taken_for_it() {
        let chains = VerifiedChains::default();
        let chain = chain();
        let now = UnixTime::now();
        chains
            .verify(&chain, now, || Ok::<_, ()>(()))
            .expect("good");
        let mut longer = chain.clone();
        longer.push(chain[0].clone());
        assert!(!chains.contains(&longer, now));
    }
}
