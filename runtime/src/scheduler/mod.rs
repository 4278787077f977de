//! Dynamic batching: one queue per loaded model variant, and one inference thread per replica of
//! its backend.
//!
//! Requests are split into sequences and queued. An idle inference thread takes the oldest
//! sequence of the next request in turn (so a small request never waits behind all of a large
//! one), adds queued sequences of similar length (so padded backends waste little) until the
//! token budget, the sequence limit or the short wait runs out, runs the batch on its backend and
//! answers each sequence on its own channel. While a batch runs, new sequences queue up and form
//! the next one. A full queue refuses new work at once instead of letting latency grow without
//! bound.
//!
//! Replicas: a variant may load its backend more than once (each with a share of the cores), and
//! every replica's thread takes batches from the same queue. On a small CPU two single-threaded
//! sessions working on different batches beat one two-threaded session on one batch (no per-layer
//! hand-offs between pool threads); see BENCHMARKS.md, "Replicas".
//!
//! The module has two layers: `policy` holds the batch-forming rules as pure functions over the
//! queued sequences, `worker` the inference threads that apply them and run the batches.
//!
//! A replica whose backend fails fatally (a plugin panicked) is loaded again with [`Restart`],
//! with a growing pause when it keeps failing. The other sequences of the batch that killed it
//! run again one by one on the fresh copy; the one that kills it alone fails, and its token ids
//! are quarantined: sent again, they are refused at once instead of killing the replica again.
//! One crafted input thus costs its own request, never the model.
//!
//! Dropping a [`Scheduler`] never blocks: the last reference to a model may go inside an async
//! task (a reload, a finished request), whose worker thread must not wait for a queue to drain.
//! The inference thread answers what is queued and drops the backend on its own; [`join_stopped`]
//! waits for those threads where waiting is fine (before the process exits).

mod policy;
mod worker;

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use embedrt_backend_core::{AdapterId, Backend, BackendError, BatchLimits, Capabilities};

use crate::telemetry::{self, VariantLabels};

/// How a variant's scheduler forms batches and bounds its queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchPolicy {
    /// The largest batch, in sequences and in tokens (the same limits the backend is told in its
    /// load document).
    pub limits: BatchLimits,
    /// Longest time the oldest queued sequence waits for others to join its batch.
    pub max_wait: Duration,
    /// Most sequences waiting in the queue; more are refused with [`SubmitError::QueueFull`].
    /// A request larger than this is still taken when the queue is empty, so that it waits for
    /// its turn instead of being refused however often it is retried.
    pub max_queued: usize,
}

/// One tokenized input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sequence {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Each token's type (segment), as long as `ids`, for a text pair; `None`: all type 0.
    pub type_ids: Option<Vec<u32>>,
    /// The weights it runs with.
    pub adapter: AdapterId,
    /// What the backend should return for it.
    pub output: Output,
}

impl Sequence {
    /// A sequence whose pooled embedding is wanted.
    pub fn pooled(ids: Vec<u32>, adapter: AdapterId) -> Self {
        Self {
            ids,
            type_ids: None,
            adapter,
            output: Output::Pooled,
        }
    }

    /// A (query, document) pair whose score is wanted from a cross-encoder (whose backend's
    /// pooled output is its logits).
    ///
    /// # Panics
    ///
    /// When `type_ids` is not as long as `ids`.
    pub fn pair(ids: Vec<u32>, type_ids: Vec<u32>) -> Self {
        assert_eq!(ids.len(), type_ids.len(), "a type id per token");
        Self {
            type_ids: Some(type_ids),
            ..Self::pooled(ids, AdapterId::BASE)
        }
    }
}

/// What a sequence asks of the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// One pooled vector.
    Pooled,
    /// The last-layer state of every token (`ids.len() * hidden` values), for late chunking.
    TokenStates,
}

/// Loads a fresh copy of a variant's backend, to replace a replica that failed fatally.
pub type Restart = Arc<dyn Fn() -> Result<Box<dyn Backend>, BackendError> + Send + Sync>;

/// The backend's answer for one sequence (see [`Output`]), or why there is none.
pub type SequenceResult = Result<Vec<f32>, BackendError>;

/// Why the scheduler refused work.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue holds too many sequences already.
    #[error("the queue is full ({queued} inputs waiting, limit {limit})")]
    QueueFull {
        /// Sequences waiting now.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Every replica of the backend failed fatally (for example a plugin panicked) and none is
    /// being loaded again.
    #[error("the model's backend is unhealthy")]
    Unhealthy,
    /// The scheduler is shutting down.
    #[error("the model is shutting down")]
    Closed,
}

struct Item {
    sequence: Sequence,
    reply: oneshot::Sender<SequenceResult>,
    enqueued: Instant,
    /// The submission it came in, numbered from 1 in arrival order.
    request: u64,
}

impl Item {
    /// Whether the caller stopped waiting for the answer (its receiver is gone).
    fn is_abandoned(&self) -> bool {
        self.reply.is_closed()
    }
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    /// Per replica: a sequence only that replica runs (warm-up), before any shared work.
    pinned: Vec<Option<Item>>,
    closed: bool,
    /// Replicas that take batches now.
    live: usize,
    /// Replicas being loaded again after a fatal failure, on their first try (their queue
    /// still waits for them).
    restarting: usize,
    /// Fingerprints of the sequences that killed a replica on their own, oldest first.
    quarantined: VecDeque<u64>,
    /// The number of the last submission.
    submissions: u64,
    /// The submission whose sequence started the last batch (see [`policy::next_batch`]).
    last_seed: u64,
}

/// The most quarantined sequences remembered; older ones are forgotten first.
const QUARANTINE_CAPACITY: usize = 1024;

/// A fingerprint of a sequence's tokens, for the quarantine.
fn fingerprint(sequence: &Sequence) -> u64 {
    let mut hasher = DefaultHasher::new();
    (&sequence.ids, &sequence.type_ids, sequence.adapter).hash(&mut hasher);
    hasher.finish()
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Loads a replica again after a fatal failure; without it a failed replica stays down.
    restart: Option<Restart>,
    policy: BatchPolicy,
    capabilities: Capabilities,
    labels: VariantLabels,
}

impl Queue {
    /// Whether some replica serves now or soon (one is being loaded again).
    fn is_served(&self) -> bool {
        self.live + self.restarting > 0
    }

    /// Whether `sequence` killed a replica before.
    fn is_quarantined(&self, sequence: &Sequence) -> bool {
        !self.quarantined.is_empty() && self.quarantined.contains(&fingerprint(sequence))
    }

    /// Remembers that `sequence` killed a replica on its own.
    fn quarantine(&mut self, sequence: &Sequence) {
        if self.quarantined.len() == QUARANTINE_CAPACITY {
            self.quarantined.pop_front();
        }
        self.quarantined.push_back(fingerprint(sequence));
    }

    /// Drops the queued sequences whose callers stopped waiting (a client that disconnected,
    /// cancelled or ran past its deadline), so that they are neither run nor counted against the
    /// queue's limit, and counts them in [`telemetry::ABANDONED_INPUTS`].
    fn drop_abandoned(&mut self, labels: &VariantLabels) {
        let before = self.items.len();
        self.items.retain(|item| !item.is_abandoned());
        let dropped = before - self.items.len();
        if dropped > 0 {
            metrics::counter!(telemetry::ABANDONED_INPUTS, labels.labels())
                .increment(dropped as u64);
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A model variant's queue and the threads that run its backend's replicas.
pub struct Scheduler {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts one inference thread `infer-{name}` (`infer0-{name}`, `infer1-{name}`, ... when
    /// there are several) around each of
    /// `replicas`, all taking batches from one queue. The first replica's capabilities stand for
    /// all of them. A replica that fails fatally is replaced by a fresh one from `restart`, when
    /// given (else it stays down).
    ///
    /// # Errors
    ///
    /// When a thread cannot be started; the threads started so far end.
    ///
    /// # Panics
    ///
    /// When `replicas` is empty.
    pub fn start(
        name: &str,
        replicas: Vec<Box<dyn Backend>>,
        restart: Option<Restart>,
        policy: BatchPolicy,
        labels: VariantLabels,
    ) -> std::io::Result<Self> {
        assert!(!replicas.is_empty(), "a scheduler needs a backend");
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pinned: replicas.iter().map(|_| None).collect(),
                live: replicas.len(),
                ..Queue::default()
            }),
            wake: Condvar::new(),
            restart,
            capabilities: replicas[0].capabilities().clone(),
            policy,
            labels,
        });
        let mut scheduler = Self {
            shared,
            workers: Vec::with_capacity(replicas.len()),
        };
        let numbered = replicas.len() > 1;
        for (index, backend) in replicas.into_iter().enumerate() {
            // Linux keeps 15 bytes of a thread's name: the number goes first.
            let thread = if numbered {
                format!("infer{index}-{name}")
            } else {
                format!("infer-{name}")
            };
            let shared = Arc::clone(&scheduler.shared);
            let worker = std::thread::Builder::new()
                .name(thread)
                .spawn(move || worker::run(&shared, index, backend))?;
            scheduler.workers.push(worker);
        }
        Ok(scheduler)
    }

    /// How many replicas (inference threads) take batches from this queue.
    pub fn replicas(&self) -> usize {
        self.workers.len()
    }

    /// Runs `sequence` once on every replica, apart from the shared queue (warm-up), and returns
    /// one receiver per replica.
    ///
    /// # Errors
    ///
    /// When the backend is unhealthy or the scheduler is shutting down.
    pub fn submit_to_each(
        &self,
        sequence: &Sequence,
    ) -> Result<Vec<oneshot::Receiver<SequenceResult>>, SubmitError> {
        let mut queue = self.open_queue()?;
        let enqueued = Instant::now();
        let receivers = queue
            .pinned
            .iter_mut()
            .map(|slot| {
                let (reply, receiver) = oneshot::channel();
                *slot = Some(Item {
                    sequence: sequence.clone(),
                    reply,
                    enqueued,
                    request: 0,
                });
                receiver
            })
            .collect();
        drop(queue);
        self.shared.wake.notify_all();
        Ok(receivers)
    }

    /// Queues `sequences` and returns one receiver per sequence, in order.
    ///
    /// Either all sequences are queued or none is. They are refused with
    /// [`SubmitError::QueueFull`] when they would take the queue past its limit, unless the queue
    /// is empty (a request larger than the whole queue would otherwise never be taken).
    ///
    /// # Errors
    ///
    /// [`SubmitError::QueueFull`] as above, [`SubmitError::Unhealthy`] once the backend failed
    /// fatally, [`SubmitError::Closed`] while the scheduler shuts down.
    pub fn submit(
        &self,
        sequences: Vec<Sequence>,
    ) -> Result<Vec<oneshot::Receiver<SequenceResult>>, SubmitError> {
        let mut queue = self.open_queue()?;
        let limit = self.shared.policy.max_queued;
        let fits =
            |queue: &Queue| queue.items.is_empty() || queue.items.len() + sequences.len() <= limit;
        if !fits(&queue) {
            // Sequences of callers that gave up hold no place.
            queue.drop_abandoned(&self.shared.labels);
        }
        if !fits(&queue) {
            return Err(SubmitError::QueueFull {
                queued: queue.items.len(),
                limit,
            });
        }
        let enqueued = Instant::now();
        queue.submissions += 1;
        let request = queue.submissions;
        let receivers = sequences
            .into_iter()
            .map(|sequence| {
                let (reply, receiver) = oneshot::channel();
                if queue.is_quarantined(&sequence) {
                    let _ = reply.send(Err(quarantined("when it was sent before")));
                } else {
                    queue.items.push_back(Item {
                        sequence,
                        reply,
                        enqueued,
                        request,
                    });
                }
                receiver
            })
            .collect();
        metrics::gauge!(telemetry::QUEUE_DEPTH, self.shared.labels.labels())
            .set(queue.items.len() as f64);
        drop(queue);
        self.shared.wake.notify_one();
        Ok(receivers)
    }

    /// The locked queue, if it takes work: a replica serves (or is being loaded again) and the
    /// scheduler is open.
    fn open_queue(&self) -> Result<MutexGuard<'_, Queue>, SubmitError> {
        let queue = self.shared.lock();
        if !queue.is_served() {
            return Err(SubmitError::Unhealthy);
        }
        if queue.closed {
            return Err(SubmitError::Closed);
        }
        Ok(queue)
    }

    /// Whether a replica serves now: false while every replica is down or being loaded again
    /// after a fatal failure.
    pub fn is_healthy(&self) -> bool {
        self.shared.lock().live > 0
    }

    /// What the backend can do.
    pub fn capabilities(&self) -> &Capabilities {
        &self.shared.capabilities
    }
}

/// The answer to a sequence that killed a replica of the backend on its own: it is not run again.
/// `cause` says what the failure was.
fn quarantined(cause: &str) -> BackendError {
    BackendError::Inference(format!(
        "this input made the model's backend fail fatally ({cause}); it is quarantined and not \
         run again (the backend was loaded again and serves other inputs)"
    ))
}

/// Inference threads of dropped schedulers that may still be draining their queues.
static STOPPING: Mutex<Vec<JoinHandle<()>>> = Mutex::new(Vec::new());

impl Drop for Scheduler {
    /// Stops accepting work and returns at once; the inference threads answer everything already
    /// queued, drop their backends and end (see [`join_stopped`]).
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
        let mut stopping = STOPPING.lock().unwrap_or_else(|p| p.into_inner());
        stopping.retain(|worker| !worker.is_finished());
        stopping.append(&mut self.workers);
    }
}

/// Waits until the inference thread of every dropped scheduler has answered its queue and dropped
/// its backend. Blocks: call it where that is fine, e.g. on the main thread before exiting.
pub fn join_stopped() {
    let workers = std::mem::take(&mut *STOPPING.lock().unwrap_or_else(|p| p.into_inner()));
    for worker in workers {
        let _ = worker.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedrt_backend_core::{Batch, Embeddings, TokenStates};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// Embeds a sequence as `[len, first id]`, records batch sizes, fails on id 666, dies on 999.
    struct Fake {
        capabilities: Capabilities,
        batches: Arc<Mutex<Vec<usize>>>,
        delay: Duration,
    }

    impl Backend for Fake {
        fn capabilities(&self) -> &Capabilities {
            &self.capabilities
        }

        fn embed_tokens(&mut self, batch: &Batch) -> Result<TokenStates, BackendError> {
            self.batches.lock().unwrap().push(batch.len());
            let data = batch
                .input_ids
                .iter()
                .flat_map(|&id| [id as f32, 0.0])
                .collect();
            Ok(TokenStates::new(data, 2))
        }

        fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError> {
            std::thread::sleep(self.delay);
            self.batches.lock().unwrap().push(batch.len());
            if batch.input_ids.contains(&999) {
                return Err(BackendError::Unhealthy("panicked".into()));
            }
            if batch.input_ids.contains(&666) {
                return Err(BackendError::InvalidInput("bad id".into()));
            }
            let data = (0..batch.len())
                .flat_map(|i| [batch.ids(i).len() as f32, batch.ids(i)[0] as f32])
                .collect();
            Ok(Embeddings::new(data, 2))
        }
    }

    fn capabilities() -> Capabilities {
        Capabilities {
            hidden_size: 2,
            max_input_tokens: 512,
            mixed_tasks: true,
            pads_batches: true,
            token_states: false,
            base_task: true,
            dtype: None,
        }
    }

    fn batching(max_batch_rows: usize, max_queued: usize) -> BatchPolicy {
        BatchPolicy {
            limits: BatchLimits {
                max_batch_rows,
                max_batch_tokens: 1024,
            },
            max_wait: Duration::from_millis(20),
            max_queued,
        }
    }

    fn scheduler(max_batch_rows: usize, max_queued: usize) -> (Scheduler, Arc<Mutex<Vec<usize>>>) {
        replicated(1, batching(max_batch_rows, max_queued), Duration::ZERO)
    }

    /// A scheduler over `replicas` fakes that record their batch sizes in one list.
    fn replicated(
        replicas: usize,
        policy: BatchPolicy,
        delay: Duration,
    ) -> (Scheduler, Arc<Mutex<Vec<usize>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let fakes = (0..replicas)
            .map(|_| {
                Box::new(Fake {
                    capabilities: capabilities(),
                    batches: Arc::clone(&batches),
                    delay,
                }) as Box<dyn Backend>
            })
            .collect();
        let labels = VariantLabels::default();
        (
            Scheduler::start("test", fakes, None, policy, labels).unwrap(),
            batches,
        )
    }

    fn seq(len: usize, first: u32) -> Sequence {
        let mut ids = vec![1; len];
        ids[0] = first;
        Sequence::pooled(ids, AdapterId::BASE)
    }

    async fn collect(receivers: Vec<oneshot::Receiver<SequenceResult>>) -> Vec<SequenceResult> {
        let mut out = Vec::new();
        for r in receivers {
            out.push(r.await.unwrap());
        }
        out
    }

    /// Embeds like [`Fake`], but every batch announces itself (its size, on `entered`) and then
    /// waits for the test to let it go (one message on `gate` per batch; every batch once `gate`
    /// is closed). The tests decide when the backend is busy, so nothing depends on the
    /// machine's speed.
    struct Gated {
        capabilities: Capabilities,
        entered: mpsc::Sender<usize>,
        gate: mpsc::Receiver<()>,
    }

    impl Backend for Gated {
        fn capabilities(&self) -> &Capabilities {
            &self.capabilities
        }

        fn embed(&mut self, batch: &Batch) -> Result<Embeddings, BackendError> {
            let _ = self.entered.send(batch.len());
            let _ = self.gate.recv(); // returns at once when the gate is closed (sender dropped)
            let data = (0..batch.len())
                .flat_map(|i| [batch.ids(i).len() as f32, batch.ids(i)[0] as f32])
                .collect();
            Ok(Embeddings::new(data, 2))
        }
    }

    /// The controls of one [`Gated`] replica: batches entering it, and its gate.
    struct Gate {
        entered: mpsc::Receiver<usize>,
        open: mpsc::Sender<()>,
    }

    impl Gate {
        /// Lets the replica's current batch go.
        fn release(&self) {
            self.open.send(()).unwrap();
        }

        /// Waits until the replica is running a batch, and returns its size.
        fn wait_entered(&self) -> usize {
            self.entered
                .recv_timeout(Duration::from_secs(30))
                .expect("the replica never started a batch")
        }
    }

    /// A scheduler over `replicas` gated backends, and their controls.
    fn gated(replicas: usize, policy: BatchPolicy) -> (Scheduler, Vec<Gate>) {
        let (backends, gates): (Vec<Box<dyn Backend>>, Vec<Gate>) = (0..replicas)
            .map(|_| {
                let (entered_tx, entered) = mpsc::channel();
                let (open, gate) = mpsc::channel();
                let backend = Gated {
                    capabilities: capabilities(),
                    entered: entered_tx,
                    gate,
                };
                (
                    Box::new(backend) as Box<dyn Backend>,
                    Gate { entered, open },
                )
            })
            .unzip();
        let scheduler = Scheduler::start("gated", backends, None, policy, VariantLabels::default());
        (scheduler.unwrap(), gates)
    }

    #[tokio::test]
    async fn batches_concurrent_sequences_and_keeps_order() {
        let (scheduler, batches) = scheduler(8, 100);
        let receivers = scheduler
            .submit((1..=6).map(|n| seq(n, n as u32 + 10)).collect())
            .unwrap();
        let results = collect(receivers).await;
        for (n, result) in (1..=6).zip(results) {
            assert_eq!(result.unwrap(), vec![n as f32, n as f32 + 10.0]);
        }
        assert_eq!(batches.lock().unwrap().as_slice(), &[6]);
    }

    #[tokio::test]
    async fn token_state_requests_get_their_own_batches() {
        let (scheduler, batches) = scheduler(8, 100);
        let tokens = Sequence {
            output: Output::TokenStates,
            ..Sequence::pooled(vec![5, 6, 7], AdapterId::BASE)
        };
        let results = collect(
            scheduler
                .submit(vec![seq(2, 1), tokens, seq(2, 3)])
                .unwrap(),
        )
        .await;
        assert_eq!(
            results[1].as_ref().unwrap(),
            &vec![5.0, 0.0, 6.0, 0.0, 7.0, 0.0]
        );
        assert_eq!(results[0].as_ref().unwrap(), &vec![2.0, 1.0]);
        let mut sizes = batches.lock().unwrap().clone();
        sizes.sort();
        assert_eq!(sizes, vec![1, 2]);
    }

    #[tokio::test]
    async fn respects_the_sequence_limit() {
        let (scheduler, batches) = scheduler(4, 100);
        collect(
            scheduler
                .submit((0..10).map(|n| seq(3, n)).collect())
                .unwrap(),
        )
        .await;
        assert_eq!(batches.lock().unwrap().as_slice(), &[4, 4, 2]);
    }

    #[tokio::test]
    async fn token_budget_groups_similar_lengths() {
        let (scheduler, batches) = scheduler(64, 100);
        // Padded cost: 2 x 500 fits the 1024 budget, 500 + 20 x 3 does not fit with the long ones.
        let mut sequences = vec![seq(500, 1)];
        sequences.extend((0..3).map(|n| seq(20, n + 2)));
        sequences.push(seq(500, 9));
        let results = collect(scheduler.submit(sequences).unwrap()).await;
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(batches.lock().unwrap().as_slice(), &[2, 3]);
    }

    #[tokio::test]
    async fn full_queue_refuses_at_once() {
        let (scheduler, gates) = gated(1, batching(1, 3));
        let first = scheduler.submit(vec![seq(2, 1)]).unwrap();
        assert_eq!(
            gates[0].wait_entered(),
            1,
            "the worker is now busy with the first"
        );
        let queued = scheduler.submit(vec![seq(2, 2), seq(2, 3)]).unwrap();
        let err = scheduler.submit(vec![seq(2, 4), seq(2, 5)]).unwrap_err();
        assert_eq!(
            err,
            SubmitError::QueueFull {
                queued: 2,
                limit: 3
            }
        );
        drop(gates);
        assert!(collect(first).await[0].is_ok());
        assert!(collect(queued).await.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn a_request_larger_than_the_queue_waits_for_an_empty_queue() {
        let (scheduler, gates) = gated(1, batching(1, 2));
        let first = scheduler.submit(vec![seq(2, 1)]).unwrap();
        gates[0].wait_entered(); // the worker is busy; the queue is empty
        let large = scheduler
            .submit(vec![seq(2, 2), seq(2, 3), seq(2, 4)])
            .unwrap();
        assert_eq!(
            scheduler.submit(vec![seq(2, 5)]).unwrap_err(),
            SubmitError::QueueFull {
                queued: 3,
                limit: 2
            }
        );
        drop(gates);
        assert!(collect(first).await[0].is_ok());
        assert!(collect(large).await.iter().all(Result::is_ok));
    }

    #[tokio::test]
    async fn a_bad_input_fails_alone() {
        let (scheduler, _) = scheduler(8, 100);
        let results = collect(
            scheduler
                .submit(vec![seq(3, 1), seq(3, 666), seq(3, 2)])
                .unwrap(),
        )
        .await;
        assert!(results[0].is_ok() && results[2].is_ok());
        assert_eq!(results[1], Err(BackendError::InvalidInput("bad id".into())));
    }

    #[tokio::test]
    async fn a_dead_backend_that_cannot_be_loaded_again_marks_the_model_unhealthy() {
        let (scheduler, _) = scheduler(8, 100);
        let results = collect(scheduler.submit(vec![seq(3, 999)]).unwrap()).await;
        assert!(matches!(results[0], Err(BackendError::Unhealthy(_))));
        assert!(!scheduler.is_healthy());
        assert_eq!(
            scheduler.submit(vec![seq(3, 1)]).unwrap_err(),
            SubmitError::Unhealthy
        );
    }

    /// A scheduler over one [`Fake`] that is loaded again after it dies, with the count of loads
    /// and the batch sizes every copy ran.
    fn restartable() -> (Scheduler, Arc<AtomicUsize>, Arc<Mutex<Vec<usize>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let loads = Arc::new(AtomicUsize::new(0));
        let fake = {
            let batches = Arc::clone(&batches);
            move || {
                Box::new(Fake {
                    capabilities: capabilities(),
                    batches: Arc::clone(&batches),
                    delay: Duration::ZERO,
                }) as Box<dyn Backend>
            }
        };
        let restart: Restart = {
            let (fake, loads) = (fake.clone(), Arc::clone(&loads));
            Arc::new(move || {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok(fake())
            })
        };
        let scheduler = Scheduler::start(
            "restart",
            vec![fake()],
            Some(restart),
            batching(8, 100),
            VariantLabels::default(),
        );
        (scheduler.unwrap(), loads, batches)
    }

    #[tokio::test]
    async fn a_poison_input_fails_alone_and_the_replica_is_loaded_again() {
        let (scheduler, loads, batches) = restartable();
        let results = collect(
            scheduler
                .submit(vec![seq(3, 1), seq(3, 999), seq(3, 2)])
                .unwrap(),
        )
        .await;
        assert_eq!(results[0], Ok(vec![3.0, 1.0]));
        assert_eq!(results[2], Ok(vec![3.0, 2.0]));
        assert!(
            matches!(&results[1], Err(BackendError::Inference(m)) if m.contains("quarantined")),
            "{:?}",
            results[1]
        );
        // Killed once by the batch and once by the poison input alone, loaded again each time.
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        assert!(scheduler.is_healthy());
        assert_eq!(*batches.lock().unwrap(), [3, 1, 1, 1]);
        // Sent again, the poison input is refused without reaching the backend.
        let again = collect(scheduler.submit(vec![seq(3, 999), seq(3, 4)]).unwrap()).await;
        assert!(matches!(&again[0], Err(BackendError::Inference(m)) if m.contains("quarantined")));
        assert_eq!(again[1], Ok(vec![3.0, 4.0]));
        assert_eq!(loads.load(Ordering::SeqCst), 2, "no replica died");
        assert_eq!(*batches.lock().unwrap(), [3, 1, 1, 1, 1]);
    }

    #[tokio::test]
    async fn a_replica_that_cannot_be_loaded_again_fails_what_waits_for_it() {
        let loads = Arc::new(AtomicUsize::new(0));
        let restart: Restart = {
            let loads = Arc::clone(&loads);
            Arc::new(move || {
                loads.fetch_add(1, Ordering::SeqCst);
                Err(BackendError::Load("the device is gone".into()))
            })
        };
        let fake = Fake {
            capabilities: capabilities(),
            batches: Arc::default(),
            delay: Duration::ZERO,
        };
        let scheduler = Scheduler::start(
            "unloadable",
            vec![Box::new(fake)],
            Some(restart),
            batching(8, 100),
            VariantLabels::default(),
        )
        .unwrap();
        let results = collect(scheduler.submit(vec![seq(3, 999)]).unwrap()).await;
        assert!(results[0].is_err());
        assert!(!scheduler.is_healthy());
        assert_eq!(
            scheduler.submit(vec![seq(3, 1)]).unwrap_err(),
            SubmitError::Unhealthy,
            "while no replica serves or is on its first restart, work is refused"
        );
        // It keeps trying, with a growing pause.
        std::thread::sleep(Duration::from_millis(300));
        assert!(loads.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn abandoned_inputs_are_dropped_unrun_and_hold_no_place() {
        let (scheduler, gates) = gated(1, batching(1, 4));
        let first = scheduler.submit(vec![seq(2, 1)]).unwrap();
        assert_eq!(gates[0].wait_entered(), 1, "the worker is busy");
        // Four callers queue and give up.
        drop(
            scheduler
                .submit((2..6).map(|n| seq(2, n)).collect())
                .unwrap(),
        );
        // The queue is full of them, yet a new caller gets in.
        let live = scheduler.submit(vec![seq(2, 7)]).unwrap();
        gates[0].release();
        assert!(collect(first).await[0].is_ok());
        assert_eq!(gates[0].wait_entered(), 1);
        gates[0].release();
        assert_eq!(collect(live).await[0], Ok(vec![2.0, 7.0]));
        // Only the two live batches ran: nothing entered the backend for the abandoned ones.
        assert!(gates[0].entered.try_recv().is_err());
        assert!(scheduler.shared.lock().items.is_empty());
    }

    #[tokio::test]
    async fn drop_finishes_queued_work() {
        let (scheduler, _) = replicated(1, batching(1, 100), Duration::from_millis(10));
        let receivers = scheduler
            .submit((0..5).map(|n| seq(2, n)).collect())
            .unwrap();
        drop(scheduler);
        let done = AtomicUsize::new(0);
        for result in collect(receivers).await {
            assert!(result.is_ok());
            done.fetch_add(1, Ordering::Relaxed);
        }
        assert_eq!(done.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn replicas_run_batches_side_by_side() {
        let policy = BatchPolicy {
            max_wait: Duration::ZERO,
            ..batching(4, 100)
        };
        let (scheduler, gates) = gated(2, policy);
        assert_eq!(scheduler.replicas(), 2);
        let receivers = scheduler
            .submit((0..8).map(|n| seq(2, n)).collect())
            .unwrap();
        // Both replicas hold a batch at once, before either is let go: one replica alone could
        // only ever hold one.
        let sizes = [gates[0].wait_entered(), gates[1].wait_entered()];
        assert_eq!(sizes, [4, 4]);
        gates.iter().for_each(Gate::release);
        let results = collect(receivers).await;
        for (n, result) in results.iter().enumerate() {
            assert_eq!(result.as_ref().unwrap(), &vec![2.0, n as f32], "order kept");
        }
    }

    #[tokio::test]
    async fn submit_to_each_reaches_every_replica() {
        let (scheduler, batches) = replicated(3, batching(8, 100), Duration::from_millis(100));
        let receivers = scheduler.submit_to_each(&seq(3, 7)).unwrap();
        assert_eq!(receivers.len(), 3);
        for result in collect(receivers).await {
            assert_eq!(result.unwrap(), vec![3.0, 7.0]);
        }
        // Each replica ran its own copy: three batches of one, none merged.
        assert_eq!(*batches.lock().unwrap(), [1, 1, 1]);
    }

    #[test]
    fn dropping_in_an_async_task_does_not_wait_for_the_queue() {
        let (scheduler, gates) = gated(1, batching(1, 100));
        let receivers = scheduler
            .submit((0..3).map(|n| seq(2, n)).collect())
            .unwrap();
        let (dropped, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(async move {
                tokio::spawn(async move { drop(scheduler) }).await.unwrap();
            });
            dropped.send(()).unwrap();
        });
        // The queue cannot move until the gate opens, so a drop that waited for it would hang.
        done.recv_timeout(Duration::from_secs(10))
            .expect("dropping the scheduler blocked its async task");
        drop(gates);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let results = runtime.block_on(collect(receivers));
        assert!(
            results.iter().all(Result::is_ok),
            "queued work is still answered"
        );
        join_stopped();
    }
}
