//! A broken test plugin: a valid shared library that lacks `embedrt_plugin_entry_v1`, which the
//! host must refuse with a clear error.

#![deny(missing_docs)]

/// Some unrelated export, so the library is not empty.
#[no_mangle]
pub extern "C" fn not_an_embedrt_plugin() -> u32 {
    42
}
