//! Rotary position tables, shared by the model files that rotate queries and keys (jina-v3,
//! ModernBERT): rotate-half layout, positions restarting at 0 in every row.

use candle_core::{DType, Device, Result, Tensor};

/// The inverse frequencies of one rotary base, and where its tables are built.
pub struct Rotary {
    inverse_frequencies: Vec<f32>,
    device: Device,
    dtype: DType,
}

impl Rotary {
    /// The rotary embedding of heads of `head_dim` with base `base`, tables in `dtype` on
    /// `device`.
    pub fn new(head_dim: usize, base: f32, device: &Device, dtype: DType) -> Self {
        let inverse_frequencies = (0..head_dim / 2)
            .map(|i| 1.0 / base.powf(2.0 * i as f32 / head_dim as f32))
            .collect();
        Self {
            inverse_frequencies,
            device: device.clone(),
            dtype,
        }
    }

    /// Builds the `(cos, sin)` tables `[len, head_dim / 2]` for positions `0..len`.
    ///
    /// # Errors
    ///
    /// When the device fails.
    pub fn tables(&self, len: usize) -> Result<(Tensor, Tensor)> {
        let half = self.inverse_frequencies.len();
        let angles: Vec<f32> = (0..len)
            .flat_map(|t| self.inverse_frequencies.iter().map(move |f| t as f32 * f))
            .collect();
        let angles = Tensor::from_vec(angles, (len, half), &self.device)?;
        Ok((
            angles.cos()?.to_dtype(self.dtype)?,
            angles.sin()?.to_dtype(self.dtype)?,
        ))
    }
}

/// Rotates `x: [rows, heads, len, head_dim]` by the `(cos, sin)` tables of [`Rotary::tables`].
///
/// # Errors
///
/// When the shapes do not fit.
pub fn rotate(x: &Tensor, tables: &(Tensor, Tensor)) -> Result<Tensor> {
    candle_nn::rotary_emb::rope(x, &tables.0, &tables.1)
}
