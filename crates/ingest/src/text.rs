//! The one normalisation under which two sentences count as "the same text":
//! what `ingest.dedup = "exact"` drops and what the audit's overlap finds.
//!
//! Case is folded, runs of whitespace are one space, and every character
//! that is neither a letter, a digit nor whitespace stands alone as a token,
//! so punctuation spacing does not matter: `"It's  GOOD,"` and `"it 's good ,"`
//! both become `it ' s good ,`.

/// The normalised tokens of `text`, in order.
pub fn tokens(text: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            tokens.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() {
            tokens.push(c.to_string());
        }
    }
    if !word.is_empty() {
        tokens.push(word);
    }
    tokens
}

/// `text` normalised: its [`tokens`] joined by single spaces.
pub fn normalized(text: &str) -> String {
    tokens(text).join(" ")
}

/// How many of `tokens` are words (hold a letter or digit), not punctuation.
pub fn word_count(tokens: &[String]) -> usize {
    tokens
        .iter()
        .filter(|t| t.chars().any(char::is_alphanumeric))
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_whitespace_and_punctuation_spacing_do_not_matter() {
        assert_eq!(normalized("It's  GOOD,"), "it ' s good ,");
        assert_eq!(normalized(" it 's good ,\n"), "it ' s good ,");
        assert_eq!(normalized("Ünïcödé—fine"), "ünïcödé — fine");
        assert_ne!(normalized("good"), normalized("goods"));
        assert_eq!(normalized("  "), "");
    }

    #[test]
    fn words_are_counted_without_punctuation() {
        assert_eq!(word_count(&tokens("a , b -- c 2")), 4);
        assert_eq!(word_count(&tokens("...")), 0);
    }
}
