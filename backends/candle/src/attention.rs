//! Scaled dot-product attention over a right-padded batch, shared by the model files.
//!
//! Both encoders here attend over a padded batch (the scheduler groups inputs of similar length,
//! so little is padding). The padding mask is additive and built in the model's own dtype from
//! that dtype's most negative *finite* value: a mask built from `f32::MIN` and then cast to f16
//! becomes `-inf`, and `0 × -inf` is NaN, which is how candle-transformers' BERT breaks in f16.

use candle_core::{DType, Device, Result, Tensor};

/// Queries are processed in blocks of this many positions, so attention memory grows with
/// `block × length`, not `length²`.
const QUERY_BLOCK: usize = 512;

/// The most negative finite value of `dtype` (f32's for dtypes that are not floats).
fn finite_min(dtype: DType) -> f64 {
    match dtype {
        DType::F16 => -65504.0,
        DType::BF16 => -3.389_531_389_251_535_5e38,
        DType::F64 => f64::MIN,
        _ => f32::MIN as f64,
    }
}

/// Builds the additive padding mask `[rows, 1, 1, len]` in `dtype` from `mask: [rows, len]`
/// (1 for tokens, 0 for padding): 0 for tokens, the dtype's most negative finite value for
/// padding.
///
/// # Errors
///
/// When `mask` is not two-dimensional.
pub fn padding_mask(mask: &Tensor, dtype: DType) -> Result<Tensor> {
    let (rows, len) = mask.dims2()?;
    let keep = mask.to_dtype(DType::F32)?.reshape((rows, 1, 1, len))?;
    // keep - 1 is 0 or -1; times a finite value it never forms 0 × -inf.
    ((keep - 1.0)? * -finite_min(dtype))?.to_dtype(dtype)
}

/// The additive causal mask `[1, 1, len, len]` in `dtype`: position `i` sees keys `j <= i`, later
/// ones get the dtype's finite minimum (decoders).
pub fn causal_mask(len: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let hidden = finite_min(dtype) as f32;
    let values: Vec<f32> = (0..len)
        .flat_map(|i| (0..len).map(move |j| if j <= i { 0.0 } else { hidden }))
        .collect();
    Tensor::from_vec(values, (1, 1, len, len), device)?.to_dtype(dtype)
}

/// Builds the additive mask `[1, 1, len, len]` in `dtype` that lets each query see only the keys
/// at most `half_window` positions away (a bidirectional sliding window).
///
/// # Errors
///
/// When the device fails.
pub fn window_mask(
    len: usize,
    half_window: usize,
    dtype: DType,
    device: &Device,
) -> Result<Tensor> {
    // Added to a padding mask this may overflow to -inf, which softmax takes as 0: every row
    // keeps its own position finite.
    let hidden = finite_min(dtype) as f32;
    let values: Vec<f32> = (0..len)
        .flat_map(|i| {
            (0..len).map(move |j| {
                if i.abs_diff(j) <= half_window {
                    0.0
                } else {
                    hidden
                }
            })
        })
        .collect();
    Tensor::from_vec(values, (1, 1, len, len), device)?.to_dtype(dtype)
}

/// Computes `softmax(q kᵀ + mask + bias) v` per head, for `q, k, v: [rows, heads, len,
/// head_dim]` with `k` already scaled, and returns the heads side by side: `[rows, len, heads ×
/// head_dim]`. `mask` is a [`padding_mask`]; `bias`, when given, is a query-by-key term
/// `[1 | rows, 1 | heads, len, len]` (a relative-position bias, a [`window_mask`]).
///
/// # Errors
///
/// When the shapes do not fit each other, or a device operation fails.
pub fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor> {
    let (rows, heads, len, head_dim) = q.dims4()?;
    let k_t = k.t()?.contiguous()?;
    let mut context = Vec::with_capacity(len.div_ceil(QUERY_BLOCK));
    for start in (0..len).step_by(QUERY_BLOCK) {
        let q_block = q.narrow(2, start, QUERY_BLOCK.min(len - start))?;
        // Softmax sums a whole row: in f32, as 8 bits of bf16 mantissa lose long rows.
        let mut scores = q_block.matmul(&k_t)?.broadcast_add(mask)?;
        if let Some(bias) = bias {
            scores = scores.broadcast_add(&bias.narrow(2, start, q_block.dim(2)?)?)?;
        }
        let scores = scores.to_dtype(DType::F32)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        context.push(weights.matmul(v)?);
    }
    Tensor::cat(&context, 2)?
        .transpose(1, 2)?
        .reshape((rows, len, heads * head_dim))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(tensor: &Tensor) -> Vec<f32> {
        tensor
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1())
            .unwrap()
    }

    #[test]
    fn half_precision_masks_stay_finite_and_hide_padding() {
        let mask = Tensor::new(&[[1u32, 1, 0]], &Device::Cpu).unwrap();
        for dtype in [DType::F16, DType::BF16, DType::F32] {
            let additive = padding_mask(&mask, dtype).unwrap();
            let mask_values = values(&additive);
            assert_eq!(mask_values[..2], [0.0, 0.0], "{dtype:?}");
            assert!(
                mask_values[2].is_finite() && mask_values[2] < -6.0e4,
                "{dtype:?}: {}",
                mask_values[2]
            );
            // One head, three positions: the padded key gets no weight and nothing is NaN.
            let q = Tensor::ones((1, 1, 3, 2), dtype, &Device::Cpu).unwrap();
            let v = Tensor::new(&[[[[1f32, 0.], [1., 0.], [100., 100.]]]], &Device::Cpu)
                .unwrap()
                .to_dtype(dtype)
                .unwrap();
            let out = values(&attend(&q, &q, &v, &additive, None).unwrap());
            assert_eq!(out, vec![1.0, 0.0, 1.0, 0.0, 1.0, 0.0], "{dtype:?}");
        }
    }

    #[test]
    fn a_window_mask_hides_keys_beyond_half_the_window() {
        let mask = window_mask(4, 1, DType::F32, &Device::Cpu).unwrap();
        let hidden: Vec<bool> = values(&mask).iter().map(|v| *v < -1e30).collect();
        let far = |i: usize, j: usize| i.abs_diff(j) > 1;
        let want: Vec<bool> = (0..4)
            .flat_map(|i| (0..4).map(move |j| far(i, j)))
            .collect();
        assert_eq!(hidden, want);
    }
}
