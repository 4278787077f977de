//! Forwarding a plugin's log to the host.
//!
//! A plugin links its own copy of `tracing`, whose events reach no subscriber of the host's. When
//! the host calls [`set_log_sink`], the plugin installs [`Forwarder`] as its global subscriber: each
//! event at or above the host's level becomes one line (the message, then `key=value` fields) handed
//! to the host's [`LogFn`], which logs it as its own. Spans are not forwarded.

use std::fmt::{self, Write as _};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use embedrt_plugin_abi::{LogFn, LogLevel};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The host's sink, set once.
static SINK: OnceLock<LogFn> = OnceLock::new();

/// ABI 1.1 `set_log_sink`: installs the forwarder for lines up to `max_level`.
pub(super) unsafe extern "C" fn set_log_sink(sink: LogFn, max_level: LogLevel) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        if SINK.set(sink).is_ok() {
            let forwarder = Forwarder {
                max_level: level_filter(max_level),
            };
            let _ = tracing::subscriber::set_global_default(forwarder);
        }
    }));
}

fn level_filter(level: LogLevel) -> LevelFilter {
    match level {
        LogLevel::OFF => LevelFilter::OFF,
        LogLevel::ERROR => LevelFilter::ERROR,
        LogLevel::WARN => LevelFilter::WARN,
        LogLevel::INFO => LevelFilter::INFO,
        LogLevel::DEBUG => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

fn log_level(level: &Level) -> LogLevel {
    match *level {
        Level::ERROR => LogLevel::ERROR,
        Level::WARN => LogLevel::WARN,
        Level::INFO => LogLevel::INFO,
        Level::DEBUG => LogLevel::DEBUG,
        Level::TRACE => LogLevel::TRACE,
    }
}

/// The plugin's subscriber: formats events and hands them to the host's sink.
struct Forwarder {
    max_level: LevelFilter,
}

impl Subscriber for Forwarder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= &self.max_level
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(self.max_level)
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(sink) = SINK.get() else { return };
        let mut line = Line::default();
        event.record(&mut line);
        let metadata = event.metadata();
        let target = metadata.target();
        // SAFETY: both strings outlive the call; the host copies what it keeps.
        unsafe {
            sink(
                log_level(metadata.level()),
                target.as_ptr(),
                target.len(),
                line.0.as_ptr(),
                line.0.len(),
            )
        };
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// One event as text: the message first, then the other fields as `key=value`.
#[derive(Default)]
struct Line(String);

impl Visit for Line {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.push(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.push(field, format_args!("{value:?}"));
    }
}

impl Line {
    fn push(&mut self, field: &Field, value: fmt::Arguments<'_>) {
        if field.name() == "message" {
            let fields = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value}{fields}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::{Arc, Mutex};

    /// Records every event into one shared line.
    struct Capture(Arc<Mutex<Line>>);

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            event.record(&mut *self.0.lock().unwrap());
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn a_line_puts_the_message_first() {
        let line = Arc::new(Mutex::new(Line::default()));
        tracing::subscriber::with_default(Capture(Arc::clone(&line)), || {
            tracing::info!(threads = 2, file = "m.onnx", "session ready");
        });
        assert_eq!(
            line.lock().unwrap().0,
            "session ready threads=2 file=m.onnx"
        );
    }

    #[test]
    fn levels_map_both_ways() {
        assert_eq!(level_filter(log_level(&Level::WARN)), LevelFilter::WARN);
        assert_eq!(level_filter(LogLevel::OFF), LevelFilter::OFF);
        assert!(
            Level::DEBUG > LevelFilter::INFO,
            "DEBUG lines are filtered at INFO"
        );
    }
}
