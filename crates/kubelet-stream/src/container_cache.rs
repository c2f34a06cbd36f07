//! The running container each exec/attach target last resolved to.
//!
//! Upstream's kubelet asks the runtime for the pod's containers on every exec (`findContainer`
//! lists them through `GetPods`); here that is one ListContainers, a CRI round trip on each
//! session's critical path. The id it finds is remembered per pod (by UID, so a pod made anew
//! under the same name never inherits its predecessor's container) and container name, and is
//! used directly the next time. An entry is only a guess: when the runtime refuses Exec or
//! Attach for it (the container exited or was replaced) the caller drops it and looks up
//! afresh, so the client sees what a fresh lookup gives.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Entries kept at most; past it the cache starts over (pods come and go, names are many).
const MAX_ENTRIES: usize = 4096;

/// Which container of which pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerKey {
    pub pod_uid: String,
    pub container: String,
}

/// Shared by every request of one kubelet.
#[derive(Debug, Clone, Default)]
pub struct ContainerIdCache {
    ids: Arc<Mutex<HashMap<ContainerKey, String>>>,
}

impl ContainerIdCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<ContainerKey, String>> {
        // Every update is a single insert or remove: a poisoned map is still consistent.
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id `key` last resolved to, if any.
    pub fn get(&self, key: &ContainerKey) -> Option<String> {
        self.lock().get(key).cloned()
    }

    pub fn remember(&self, key: ContainerKey, id: String) {
        let mut ids = self.lock();
        if ids.len() >= MAX_ENTRIES && !ids.contains_key(&key) {
            ids.clear();
        }
        ids.insert(key, id);
    }

    /// Drops `key`'s entry if it still names `id` (a concurrent lookup may have replaced it).
    pub fn forget(&self, key: &ContainerKey, id: &str) {
        let mut ids = self.lock();
        if ids.get(key).is_some_and(|known| known == id) {
            ids.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(uid: &str) -> ContainerKey {
        ContainerKey {
            pod_uid: uid.into(),
            container: "app".into(),
        }
    }

    #[test]
    fn forgetting_a_stale_id_keeps_a_newer_one() {
        let cache = ContainerIdCache::default();
        cache.remember(key("u1"), "old".into());
        cache.remember(key("u1"), "new".into());
        cache.forget(&key("u1"), "old");
        assert_eq!(cache.get(&key("u1")).as_deref(), Some("new"));
        cache.forget(&key("u1"), "new");
        assert_eq!(cache.get(&key("u1")), None);
    }

    #[test]
    fn pods_are_told_apart_by_uid() {
        let cache = ContainerIdCache::default();
        cache.remember(key("u1"), "c1".into());
        assert_eq!(cache.get(&key("u2")), None);
    }

    #[test]
    fn size_is_bounded() {
        let cache = ContainerIdCache::default();
        for i in 0..MAX_ENTRIES + 10 {
            cache.remember(key(&i.to_string()), "c".into());
        }
        assert!(cache.lock().len() <= MAX_ENTRIES);
    }
}
