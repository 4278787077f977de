//! The `candle` engine plugin: [`embedrt_candle::CandleBackend`] behind embedrt's plugin ABI.

embedrt_runtime::export_plugin!(c"candle", embedrt_candle::CandleBackend::load);
