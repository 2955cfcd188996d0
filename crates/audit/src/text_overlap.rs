//! Overlap of text between a held-out split and an earlier one, under
//! `ingest::text`'s normalisation, at word boundaries:
//! - `exact`: the same normalised text;
//! - `inside`: the row's text occurs inside a sentence of the earlier split
//!   (SST-2's phrases of one review: "a good film" inside "it is a good film");
//! - `contains`: the row contains a sentence of the earlier split of at least
//!   `min_words` words.
//!
//! Containment is one Aho-Corasick pass each way (all patterns at once), so
//! its cost grows with the text, not with the product of the split sizes.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use anyhow::Result;

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

/// A split's sentences, normalised once.
pub struct Normalised {
    /// ` tok tok … ` (space-padded, so a match is a run of whole tokens);
    /// a blank sentence is `None`.
    padded: Vec<Option<String>>,
    words: Vec<usize>,
}

impl Normalised {
    pub fn new<'a>(sentences: impl Iterator<Item = &'a str>) -> Normalised {
        let (mut padded, mut words) = (Vec::new(), Vec::new());
        for sentence in sentences {
            let tokens = ingest::text::tokens(sentence);
            words.push(ingest::text::word_count(&tokens));
            padded.push((!tokens.is_empty()).then(|| format!(" {} ", tokens.join(" "))));
        }
        Normalised { padded, words }
    }
}

/// Per held-out row: its strongest text overlap with `earlier`, and the
/// earlier row (index) that shows it (the first in split order).
pub fn find(
    held: &Normalised,
    earlier: &Normalised,
    min_words: usize,
) -> Result<Vec<Option<(Kind, usize)>>> {
    let mut found: Vec<Option<(Kind, usize)>> = vec![None; held.padded.len()];
    let mut note = |row: usize, kind: Kind, at: usize| {
        if found[row].is_none_or(|(k, _)| kind < k) {
            found[row] = Some((kind, at));
        }
    };

    let mut first_earlier: HashMap<&str, usize> = HashMap::new();
    for (i, text) in earlier.padded.iter().enumerate() {
        if let Some(text) = text {
            first_earlier.entry(text).or_insert(i);
        }
    }
    for (row, text) in held.padded.iter().enumerate() {
        if let Some(&at) = text.as_deref().and_then(|t| first_earlier.get(t)) {
            note(row, Kind::Exact, at);
        }
    }

    // Held-out rows inside earlier sentences: the held-out texts are the
    // patterns (each distinct text once), the earlier sentences the haystacks.
    let longest_earlier = longest(&earlier.padded);
    let (patterns, rows_of) = distinct(&held.padded, |i| fits(&held.padded[i], longest_earlier));
    if !patterns.is_empty() {
        let automaton = automaton(&patterns)?;
        for (at, text) in earlier.padded.iter().enumerate() {
            let Some(text) = text else { continue };
            for m in automaton.find_overlapping_iter(text.as_str()) {
                for &row in &rows_of[m.pattern().as_usize()] {
                    note(row, Kind::Inside, at);
                }
            }
        }
    }

    // Earlier sentences of min_words or more inside held-out rows.
    let longest_held = longest(&held.padded);
    let (patterns, rows_of) = distinct(&earlier.padded, |i| {
        earlier.words[i] >= min_words && fits(&earlier.padded[i], longest_held)
    });
    if !patterns.is_empty() {
        let automaton = automaton(&patterns)?;
        for (row, text) in held.padded.iter().enumerate() {
            let Some(text) = text else { continue };
            for m in automaton.find_overlapping_iter(text.as_str()) {
                note(row, Kind::Contains, rows_of[m.pattern().as_usize()][0]);
            }
        }
    }
    Ok(found)
}

/// The distinct texts of the rows `keep` accepts, and the rows (in order)
/// having each.
fn distinct<'a>(
    texts: &'a [Option<String>],
    keep: impl Fn(usize) -> bool,
) -> (Vec<&'a str>, Vec<Vec<usize>>) {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let (mut patterns, mut rows_of) = (Vec::new(), Vec::<Vec<usize>>::new());
    for (i, text) in texts.iter().enumerate() {
        let Some(text) = text else { continue };
        if !keep(i) {
            continue;
        }
        let id = *index.entry(text).or_insert_with(|| {
            patterns.push(text.as_str());
            rows_of.push(Vec::new());
            patterns.len() - 1
        });
        rows_of[id].push(i);
    }
    (patterns, rows_of)
}

/// The length of the longest text (in bytes): no longer pattern can occur
/// in any of them.
fn longest(texts: &[Option<String>]) -> usize {
    texts.iter().flatten().map(String::len).max().unwrap_or(0)
}

/// Whether `text` is short enough to occur in a haystack of `longest` bytes.
fn fits(text: &Option<String>, longest: usize) -> bool {
    text.as_ref().is_some_and(|t| t.len() <= longest)
}

/// An automaton whose construction is linear in the patterns' total length:
/// a contiguous NFA, never the DFA the crate may pick on its own, which for
/// one 1,000,000-character review meant a table over a million states
/// (minutes at 100 % CPU).
fn automaton(patterns: &[&str]) -> Result<AhoCorasick> {
    Ok(AhoCorasick::builder()
        .kind(Some(AhoCorasickKind::ContiguousNFA))
        .match_kind(MatchKind::Standard)
        .build(patterns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_in(held: &[&str], earlier: &[&str]) -> Vec<Option<(Kind, usize)>> {
        find(
            &Normalised::new(held.iter().copied()),
            &Normalised::new(earlier.iter().copied()),
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
    /// once. The automaton the crate picked on its own was a DFA, whose
    /// construction is quadratic in a periodic pattern: 2.4 s at 30,000
    /// characters, 38 s at 100,000, about an hour at 1,000,000.
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
