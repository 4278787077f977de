//! Call deadlines: the server's `request_timeout_ms`, or the caller's `grpc-timeout` when that
//! is shorter, answered with `DEADLINE_EXCEEDED`.

use std::future::Future;
use std::time::Duration;

use axum::http::HeaderMap;
use tonic::Status;

use crate::state::AppState;

/// How much before the call's own deadline the handler gives up, so that its
/// `DEADLINE_EXCEEDED` reaches the caller before the transport's CANCELLED (tonic's timers on
/// both ends run on the same `grpc-timeout`): a tenth of it, between these bounds.
const TRANSPORT_MARGIN: (Duration, Duration) =
    (Duration::from_millis(3), Duration::from_millis(50));

/// Runs `work`, a call that came with `headers`, within its deadline.
///
/// # Errors
///
/// `DEADLINE_EXCEEDED` when `work` runs past it (`work` is dropped then, and with it the call's
/// queued inputs), and `work`'s own status otherwise.
pub async fn within<T>(
    state: &AppState,
    headers: &HeaderMap,
    work: impl Future<Output = Result<T, Status>>,
) -> Result<T, Status> {
    // tonic's own timer for `grpc-timeout` runs outside the handler and answers CANCELLED:
    // answer a little before it, with the status a deadline means.
    let (least, most) = TRANSPORT_MARGIN;
    let asked = asked(headers).map(|asked| asked.saturating_sub((asked / 10).clamp(least, most)));
    state
        .within_deadline(asked, work)
        .await
        .map_err(|exceeded| Status::deadline_exceeded(exceeded.to_string()))?
}

/// The deadline a call asked for in its `grpc-timeout` header: at most 8 digits and a unit
/// (`H`, `M`, `S`, `m`, `u`, `n`), as gRPC's HTTP/2 protocol writes it. A header that is not
/// one is ignored (the server's own limit still holds).
fn asked(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.to_str().ok()?;
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = value.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let count: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(count * 3600),
        "M" => Duration::from_secs(count * 60),
        "S" => Duration::from_secs(count),
        "m" => Duration::from_millis(count),
        "u" => Duration::from_micros(count),
        "n" => Duration::from_nanos(count),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_grpc_timeout_headers() {
        let table = [
            ("5S", Some(Duration::from_secs(5))),
            ("250m", Some(Duration::from_millis(250))),
            ("2H", Some(Duration::from_secs(7200))),
            ("3M", Some(Duration::from_secs(180))),
            ("10u", Some(Duration::from_micros(10))),
            ("7n", Some(Duration::from_nanos(7))),
            ("123456789S", None),
            ("S", None),
            ("5s", None),
            ("-5S", None),
            ("", None),
        ];
        for (value, want) in table {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().unwrap());
            assert_eq!(asked(&headers), want, "{value:?}");
        }
        assert_eq!(asked(&HeaderMap::new()), None);
    }
}
