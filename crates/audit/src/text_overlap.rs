//! Overlap of text between a held-out split and an earlier one, under
//! `ingest::text`'s normalisation, at word boundaries:
//! - `exact`: the same normalised text;
//! - `inside`: the row's text occurs inside a sentence of the earlier split
//!   (SST-2's phrases of one review: "a good film" inside "it is a good film");
//! - `contains`: the row contains a sentence of the earlier split of at least
//!   `min_words` words.
//!
//! The splits are read from their ingest files a batch at a time, and no
//! text is kept: each is a sequence of normalised tokens, and a run of
//! tokens is known by a 128-bit polynomial hash (two bases modulo 2^61 − 1
//! over each token's XXH3 hash), computed for any run from the text's
//! prefix hashes. Memory holds, per distinct text of either split, its hash
//! and the first row having it (24 bytes in a table Fx-hashed over the
//! already uniform hash: ~30-55 bytes with the table's free slots), and a
//! few bytes a held-out row; two different token runs share a hash with
//! probability ~2^-120.
//!
//! `inside` looks up every run of the earlier sentences whose length is
//! that of some held-out text; `contains` every run of the held-out rows
//! whose length is that of some earlier sentence of `min_words` words or
//! more. The cost is a row's tokens times the distinct lengths on the
//! other side — linear in the rows, not in their product.
use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use rustc_hash::FxHashMap;

/// A run of tokens' hash: one value modulo 2^61 − 1 per base. Two `u64`s,
/// not a `u128`, whose 16-byte alignment would pad a table entry to 32.
type RunHash = [u64; 2];

/// How a held-out row overlaps the earlier split; stronger kinds first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Exact,
    Inside,
    Contains,
    NearDuplicate,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Exact => "exact",
            Kind::Inside => "inside",
            Kind::Contains => "contains",
            Kind::NearDuplicate => "near_duplicate",
        }
    }
}

/// Per held-out row (split order): its strongest text overlap with
/// `earlier`, and the earlier row (index) that shows it: for `exact` and
/// `inside` the first in split order.
pub fn find(held: &Path, earlier: &Path, min_words: usize) -> Result<Vec<Option<(Kind, usize)>>> {
    // Each distinct earlier text: its first row, and whether it has words
    // enough to count when contained.
    let mut earlier_texts: FxHashMap<RunHash, (u32, bool)> = FxHashMap::default();
    let mut contained_lengths = BTreeSet::new();
    for_each_text(earlier, |row, text| {
        let long_enough = text.words >= min_words;
        earlier_texts
            .entry(text.whole())
            .or_insert((row, long_enough));
        if long_enough {
            contained_lengths.insert(text.len());
        }
    })?;
    let contained_lengths: Vec<usize> = contained_lengths.into_iter().rev().collect();

    // Each distinct held-out text: its first and last row, rows chained.
    let mut held_texts: FxHashMap<RunHash, (u32, u32)> = FxHashMap::default();
    let mut next_same: Vec<u32> = Vec::new();
    let mut held_lengths = BTreeSet::new();
    let mut found: Vec<Option<(Kind, usize)>> = Vec::new();
    for_each_text(held, |row, text| {
        found.push(None);
        next_same.push(NO_ROW);
        if text.len() == 0 {
            return;
        }
        let whole = text.whole();
        held_texts
            .entry(whole)
            .and_modify(|(_, last)| {
                next_same[*last as usize] = row;
                *last = row;
            })
            .or_insert((row, row));
        held_lengths.insert(text.len());
        if let Some(&(at, _)) = earlier_texts.get(&whole) {
            found[row as usize] = Some((Kind::Exact, at as usize));
        } else {
            found[row as usize] = contains(text, &contained_lengths, &earlier_texts);
        }
    })?;
    drop(earlier_texts);

    // Held-out texts inside earlier sentences: each text is taken out of
    // the map at the first earlier row showing it.
    let held_lengths: Vec<usize> = held_lengths.into_iter().collect();
    for_each_text(earlier, |at, text| {
        for &length in held_lengths.iter().take_while(|&&l| l <= text.len()) {
            for start in 0..=text.len() - length {
                let Some((first, _)) = held_texts.remove(&text.window(start, start + length))
                else {
                    continue;
                };
                let mut row = first;
                while row != NO_ROW {
                    let slot = &mut found[row as usize];
                    if slot.is_none_or(|(k, _)| Kind::Inside < k) {
                        *slot = Some((Kind::Inside, at as usize));
                    }
                    row = next_same[row as usize];
                }
            }
        }
    })?;
    Ok(found)
}

/// An earlier sentence of `min_words` or more inside `text`: runs ending
/// earliest first, of one end the longest.
fn contains(
    text: &Text,
    lengths_longest_first: &[usize],
    earlier_texts: &FxHashMap<RunHash, (u32, bool)>,
) -> Option<(Kind, usize)> {
    for end in 1..=text.len() {
        for &length in lengths_longest_first.iter().filter(|&&l| l <= end) {
            if let Some(&(at, true)) = earlier_texts.get(&text.window(end - length, end)) {
                return Some((Kind::Contains, at as usize));
            }
        }
    }
    None
}

const NO_ROW: u32 = u32::MAX;
const MODULUS: u64 = (1 << 61) - 1;
const BASES: [u64; 2] = [
    0x1f3a_5b7c_9d2e_4f61 % MODULUS,
    0x0b5d_3e8f_a1c7_2d93 % MODULUS,
];

fn mul_mod(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    let folded = (product as u64 & MODULUS) + (product >> 61) as u64;
    if folded >= MODULUS {
        folded - MODULUS
    } else {
        folded
    }
}

/// One text's normalised tokens as prefix hashes.
struct Text {
    /// `prefix[b][i]`: the hash of the first `i` tokens under base `b`.
    prefix: [Vec<u64>; 2],
    /// `power[b][i]`: `BASES[b]`^i.
    power: [Vec<u64>; 2],
    words: usize,
}

impl Text {
    fn new(sentence: &str) -> Text {
        let tokens = ingest::text::tokens(sentence);
        let words = ingest::text::word_count(&tokens);
        let mut text = Text {
            prefix: [vec![0], vec![0]],
            power: [vec![1], vec![1]],
            words,
        };
        for token in &tokens {
            // Never 0, so that a leading token always counts.
            let value = xxhash_rust::xxh3::xxh3_64(token.as_bytes()) % (MODULUS - 1) + 1;
            for b in 0..2 {
                let last = *text.prefix[b].last().expect("starts with 0");
                let next = mul_mod(last, BASES[b]) + value;
                text.prefix[b].push(if next >= MODULUS {
                    next - MODULUS
                } else {
                    next
                });
                let power = *text.power[b].last().expect("starts with 1");
                text.power[b].push(mul_mod(power, BASES[b]));
            }
        }
        text
    }

    /// Tokens in the text.
    fn len(&self) -> usize {
        self.prefix[0].len() - 1
    }

    /// The hash of tokens `start..end`.
    fn window(&self, start: usize, end: usize) -> RunHash {
        let part = |b: usize| {
            let shifted = mul_mod(self.prefix[b][start], self.power[b][end - start]);
            (self.prefix[b][end] + MODULUS - shifted) % MODULUS
        };
        [part(0), part(1)]
    }

    fn whole(&self) -> RunHash {
        self.window(0, self.len())
    }
}

/// Calls `f(row, text)` for every row of the ingest split at `path`.
fn for_each_text(path: &Path, mut f: impl FnMut(u32, &Text)) -> Result<()> {
    let mut row = 0u32;
    for batch in tables::splits::read_batched(path, 4096)? {
        for r in batch? {
            f(row, &Text::new(&r.sentence));
            row = row
                .checked_add(1)
                .context("more than 2^32 - 1 rows in a split")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_in(held: &[&str], earlier: &[&str]) -> Vec<Option<(Kind, usize)>> {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, texts: &[&str]| {
            let path = dir.path().join(name);
            let rows: Vec<tables::splits::LabelledRow> = texts
                .iter()
                .enumerate()
                .map(|(i, t)| tables::splits::LabelledRow {
                    row_id: i as i64,
                    sentence: t.to_string(),
                    label: 0,
                })
                .collect();
            tables::splits::write(&path, &rows, &tables::Provenance::default()).unwrap();
            path
        };
        find(
            &write("held.parquet", held),
            &write("earlier.parquet", earlier),
            3,
        )
        .unwrap()
    }

    #[test]
    fn each_kind_is_found_at_word_boundaries_strongest_first() {
        let earlier = [
            "It 's a GOOD film , really .",
            "a good film",
            "the plot is thin",
            "bad",
        ];
        let held = [
            "a good film",                          // exact (row 1), also inside row 0
            "good film",                            // inside row 0
            "ood film",                             // not at a word boundary: nothing
            "honestly , the plot is thin and dull", // contains row 2 (4 words)
            "so bad",                               // contains "bad": 1 word < 3, nothing
            "it's a good film, really.",            // exact under punctuation spacing
        ];
        assert_eq!(
            find_in(&held, &earlier),
            [
                Some((Kind::Exact, 1)),
                Some((Kind::Inside, 0)),
                None,
                Some((Kind::Contains, 2)),
                None,
                Some((Kind::Exact, 0)),
            ]
        );
    }

    #[test]
    fn repeated_held_out_texts_each_get_their_overlap() {
        assert_eq!(
            find_in(&["nice", "nice", "", "  "], &["so nice"]),
            [Some((Kind::Inside, 0)), Some((Kind::Inside, 0)), None, None]
        );
    }

    /// A review of a million characters that repeats itself (a pasted
    /// review, a spam row), on either side: found where it overlaps, at
    /// once. (An Aho-Corasick DFA, the earlier search's automaton of choice,
    /// took about an hour here: its construction is quadratic in a periodic
    /// pattern. The runs looked up here grow with the text's length times
    /// the lengths of the other side's texts.)
    #[test]
    fn a_million_character_text_is_matched_without_a_stall() {
        let long = "a long and careful review . ".repeat(36_000);
        let long = format!("{long}a good film");
        assert!(long.len() > 1_000_000);
        assert_eq!(
            find_in(
                &[long.as_str(), "a good film"],
                &["a good film", "the plot is thin"]
            ),
            [Some((Kind::Contains, 0)), Some((Kind::Exact, 0))]
        );
        assert_eq!(
            find_in(
                &["a good film", "careful review . a long"],
                &[long.as_str()]
            ),
            [Some((Kind::Inside, 0)), Some((Kind::Inside, 0))]
        );
    }
}
