//! The batch-forming rules, as pure functions over the queued sequences (in arrival order): what
//! a batch costs, when the queue already holds a full one, and which sequences join the oldest.

use embedrt_backend_core::{BatchLimits, Capabilities};

use super::Sequence;

/// How many of the oldest queued sequences [`select`] looks at, per row a batch may have: enough
/// to find inputs of similar length, few enough that forming a batch stays cheap.
const WINDOW_PER_ROW: usize = 4;

/// Tokens a batch of `rows` sequences costs, the longest being `longest` and all `total`: the
/// padded size for a backend that pads its batches, the tokens themselves for one that does not.
pub(super) fn cost(pads: bool, rows: usize, longest: usize, total: usize) -> usize {
    if pads {
        rows * longest
    } else {
        total
    }
}

/// Whether `queue` already holds a full batch, in arrival order: as many sequences as a batch
/// may have, or as many tokens.
pub(super) fn is_full(queue: &[&Sequence], limits: &BatchLimits, pads: bool) -> bool {
    if queue.len() >= limits.max_batch_rows {
        return true;
    }
    let (longest, total) = queue.iter().fold((0, 0), |(longest, total), sequence| {
        (longest.max(sequence.ids.len()), total + sequence.ids.len())
    });
    cost(pads, queue.len(), longest, total) >= limits.max_batch_tokens
}

/// The batch that the oldest sequence of `queue` (index 0) starts: it, plus the queued
/// sequences closest to it in length that fit the limits, want the same output, and share its
/// adapter when the backend cannot mix adapters. Returns indices into `queue`, ascending.
///
/// Taking the oldest first keeps the queue fair; grouping by length keeps padding low.
///
/// # Panics
///
/// When `queue` is empty.
pub(super) fn select(
    queue: &[&Sequence],
    limits: &BatchLimits,
    capabilities: &Capabilities,
) -> Vec<usize> {
    let oldest = queue[0];
    let oldest_len = oldest.ids.len();
    let window = queue
        .len()
        .min(limits.max_batch_rows.saturating_mul(WINDOW_PER_ROW));
    let mut candidates: Vec<usize> = (1..window)
        .filter(|&i| {
            queue[i].output == oldest.output
                && (capabilities.mixed_tasks || queue[i].adapter == oldest.adapter)
        })
        .collect();
    candidates.sort_by_key(|&i| (queue[i].ids.len().abs_diff(oldest_len), i));

    let mut chosen = vec![0];
    let (mut longest, mut total) = (oldest_len, oldest_len);
    for i in candidates {
        if chosen.len() == limits.max_batch_rows {
            break;
        }
        let len = queue[i].ids.len();
        let grown = cost(
            capabilities.pads_batches,
            chosen.len() + 1,
            longest.max(len),
            total + len,
        );
        if grown <= limits.max_batch_tokens {
            chosen.push(i);
            longest = longest.max(len);
            total += len;
        }
    }
    chosen.sort_unstable();
    chosen
}

#[cfg(test)]
mod tests {
    use embedrt_backend_core::AdapterId;

    use super::*;
    use crate::scheduler::Output;

    fn capabilities(pads: bool, mixed: bool) -> Capabilities {
        Capabilities {
            hidden_size: 2,
            max_input_tokens: 512,
            mixed_tasks: mixed,
            pads_batches: pads,
            token_states: true,
            base_task: true,
            dtype: None,
        }
    }

    /// One row of a table: queued lengths in arrival order, row and token limits, whether the
    /// backend pads, and the indices chosen.
    type Selection = (&'static [usize], usize, usize, bool, &'static [usize]);

    fn limits(rows: usize, tokens: usize) -> BatchLimits {
        BatchLimits {
            max_batch_rows: rows,
            max_batch_tokens: tokens,
        }
    }

    /// Sequences of `lengths`, pooled, on the base weights.
    fn queue(lengths: &[usize]) -> Vec<Sequence> {
        lengths
            .iter()
            .map(|&len| Sequence::pooled(vec![1; len], AdapterId::BASE))
            .collect()
    }

    fn refs(queue: &[Sequence]) -> Vec<&Sequence> {
        queue.iter().collect()
    }

    #[test]
    fn padding_costs_for_backends_that_pad() {
        // (pads, rows, longest, total, cost)
        let table = [
            (true, 3, 10, 12, 30),
            (false, 3, 10, 12, 12),
            (true, 1, 7, 7, 7),
            (false, 0, 0, 0, 0),
        ];
        for (pads, rows, longest, total, want) in table {
            assert_eq!(cost(pads, rows, longest, total), want);
        }
    }

    #[test]
    fn a_queue_is_full_at_either_limit() {
        // (lengths, rows, tokens, pads, full)
        let table: [(&[usize], usize, usize, bool, bool); 6] = [
            (&[5, 5], 2, 1000, true, true),
            (&[5], 2, 1000, true, false),
            (&[10, 2], 8, 20, true, true),
            (&[10, 2], 8, 20, false, false),
            (&[10, 10], 8, 20, false, true),
            (&[], 8, 20, true, false),
        ];
        for (lengths, rows, tokens, pads, full) in table {
            let sequences = queue(lengths);
            assert_eq!(
                is_full(&refs(&sequences), &limits(rows, tokens), pads),
                full,
                "{lengths:?}, {rows} rows, {tokens} tokens, pads {pads}"
            );
        }
    }

    #[test]
    fn the_oldest_takes_the_closest_lengths_within_the_limits() {
        // (lengths in arrival order, rows, tokens, pads, chosen)
        let table: [Selection; 6] = [
            // Everything fits.
            (&[3, 3, 3], 8, 1024, true, &[0, 1, 2]),
            // The row limit.
            (&[3, 3, 3, 3, 3], 4, 1024, true, &[0, 1, 2, 3]),
            // Padded: 2 x 500 fits 1024; a short one with them would cost 3 x 500.
            (&[500, 20, 20, 20, 500], 64, 1024, true, &[0, 4]),
            // The short ones go together, the long one alone.
            (&[20, 500, 20, 20], 64, 1024, true, &[0, 2, 3]),
            // Unpadded: the sum counts, so all fit.
            (&[500, 20, 20, 20, 400], 64, 1024, false, &[0, 1, 2, 3, 4]),
            // Closest in length first, then arrival order among equals.
            (&[10, 40, 11, 9, 11], 3, 1024, true, &[0, 2, 3]),
        ];
        for (lengths, rows, tokens, pads, want) in table {
            let sequences = queue(lengths);
            let chosen = select(
                &refs(&sequences),
                &limits(rows, tokens),
                &capabilities(pads, true),
            );
            assert_eq!(chosen, want, "{lengths:?}, {rows} rows, {tokens} tokens");
        }
    }

    #[test]
    fn outputs_never_mix_and_adapters_only_where_the_backend_can() {
        let mut sequences = queue(&[4, 4, 4, 4]);
        sequences[1].output = Output::TokenStates;
        sequences[2].adapter = AdapterId::adapter(1);
        let all = limits(8, 1024);
        assert_eq!(
            select(&refs(&sequences), &all, &capabilities(true, true)),
            [0, 2, 3],
            "token states go apart; adapters mix"
        );
        assert_eq!(
            select(&refs(&sequences), &all, &capabilities(true, false)),
            [0, 3],
            "one adapter per batch"
        );
        // A token-state sequence first starts a batch of token-state sequences.
        assert_eq!(
            select(&refs(&sequences[1..]), &all, &capabilities(true, true)),
            [0]
        );
    }

    #[test]
    fn the_window_bounds_how_far_back_it_looks() {
        // Two rows per batch look at the 8 oldest: the exact match at index 8 is out of sight.
        let sequences = queue(&[8, 1, 1, 1, 1, 1, 1, 1, 8]);
        let pads = capabilities(true, true);
        assert_eq!(select(&refs(&sequences), &limits(2, 1024), &pads), [0, 1]);
        // Three rows look at 12: it joins, before the next closest.
        assert_eq!(
            select(&refs(&sequences), &limits(3, 1024), &pads),
            [0, 1, 8]
        );
    }
}
