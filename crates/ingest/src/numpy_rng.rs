//! The parts of NumPy's legacy `RandomState` that scikit-learn's stratified
//! split draws from: MT19937 seeded by `init_genrand`, bounded integers by
//! masked rejection (`random_interval`), Fisher-Yates `shuffle` from the
//! end, and `choice(replace=False)` as a prefix of a permutation.
//!
//! Matching these bit for bit is what makes our splits equal to those of
//! `train_test_split(..., random_state=seed, stratify=y)`.

use rand_mt::Mt;

pub struct LegacyRandomState {
    mt: Mt,
}

impl LegacyRandomState {
    pub fn new(seed: u32) -> LegacyRandomState {
        LegacyRandomState { mt: Mt::new(seed) }
    }

    /// Uniform integer in `0..=max` (NumPy's `random_interval`).
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for shift in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> shift;
        }
        loop {
            let value = if max <= u32::MAX as u64 {
                self.mt.next_u32() as u64 & mask
            } else {
                ((self.mt.next_u32() as u64) << 32 | self.mt.next_u32() as u64) & mask
            };
            if value <= max {
                return value;
            }
        }
    }

    /// In-place shuffle, as `RandomState.shuffle` on a 1-d array.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.interval(i as u64) as usize;
            items.swap(i, j);
        }
    }

    /// `RandomState.permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut items: Vec<usize> = (0..n).collect();
        self.shuffle(&mut items);
        items
    }

    /// `RandomState.choice(items, size, replace=False)`.
    pub fn choice_without_replacement(&mut self, items: &[usize], size: usize) -> Vec<usize> {
        let perm = self.permutation(items.len());
        perm[..size].iter().map(|&i| items[i]).collect()
    }
}
