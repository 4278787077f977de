//! The C ABI between the embedrt host and a backend plugin.
//!
//! A plugin is a shared library that exports one symbol, [`ENTRY_SYMBOL`], of type [`EntryFn`]. It
//! returns a pointer to a static [`PluginApi`]: a function table that starts with the ABI version and
//! its own size. The host accepts a plugin when `abi_major == ABI_MAJOR`, whatever its minor, and
//! reads only the fields that both its own version and the plugin's `struct_size` cover
//! ([`read_table`]): a later minor appends fields without breaking older hosts, and a newer host
//! still loads older plugins (it does not call what they lack).
//!
//! Rules every plugin follows:
//! - the host owns every input array and every output buffer; a plugin never frees host memory and
//!   the host never frees plugin memory except through [`PluginApi::model_free`];
//! - errors are a [`Status`] plus a message written into a host-provided [`TextBuf`];
//! - no panic may cross an `extern "C"` function: every export catches it and returns
//!   [`Status::PANIC`], after which the host marks the model unhealthy.
//!
//! # Versions
//!
//! | minor | what it added |
//! |---|---|
//! | 1.0 | the table up to [`PluginApi::model_free`]; [`Capabilities`]; the load document without `version`, `device` or `dtype` |
//! | 1.1 | [`PluginApi::set_log_sink`], [`PluginApi::model_describe`] (the sized [`ModelDescription`]) and [`PluginApi::model_files`]; load document version 1 with `device` and `dtype` |
//!
//! Sizes are frozen per version ([`PLUGIN_API_V1_0_SIZE`], [`PLUGIN_API_V1_1_SIZE`],
//! [`MODEL_DESCRIPTION_V1_1_SIZE`]): they are offsets of fields, so appending a field never
//! changes them. Every field appended after 1.0 is nullable (`Option` of a function pointer), so a
//! table copied from an older plugin reads the missing fields as `None`.
//!
//! # The load document (JSON)
//!
//! [`PluginApi::model_load`] takes a NUL-terminated UTF-8 JSON object, version
//! [`LOAD_DOCUMENT_VERSION`]:
//!
//! | key | type | meaning |
//! |---|---|---|
//! | `version` | integer | the document's version; absent means the 1.0 form |
//! | `card.path` | string | the model folder (Hugging Face layout) |
//! | `card.architecture` | string | the model family, e.g. `"bert"`, `"xlm-roberta"`, `"mpnet"`, `"modernbert"`, `"jina-v3"`: which of the backend's model implementations to use |
//! | `card.hidden_size` | integer | width of the encoder's states (of the pooled embedding, for an embedder) |
//! | `card.vocab_size` | integer | number of token ids |
//! | `card.max_tokens` | integer | longest input, special tokens included |
//! | `card.pooling` | string | `"mean"`, `"cls"`, `"last-token"` or `"max"` (added within version 1: a backend that pools itself refuses what it does not know) |
//! | `card.normalize` | boolean | whether the model's pipeline L2-normalizes (the host does it; backends may ignore it) |
//! | `card.pad_token_id` | integer | the id padding gets |
//! | `card.tasks` | array of strings | task adapter names; batch task id `k + 1` selects adapter `k` |
//! | `card.head` | object, optional | what the network ends in (added within version 1): absent for an embedder (token states pooled, `card.hidden_size` wide); `{"kind": "classifier", "labels": N}` for a sequence-classification head (a cross-encoder), whose output row per sequence is its `N` raw logits, and whose capabilities report `N` as the hidden size |
//! | `options` | object or null | the backend's own options from the config file |
//! | `device` | string | `"cpu"` or `"cuda:N"`; absent means `"cpu"` |
//! | `dtype` | string or null | `"f32"`, `"f16"`, `"bf16"` or `"int8"`; null: the backend's default |
//! | `batch` | object, optional | the largest batch the host sends: `max_rows` (sequences) and `max_tokens` (padding included); added within version 1, so a backend must do without it |
//! | `cpu_threads` | integer, optional | the CPU threads the host gives this copy of the model (it may load one model several times and split the cores); added within version 1: absent means every core |
//!
//! Within one version the host may add keys; backends ignore keys they do not know (but refuse
//! unknown keys inside `options`, which are the user's). A change of meaning or a removed key is a
//! new version. A backend that cannot run the `device` or `dtype` asked for fails the load with a
//! message that says so.
//!
//! # The files query and answer (JSON)
//!
//! [`PluginApi::model_files`] takes a *files query*: the load document without `card` (`version`,
//! `options`, `device`, `dtype`), since the weights are chosen before the model's own files are
//! there. It writes which files of a model repository the backend needs, so the host can download
//! them for a model given as a hub id: `{"alternatives": [{"files": [...], "companions": [...]},
//! ...]}`. The host takes the first alternative whose `files` the repository
//! has, downloads them, and downloads each of its `companions` that the repository lists (external
//! weight data such as `onnx/model.onnx_data`); a listed companion that cannot be had is an error.
//! No alternatives means the backend needs no weight files.

#![no_std]
#![deny(missing_docs)]

use core::ffi::{c_char, c_void};
use core::mem::{offset_of, size_of, MaybeUninit};

/// Incremented on any change that breaks existing plugins or hosts.
pub const ABI_MAJOR: u32 = 1;
/// Incremented when fields are appended to [`PluginApi`] or [`ModelDescription`].
pub const ABI_MINOR: u32 = 1;
/// The NUL-terminated name of the one symbol a plugin exports.
pub const ENTRY_SYMBOL: &[u8] = b"embedrt_plugin_entry_v1\0";
/// The version of the load document this ABI describes.
pub const LOAD_DOCUMENT_VERSION: u32 = 1;

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
    /// The call is not implemented by this backend.
    pub const UNSUPPORTED: Status = Status(4);
}

/// A host-owned buffer that receives UTF-8 text (not NUL-terminated): an error message, or a
/// JSON answer.
///
/// The plugin writes at most `capacity` bytes to `data` and stores the number written in `*len`.
#[repr(C)]
pub struct TextBuf {
    /// Start of the host's buffer.
    pub data: *mut u8,
    /// Size of the host's buffer in bytes.
    pub capacity: usize,
    /// Where the plugin stores the text's length.
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
    /// One task id per sequence, the adapter it runs with: 0 for the base weights (the only task
    /// of models without adapters), `k + 1` for adapter `k` of the load document's `card.tasks`.
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
    err: *mut TextBuf,
) -> Status;

/// What a loaded model can do, as ABI 1.0 describes it; filled by
/// [`PluginApi::model_capabilities`]. Frozen: its successor is [`ModelDescription`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Capabilities {
    /// Width of the pooled embedding.
    pub hidden_size: u32,
    /// Longest input the model accepts, in tokens, special tokens included.
    pub max_input_tokens: u32,
    /// Non-zero when one batch may hold sequences of different tasks.
    pub mixed_tasks: u8,
    /// Non-zero when the backend pads the batch to `max_len` internally (its cost grows with
    /// padding).
    pub pads_batches: u8,
    /// Non-zero when [`PluginApi::model_embed_tokens`] is implemented.
    pub token_states: u8,
    /// Non-zero when task id 0 (the base weights, no adapter) can run.
    pub base_task: u8,
}

/// The number format a model computes in, as it crosses the ABI.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DTypeCode(pub u32);

impl DTypeCode {
    /// Not reported.
    pub const UNKNOWN: DTypeCode = DTypeCode(0);
    /// 32-bit float.
    pub const F32: DTypeCode = DTypeCode(1);
    /// 16-bit float.
    pub const F16: DTypeCode = DTypeCode(2);
    /// bfloat16.
    pub const BF16: DTypeCode = DTypeCode(3);
    /// 8-bit integer (quantized).
    pub const INT8: DTypeCode = DTypeCode(4);
}

/// What a loaded model can do and how it runs; filled by [`PluginApi::model_describe`].
///
/// Sized: the host sets `struct_size` to the size of its own struct before the call; the plugin
/// writes only the fields both sides know and stores the number of bytes it wrote in
/// `struct_size`. Fields beyond that keep the host's defaults.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ModelDescription {
    /// In: the host's `size_of::<ModelDescription>()`; out: the bytes the plugin wrote.
    pub struct_size: usize,
    /// What ABI 1.0 already described.
    pub capabilities: Capabilities,
    /// The number format the model computes in.
    pub dtype: DTypeCode,
}

/// The size of [`ModelDescription`] in ABI 1.1 (frozen).
pub const MODEL_DESCRIPTION_V1_1_SIZE: usize =
    offset_of!(ModelDescription, dtype) + size_of::<DTypeCode>();

/// How severe a log line is, most severe first (as `tracing`'s levels).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogLevel(pub u32);

impl LogLevel {
    /// Nothing is logged.
    pub const OFF: LogLevel = LogLevel(0);
    /// An error.
    pub const ERROR: LogLevel = LogLevel(1);
    /// A warning.
    pub const WARN: LogLevel = LogLevel(2);
    /// Information.
    pub const INFO: LogLevel = LogLevel(3);
    /// Debugging detail.
    pub const DEBUG: LogLevel = LogLevel(4);
    /// Tracing detail.
    pub const TRACE: LogLevel = LogLevel(5);
}

/// The host's log sink: receives one formatted line (UTF-8, not NUL-terminated) from the plugin,
/// with the `target` (module path) it came from. May be called from any thread.
pub type LogFn = unsafe extern "C" fn(
    level: LogLevel,
    target: *const u8,
    target_len: usize,
    message: *const u8,
    message_len: usize,
);

/// The plugin's function table. Every 1.0 function pointer is always set.
#[repr(C)]
#[derive(Debug)]
pub struct PluginApi {
    /// Must equal the host's [`ABI_MAJOR`].
    pub abi_major: u32,
    /// The minor version the plugin was built against.
    pub abi_minor: u32,
    /// `size_of::<PluginApi>()` as the plugin knows it.
    pub struct_size: usize,
    /// NUL-terminated backend name, e.g. `"onnx"`.
    pub name: *const c_char,
    /// Loads a model. `load_document` is the NUL-terminated JSON load document (see the crate
    /// docs); on success `*out_model` holds an opaque handle.
    pub model_load: unsafe extern "C" fn(
        load_document: *const c_char,
        out_model: *mut ModelHandle,
        err: *mut TextBuf,
    ) -> Status,
    /// Describes a loaded model in the 1.0 form.
    pub model_capabilities: unsafe extern "C" fn(
        model: ModelHandle,
        out: *mut Capabilities,
        err: *mut TextBuf,
    ) -> Status,
    /// Runs a batch and writes `num_seqs * hidden_size` pooled f32 values to `out`.
    pub model_embed: BatchFn,
    /// Runs a batch and writes `num_tokens * hidden_size` f32 token states (last layer) to `out`.
    pub model_embed_tokens: BatchFn,
    /// Checks that the model can still serve.
    pub model_health: unsafe extern "C" fn(model: ModelHandle, err: *mut TextBuf) -> Status,
    /// Frees a model handle returned by `model_load`.
    pub model_free: unsafe extern "C" fn(model: ModelHandle),
    /// 1.1: sends the plugin's log lines up to `max_level` to `sink`. The host calls it once,
    /// right after opening the library and before loading any model.
    pub set_log_sink: Option<unsafe extern "C" fn(sink: LogFn, max_level: LogLevel)>,
    /// 1.1: describes a loaded model (the sized successor of `model_capabilities`).
    pub model_describe: Option<
        unsafe extern "C" fn(
            model: ModelHandle,
            out: *mut ModelDescription,
            err: *mut TextBuf,
        ) -> Status,
    >,
    /// 1.1: writes the files answer (see the crate docs) for the NUL-terminated JSON
    /// `files_query` into `out`; needs no loaded model.
    pub model_files: Option<
        unsafe extern "C" fn(
            files_query: *const c_char,
            out: *mut TextBuf,
            err: *mut TextBuf,
        ) -> Status,
    >,
}

// SAFETY: the table is immutable static data; `name` points to a static string.
unsafe impl Sync for PluginApi {}

/// The size of [`PluginApi`] in ABI 1.0 (frozen): a plugin whose `struct_size` is smaller lacks
/// required functions.
pub const PLUGIN_API_V1_0_SIZE: usize = offset_of!(PluginApi, set_log_sink);
/// The size of [`PluginApi`] in ABI 1.1 (frozen).
pub const PLUGIN_API_V1_1_SIZE: usize =
    offset_of!(PluginApi, model_files) + size_of::<Option<unsafe extern "C" fn()>>();

// ABI 1.0's table is two u32s and eight pointer-sized fields; 1.1 is the newest minor, so its size
// is the whole struct (a 1.2 adds its own frozen constant beside these).
const POINTER: usize = size_of::<*const c_void>();
const _: () = assert!(PLUGIN_API_V1_0_SIZE == 2 * size_of::<u32>() + 8 * POINTER);
const _: () = assert!(PLUGIN_API_V1_1_SIZE == size_of::<PluginApi>());
const _: () = assert!(MODEL_DESCRIPTION_V1_1_SIZE == size_of::<ModelDescription>());

/// The first fields of every version's table.
#[repr(C)]
struct TableHeader {
    _abi_major: u32,
    _abi_minor: u32,
    struct_size: usize,
}

/// Why a plugin's table cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// The entry point returned a null pointer.
    Null,
    /// The table is shorter than ABI 1.0's (`size` bytes).
    TooSmall {
        /// The table's declared size.
        size: usize,
    },
}

/// Copies a plugin's function table into a full [`PluginApi`] of this crate's version: fields
/// past the plugin's `struct_size` (added by later minors than the plugin's) read as `None`.
///
/// # Errors
///
/// [`TableError::Null`] for a null pointer, [`TableError::TooSmall`] for a table shorter than
/// [`PLUGIN_API_V1_0_SIZE`].
///
/// # Safety
///
/// `raw` must be null or point to at least `struct_size` readable bytes of a table laid out as
/// this crate's [`PluginApi`] up to that size (which every version of the ABI guarantees).
pub unsafe fn read_table(raw: *const PluginApi) -> Result<PluginApi, TableError> {
    if raw.is_null() {
        return Err(TableError::Null);
    }
    let header = core::ptr::read(raw.cast::<TableHeader>());
    if header.struct_size < PLUGIN_API_V1_0_SIZE {
        return Err(TableError::TooSmall {
            size: header.struct_size,
        });
    }
    let mut table = MaybeUninit::<PluginApi>::zeroed();
    let covered = header.struct_size.min(size_of::<PluginApi>());
    core::ptr::copy_nonoverlapping(raw.cast::<u8>(), table.as_mut_ptr().cast::<u8>(), covered);
    // SAFETY: the 1.0 prefix (all non-null function pointers) was copied from a valid table; the
    // fields after it are integers or nullable pointers, for which all-zero bytes are valid.
    Ok(table.assume_init())
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn load(_: *const c_char, _: *mut ModelHandle, _: *mut TextBuf) -> Status {
        Status::OK
    }
    unsafe extern "C" fn capabilities(
        _: ModelHandle,
        _: *mut Capabilities,
        _: *mut TextBuf,
    ) -> Status {
        Status::OK
    }
    unsafe extern "C" fn run(
        _: ModelHandle,
        _: *const BatchView,
        _: *mut f32,
        _: usize,
        _: *mut TextBuf,
    ) -> Status {
        Status::OK
    }
    unsafe extern "C" fn health(_: ModelHandle, _: *mut TextBuf) -> Status {
        Status::OK
    }
    unsafe extern "C" fn free(_: ModelHandle) {}
    unsafe extern "C" fn sink(_: LogFn, _: LogLevel) {}
    unsafe extern "C" fn describe(
        _: ModelHandle,
        _: *mut ModelDescription,
        _: *mut TextBuf,
    ) -> Status {
        Status::OK
    }
    unsafe extern "C" fn files(_: *const c_char, _: *mut TextBuf, _: *mut TextBuf) -> Status {
        Status::OK
    }

    /// A full table of this version that declares `struct_size`.
    fn table(struct_size: usize) -> PluginApi {
        PluginApi {
            abi_major: 1,
            abi_minor: 1,
            struct_size,
            name: c"t".as_ptr(),
            model_load: load,
            model_capabilities: capabilities,
            model_embed: run,
            model_embed_tokens: run,
            model_health: health,
            model_free: free,
            set_log_sink: Some(sink),
            model_describe: Some(describe),
            model_files: Some(files),
        }
    }

    #[test]
    fn fields_past_an_older_plugins_size_read_as_none() {
        let old = table(PLUGIN_API_V1_0_SIZE);
        let read = unsafe { read_table(&old) }.unwrap();
        assert!(read.set_log_sink.is_none() && read.model_describe.is_none());
        assert!(read.model_files.is_none());
        let current = table(PLUGIN_API_V1_1_SIZE);
        let read = unsafe { read_table(&current) }.unwrap();
        assert!(read.set_log_sink.is_some() && read.model_describe.is_some());
        assert!(read.model_files.is_some());
    }

    #[test]
    fn a_newer_plugins_extra_fields_are_not_read() {
        #[repr(C)]
        struct Newer {
            api: PluginApi,
            appended_in_1_2: usize,
        }
        let newer = Newer {
            api: table(size_of::<Newer>()),
            appended_in_1_2: 7,
        };
        let read = unsafe { read_table(&newer.api) }.unwrap();
        assert_eq!(read.struct_size, size_of::<Newer>());
        assert!(read.model_files.is_some());
        assert_eq!(newer.appended_in_1_2, 7);
    }

    #[test]
    fn short_and_null_tables_are_refused() {
        let short = table(PLUGIN_API_V1_0_SIZE - 8);
        assert_eq!(
            unsafe { read_table(&short) }.err(),
            Some(TableError::TooSmall {
                size: PLUGIN_API_V1_0_SIZE - 8
            })
        );
        assert_eq!(
            unsafe { read_table(core::ptr::null()) }.err(),
            Some(TableError::Null)
        );
    }
}
