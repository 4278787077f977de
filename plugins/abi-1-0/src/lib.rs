//! A test plugin built against ABI 1.0 exactly as it was released: its own copy of the 1.0
//! `#[repr(C)]` types (no dependency on today's `embedrt-plugin-abi`), the 1.0 table with
//! `struct_size` of 1.0, and the 1.0 load document (`card` and `options`, nothing else read).
//!
//! Its model (`abi-1-0`) embeds a sequence as `[1 + (sum of ids + j) mod 7 for j in 0..hidden]`,
//! so a test can recompute every answer.

#![deny(missing_docs)]

use std::ffi::{c_char, c_void, CStr};

/// ABI 1.0's status codes.
const OK: i32 = 0;
const ERROR: i32 = 1;

/// ABI 1.0's `ErrorBuf`.
#[repr(C)]
pub struct ErrorBuf {
    data: *mut u8,
    capacity: usize,
    len: *mut usize,
}

/// ABI 1.0's `BatchView`.
#[repr(C)]
pub struct BatchView {
    num_seqs: usize,
    num_tokens: usize,
    input_ids: *const u32,
    token_type_ids: *const u32,
    position_ids: *const u32,
    cu_seq_lengths: *const u32,
    task_ids: *const u32,
    max_len: u32,
}

/// ABI 1.0's `Capabilities`.
#[repr(C)]
pub struct Capabilities {
    hidden_size: u32,
    max_tokens: u32,
    mixed_tasks: u8,
    pads_batches: u8,
    token_states: u8,
    base_task: u8,
}

type BatchFn =
    unsafe extern "C" fn(*mut c_void, *const BatchView, *mut f32, usize, *mut ErrorBuf) -> i32;

/// ABI 1.0's `PluginApi`.
#[repr(C)]
pub struct PluginApi {
    abi_major: u32,
    abi_minor: u32,
    struct_size: usize,
    name: *const c_char,
    model_load: unsafe extern "C" fn(*const c_char, *mut *mut c_void, *mut ErrorBuf) -> i32,
    model_capabilities: unsafe extern "C" fn(*mut c_void, *mut Capabilities, *mut ErrorBuf) -> i32,
    model_embed: BatchFn,
    model_embed_tokens: BatchFn,
    model_health: unsafe extern "C" fn(*mut c_void, *mut ErrorBuf) -> i32,
    model_free: unsafe extern "C" fn(*mut c_void),
}

// SAFETY: immutable static data.
unsafe impl Sync for PluginApi {}

/// A loaded model: its width and limit.
struct Model {
    hidden: u32,
    max_tokens: u32,
}

unsafe fn fail(err: *mut ErrorBuf, message: &str) -> i32 {
    if let Some(err) = err.as_mut() {
        let len = message.len().min(err.capacity);
        std::ptr::copy_nonoverlapping(message.as_ptr(), err.data, len);
        *err.len = len;
    }
    ERROR
}

unsafe extern "C" fn load(json: *const c_char, out: *mut *mut c_void, err: *mut ErrorBuf) -> i32 {
    let text = CStr::from_ptr(json).to_string_lossy();
    let Ok(document) = serde_json::from_str::<serde_json::Value>(&text) else {
        return fail(err, "bad load document");
    };
    let field = |key: &str| document["card"][key].as_u64().map(|v| v as u32);
    let (Some(hidden), Some(max_tokens)) = (field("hidden_size"), field("max_tokens")) else {
        return fail(
            err,
            "the load document lacks card.hidden_size or card.max_tokens",
        );
    };
    *out = Box::into_raw(Box::new(Model { hidden, max_tokens })).cast();
    OK
}

unsafe extern "C" fn capabilities(
    model: *mut c_void,
    out: *mut Capabilities,
    _: *mut ErrorBuf,
) -> i32 {
    let model = &*(model as *const Model);
    *out = Capabilities {
        hidden_size: model.hidden,
        max_tokens: model.max_tokens,
        mixed_tasks: 1,
        pads_batches: 0,
        token_states: 0,
        base_task: 1,
    };
    OK
}

unsafe extern "C" fn embed(
    model: *mut c_void,
    batch: *const BatchView,
    out: *mut f32,
    out_len: usize,
    err: *mut ErrorBuf,
) -> i32 {
    let (model, batch) = (&*(model as *const Model), &*batch);
    let hidden = model.hidden as usize;
    if out_len != batch.num_seqs * hidden {
        return fail(err, "output buffer of the wrong size");
    }
    let ids = std::slice::from_raw_parts(batch.input_ids, batch.num_tokens);
    let offsets = std::slice::from_raw_parts(batch.cu_seq_lengths, batch.num_seqs + 1);
    let out = std::slice::from_raw_parts_mut(out, out_len);
    for (i, row) in out.chunks_exact_mut(hidden).enumerate() {
        let sum: u64 = ids[offsets[i] as usize..offsets[i + 1] as usize]
            .iter()
            .map(|&id| u64::from(id))
            .sum();
        for (j, value) in row.iter_mut().enumerate() {
            *value = 1.0 + ((sum + j as u64) % 7) as f32;
        }
    }
    OK
}

unsafe extern "C" fn no_token_states(
    _: *mut c_void,
    _: *const BatchView,
    _: *mut f32,
    _: usize,
    err: *mut ErrorBuf,
) -> i32 {
    fail(err, "token states are not supported")
}

unsafe extern "C" fn health(_: *mut c_void, _: *mut ErrorBuf) -> i32 {
    OK
}

unsafe extern "C" fn free(model: *mut c_void) {
    drop(Box::from_raw(model as *mut Model));
}

static API: PluginApi = PluginApi {
    abi_major: 1,
    abi_minor: 0,
    struct_size: std::mem::size_of::<PluginApi>(),
    name: c"abi-1-0".as_ptr(),
    model_load: load,
    model_capabilities: capabilities,
    model_embed: embed,
    model_embed_tokens: no_token_states,
    model_health: health,
    model_free: free,
};

/// The entry point, returning the 1.0 table.
#[no_mangle]
pub extern "C" fn embedrt_plugin_entry_v1() -> *const PluginApi {
    &API
}
