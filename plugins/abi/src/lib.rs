//! The C ABI between the embedrt host and an engine plugin.
//!
//! A plugin is a shared library that exports one symbol, [`ENTRY_SYMBOL`], of type [`EntryFn`]. It
//! returns a pointer to a static [`PluginApi`]: a function table that starts with the ABI version and
//! its own size. The host accepts a plugin when `abi_major == ABI_MAJOR` and `abi_minor >=` the minor
//! it needs, and reads only the fields that `struct_size` covers, so a later minor version may append
//! fields without breaking older hosts.
//!
//! Rules every plugin follows:
//! - the host owns every input array and every output buffer; a plugin never frees host memory and
//!   the host never frees plugin memory except through [`PluginApi::model_free`];
//! - errors are a [`Status`] plus a message written into a host-provided [`ErrorBuf`];
//! - no panic may cross an `extern "C"` function: every export catches it and returns
//!   [`Status::PANIC`], after which the host marks the model unhealthy.
//!
//! This crate holds only `#[repr(C)]` types and constants, and has no dependencies.

#![no_std]

use core::ffi::{c_char, c_void};

/// Incremented on any change that breaks existing plugins or hosts.
pub const ABI_MAJOR: u32 = 1;
/// Incremented when fields are appended to [`PluginApi`] or [`Capabilities`].
pub const ABI_MINOR: u32 = 0;
/// The NUL-terminated name of the one symbol a plugin exports.
pub const ENTRY_SYMBOL: &[u8] = b"embedrt_plugin_entry_v1\0";

/// The signature of [`ENTRY_SYMBOL`]: returns the plugin's static function table (never null).
pub type EntryFn = unsafe extern "C" fn() -> *const PluginApi;

/// An opaque handle to a model loaded by a plugin; freed only by [`PluginApi::model_free`].
pub type ModelHandle = *mut c_void;

/// The outcome of a plugin call.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub i32);

impl Status {
    /// The call succeeded.
    pub const OK: Status = Status(0);
    /// The call failed; the error buffer says why.
    pub const ERROR: Status = Status(1);
    /// The call was given arguments it cannot accept (bad batch, bad options).
    pub const INVALID_ARGUMENT: Status = Status(2);
    /// The plugin panicked or its model broke; the model must be treated as unhealthy from now on.
    pub const PANIC: Status = Status(3);
    /// The call is not implemented by this engine.
    pub const UNSUPPORTED: Status = Status(4);
}

/// A host-owned buffer that receives a UTF-8 error message (not NUL-terminated).
///
/// The plugin writes at most `capacity` bytes to `data` and stores the number written in `*len`.
#[repr(C)]
pub struct ErrorBuf {
    /// Start of the host's buffer.
    pub data: *mut u8,
    /// Size of the host's buffer in bytes.
    pub capacity: usize,
    /// Where the plugin stores the message length.
    pub len: *mut usize,
}

/// A padding-free ("varlen") batch of tokenized sequences, borrowed from the host for one call.
///
/// Sequence `i` occupies tokens `cu_seq_lengths[i] .. cu_seq_lengths[i + 1]` of the flat arrays.
#[repr(C)]
pub struct BatchView {
    /// Number of sequences.
    pub num_seqs: usize,
    /// Total number of tokens (the length of each flat array).
    pub num_tokens: usize,
    /// Token ids, all sequences concatenated.
    pub input_ids: *const u32,
    /// Token type (segment) ids, parallel to `input_ids`.
    pub token_type_ids: *const u32,
    /// Position of each token inside its own sequence, starting at 0.
    pub position_ids: *const u32,
    /// `num_seqs + 1` offsets into the flat arrays.
    pub cu_seq_lengths: *const u32,
    /// One task id per sequence: 0 for the base weights (the only task of models without
    /// adapters), `k + 1` for adapter `k`.
    pub task_ids: *const u32,
    /// Length of the longest sequence.
    pub max_len: u32,
}

/// A function that runs a batch on a model and writes `out_len` f32 values to the host's `out`.
pub type BatchFn = unsafe extern "C" fn(
    model: ModelHandle,
    batch: *const BatchView,
    out: *mut f32,
    out_len: usize,
    err: *mut ErrorBuf,
) -> Status;

/// What a loaded model can do; filled by [`PluginApi::model_capabilities`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Capabilities {
    /// Width of the pooled embedding.
    pub hidden_size: u32,
    /// Longest sequence the model accepts, special tokens included.
    pub max_tokens: u32,
    /// Non-zero when one batch may hold sequences of different tasks.
    pub mixed_tasks: u8,
    /// Non-zero when the engine pads the batch to `max_len` internally (its cost grows with padding).
    pub pads_batches: u8,
    /// Non-zero when [`PluginApi::model_embed_tokens`] is implemented.
    pub token_states: u8,
    /// Non-zero when task id 0 (the base weights, no adapter) can run.
    pub base_task: u8,
}

/// The plugin's function table. Every function pointer is always set.
#[repr(C)]
#[derive(Debug)]
pub struct PluginApi {
    /// Must equal the host's [`ABI_MAJOR`].
    pub abi_major: u32,
    /// The minor version the plugin was built against.
    pub abi_minor: u32,
    /// `size_of::<PluginApi>()` as the plugin knows it.
    pub struct_size: usize,
    /// NUL-terminated engine name, e.g. `"onnx"`.
    pub name: *const c_char,
    /// Loads a model. `config_json` is a NUL-terminated JSON object with `path`, `pooling`,
    /// `max_tokens` and the engine's `options`; on success `*out_model` holds an opaque handle.
    pub model_load: unsafe extern "C" fn(
        config_json: *const c_char,
        out_model: *mut ModelHandle,
        err: *mut ErrorBuf,
    ) -> Status,
    /// Describes a loaded model.
    pub model_capabilities: unsafe extern "C" fn(
        model: ModelHandle,
        out: *mut Capabilities,
        err: *mut ErrorBuf,
    ) -> Status,
    /// Runs a batch and writes `num_seqs * hidden_size` pooled f32 values to `out`.
    pub model_embed: BatchFn,
    /// Runs a batch and writes `num_tokens * hidden_size` f32 token states (last layer) to `out`.
    pub model_embed_tokens: BatchFn,
    /// Checks that the model can still serve.
    pub model_health: unsafe extern "C" fn(model: ModelHandle, err: *mut ErrorBuf) -> Status,
    /// Frees a model handle returned by `model_load`.
    pub model_free: unsafe extern "C" fn(model: ModelHandle),
}

// SAFETY: the table is immutable static data; `name` points to a static string.
unsafe impl Sync for PluginApi {}

/// The byte offset just past `model_free`, the last field of ABI 1.0: a plugin whose
/// `struct_size` is smaller lacks required functions.
pub const PLUGIN_API_V1_0_SIZE: usize = core::mem::size_of::<PluginApi>();
