//! A bounded memory of keys already seen, by count and by age.

use crate::Millis;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Remembers keys for `max_age` ms, at most `capacity` of them (the oldest go first).
///
/// Used for Slack envelopes (`event_id`) and GitHub threads (`(id, updated_at)`). Memory is
/// bounded whatever the peer sends.
///
/// ```
/// use openflume_proto::{DedupCache, Millis};
/// let mut seen = DedupCache::new(2, 60_000);
/// assert!(seen.insert("a", Millis(0)));       // new
/// assert!(!seen.insert("a", Millis(10)));     // duplicate
/// seen.insert("b", Millis(20));
/// seen.insert("c", Millis(30));               // evicts "a": capacity 2
/// assert!(seen.insert("a", Millis(40)));
/// assert!(seen.insert("b", Millis(70_000)));  // "b" aged out
/// ```
#[derive(Clone, Debug)]
pub struct DedupCache<K: Hash + Eq + Clone> {
    capacity: usize,
    max_age: u64,
    inserted_at: HashMap<K, Millis>,
    order: VecDeque<(K, Millis)>,
}

impl<K: Hash + Eq + Clone> DedupCache<K> {
    /// A cache holding at most `capacity` keys (at least 1), each for `max_age_ms`.
    ///
    /// ```
    /// use openflume_proto::{DedupCache, Millis};
    /// let mut seen = DedupCache::new(0, 60_000); // a capacity of 0 is raised to 1
    /// seen.insert("a", Millis(0));
    /// seen.insert("b", Millis(0));
    /// assert_eq!(seen.len(), 1);
    /// ```
    pub fn new(capacity: usize, max_age_ms: u64) -> Self {
        DedupCache {
            capacity: capacity.max(1),
            max_age: max_age_ms,
            inserted_at: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Records `key`; true if it was not already remembered.
    ///
    /// ```
    /// use openflume_proto::{DedupCache, Millis};
    /// let mut seen = DedupCache::new(100, 1_000);
    /// assert!(seen.insert(("thread-1", "2024-01-01"), Millis(0)));
    /// assert!(!seen.insert(("thread-1", "2024-01-01"), Millis(500)));
    /// assert!(seen.insert(("thread-1", "2024-01-02"), Millis(500))); // updated: a new key
    /// ```
    pub fn insert(&mut self, key: K, now: Millis) -> bool {
        self.expire(now);
        if self.inserted_at.contains_key(&key) {
            return false;
        }
        while self.order.len() >= self.capacity {
            self.evict_oldest();
        }
        self.inserted_at.insert(key.clone(), now);
        self.order.push_back((key, now));
        true
    }

    /// True if `key` is remembered (and not too old) at `now`.
    ///
    /// ```
    /// use openflume_proto::{DedupCache, Millis};
    /// let mut seen = DedupCache::new(100, 1_000);
    /// seen.insert("Ev01", Millis(0));
    /// assert!(seen.contains(&"Ev01", Millis(999)));
    /// assert!(!seen.contains(&"Ev01", Millis(1_000))); // aged out
    /// assert!(!seen.contains(&"Ev02", Millis(0)));
    /// ```
    pub fn contains(&self, key: &K, now: Millis) -> bool {
        self.inserted_at
            .get(key)
            .is_some_and(|&at| now - at < self.max_age)
    }

    /// Forgets `key`.
    ///
    /// ```
    /// use openflume_proto::{DedupCache, Millis};
    /// let mut seen = DedupCache::new(100, 60_000);
    /// seen.insert("Ev01", Millis(0));
    /// seen.remove(&"Ev01");
    /// assert!(seen.insert("Ev01", Millis(1))); // new again
    /// ```
    pub fn remove(&mut self, key: &K) {
        if self.inserted_at.remove(key).is_some() {
            self.order.retain(|(k, _)| k != key);
        }
    }

    /// Number of keys remembered.
    ///
    /// ```
    /// use openflume_proto::{DedupCache, Millis};
    /// let mut seen = DedupCache::new(2, 60_000);
    /// for key in ["a", "b", "c"] {
    ///     seen.insert(key, Millis(0));
    /// }
    /// assert_eq!(seen.len(), 2); // bounded by the capacity
    /// ```
    pub fn len(&self) -> usize {
        self.inserted_at.len()
    }

    /// The remembered keys, oldest first (ages are not checked).
    ///
    /// ```
    /// use openflume_proto::{DedupCache, Millis};
    /// let mut seen = DedupCache::new(2, 60_000);
    /// for key in ["a", "b", "c"] {
    ///     seen.insert(key, Millis(0));
    /// }
    /// assert_eq!(seen.keys().copied().collect::<Vec<_>>(), ["b", "c"]);
    /// ```
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.order
            .iter()
            .filter(|(key, at)| self.inserted_at.get(key) == Some(at))
            .map(|(key, _)| key)
    }

    /// True when nothing is remembered.
    ///
    /// ```
    /// use openflume_proto::{DedupCache, Millis};
    /// let mut seen = DedupCache::new(10, 60_000);
    /// assert!(seen.is_empty());
    /// seen.insert(7_u64, Millis(0));
    /// assert!(!seen.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.inserted_at.is_empty()
    }

    fn expire(&mut self, now: Millis) {
        while self
            .order
            .front()
            .is_some_and(|&(_, at)| now - at >= self.max_age)
        {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((key, _)) = self.order.pop_front() {
            self.inserted_at.remove(&key);
        }
    }
}
