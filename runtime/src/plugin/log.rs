//! The host's log sink for plugins: each line a plugin logs (through its own copy of `tracing`)
//! arrives here and is logged again through the host's subscriber, under the target
//! `embedrt_plugin` with the plugin's own target in the `from` field.

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};

use embedrt_plugin_abi::LogLevel;
use tracing::level_filters::LevelFilter;

/// The most verbose level the host's subscriber wants, as the ABI writes it.
pub(super) fn max_level() -> LogLevel {
    match LevelFilter::current() {
        LevelFilter::OFF => LogLevel::OFF,
        LevelFilter::ERROR => LogLevel::ERROR,
        LevelFilter::WARN => LogLevel::WARN,
        LevelFilter::INFO => LogLevel::INFO,
        LevelFilter::DEBUG => LogLevel::DEBUG,
        _ => LogLevel::TRACE,
    }
}

/// The [`LogFn`](embedrt_plugin_abi::LogFn) handed to plugins.
pub(super) unsafe extern "C" fn forward(
    level: LogLevel,
    target: *const u8,
    target_len: usize,
    message: *const u8,
    message_len: usize,
) {
    let text = |ptr: *const u8, len: usize| -> Cow<'_, str> {
        if ptr.is_null() {
            Cow::Borrowed("")
        } else {
            // SAFETY: the plugin passes `len` readable bytes that live for the call.
            String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(ptr, len) })
        }
    };
    // A panic must not unwind into the plugin.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let (from, message) = (text(target, target_len), text(message, message_len));
        match level {
            LogLevel::ERROR => tracing::error!(target: "embedrt_plugin", %from, "{message}"),
            LogLevel::WARN => tracing::warn!(target: "embedrt_plugin", %from, "{message}"),
            LogLevel::INFO => tracing::info!(target: "embedrt_plugin", %from, "{message}"),
            LogLevel::DEBUG => tracing::debug!(target: "embedrt_plugin", %from, "{message}"),
            _ => tracing::trace!(target: "embedrt_plugin", %from, "{message}"),
        }
    }));
}
