//! One bounded, expiring cache by inode, with hit and miss counters.
//!
//! The core keeps five of them (attribute records, content sizes, content
//! paths, directory listings, directory parents). All share the same rule against a racing reader caching stale
//! data: a value loaded from the catalog is kept only if no change happened
//! while it was loaded (the core's `epoch` did not move). A change bumps the
//! epoch first and then drops or edits the entries it affects, both under
//! this cache's lock, so either the loader sees the new epoch or the change
//! sees the loader's entry.
//!
//! A hit only reads its own entry (`peek`): it does not move the entry to the
//! front of the recency list, which would touch two more entries' memory. A
//! `readdirplus` reply looks up a few hundred inodes scattered over a large
//! cache, and those cache misses were most of its cost. So eviction, when the
//! cache is full, takes the entry loaded longest ago rather than the one used
//! longest ago; every entry expires after the TTL anyway.

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use crate::sync::{AtomicU64, Mutex};
use lru::LruCache;

use crate::catalog::Ino;

/// Inode numbers hash with Fx: one multiply, where the default SipHash
/// was a visible part of a large `readdirplus` reply.
type Lru<V> = LruCache<Ino, Timed<V>, rustc_hash::FxBuildHasher>;

struct Timed<V> {
    at: Instant,
    value: V,
}

pub(crate) struct TtlCache<V> {
    map: Mutex<Lru<V>>,
    ttl: Duration,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<V: Clone> TtlCache<V> {
    pub(crate) fn new(entries: usize, ttl: Duration) -> TtlCache<V> {
        let cap = NonZeroUsize::new(entries.max(1)).unwrap_or(NonZeroUsize::MIN);
        TtlCache {
            map: Mutex::new(LruCache::with_hasher(cap, rustc_hash::FxBuildHasher)),
            ttl,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached value of `key`, or what `load` gives, cached unless `epoch`
    /// moved while loading.
    pub(crate) fn get_or_load<E>(
        &self,
        key: Ino,
        epoch: &AtomicU64,
        load: impl FnOnce() -> Result<V, E>,
    ) -> Result<V, E> {
        if let Some(t) = self.map.lock().peek(&key) {
            if t.at.elapsed() < self.ttl {
                self.hits.fetch_add(1, Relaxed);
                return Ok(t.value.clone());
            }
        }
        self.misses.fetch_add(1, Relaxed);
        let before = epoch.load(Relaxed);
        let value = load()?;
        let mut map = self.map.lock();
        if epoch.load(Relaxed) == before {
            map.put(
                key,
                Timed {
                    at: Instant::now(),
                    value: value.clone(),
                },
            );
        }
        Ok(value)
    }

    /// [`TtlCache::get_or_load`] for many keys: one `load` for all the
    /// misses, which returns one result per missing key, in order. A key
    /// `load` gives no result for is `None`.
    pub(crate) fn get_or_load_many<E>(
        &self,
        keys: &[Ino],
        epoch: &AtomicU64,
        load: impl FnOnce(&[Ino]) -> Vec<Result<V, E>>,
    ) -> Vec<Option<Result<V, E>>> {
        let mut out: Vec<Option<Result<V, E>>> = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        let mut slots = Vec::new();
        {
            // One clock read for the lot.
            let now = Instant::now();
            let map = self.map.lock();
            for (i, k) in keys.iter().enumerate() {
                match map.peek(k) {
                    Some(t) if now.saturating_duration_since(t.at) < self.ttl => {
                        out.push(Some(Ok(t.value.clone())))
                    }
                    _ => {
                        missing.push(*k);
                        slots.push(i);
                        out.push(None);
                    }
                }
            }
        }
        self.hits
            .fetch_add((keys.len() - missing.len()) as u64, Relaxed);
        if missing.is_empty() {
            return out;
        }
        self.misses.fetch_add(missing.len() as u64, Relaxed);
        let before = epoch.load(Relaxed);
        let loaded = load(&missing);
        let mut map = self.map.lock();
        let fresh = epoch.load(Relaxed) == before;
        let now = Instant::now();
        for ((slot, key), r) in slots.into_iter().zip(missing).zip(loaded) {
            if let (true, Ok(v)) = (fresh, &r) {
                map.put(
                    key,
                    Timed {
                        at: now,
                        value: v.clone(),
                    },
                );
            }
            out[slot] = Some(r);
        }
        out
    }

    /// The cached, unexpired values of `keys` (one lock, one clock read);
    /// `None` for the others. Counts the hits (a caller loads the others
    /// through [`TtlCache::get_or_load`], which counts the misses).
    pub(crate) fn get_many(&self, keys: &[Ino]) -> Vec<Option<V>> {
        let now = Instant::now();
        let map = self.map.lock();
        let out: Vec<Option<V>> = keys
            .iter()
            .map(|k| match map.peek(k) {
                Some(t) if now.saturating_duration_since(t.at) < self.ttl => Some(t.value.clone()),
                _ => None,
            })
            .collect();
        self.hits
            .fetch_add(out.iter().filter(|v| v.is_some()).count() as u64, Relaxed);
        out
    }

    /// Is `key` cached and not expired? (Counts neither a hit nor a miss.)
    pub(crate) fn is_fresh(&self, key: Ino) -> bool {
        self.map
            .lock()
            .peek(&key)
            .is_some_and(|t| t.at.elapsed() < self.ttl)
    }

    /// Cache a value known to be current (just written by this mount).
    pub(crate) fn put(&self, key: Ino, value: V) {
        self.map.lock().put(
            key,
            Timed {
                at: Instant::now(),
                value,
            },
        );
    }

    pub(crate) fn pop<'a>(&self, keys: impl IntoIterator<Item = &'a Ino>) {
        let mut map = self.map.lock();
        for k in keys {
            map.pop(k);
        }
    }

    /// Edit a cached value in place; `edit` returns false to drop it instead.
    /// True if a value was there and is kept.
    pub(crate) fn edit(&self, key: Ino, edit: impl FnOnce(&mut V) -> bool) -> bool {
        let mut map = self.map.lock();
        let Some(t) = map.get_mut(&key) else {
            return false;
        };
        let kept = edit(&mut t.value);
        if !kept {
            map.pop(&key);
        }
        kept
    }

    /// Every entry, expired or not (for revalidation).
    pub(crate) fn snapshot(&self) -> Vec<(Ino, V)> {
        self.map
            .lock()
            .iter()
            .map(|(k, t)| (*k, t.value.clone()))
            .collect()
    }

    /// Drop every entry.
    pub(crate) fn clear(&self) {
        self.map.lock().clear();
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Relaxed)
    }

    pub(crate) fn misses(&self) -> u64 {
        self.misses.load(Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_loads_are_not_cached() {
        let c: TtlCache<u32> = TtlCache::new(4, Duration::from_secs(60));
        let epoch = AtomicU64::new(0);
        // A change lands while the value is being loaded: not cached.
        let v: Result<u32, ()> = c.get_or_load(1, &epoch, || {
            epoch.fetch_add(1, Relaxed);
            Ok(7)
        });
        assert_eq!(v, Ok(7));
        let v: Result<u32, ()> = c.get_or_load(1, &epoch, || Ok(8));
        assert_eq!(v, Ok(8), "reloaded");
        let v: Result<u32, ()> = c.get_or_load(1, &epoch, || Ok(9));
        assert_eq!(v, Ok(8), "cached");
        assert_eq!((c.hits(), c.misses()), (1, 2));
        assert!(c.edit(1, |v| {
            *v = 10;
            true
        }));
        assert_eq!(c.get_or_load::<()>(1, &epoch, || Ok(0)), Ok(10));
        assert!(!c.edit(1, |_| false));
        assert!(!c.edit(1, |_| true), "nothing left to edit");
        assert_eq!(c.get_or_load::<()>(1, &epoch, || Ok(11)), Ok(11));
        // Many at once: hits from the cache, one load for the misses (an
        // error is not cached), results in the order asked.
        let got = c.get_or_load_many(&[2, 1, 3], &epoch, |miss| {
            assert_eq!(miss, &[2, 3]);
            vec![Ok(20), Err(())]
        });
        assert_eq!(got, vec![Some(Ok(20)), Some(Ok(11)), Some(Err(()))]);
        let got = c.get_or_load_many::<()>(&[3, 2], &epoch, |miss| {
            assert_eq!(miss, &[3]);
            vec![]
        });
        assert_eq!(got, vec![None, Some(Ok(20))]);
    }
}
