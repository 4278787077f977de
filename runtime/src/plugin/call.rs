//! The plumbing of one plugin call: the host-owned text buffers a plugin writes its message or
//! answer into, and the status it returns turned into a [`BackendError`].

use std::ffi::CString;

use embedrt_backend_core::BackendError;
use embedrt_plugin_abi::{Status, TextBuf};

/// Room for an error message from a plugin.
pub(super) const ERROR_CAPACITY: usize = 2048;
/// Room for a plugin's JSON answer.
pub(super) const ANSWER_CAPACITY: usize = 64 * 1024;

/// A host-owned text buffer for one call.
pub(super) struct Text {
    data: Vec<u8>,
    len: usize,
}

impl Text {
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            data: vec![0; capacity],
            len: 0,
        }
    }

    /// The ABI view of this buffer, valid while `self` is borrowed.
    pub(super) fn buf(&mut self) -> TextBuf {
        TextBuf {
            data: self.data.as_mut_ptr(),
            capacity: self.data.len(),
            len: &mut self.len,
        }
    }

    /// What the plugin wrote, as text.
    pub(super) fn text(&self) -> String {
        String::from_utf8_lossy(&self.data[..self.len.min(self.data.len())]).into_owned()
    }
}

/// Calls a plugin function with a fresh error buffer; a status other than OK becomes the
/// [`BackendError`] it stands for ([`BackendError::from_status`]), `failed` for a generic one.
pub(super) fn call(
    failed: fn(String) -> BackendError,
    f: impl FnOnce(*mut TextBuf) -> Status,
) -> Result<(), BackendError> {
    let mut message = Text::with_capacity(ERROR_CAPACITY);
    let mut buf = message.buf();
    let status = f(&mut buf);
    BackendError::from_status(status, message.text(), failed)
}

/// `json` as a C string for the plugin.
pub(super) fn c_string(json: String) -> Result<CString, BackendError> {
    CString::new(json).map_err(|e| BackendError::Load(e.to_string()))
}
