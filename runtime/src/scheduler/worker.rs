//! The inference threads: each takes the next batch from its variant's queue (by the rules of
//! [`policy`](super::policy)), runs it on its replica of the backend and answers every sequence.

use std::time::{Duration, Instant};

use embedrt_backend_core::{Backend, BackendError, Batch};

use super::{policy, quarantined, Item, Output, Queue, Sequence, Shared};
use crate::telemetry;

/// The longest pause before loading a replica again that keeps failing.
const MAX_RESTART_PAUSE: Duration = Duration::from_secs(2);
/// The first pause, when a replica fails again soon after a restart.
const FIRST_RESTART_PAUSE: Duration = Duration::from_millis(50);
/// A replica that served this long since its last failure restarts at once again.
const CALM: Duration = Duration::from_secs(30);

/// Runs batches on `backend`, replica number `index`, until the queue closes and is empty, or
/// until the replica fails fatally and cannot be loaded again.
pub(super) fn run(shared: &Shared, index: usize, backend: Box<dyn Backend>) {
    let mut replica = Replica {
        index,
        backend: Some(backend),
        last_failure: None,
        pause: Duration::ZERO,
    };
    while let Some(items) = next_batch(shared, index) {
        let labels = &shared.labels;
        let started = Instant::now();
        for item in &items {
            metrics::histogram!(telemetry::QUEUE_SECONDS, labels.labels())
                .record(started - item.enqueued);
        }
        let tokens: usize = items.iter().map(|item| item.sequence.ids.len()).sum();
        metrics::histogram!(telemetry::BATCH_SIZE, labels.labels()).record(items.len() as f64);
        metrics::histogram!(telemetry::BATCH_TOKENS, labels.labels()).record(tokens as f64);
        replica.run_batch(shared, items);
        metrics::histogram!(telemetry::INFERENCE_SECONDS, labels.labels())
            .record(started.elapsed());
        if replica.backend.is_none() {
            // Down for good: what is queued is for the other replicas, if any serves.
            fail_unserved(&mut shared.lock());
            return;
        }
    }
}

/// One replica of the backend, and when it last failed.
struct Replica {
    index: usize,
    /// `None` once it failed and could not be loaded again.
    backend: Option<Box<dyn Backend>>,
    last_failure: Option<Instant>,
    /// The pause before the next restart, growing while failures come close together.
    pause: Duration,
}

impl Replica {
    /// Runs `items` as one batch. When the batch fails for a reason other than a dead backend,
    /// each sequence is retried alone, so one bad input cannot fail the others. When the backend
    /// dies, it is loaded again and the sequences run again one by one; the sequence that kills
    /// it alone fails and is quarantined.
    fn run_batch(&mut self, shared: &Shared, items: Vec<Item>) {
        let Some(backend) = self.backend.as_mut() else {
            fail(
                items,
                &BackendError::Unhealthy("the replica is down".into()),
            );
            return;
        };
        match compute(backend.as_mut(), &items) {
            Ok(outputs) => {
                for (item, output) in items.into_iter().zip(outputs) {
                    let _ = item.reply.send(Ok(output));
                }
            }
            Err(error @ BackendError::Unhealthy(_)) => {
                tracing::error!(%error, replica = self.index, size = items.len(), "backend failed fatally");
                if items.len() == 1 && shared.restart.is_some() {
                    // It killed the replica on its own: it is answered at once, never run again.
                    shared.lock().quarantine(&items[0].sequence);
                    fail(items, &quarantined(&error.to_string()));
                    self.restart(shared);
                } else if self.restart(shared) {
                    for item in items {
                        self.run_batch(shared, vec![item]);
                    }
                } else {
                    fail(items, &error);
                }
            }
            Err(error) if items.len() == 1 => fail(items, &error),
            Err(error) => {
                tracing::warn!(%error, size = items.len(), "batch failed; retrying its inputs one by one");
                for item in items {
                    self.run_batch(shared, vec![item]);
                }
            }
        }
    }

    /// Replaces the dead backend with a fresh copy from the scheduler's [`super::Restart`],
    /// after a pause that grows while failures come close together, trying again until it
    /// loads or the scheduler closes. Returns whether the replica serves again.
    fn restart(&mut self, shared: &Shared) -> bool {
        // The dead copy goes first: two copies of a large model may not fit.
        self.backend = None;
        let now = Instant::now();
        self.pause = match self.last_failure {
            Some(last) if now - last < CALM => {
                (self.pause * 2).clamp(FIRST_RESTART_PAUSE, MAX_RESTART_PAUSE)
            }
            _ => Duration::ZERO,
        };
        self.last_failure = Some(now);
        let mut queue = shared.lock();
        queue.live -= 1;
        let Some(restart) = &shared.restart else {
            tracing::error!(
                replica = self.index,
                "the replica cannot be loaded again; it stays down"
            );
            return false;
        };
        queue.restarting += 1;
        drop(queue);
        let mut pause = self.pause;
        let mut first_try = true;
        loop {
            std::thread::sleep(pause);
            let loaded = restart();
            let mut queue = shared.lock();
            if first_try {
                queue.restarting -= 1;
            }
            match loaded {
                Ok(backend) => {
                    queue.live += 1;
                    drop(queue);
                    self.backend = Some(backend);
                    metrics::counter!(telemetry::REPLICA_RESTARTS, shared.labels.labels())
                        .increment(1);
                    tracing::info!(
                        replica = self.index,
                        "backend loaded again; the replica serves"
                    );
                    return true;
                }
                Err(error) if queue.closed => {
                    tracing::error!(%error, replica = self.index, "loading the backend again failed");
                    return false;
                }
                Err(error) => {
                    tracing::error!(%error, replica = self.index, "loading the backend again failed; trying again");
                    if first_try {
                        fail_unserved(&mut queue);
                    }
                }
            }
            first_try = false;
            pause = (pause * 2).clamp(FIRST_RESTART_PAUSE, MAX_RESTART_PAUSE);
        }
    }
}

/// Fails every queued sequence when no replica serves or is being loaded again: nothing would
/// answer them (new ones are refused from now on, see [`Queue::is_served`]).
fn fail_unserved(queue: &mut Queue) {
    if queue.is_served() {
        return;
    }
    let error = BackendError::Unhealthy("every replica of the backend failed".into());
    fail(queue.items.drain(..).collect(), &error);
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
        queue.drop_abandoned(&shared.labels);
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
    let requests: Vec<u64> = queue.items.iter().map(|item| item.request).collect();
    let (chosen, seed) = policy::next_batch(
        &queued(&queue),
        &requests,
        queue.last_seed,
        limits,
        &shared.capabilities,
    );
    queue.last_seed = seed;
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

/// Runs `items` as one batch on `backend`: one output per item, in order.
fn compute(backend: &mut dyn Backend, items: &[Item]) -> Result<Vec<Vec<f32>>, BackendError> {
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
    match items[0].sequence.output {
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
    }
}

fn fail(items: Vec<Item>, error: &BackendError) {
    for item in items {
        let _ = item.reply.send(Err(error.clone()));
    }
}
