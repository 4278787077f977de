//! A broken test plugin: its function table declares ABI major version 99, which the host must
//! refuse before calling anything in it.

#![deny(missing_docs)]

use std::ffi::{c_char, c_void};

use embedrt_plugin_abi::{BatchView, Capabilities, PluginApi, Status, TextBuf};

unsafe extern "C" fn load(_: *const c_char, _: *mut *mut c_void, _: *mut TextBuf) -> Status {
    Status::ERROR
}
unsafe extern "C" fn capabilities(_: *mut c_void, _: *mut Capabilities, _: *mut TextBuf) -> Status {
    Status::ERROR
}
unsafe extern "C" fn run(
    _: *mut c_void,
    _: *const BatchView,
    _: *mut f32,
    _: usize,
    _: *mut TextBuf,
) -> Status {
    Status::ERROR
}
unsafe extern "C" fn health(_: *mut c_void, _: *mut TextBuf) -> Status {
    Status::ERROR
}
unsafe extern "C" fn free(_: *mut c_void) {}

static API: PluginApi = PluginApi {
    abi_major: 99,
    abi_minor: 0,
    struct_size: std::mem::size_of::<PluginApi>(),
    name: c"bad-abi".as_ptr(),
    model_load: load,
    model_capabilities: capabilities,
    model_embed: run,
    model_embed_tokens: run,
    model_health: health,
    model_free: free,
    set_log_sink: None,
    model_describe: None,
    model_files: None,
};

/// The entry point, returning a table of the wrong major version.
#[no_mangle]
pub extern "C" fn embedrt_plugin_entry_v1() -> *const PluginApi {
    &API
}
