//! The plugin boundary's conversions between the core types and the ABI's `#[repr(C)]` ones,
//! each in both directions side by side: the host (`embedrt-runtime`) uses one direction, the
//! plugin guest ([`crate::guest`]) the other, so a change to either is a change to both, here.
//!
//! - [`Capabilities`] and [`DType`] to the ABI's [`abi::Capabilities`], [`DTypeCode`] and
//!   [`ModelDescription`] (guest) and back (host);
//! - a [`BackendError`] to a [`Status`] and its message (guest) and back (host);
//! - a [`Batch`] to the borrowed [`BatchView`] (host) and back (guest), [`AdapterId`]s as the
//!   ABI's `u32` task ids.

use embedrt_plugin_abi::{self as abi, BatchView, DTypeCode, ModelDescription, Status};

use crate::backend::{AdapterId, BackendError, Batch, Capabilities};
use crate::placement::DType;

impl From<&Capabilities> for abi::Capabilities {
    /// The 1.0 form of `capabilities` (without the dtype, which 1.0 cannot carry).
    fn from(capabilities: &Capabilities) -> Self {
        Self {
            hidden_size: capabilities.hidden_size as u32,
            max_input_tokens: capabilities.max_input_tokens as u32,
            mixed_tasks: capabilities.mixed_tasks.into(),
            pads_batches: capabilities.pads_batches.into(),
            token_states: capabilities.token_states.into(),
            base_task: capabilities.base_task.into(),
        }
    }
}

impl From<abi::Capabilities> for Capabilities {
    /// What an ABI 1.0 description says: everything but the dtype.
    fn from(capabilities: abi::Capabilities) -> Self {
        Self {
            hidden_size: capabilities.hidden_size as usize,
            max_input_tokens: capabilities.max_input_tokens as usize,
            mixed_tasks: capabilities.mixed_tasks != 0,
            pads_batches: capabilities.pads_batches != 0,
            token_states: capabilities.token_states != 0,
            base_task: capabilities.base_task != 0,
            dtype: None,
        }
    }
}

impl From<&Capabilities> for ModelDescription {
    /// The 1.1 description of `capabilities`, sized as this crate's [`ModelDescription`].
    fn from(capabilities: &Capabilities) -> Self {
        Self {
            struct_size: std::mem::size_of::<ModelDescription>(),
            capabilities: capabilities.into(),
            dtype: capabilities
                .dtype
                .map_or(DTypeCode::UNKNOWN, DTypeCode::from),
        }
    }
}

impl From<&ModelDescription> for Capabilities {
    /// What a 1.1 description says (an unknown dtype code reads as not reported).
    fn from(description: &ModelDescription) -> Self {
        Self {
            dtype: DType::from_code(description.dtype),
            ..description.capabilities.into()
        }
    }
}

impl From<DType> for DTypeCode {
    fn from(dtype: DType) -> Self {
        match dtype {
            DType::F32 => DTypeCode::F32,
            DType::F16 => DTypeCode::F16,
            DType::Bf16 => DTypeCode::BF16,
            DType::Int8 => DTypeCode::INT8,
        }
    }
}

impl DType {
    /// The dtype of an ABI code; `None` for [`DTypeCode::UNKNOWN`] and codes this crate does not
    /// know.
    pub fn from_code(code: DTypeCode) -> Option<Self> {
        match code {
            DTypeCode::F32 => Some(DType::F32),
            DTypeCode::F16 => Some(DType::F16),
            DTypeCode::BF16 => Some(DType::Bf16),
            DTypeCode::INT8 => Some(DType::Int8),
            _ => None,
        }
    }
}

impl BackendError {
    /// The status a plugin reports this error with (its message travels beside it).
    pub fn status(&self) -> Status {
        match self {
            BackendError::InvalidInput(_) => Status::INVALID_ARGUMENT,
            BackendError::Unhealthy(_) => Status::PANIC,
            BackendError::Unsupported(_) => Status::UNSUPPORTED,
            BackendError::Load(_) | BackendError::Inference(_) => Status::ERROR,
        }
    }

    /// The outcome a plugin reported with `status` and `message`. [`Status::ERROR`] (and codes
    /// this crate does not know) become `failed(message)`: only the caller knows whether the
    /// call was a load ([`BackendError::Load`]) or a batch ([`BackendError::Inference`]).
    ///
    /// # Errors
    ///
    /// The error the status stands for, whenever it is not [`Status::OK`].
    pub fn from_status(
        status: Status,
        message: String,
        failed: fn(String) -> BackendError,
    ) -> Result<(), BackendError> {
        match status {
            Status::OK => Ok(()),
            Status::INVALID_ARGUMENT => Err(BackendError::InvalidInput(message)),
            Status::PANIC => Err(BackendError::Unhealthy(message)),
            Status::UNSUPPORTED => Err(BackendError::Unsupported(message)),
            _ => Err(failed(message)),
        }
    }
}

impl AdapterId {
    /// The adapter of the ABI's task id `raw` (0 for the base weights, `k + 1` for adapter `k`).
    pub fn from_abi(raw: u32) -> Self {
        AdapterId(raw)
    }

    /// The ABI's task id of this adapter (0 for the base weights, `k + 1` for adapter `k`).
    pub fn to_abi(self) -> u32 {
        self.0
    }
}

impl Batch {
    /// The ABI's view of this batch, for one plugin call. The view borrows the batch's arrays:
    /// it is valid while the batch lives and is not changed.
    pub fn view(&self) -> BatchView {
        BatchView {
            num_seqs: self.len(),
            num_tokens: self.input_ids.len(),
            input_ids: self.input_ids.as_ptr(),
            token_type_ids: self.token_type_ids.as_ptr(),
            position_ids: self.position_ids.as_ptr(),
            cu_seq_lengths: self.cu_seq_lengths.as_ptr(),
            // `AdapterId` is `repr(transparent)` over the ABI's `u32`.
            task_ids: self.adapter_ids.as_ptr().cast::<u32>(),
            max_len: self.max_len as u32,
        }
    }

    /// Copies the host's borrowed arrays into a batch of this crate.
    ///
    /// # Errors
    ///
    /// [`BackendError::InvalidInput`] for a null view, or offsets that do not end at the token
    /// count.
    ///
    /// # Safety
    ///
    /// `view` must be null or point to a [`BatchView`] whose arrays hold the lengths it states
    /// (`num_tokens` tokens, `num_seqs + 1` offsets, `num_seqs` task ids).
    pub unsafe fn from_view(view: *const BatchView) -> Result<Self, BackendError> {
        let view = view
            .as_ref()
            .ok_or_else(|| BackendError::InvalidInput("null batch".into()))?;
        let slice = |ptr: *const u32, len: usize| -> Vec<u32> {
            if len == 0 {
                Vec::new()
            } else {
                std::slice::from_raw_parts(ptr, len).to_vec()
            }
        };
        let batch = Batch {
            input_ids: slice(view.input_ids, view.num_tokens),
            token_type_ids: slice(view.token_type_ids, view.num_tokens),
            position_ids: slice(view.position_ids, view.num_tokens),
            cu_seq_lengths: slice(view.cu_seq_lengths, view.num_seqs + 1),
            adapter_ids: slice(view.task_ids, view.num_seqs)
                .into_iter()
                .map(AdapterId::from_abi)
                .collect(),
            max_len: view.max_len as usize,
        };
        if batch.cu_seq_lengths.last().copied() != Some(view.num_tokens as u32) {
            return Err(BackendError::InvalidInput(
                "cu_seq_lengths does not end at num_tokens".into(),
            ));
        }
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_survive_the_round_trip_in_either_form() {
        let dtypes = [
            None,
            Some(DType::F32),
            Some(DType::F16),
            Some(DType::Bf16),
            Some(DType::Int8),
        ];
        let mut seen = 0;
        for flags in 0..16u8 {
            for dtype in dtypes {
                let capabilities = Capabilities {
                    hidden_size: 1024,
                    max_input_tokens: 8192,
                    mixed_tasks: flags & 1 != 0,
                    pads_batches: flags & 2 != 0,
                    token_states: flags & 4 != 0,
                    base_task: flags & 8 != 0,
                    dtype,
                };
                let description = ModelDescription::from(&capabilities);
                assert_eq!(Capabilities::from(&description), capabilities);
                let old = abi::Capabilities::from(&capabilities);
                assert_eq!(
                    Capabilities::from(old),
                    Capabilities {
                        dtype: None,
                        ..capabilities.clone()
                    },
                    "ABI 1.0 carries everything but the dtype"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 16 * 5);
        let unknown = ModelDescription {
            dtype: DTypeCode(99),
            ..ModelDescription::default()
        };
        assert_eq!(Capabilities::from(&unknown).dtype, None);
    }

    #[test]
    fn every_error_survives_the_round_trip_through_its_status() {
        let errors = [
            BackendError::Load("l".into()),
            BackendError::InvalidInput("i".into()),
            BackendError::Inference("f".into()),
            BackendError::Unhealthy("u".into()),
            BackendError::Unsupported("s".into()),
        ];
        for error in errors {
            // A load call's generic failure is a load error, a batch call's an inference error.
            let failed = match error {
                BackendError::Inference(_) => BackendError::Inference,
                _ => BackendError::Load,
            };
            let back =
                BackendError::from_status(error.status(), error.message().to_string(), failed);
            assert_eq!(back, Err(error.clone()));
        }
        assert_eq!(
            BackendError::from_status(Status::OK, String::new(), BackendError::Load),
            Ok(())
        );
        assert_eq!(
            BackendError::from_status(Status(42), "?".into(), BackendError::Inference),
            Err(BackendError::Inference("?".into())),
            "an unknown status is the call's generic failure"
        );
    }

    #[test]
    fn a_batch_survives_the_round_trip_through_its_view() {
        let batch = Batch::from_sequences([
            (&[101, 7, 102][..], AdapterId::BASE),
            (&[101, 102][..], AdapterId::adapter(3)),
        ]);
        let view = batch.view();
        assert_eq!(unsafe { Batch::from_view(&view) }, Ok(batch.clone()));
        // The adapters cross as the ABI's task ids: 0 for the base weights, k + 1 for adapter k.
        let ids = unsafe { std::slice::from_raw_parts(view.task_ids, 2) };
        assert_eq!(ids, [0, 4]);
        assert_eq!(AdapterId::from_abi(4), AdapterId::adapter(3));
        let empty = Batch::from_sequences([]);
        assert_eq!(unsafe { Batch::from_view(&empty.view()) }, Ok(empty));
        // Offsets that end past the tokens the view says it has.
        let broken = BatchView {
            num_tokens: 4,
            ..batch.view()
        };
        assert!(unsafe { Batch::from_view(&broken) }.is_err());
        assert!(unsafe { Batch::from_view(std::ptr::null()) }.is_err());
    }

    #[test]
    fn dtype_codes_round_trip() {
        for dtype in [DType::F32, DType::F16, DType::Bf16, DType::Int8] {
            assert_eq!(DType::from_code(dtype.into()), Some(dtype));
        }
        assert_eq!(DType::from_code(DTypeCode::UNKNOWN), None);
    }
}
