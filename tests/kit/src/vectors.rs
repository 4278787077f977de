//! Comparing vectors, and lists of them.

/// Cosine similarity of two vectors of the same length.
///
/// # Panics
///
/// When the lengths differ.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The largest absolute difference between two vectors of the same length.
///
/// # Panics
///
/// When the lengths differ.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs `check` on each pair of `got` and `want` (with its index), after asserting that the
/// two lists are as long: a `zip` alone would pass on an empty answer.
///
/// # Panics
///
/// When the lengths differ (the message says which is which), or when `check` panics.
pub fn assert_each_pair<A, B>(
    got: impl IntoIterator<Item = A>,
    want: impl IntoIterator<Item = B>,
    mut check: impl FnMut(usize, A, B),
) {
    let (got, want): (Vec<A>, Vec<B>) = (got.into_iter().collect(), want.into_iter().collect());
    assert_eq!(
        got.len(),
        want.len(),
        "got {} items, want {}",
        got.len(),
        want.len()
    );
    for (i, (a, b)) in got.into_iter().zip(want).enumerate() {
        check(i, a, b);
    }
}

/// How close a backend's vector must be to the official one.
#[derive(Clone, Copy, Debug)]
pub enum Closeness {
    /// Every component within this distance (f32 backends).
    MaxAbs(f32),
    /// Cosine similarity at least this (half-precision backends).
    Cosine(f32),
    /// Both: cosine similarity at least the first, every component within the second (the
    /// fixtures' tolerance for f32 engines).
    CosineAndMaxAbs(f32, f32),
}

impl Closeness {
    /// Whether `got` is close enough to `want`; else how far it is.
    ///
    /// # Errors
    ///
    /// The distance, in words, when it is too far.
    pub fn accepts(self, got: &[f32], want: &[f32]) -> Result<(), String> {
        match self {
            Closeness::MaxAbs(limit) => {
                let diff = max_abs_diff(got, want);
                (diff <= limit)
                    .then_some(())
                    .ok_or(format!("max abs diff {diff}"))
            }
            Closeness::Cosine(limit) => {
                let similarity = cosine(got, want);
                (similarity >= limit)
                    .then_some(())
                    .ok_or(format!("cosine {similarity}"))
            }
            Closeness::CosineAndMaxAbs(cosine, max_abs) => Closeness::Cosine(cosine)
                .accepts(got, want)
                .and(Closeness::MaxAbs(max_abs).accepts(got, want)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "got 0 items, want 2")]
    fn an_empty_answer_fails() {
        assert_each_pair(Vec::<u8>::new(), [1, 2], |_, _, _| {});
    }

    #[test]
    fn every_pair_is_checked_in_order() {
        let mut seen = Vec::new();
        assert_each_pair([1, 2, 3], ["a", "b", "c"], |i, n, s| seen.push((i, n, s)));
        assert_eq!(seen, [(0, 1, "a"), (1, 2, "b"), (2, 3, "c")]);
    }
}
