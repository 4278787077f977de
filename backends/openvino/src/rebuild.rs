//! Hands back the memory OpenVINO keeps. The CPU plugin keeps, for the life of a compiled model,
//! the working memory of the largest batch it has run (about 320 MB for all-MiniLM's 64 x 256
//! tokens) and a few MB for every new shape; `ov::CompiledModel::release_memory` frees only part
//! of it and is not in the C API. Dropping the compiled model frees all of it, so once the model
//! has kept more than a budget and then sat idle, a watcher thread compiles it afresh from the
//! graph already read (a few hundred ms for all-MiniLM) and drops the old one. A batch that
//! arrives while that runs waits for it.
//!
//! What a model keeps is counted as the growth of the process's resident memory over its
//! inference calls, which is where OpenVINO allocates (read from `/proc/self/status`: on a
//! system without it nothing is counted and nothing is rebuilt).

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use openvino::{CompiledModel, Core, DeviceType, InferRequest, InferenceError, Model};

/// When a model is compiled afresh: after it has kept at least `kept_bytes` and then run nothing
/// for `idle`.
#[derive(Clone, Copy, Debug)]
pub struct RebuildPolicy {
    /// How long the model must have run nothing.
    pub idle: Duration,
    /// How much it must have kept since it was compiled.
    pub kept_bytes: u64,
}

/// A compiled model with its one inference request, counting what its inference calls kept.
pub struct Session {
    /// Kept alive for the request.
    _compiled: CompiledModel,
    request: InferRequest,
    /// Growth of resident memory over this session's inference calls.
    kept_bytes: u64,
    /// When the last inference call ended (or the session was compiled).
    last_infer: Instant,
}

impl Session {
    /// Compiles `model` for the CPU with `core`'s properties and makes its request.
    ///
    /// # Errors
    ///
    /// OpenVINO's, when it cannot compile the model or make the request.
    pub fn compile(core: &mut Core, model: &Model) -> Result<Self, InferenceError> {
        let mut compiled = core.compile_model(model, DeviceType::CPU)?;
        let request = compiled.create_infer_request()?;
        Ok(Self {
            _compiled: compiled,
            request,
            kept_bytes: 0,
            last_infer: Instant::now(),
        })
    }

    /// The request, to set inputs on and read outputs from.
    pub fn request(&mut self) -> &mut InferRequest {
        &mut self.request
    }

    /// Runs the request on its inputs, counting the resident memory it grew by.
    ///
    /// # Errors
    ///
    /// OpenVINO's, when inference fails.
    pub fn infer(&mut self) -> Result<(), InferenceError> {
        let before = resident_bytes();
        let result = self.request.infer();
        if let (Some(before), Some(after)) = (before, resident_bytes()) {
            self.kept_bytes += after.saturating_sub(before);
        }
        self.last_infer = Instant::now();
        result
    }
}

/// A [`Session`] shared with the watcher thread that rebuilds it by a [`RebuildPolicy`].
pub struct Rebuilding {
    session: Arc<Mutex<Session>>,
    /// Dropped to stop the watcher.
    stop: Option<mpsc::Sender<()>>,
    watcher: Option<JoinHandle<()>>,
}

impl Rebuilding {
    /// Shares `session` (compiled from `model` by `core`) and, with a `policy`, starts the thread
    /// that rebuilds it.
    pub fn start(
        core: Core,
        model: Model,
        session: Session,
        policy: Option<RebuildPolicy>,
    ) -> Self {
        let session = Arc::new(Mutex::new(session));
        let Some(policy) = policy else {
            return Self {
                session,
                stop: None,
                watcher: None,
            };
        };
        let (stop, stopped) = mpsc::channel();
        let watched = Arc::clone(&session);
        let watcher = std::thread::Builder::new()
            .name("openvino-rebuild".into())
            .spawn(move || watch(core, model, &watched, policy, &stopped))
            .expect("spawn the openvino rebuild thread");
        Self {
            session,
            stop: Some(stop),
            watcher: Some(watcher),
        }
    }

    /// The session, held until the guard drops (a rebuild waits for it, and it for a rebuild).
    pub fn lock(&self) -> MutexGuard<'_, Session> {
        // A panic mid-batch leaves a session OpenVINO can still run: its next inputs replace all.
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Rebuilding {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

/// Until `stopped` says so, rebuilds `session` from `model` whenever `policy` says it is time.
fn watch(
    mut core: Core,
    model: Model,
    session: &Mutex<Session>,
    policy: RebuildPolicy,
    stopped: &mpsc::Receiver<()>,
) {
    let poll = (policy.idle / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(poll) {
        let mut current = session.lock().unwrap_or_else(PoisonError::into_inner);
        // Something must have been kept, even with a budget of 0, or an idle model would be
        // compiled again at every poll.
        let kept_enough = current.kept_bytes > 0 && current.kept_bytes >= policy.kept_bytes;
        if !kept_enough || current.last_infer.elapsed() < policy.idle {
            continue;
        }
        let started = Instant::now();
        let kept_mb = current.kept_bytes / (1 << 20);
        match Session::compile(&mut core, &model) {
            Ok(fresh) => {
                *current = fresh;
                tracing::info!(
                    kept_mb,
                    compile_ms = started.elapsed().as_millis() as u64,
                    "OpenVINO model compiled afresh to hand back the memory it kept"
                );
            }
            Err(e) => {
                // The old session still serves; counting starts over so that this is not retried
                // at every poll.
                current.kept_bytes = 0;
                tracing::warn!(kept_mb, error = %e, "OpenVINO model could not be compiled afresh");
            }
        }
    }
}

/// The process's resident memory, where `/proc/self/status` tells it.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_on_linux() {
        let bytes = resident_bytes().expect("/proc/self/status has VmRSS");
        assert!(bytes > 1 << 20, "{bytes} bytes");
    }
}
