//! The `candle` backend plugin: [`embedrt_candle::CandleBackend`] behind embedrt's plugin ABI.

#![deny(missing_docs)]

embedrt_backend_core::export_plugin!(embedrt_candle::CandleBackend);
