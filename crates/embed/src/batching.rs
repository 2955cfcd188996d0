//! Length-sorted batches with per-batch padding: rows of similar length run
//! together, padded only to the longest row of their batch, and results are
//! scattered back to the original order.

/// Groups row indices (sorted by `lengths`, ties by index) into batches of
/// at most `max_rows` rows and at most `token_budget` padded tokens.
pub fn plan(lengths: &[usize], token_budget: usize, max_rows: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Sorted ascending, so the new row is the longest of the batch.
        let padded = (current.len() + 1) * lengths[i].max(1);
        if !current.is_empty() && (padded > token_budget || current.len() >= max_rows) {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_budget_and_cover_every_row_once() {
        let lengths = [5, 3, 9, 3, 12, 1, 7, 7];
        let batches = plan(&lengths, 16, 3);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for b in &batches {
            let longest = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(b.len() <= 3);
            assert!(b.len() == 1 || b.len() * longest <= 16, "{b:?}");
        }
        assert_eq!(batches[0], [5, 1, 3], "shortest rows first");
    }
}
