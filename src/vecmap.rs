//! A map kept as a vector sorted by key, for the tables a node keeps (members, suspicions,
//! streams, connections: tens to a few thousand entries). Lookups are binary searches; an
//! insert or removal moves the tail. On a router this is a fraction of the code of std's
//! `HashMap` (hashbrown and SipHash, instantiated per key type) or `BTreeMap`, and iteration is
//! in key order, so runs replay the same way.

use std::borrow::Borrow;
use std::ops::Index;

#[derive(Debug, Clone)]
pub struct VecMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for VecMap<K, V> {
    fn default() -> Self {
        VecMap(Vec::new())
    }
}

impl<K: Ord, V> VecMap<K, V> {
    pub fn new() -> Self {
        VecMap(Vec::new())
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &mut self.0[i].1)
    }

    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        self.0.retain_mut(|(k, v)| keep(k, v));
    }
}

/// Like `HashMap`'s: panics on a missing key, for entries that are always there.
impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> Index<&Q> for VecMap<K, V> {
    type Output = V;

    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("key in map")
    }
}

impl<K, V> VecMap<K, V> {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.0.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.0.iter_mut().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_map_in_key_order() {
        let mut m: VecMap<String, u32> = VecMap::new();
        assert!(m.is_empty());
        for (i, k) in ["c", "a", "d", "b"].iter().enumerate() {
            assert_eq!(m.insert(k.to_string(), i as u32), None);
        }
        assert_eq!(m.insert("a".into(), 10), Some(1));
        assert_eq!(m.len(), 4);
        assert_eq!(m.get("a"), Some(&10));
        assert_eq!(m.get("e"), None);
        assert!(m.contains_key("d"));
        *m.get_mut("d").unwrap() += 1;
        assert_eq!(
            m.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
            [("a", 10), ("b", 3), ("c", 0), ("d", 3)]
        );
        assert_eq!(m.remove("b"), Some(3));
        assert_eq!(m.remove("b"), None);
        m.retain(|k, v| {
            *v += 1;
            k != "c"
        });
        assert_eq!(m.keys().cloned().collect::<Vec<_>>(), ["a", "d"]);
        assert_eq!(m.values().copied().collect::<Vec<_>>(), [11, 4]);
        m.values_mut().for_each(|v| *v = 0);
        assert_eq!(m.values().sum::<u32>(), 0);
        m.clear();
        assert!(m.is_empty());
    }

    #[test]
    fn agrees_with_a_btreemap_on_a_random_sequence() {
        let mut ours: VecMap<u16, u32> = VecMap::new();
        let mut theirs = std::collections::BTreeMap::new();
        let mut x: u32 = 0x2545_f491;
        for step in 0..5000u32 {
            // xorshift: a fixed pseudo-random sequence of keys and operations.
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let key = (x % 97) as u16;
            if x & 0x300 == 0 {
                assert_eq!(ours.remove(&key), theirs.remove(&key));
            } else {
                assert_eq!(ours.insert(key, step), theirs.insert(key, step));
            }
            assert_eq!(ours.get(&key), theirs.get(&key));
        }
        assert!(ours.iter().eq(theirs.iter()));
    }
}
