//! The batch-forming rules, as pure functions over the queued sequences (in arrival order): what
//! a batch costs, when the queue already holds a full one, which sequence starts the next batch,
//! and which sequences join it.

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

/// Which queued sequence starts the next batch, given the submission each came in (`requests`,
/// in arrival order) and the submission that started the last one: the oldest sequence of the
/// next submission in arrival order, or of the oldest when none came later. Submissions take
/// turns, so one of many inputs cannot hold back the ones queued after it for more than a
/// batch per submission waiting.
///
/// # Panics
///
/// When `requests` is empty.
fn seed(requests: &[u64], last: u64) -> usize {
    assert!(!requests.is_empty(), "a seed of an empty queue");
    requests
        .iter()
        .position(|&request| request > last)
        .unwrap_or(0)
}

/// The next batch of `queue` (in arrival order; `requests` gives each sequence's submission),
/// the last batch having been started by submission `last_seed`: the indices of its sequences,
/// ascending, and the submission that starts it. The [`seed`] goes first, the others follow in
/// arrival order, and [`select`] fills the batch from them.
///
/// # Panics
///
/// When `queue` is empty.
pub(super) fn next_batch(
    queue: &[&Sequence],
    requests: &[u64],
    last_seed: u64,
    limits: &BatchLimits,
    capabilities: &Capabilities,
) -> (Vec<usize>, u64) {
    let seed = seed(requests, last_seed);
    let order: Vec<usize> = std::iter::once(seed)
        .chain((0..queue.len()).filter(|&i| i != seed))
        .collect();
    let view: Vec<&Sequence> = order.iter().map(|&i| queue[i]).collect();
    let mut chosen: Vec<usize> = select(&view, limits, capabilities)
        .into_iter()
        .map(|i| order[i])
        .collect();
    chosen.sort_unstable();
    (chosen, requests[seed])
}

/// The batch that the first sequence of `queue` (index 0) starts: it, plus the queued
/// sequences closest to it in length that fit the limits, want the same output, and share its
/// adapter when the backend cannot mix adapters. Returns indices into `queue`, ascending.
///
/// Starting from the seed (see [`seed`]) keeps the queue fair; grouping by length keeps padding
/// low.
///
/// # Panics
///
/// When `queue` is empty.
fn select(queue: &[&Sequence], limits: &BatchLimits, capabilities: &Capabilities) -> Vec<usize> {
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
    fn submissions_take_turns_starting_batches() {
        // (submissions in arrival order, the last seed, the seed's index)
        let table: [(&[u64], u64, usize); 5] = [
            (&[1, 1, 2, 3], 0, 0),
            (&[1, 1, 2, 3], 1, 2),
            (&[1, 1, 2, 3], 2, 3),
            (&[1, 1, 2, 3], 3, 0),
            (&[4, 4, 6], 5, 2),
        ];
        for (requests, last, want) in table {
            assert_eq!(seed(requests, last), want, "{requests:?} after {last}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Forms batches until the queue is empty: every batch is within the limits, every
        /// sequence runs exactly once, and the k-th submission starts running by the k-th batch
        /// (a large submission ahead of it delays it by one batch, not by all of its sequences).
        #[test]
        fn batches_keep_the_limits_lose_nothing_and_every_submission_progresses(
            submissions in proptest::collection::vec((1usize..300, 1usize..200), 1..12),
            rows in 1usize..64,
            tokens in 200usize..4096,
            pads in proptest::bool::ANY,
            mixed in proptest::bool::ANY,
        ) {
            let mut queue: Vec<(u64, usize, Sequence)> = Vec::new();
            for (k, &(count, len)) in submissions.iter().enumerate() {
                for i in 0..count {
                    let mut sequence = Sequence::pooled(vec![1; len - i % len.min(7)], AdapterId::BASE);
                    sequence.adapter = AdapterId::adapter(i % 2);
                    queue.push((k as u64 + 1, i, sequence));
                }
            }
            let total = queue.len();
            let (limits, capabilities) = (limits(rows, tokens), capabilities(pads, mixed));
            let mut ran = std::collections::HashSet::new();
            let mut first_batch = vec![None; submissions.len()];
            let (mut last_seed, mut batches) = (0, 0);
            while !queue.is_empty() {
                let sequences: Vec<&Sequence> = queue.iter().map(|(_, _, s)| s).collect();
                let requests: Vec<u64> = queue.iter().map(|(r, _, _)| *r).collect();
                let (chosen, seed) = next_batch(&sequences, &requests, last_seed, &limits, &capabilities);
                last_seed = seed;
                proptest::prop_assert!(!chosen.is_empty() && chosen.len() <= rows);
                let lengths: Vec<usize> = chosen.iter().map(|&i| queue[i].2.ids.len()).collect();
                let longest = *lengths.iter().max().unwrap();
                let cost = cost(pads, chosen.len(), longest, lengths.iter().sum());
                proptest::prop_assert!(cost <= tokens, "{} tokens over {}", cost, tokens);
                if !mixed {
                    let adapter = queue[chosen[0]].2.adapter;
                    proptest::prop_assert!(chosen.iter().all(|&i| queue[i].2.adapter == adapter));
                }
                for &i in chosen.iter().rev() {
                    let (request, index, _) = queue.remove(i);
                    proptest::prop_assert!(ran.insert((request, index)), "ran twice");
                    first_batch[request as usize - 1].get_or_insert(batches);
                }
                batches += 1;
            }
            proptest::prop_assert_eq!(ran.len(), total);
            for (k, first) in first_batch.iter().enumerate() {
                proptest::prop_assert!(first.unwrap() <= k, "submission {} first ran in batch {:?}", k + 1, first);
            }
        }
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
