//! A hash map for snapshots that change a little at a time: a large base shared by every
//! snapshot, and a small delta of the changes since the base was built.
//!
//! A clone costs two `Arc` increments; the first change to a clone copies its delta (small),
//! and when the delta outgrows an eighth of the base the two are merged into a new base (O(n),
//! once per n/8 changes). A lookup is at most two flat hash probes, as fast as a plain map:
//! the catalog's lookups are on every refresh's path, its changes are not.

use std::hash::Hash;
use std::sync::Arc;

use rustc_hash::FxHashMap;

/// Merges happen when the delta has more entries than this and an eighth of the base.
const MIN_DELTA: usize = 1_024;

#[derive(Clone, Debug)]
pub struct LayeredMap<K, V> {
    base: Arc<FxHashMap<K, V>>,
    /// Changes since `base`: `None` removes the key.
    delta: Arc<FxHashMap<K, Option<V>>>,
    len: usize,
}

impl<K, V> Default for LayeredMap<K, V> {
    fn default() -> Self {
        Self { base: Arc::default(), delta: Arc::default(), len: 0 }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> LayeredMap<K, V> {
    #[inline]
    pub fn get(&self, key: &K) -> Option<&V> {
        if self.delta.is_empty() {
            return self.base.get(key);
        }
        match self.delta.get(key) {
            Some(v) => v.as_ref(),
            None => self.base.get(key),
        }
    }

    pub fn contains_key(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sets `key`; the old value, if it had one.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.get(&key).cloned();
        if old.is_none() {
            self.len += 1;
        }
        Arc::make_mut(&mut self.delta).insert(key, Some(value));
        self.maybe_merge();
        old
    }

    pub fn remove(&mut self, key: &K) -> Option<V> {
        let old = self.get(key).cloned()?;
        self.len -= 1;
        let delta = Arc::make_mut(&mut self.delta);
        if self.base.contains_key(key) {
            delta.insert(key.clone(), None);
        } else {
            delta.remove(key);
        }
        self.maybe_merge();
        Some(old)
    }

    /// The value of `key` to change in place (copied into the delta first), if it has one.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let value = self.get(key)?.clone();
        let delta = Arc::make_mut(&mut self.delta);
        let slot = delta.entry(key.clone()).or_insert(None);
        if slot.is_none() {
            *slot = Some(value);
        }
        slot.as_mut()
    }

    /// The value of `key` to change in place, the default inserted first when it has none.
    pub fn get_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        if self.get(&key).is_none() {
            self.insert(key.clone(), V::default());
        }
        self.get_mut(&key).expect("the key was just inserted")
    }

    /// Merges the delta into a new base when it has grown past its share.
    fn maybe_merge(&mut self) {
        if self.delta.len() > MIN_DELTA.max(self.base.len() / 8) {
            self.merge();
        }
    }

    /// Merges the delta into a new base now (after building a map at once: lookups then take
    /// one probe).
    pub fn merge(&mut self) {
        if self.delta.is_empty() {
            return;
        }
        let mut base = FxHashMap::clone(&self.base);
        for (k, v) in self.delta.iter() {
            match v {
                Some(v) => base.insert(k.clone(), v.clone()),
                None => base.remove(k),
            };
        }
        self.base = Arc::new(base);
        self.delta = Arc::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_map_across_merges_and_leaves_clones_alone() {
        let mut m: LayeredMap<u32, u32> = LayeredMap::default();
        let mut model: FxHashMap<u32, u32> = FxHashMap::default();
        let mut snapshots = Vec::new();
        for i in 0..20_000u32 {
            let k = i.wrapping_mul(2_654_435_761) % 5_000;
            match i % 5 {
                0..=2 => assert_eq!(m.insert(k, i), model.insert(k, i)),
                3 => assert_eq!(m.remove(&k), model.remove(&k)),
                _ => {
                    if let Some(v) = m.get_mut(&k) {
                        *v += 1;
                    }
                    if let Some(v) = model.get_mut(&k) {
                        *v += 1;
                    }
                }
            }
            assert_eq!(m.len(), model.len());
            if i % 3_000 == 0 {
                snapshots.push((m.clone(), model.clone()));
            }
        }
        for k in 0..5_000 {
            assert_eq!(m.get(&k), model.get(&k));
        }
        for (snapshot, then) in snapshots {
            assert_eq!(snapshot.len(), then.len());
            for k in 0..5_000 {
                assert_eq!(snapshot.get(&k), then.get(&k), "a clone keeps what it had");
            }
        }
    }
}
