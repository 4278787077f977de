//! `EmbedStream`: many requests in flight on one stream, each answered when it completes.

use std::sync::Arc;

use axum::http::HeaderMap;
use embedrt_proto::v1 as pb;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::convert;
use crate::admission::Ticket;
use crate::shutdown::until_stopped;
use crate::state::AppState;

/// The response stream of `EmbedStream`.
pub type Answers = ReceiverStream<Result<pb::EmbedStreamResponse, Status>>;

/// Requests of one stream being answered at once; beyond it the server stops reading the
/// stream until one completes (HTTP/2 flow control then holds the client back).
const MAX_IN_FLIGHT: usize = 256;

/// Answers every message of `inbound` (whose call came with `headers`) as it completes. Reading
/// stops when the client ends its side, the stream breaks, or `shutdown` turns true; every
/// request read by then is still answered before the response stream ends (with the stream's
/// error, if it broke). The stream holds `ticket` (its place among the requests in flight)
/// until it ends. When the client cancels the call, the requests in flight are dropped
/// (their queued inputs are not run).
pub fn answer(
    state: Arc<AppState>,
    mut inbound: Streaming<pb::EmbedStreamRequest>,
    headers: HeaderMap,
    shutdown: watch::Receiver<bool>,
    ticket: Ticket,
) -> Answers {
    let (answers, receiver) = mpsc::channel(MAX_IN_FLIGHT);
    let headers = Arc::new(headers);
    tokio::spawn(async move {
        // The stream holds its place among the requests in flight until it ends.
        let _ticket = ticket;
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut tasks = JoinSet::new();
        let broken = loop {
            let permit = Arc::clone(&in_flight).acquire_owned().await;
            let next = tokio::select! {
                next = inbound.message() => next,
                _ = until_stopped(shutdown.clone()) => break None,
                // The client cancelled (or the connection went): nobody reads the answers.
                () = answers.closed() => break None,
            };
            let message = match next {
                Ok(Some(message)) => message,
                Ok(None) => break None,
                Err(status) => break Some(status),
            };
            let (state, answers, headers) =
                (Arc::clone(&state), answers.clone(), Arc::clone(&headers));
            tasks.spawn(async move {
                let answer = answer_one(&state, message, &headers).await;
                let _ = answers.send(Ok(answer)).await;
                drop(permit);
            });
            while tasks.try_join_next().is_some() {}
        };
        let cancelled = tokio::select! {
            () = join_all(&mut tasks) => false,
            () = answers.closed() => true,
        };
        if cancelled {
            // Dropping the requests in flight drops their queued inputs unrun.
            tasks.abort_all();
            tracing::debug!("EmbedStream cancelled by the client; its requests in flight dropped");
            return;
        }
        if let Some(status) = broken {
            let _ = answers.send(Err(status)).await;
        }
    });
    ReceiverStream::new(receiver)
}

/// Waits for every task of `tasks`.
async fn join_all(tasks: &mut JoinSet<()>) {
    while tasks.join_next().await.is_some() {}
}

/// The answer to one stream message: its embeddings, or the status a unary call would get.
async fn answer_one(
    state: &AppState,
    message: pb::EmbedStreamRequest,
    headers: &HeaderMap,
) -> pb::EmbedStreamResponse {
    let id = message.id;
    let outcome = async {
        let registry = state.registry().map_err(convert::status)?;
        let request = message
            .request
            .ok_or_else(|| Status::invalid_argument("the message has no `request`"))?;
        super::embed(state, &registry, request, headers).await
    };
    // Each message has the server's deadline (the call's `grpc-timeout` bounds the whole stream).
    let outcome = super::deadline::within(state, &HeaderMap::new(), outcome).await;
    let outcome = match outcome {
        Ok(response) => pb::embed_stream_response::Outcome::Response(response),
        Err(status) => pb::embed_stream_response::Outcome::Error(pb::Error {
            code: status.code() as i32,
            message: status.message().to_string(),
        }),
    };
    pb::EmbedStreamResponse {
        id,
        outcome: Some(outcome),
    }
}
