//! Single-use tokens for streaming requests: CRI `Exec`/`Attach` park the request here and hand
//! out `http://<stream addr>/exec/<token>`; the streaming server consumes the token once.
//!
//! Behaviour checked against kubelet `cri/streaming/request_cache.go`: 6 crypto-random bytes in
//! base64 RawURLEncoding (8 characters), TTL 1 minute, at most 1000 tokens in flight, expired
//! tokens collected on every insert, and `consume` removes a token even when it has expired.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Upstream's cache TTL.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(60);
/// Upstream's in-flight limit.
pub const MAX_IN_FLIGHT: usize = 1000;
/// Random bytes per token: 6 bytes are exactly 8 base64 characters.
const TOKEN_BYTES: usize = 6;
/// Attempts at drawing a token not already in use.
const TOKEN_TRIES: usize = 10;

/// Where "now" comes from; tests inject a manual clock.
pub trait Clock: Send + Sync {
    fn now(&self) -> Instant;
}

/// The monotonic system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// Why no token could be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenCacheError {
    /// Upstream's text, sent as gRPC ResourceExhausted.
    #[error("maximum number of in-flight requests exceeded")]
    TooManyInFlight,
    #[error("failed to generate unique token")]
    NoUniqueToken,
}

struct Entry<T> {
    value: T,
    expires: Instant,
}

struct Inner<T> {
    entries: HashMap<String, Entry<T>>,
    /// Tokens in insertion order (= expiry order, the TTL being fixed); may still name tokens
    /// that were consumed meanwhile, which GC skips.
    by_age: VecDeque<(Instant, String)>,
}

/// Token → parked request, single use, bounded, with expiry.
pub struct TokenCache<T> {
    inner: Mutex<Inner<T>>,
    ttl: Duration,
    max_in_flight: usize,
    clock: Arc<dyn Clock>,
}

impl<T> TokenCache<T> {
    /// Upstream's settings on the system clock.
    pub fn new() -> Self {
        Self::with_settings(DEFAULT_TOKEN_TTL, MAX_IN_FLIGHT, Arc::new(SystemClock))
    }

    pub fn with_settings(ttl: Duration, max_in_flight: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                by_age: VecDeque::new(),
            }),
            ttl,
            max_in_flight,
            clock,
        }
    }

    /// Parks `value` and returns its token.
    pub fn insert(&self, value: T) -> Result<String, TokenCacheError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.gc(now);
        if inner.entries.len() >= self.max_in_flight {
            return Err(TokenCacheError::TooManyInFlight);
        }
        let token = (0..TOKEN_TRIES)
            .map(|_| new_token())
            .find(|t| !inner.entries.contains_key(t))
            .ok_or(TokenCacheError::NoUniqueToken)?;
        let expires = now + self.ttl;
        inner.by_age.push_back((expires, token.clone()));
        inner
            .entries
            .insert(token.clone(), Entry { value, expires });
        Ok(token)
    }

    /// Takes the request parked under `token`. The token is gone afterwards whether it was
    /// live or expired; `None` for unknown, used or expired tokens.
    pub fn consume(&self, token: &str) -> Option<T> {
        let now = self.clock.now();
        let entry = self.lock().entries.remove(token)?;
        (now <= entry.expires).then_some(entry.value)
    }

    /// Tokens currently held (live or expired but not yet collected).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        // A panic while holding the lock cannot leave the maps inconsistent (no partial
        // updates), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> Default for TokenCache<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Inner<T> {
    fn gc(&mut self, now: Instant) {
        while let Some((expires, token)) = self.by_age.front() {
            let consumed = self
                .entries
                .get(token)
                .is_none_or(|e| e.expires != *expires);
            if !consumed && now <= *expires {
                break;
            }
            if !consumed {
                self.entries.remove(token);
            }
            self.by_age.pop_front();
        }
    }
}

fn new_token() -> String {
    let bytes: [u8; TOKEN_BYTES] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock that moves only when told to.
    struct ManualClock(Mutex<Instant>);

    impl ManualClock {
        fn advance(&self, d: Duration) {
            let mut now = self.0.lock().expect("clock");
            *now += d;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().expect("clock")
        }
    }

    fn cache(max: usize) -> (TokenCache<u32>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        let cache = TokenCache::with_settings(DEFAULT_TOKEN_TTL, max, clock.clone());
        (cache, clock)
    }

    #[test]
    fn tokens_are_eight_url_safe_characters() {
        let (cache, _) = cache(MAX_IN_FLIGHT);
        for i in 0..200 {
            let token = cache.insert(i).expect("insert");
            assert_eq!(token.len(), 8);
            assert!(token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
    }

    #[test]
    fn a_token_is_single_use() {
        let (cache, _) = cache(MAX_IN_FLIGHT);
        let token = cache.insert(7).expect("insert");
        assert_eq!(cache.consume(&token), Some(7));
        assert_eq!(cache.consume(&token), None);
        assert_eq!(cache.consume("made-up!"), None);
    }

    #[test]
    fn an_expired_token_is_refused_and_removed() {
        let (cache, clock) = cache(MAX_IN_FLIGHT);
        let token = cache.insert(1).expect("insert");
        clock.advance(DEFAULT_TOKEN_TTL);
        let live = cache.insert(2).expect("insert");
        assert_eq!(
            cache.consume(&live),
            Some(2),
            "exactly TTL old is still valid"
        );
        let token2 = cache.insert(3).expect("insert");
        clock.advance(Duration::from_millis(1));
        assert_eq!(cache.consume(&token), None);
        assert_eq!(cache.consume(&token2), Some(3));
        assert!(cache.is_empty());
    }

    #[test]
    fn in_flight_limit_and_gc_on_insert() {
        let (cache, clock) = cache(3);
        for i in 0..3 {
            cache.insert(i).expect("insert");
        }
        assert_eq!(cache.insert(9), Err(TokenCacheError::TooManyInFlight));
        assert_eq!(
            TokenCacheError::TooManyInFlight.to_string(),
            "maximum number of in-flight requests exceeded"
        );
        clock.advance(DEFAULT_TOKEN_TTL + Duration::from_secs(1));
        // The insert collects the three expired tokens first.
        let token = cache.insert(10).expect("insert after gc");
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.consume(&token), Some(10));
    }

    #[test]
    fn consumed_tokens_free_their_slot_at_once() {
        let (cache, _) = cache(2);
        let a = cache.insert(1).expect("insert");
        cache.insert(2).expect("insert");
        assert!(cache.consume(&a).is_some());
        cache.insert(3).expect("slot freed by consume");
        assert_eq!(cache.insert(4), Err(TokenCacheError::TooManyInFlight));
    }
}
