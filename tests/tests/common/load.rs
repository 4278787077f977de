//! Concurrent clients: running a closure on many threads at once, and keeping a server under
//! load while a test's steps run.

use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::Value;

use super::http::client;

/// Runs `f(0..n)` on `n` threads at once and returns the results in order.
pub fn concurrently<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = (0..n).map(|i| scope.spawn(move || f(i))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// What came of a load: requests sent and, for each one that did not get 200, what came back.
pub struct LoadOutcome {
    /// Requests sent.
    pub sent: usize,
    /// One line per request that did not get 200.
    pub failures: Vec<String>,
}

/// Runs `during` on this thread while `clients` threads send `POST {url}/v1/embeddings` with
/// `body(client, round)` back to back; the load stops when `during` returns or panics (a failed
/// assertion in `during` then fails the test instead of leaving the load running forever).
pub fn under_load<T>(
    url: &str,
    clients: usize,
    body: impl Fn(usize, usize) -> Value + Sync,
    during: impl FnOnce() -> T,
) -> (T, LoadOutcome) {
    /// Sets the flag when dropped, on return and on unwinding alike.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let load = scope.spawn(|| embed_until_stopped(url, clients, &stop, &body));
        let value = {
            let _stop = StopOnDrop(&stop);
            during()
        };
        let outcome = load.join().unwrap();
        (value, outcome)
    })
}

/// Sends `POST {url}/v1/embeddings` with `body(client, round)` from `clients` threads, back to
/// back, until `stop` is set.
fn embed_until_stopped(
    url: &str,
    clients: usize,
    stop: &AtomicBool,
    body: impl Fn(usize, usize) -> Value + Sync,
) -> LoadOutcome {
    let outcomes = concurrently(clients, |client_index| {
        let (mut sent, mut failures) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            let response = client()
                .post(format!("{url}/v1/embeddings"))
                .json(&body(client_index, sent))
                .send();
            match response {
                Ok(r) if r.status() == 200 => {}
                other => failures.push(format!("{other:?}")),
            }
            sent += 1;
        }
        (sent, failures)
    });
    outcomes.into_iter().fold(
        LoadOutcome {
            sent: 0,
            failures: Vec::new(),
        },
        |mut outcome, (sent, mut failures)| {
            outcome.sent += sent;
            outcome.failures.append(&mut failures);
            outcome
        },
    )
}
