//! The inference threads: each takes the next batch from its variant's queue (by the rules of
//! [`policy`](super::policy)), runs it on its replica of the backend and answers every sequence.

use std::sync::atomic::Ordering;
use std::time::Instant;

use embedrt_backend_core::{Backend, BackendError, Batch};

use super::{policy, Item, Output, Queue, Sequence, Shared};
use crate::telemetry;

/// Runs batches on `backend`, replica number `replica`, until the queue closes and is empty.
pub(super) fn run(shared: &Shared, replica: usize, mut backend: Box<dyn Backend>) {
    while let Some(items) = next_batch(shared, replica) {
        if !shared.healthy.load(Ordering::Acquire) {
            fail(
                items,
                &BackendError::Unhealthy("the backend failed earlier".into()),
            );
            continue;
        }
        let labels = &shared.labels;
        let started = Instant::now();
        for item in &items {
            metrics::histogram!(telemetry::QUEUE_SECONDS, labels.labels())
                .record(started - item.enqueued);
        }
        let tokens: usize = items.iter().map(|item| item.sequence.ids.len()).sum();
        metrics::histogram!(telemetry::BATCH_SIZE, labels.labels()).record(items.len() as f64);
        metrics::histogram!(telemetry::BATCH_TOKENS, labels.labels()).record(tokens as f64);
        run_batch(shared, backend.as_mut(), items);
        metrics::histogram!(telemetry::INFERENCE_SECONDS, labels.labels())
            .record(started.elapsed());
    }
}

/// The queued sequences, oldest first.
fn queued(queue: &Queue) -> Vec<&Sequence> {
    queue.items.iter().map(|item| &item.sequence).collect()
}

/// Blocks until `replica` has a batch: its pinned sequence, else one from the shared queue.
/// `None` once the queue is closed and empty.
fn next_batch(shared: &Shared, replica: usize) -> Option<Vec<Item>> {
    let limits = &shared.policy.limits;
    let pads = shared.capabilities.pads_batches;
    let mut queue = shared.lock();
    loop {
        if let Some(item) = queue.pinned[replica].take() {
            return Some(vec![item]);
        }
        if queue.items.is_empty() {
            if queue.closed {
                return None;
            }
            queue = shared.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
            continue;
        }
        let deadline = queue.items[0].enqueued + shared.policy.max_wait;
        let now = Instant::now();
        if queue.closed || policy::is_full(&queued(&queue), limits, pads) || now >= deadline {
            break;
        }
        // Another replica may take the waiting sequences meanwhile: look again after waking.
        queue = shared
            .wake
            .wait_timeout(queue, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    let chosen = policy::select(&queued(&queue), limits, &shared.capabilities);
    let mut batch: Vec<Item> = chosen
        .into_iter()
        .rev()
        .filter_map(|i| queue.items.remove(i))
        .collect();
    // Longest first.
    batch.sort_by_key(|item| std::cmp::Reverse(item.sequence.ids.len()));
    metrics::gauge!(telemetry::QUEUE_DEPTH, shared.labels.labels()).set(queue.items.len() as f64);
    let more = !queue.items.is_empty();
    drop(queue);
    if more {
        // What this batch left behind is for an idle replica, if there is one.
        shared.wake.notify_one();
    }
    Some(batch)
}

/// Runs `items` as one batch. When the batch fails for a reason other than a dead backend, each
/// sequence is retried alone, so one bad input cannot fail the others.
fn run_batch(shared: &Shared, backend: &mut dyn Backend, items: Vec<Item>) {
    let mut batch = Batch::from_sequences(
        items
            .iter()
            .map(|item| (item.sequence.ids.as_slice(), item.sequence.adapter)),
    );
    for (i, item) in items.iter().enumerate() {
        if let Some(types) = &item.sequence.type_ids {
            batch.set_token_types(i, types);
        }
    }
    let result = match items[0].sequence.output {
        Output::Pooled => backend.embed(&batch).map(|pooled| {
            (0..batch.len())
                .map(|i| pooled.row(i).to_vec())
                .collect::<Vec<_>>()
        }),
        Output::TokenStates => backend.embed_tokens(&batch).map(|states| {
            let rows = |i: usize| batch.span(i).start * states.dim..batch.span(i).end * states.dim;
            (0..batch.len())
                .map(|i| states.data[rows(i)].to_vec())
                .collect()
        }),
    };
    match result {
        Ok(outputs) => {
            for (item, output) in items.into_iter().zip(outputs) {
                let _ = item.reply.send(Ok(output));
            }
        }
        Err(error @ BackendError::Unhealthy(_)) => {
            tracing::error!(%error, "backend failed fatally; the model stops serving");
            shared.healthy.store(false, Ordering::Release);
            fail(items, &error);
        }
        Err(error) if items.len() == 1 => fail(items, &error),
        Err(error) => {
            tracing::warn!(%error, size = items.len(), "batch failed; retrying its inputs one by one");
            for item in items {
                run_batch(shared, backend, vec![item]);
            }
        }
    }
}

fn fail(items: Vec<Item>, error: &BackendError) {
    for item in items {
        let _ = item.reply.send(Err(error.clone()));
    }
}
