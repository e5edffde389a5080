//! A map filled on first use and shared between threads: what a build
//! learns once (a parsed ELF file, a library lookup, a file's package)
//! and asks for many times.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard};

/// Values by key, each computed once (two threads asking for the same new
/// key at once may both compute it; the first stored wins).
#[derive(Debug)]
pub struct Memo<K, V>(Mutex<HashMap<K, V>>);

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo(Mutex::new(HashMap::new()))
    }
}

impl<K: Hash + Eq, V: Clone> Memo<K, V> {
    fn map(&self) -> MutexGuard<'_, HashMap<K, V>> {
        // A panic elsewhere leaves the map as consistent as before it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value for `key`, if known.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map().get(key).cloned()
    }

    /// Record a value learnt elsewhere.
    pub fn insert(&self, key: K, value: V) {
        self.map().insert(key, value);
    }

    /// The value for `key`, computed by `f` (without the lock held) when
    /// it is not known yet.
    pub fn get_or<Q>(&self, key: &Q, f: impl FnOnce() -> V) -> V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(v) = self.get(key) {
            return v;
        }
        let v = f();
        self.map().entry(key.to_owned()).or_insert(v).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_once_per_key() {
        let m: Memo<String, usize> = Memo::default();
        let mut calls = 0;
        assert_eq!(
            m.get_or("a", || {
                calls += 1;
                1
            }),
            1
        );
        assert_eq!(
            m.get_or("a", || {
                calls += 1;
                2
            }),
            1
        );
        assert_eq!(
            m.get_or("b", || {
                calls += 1;
                3
            }),
            3
        );
        assert_eq!(calls, 2);
        m.insert("c".into(), 4);
        assert_eq!(m.get("c"), Some(4));
        assert_eq!(m.get("d"), None);
    }
}
