//! A hierarchical bitmap: which price levels of a ladder are non-empty.
//!
//! Layer 0 has one bit per level; each bit of layer k+1 says whether the
//! matching 64-bit word of layer k is non-zero. Finding the next or
//! previous set bit from any position touches at most two words per layer,
//! so the best price after a level empties is found in O(log64 n) without
//! scanning empty levels. Storage is fixed at construction.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LevelBits {
    len: usize,
    layers: Vec<Vec<u64>>,
}

impl LevelBits {
    pub fn new(len: usize) -> LevelBits {
        assert!(len > 0, "a ladder has at least one level");
        let mut layers = Vec::new();
        let mut words = len.div_ceil(64);
        loop {
            layers.push(vec![0u64; words]);
            if words == 1 {
                break;
            }
            words = words.div_ceil(64);
        }
        LevelBits { len, layers }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.layers.last().expect("at least one layer")[0] == 0
    }

    pub fn contains(&self, index: usize) -> bool {
        index < self.len && self.layers[0][index / 64] & (1 << (index % 64)) != 0
    }

    pub fn insert(&mut self, index: usize) {
        assert!(index < self.len);
        let mut index = index;
        for layer in &mut self.layers {
            let word = &mut layer[index / 64];
            let was_empty = *word == 0;
            *word |= 1 << (index % 64);
            if !was_empty {
                return;
            }
            index /= 64;
        }
    }

    pub fn remove(&mut self, index: usize) {
        assert!(index < self.len);
        let mut index = index;
        for layer in &mut self.layers {
            let word = &mut layer[index / 64];
            *word &= !(1 << (index % 64));
            if *word != 0 {
                return;
            }
            index /= 64;
        }
    }

    /// Smallest set index `>= from`.
    pub fn next_at_or_after(&self, from: usize) -> Option<usize> {
        if from >= self.len {
            return None;
        }
        let mut level = 0;
        let mut index = from;
        loop {
            let word_index = index / 64;
            let layer = &self.layers[level];
            if word_index >= layer.len() {
                return None;
            }
            let word = layer[word_index] & (u64::MAX << (index % 64));
            if word != 0 {
                index = word_index * 64 + word.trailing_zeros() as usize;
                break;
            }
            level += 1;
            if level == self.layers.len() {
                return None;
            }
            index = word_index + 1;
        }
        while level > 0 {
            level -= 1;
            let word = self.layers[level][index];
            debug_assert!(word != 0, "summary bit without a set word");
            index = index * 64 + word.trailing_zeros() as usize;
        }
        Some(index)
    }

    /// Largest set index `<= from`.
    pub fn prev_at_or_before(&self, from: usize) -> Option<usize> {
        let mut index = from.min(self.len - 1);
        let mut level = 0;
        loop {
            let word_index = index / 64;
            let bit = index % 64;
            let mask = if bit == 63 {
                u64::MAX
            } else {
                (1u64 << (bit + 1)) - 1
            };
            let word = self.layers[level][word_index] & mask;
            if word != 0 {
                index = word_index * 64 + 63 - word.leading_zeros() as usize;
                break;
            }
            if word_index == 0 {
                return None;
            }
            level += 1;
            index = word_index - 1;
        }
        while level > 0 {
            level -= 1;
            let word = self.layers[level][index];
            debug_assert!(word != 0, "summary bit without a set word");
            index = index * 64 + 63 - word.leading_zeros() as usize;
        }
        Some(index)
    }

    /// Every summary bit agrees with the layer below it.
    pub fn check_invariants(&self) -> Result<(), String> {
        for level in 1..self.layers.len() {
            for (i, word) in self.layers[level - 1].iter().enumerate() {
                let summary = self.layers[level][i / 64] & (1 << (i % 64)) != 0;
                if summary != (*word != 0) {
                    return Err(format!("bitset summary mismatch at layer {level} word {i}"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn empty_set_finds_nothing() {
        let bits = LevelBits::new(5000);
        assert!(bits.is_empty());
        assert_eq!(bits.next_at_or_after(0), None);
        assert_eq!(bits.prev_at_or_before(4999), None);
    }

    #[test]
    fn finds_across_words_and_layers() {
        let mut bits = LevelBits::new(300_000);
        bits.insert(7);
        bits.insert(299_999);
        assert_eq!(bits.next_at_or_after(8), Some(299_999));
        assert_eq!(bits.prev_at_or_before(299_998), Some(7));
        assert_eq!(bits.next_at_or_after(7), Some(7));
        bits.remove(7);
        assert_eq!(bits.prev_at_or_before(299_998), None);
        assert_eq!(bits.prev_at_or_before(usize::MAX), Some(299_999));
        bits.check_invariants().unwrap();
    }

    proptest! {
        #[test]
        fn agrees_with_btreeset(
            len in 1usize..20_000,
            ops in proptest::collection::vec((any::<bool>(), any::<usize>()), 0..200),
            probes in proptest::collection::vec(any::<usize>(), 1..20),
        ) {
            let mut bits = LevelBits::new(len);
            let mut model = BTreeSet::new();
            for (insert, raw) in ops {
                let index = raw % len;
                if insert { bits.insert(index); model.insert(index); }
                else { bits.remove(index); model.remove(&index); }
                bits.check_invariants().unwrap();
            }
            for raw in probes {
                let from = raw % (len + 10);
                prop_assert_eq!(bits.next_at_or_after(from), model.range(from..).next().copied());
                prop_assert_eq!(bits.prev_at_or_before(from), model.range(..=from).next_back().copied());
            }
            prop_assert_eq!(bits.is_empty(), model.is_empty());
        }
    }
}
