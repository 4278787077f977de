//! What happens to a pooled embedding after the backend: Matryoshka truncation, then L2 normalization.

/// Cuts `embedding` to its first `dimensions` values (Matryoshka), then L2-normalizes it when
/// `normalize` is set. The order matters: a truncated prefix of a unit vector is not a unit vector.
pub fn finish(mut embedding: Vec<f32>, dimensions: Option<usize>, normalize: bool) -> Vec<f32> {
    if let Some(dimensions) = dimensions {
        embedding.truncate(dimensions);
    }
    if normalize {
        l2_normalize(&mut embedding);
    }
    embedding
}

/// Scales `v` to unit length; a zero vector stays zero.
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_before_normalizing() {
        assert_eq!(finish(vec![3.0, 4.0, 12.0], Some(2), true), vec![0.6, 0.8]);
        assert_eq!(
            finish(vec![3.0, 4.0, 12.0], None, false),
            vec![3.0, 4.0, 12.0]
        );
        assert_eq!(finish(vec![0.0, 0.0], None, true), vec![0.0, 0.0]);
    }
}
