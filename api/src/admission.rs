//! Admission: how much work the server takes on at once. Every API request (HTTP and gRPC)
//! holds a place among `max_requests_in_flight` until it is answered, and every HTTP body the
//! bytes it has sent so far of `max_body_bytes_in_flight`. A request that finds no place, or
//! whose `Content-Length` is more than the bytes left, is refused before its body is read (429
//! with `Retry-After`, `RESOURCE_EXHAUSTED`); a body that runs out of bytes while it arrives is
//! refused then. So a flood of large uploads cannot hold the server's memory, and slow uploads
//! hold only what they sent.

use std::sync::{Arc, Mutex};

use embedrt_runtime::config::AdmissionLimits;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Body bytes are counted in blocks of this size (a semaphore takes at most `u32::MAX` permits
/// at once).
const BLOCK: usize = 1024;

/// The places and body bytes left.
pub struct Admission {
    requests: Arc<Semaphore>,
    body_blocks: Arc<Semaphore>,
    limits: AdmissionLimits,
}

/// A request's place and its body's bytes; given back when dropped.
pub struct Ticket {
    _request: OwnedSemaphorePermit,
    body: Arc<BodyBytes>,
}

/// The body bytes one request holds, taken as they arrive.
pub struct BodyBytes {
    budget: Arc<Semaphore>,
    max: usize,
    held: Mutex<Held>,
}

/// What a [`BodyBytes`] holds: the bytes arrived, and the blocks taken for them.
#[derive(Default)]
struct Held {
    bytes: usize,
    blocks: Option<OwnedSemaphorePermit>,
}

/// Why a request was not admitted.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    /// Every place is taken.
    #[error("the server is busy: {0} requests are in flight (`[server] max_requests_in_flight`); retry later")]
    Requests(usize),
    /// The bodies being read fill the byte budget.
    #[error(
        "the server is busy: request bodies being read fill its budget of {0} bytes \
         (`[server] max_body_bytes_in_flight`); retry later"
    )]
    BodyBytes(usize),
}

impl Admission {
    /// Room for `limits`.
    pub fn new(limits: AdmissionLimits) -> Self {
        Self {
            requests: Arc::new(Semaphore::new(limits.max_requests)),
            body_blocks: Arc::new(Semaphore::new(blocks(limits.max_body_bytes))),
            limits,
        }
    }

    /// Admits a request whose body says it will bring `expected_body_bytes` (0 for a gRPC call,
    /// whose message is bounded by the gRPC limits); its bytes are taken as they arrive
    /// ([`Ticket::body`]).
    ///
    /// # Errors
    ///
    /// [`Refusal`] when no place is free, or fewer bytes than `expected_body_bytes` are.
    pub fn admit(&self, expected_body_bytes: usize) -> Result<Ticket, Refusal> {
        let request = Arc::clone(&self.requests)
            .try_acquire_owned()
            .map_err(|_| Refusal::Requests(self.limits.max_requests))?;
        if blocks(expected_body_bytes) > self.body_blocks.available_permits() {
            return Err(Refusal::BodyBytes(self.limits.max_body_bytes));
        }
        Ok(Ticket {
            _request: request,
            body: Arc::new(BodyBytes {
                budget: Arc::clone(&self.body_blocks),
                max: self.limits.max_body_bytes,
                held: Mutex::default(),
            }),
        })
    }
}

impl Ticket {
    /// The request's body bytes, to take as the body arrives.
    pub fn body(&self) -> Arc<BodyBytes> {
        Arc::clone(&self.body)
    }
}

impl BodyBytes {
    /// Takes `bytes` more of the budget for a chunk that arrived.
    ///
    /// # Errors
    ///
    /// [`Refusal::BodyBytes`] when the budget has not that many left.
    pub fn take(&self, bytes: usize) -> Result<(), Refusal> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let had = held
            .blocks
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits);
        let more = blocks(held.bytes + bytes).saturating_sub(had);
        if more > 0 {
            let refused = Refusal::BodyBytes(self.max);
            let more = u32::try_from(more).map_err(|_| refused)?;
            let taken = Arc::clone(&self.budget)
                .try_acquire_many_owned(more)
                .map_err(|_| refused)?;
            match &mut held.blocks {
                Some(blocks) => blocks.merge(taken),
                None => held.blocks = Some(taken),
            }
        }
        held.bytes += bytes;
        Ok(())
    }
}

/// Blocks of [`BLOCK`] bytes that hold `bytes`.
fn blocks(bytes: usize) -> usize {
    bytes.div_ceil(BLOCK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_within_both_limits_and_gives_room_back() {
        let admission = Admission::new(AdmissionLimits {
            max_requests: 3,
            max_body_bytes: 10 * BLOCK,
        });
        let big = admission.admit(8 * BLOCK).unwrap();
        // Announced bytes are not taken until they arrive.
        let small = admission.admit(8 * BLOCK).unwrap();
        big.body().take(8 * BLOCK).unwrap();
        assert_eq!(
            small.body().take(3 * BLOCK).err(),
            Some(Refusal::BodyBytes(10 * BLOCK))
        );
        assert_eq!(
            admission.admit(3 * BLOCK).err(),
            Some(Refusal::BodyBytes(10 * BLOCK)),
            "more than is left is refused before it is read"
        );
        // A byte at a time costs a block per 1,024 bytes, not per chunk.
        for _ in 0..2 * BLOCK {
            small.body().take(1).unwrap();
        }
        let grpc = admission.admit(0).unwrap();
        assert_eq!(admission.admit(0).err(), Some(Refusal::Requests(3)));
        drop((big, grpc));
        let again = admission.admit(8 * BLOCK).unwrap();
        again.body().take(8 * BLOCK).unwrap();
        drop(small);
        assert!(admission.admit(2 * BLOCK).is_ok());
    }
}
