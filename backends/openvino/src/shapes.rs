//! The few input shapes the openvino backend runs. OpenVINO's CPU plugin keeps what it builds for
//! each new `[rows, cols]` shape of a dynamic graph (its kernels among them) for the life of the
//! compiled model, and `CPU_RUNTIME_CACHE_CAPACITY` does not bound it: fed every shape a
//! scheduler forms, an int8 MiniLM grew by about 100 MB at a time for as long as new batch shapes
//! came (BENCHMARKS.md, "OpenVINO's memory under varied shapes"). Each batch is therefore padded
//! up to a bucket, rows to a power of two and tokens to a multiple of [`TOKEN_STEP`], so the
//! engine sees a bounded set of shapes and its memory levels off after the first of them.

/// Sequence lengths are padded up to a multiple of this.
pub const TOKEN_STEP: usize = 16;

/// The `[rows, cols]` a batch of `rows` sequences of at most `cols` tokens runs as: rows up to
/// the next power of two, cols up to the next multiple of [`TOKEN_STEP`] (never past
/// `max_cols`, the model's own limit, unless `cols` already is).
pub fn bucket(rows: usize, cols: usize, max_cols: usize) -> (usize, usize) {
    let cols_up = cols.div_ceil(TOKEN_STEP) * TOKEN_STEP;
    (rows.next_power_of_two(), cols_up.min(max_cols.max(cols)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_to_a_power_of_two_and_tokens_to_the_step() {
        assert_eq!(bucket(1, 1, 512), (1, 16));
        assert_eq!(bucket(3, 16, 512), (4, 16));
        assert_eq!(bucket(5, 17, 512), (8, 32));
        assert_eq!(bucket(64, 250, 512), (64, 256));
    }

    #[test]
    fn never_past_the_models_limit() {
        assert_eq!(bucket(2, 250, 256), (2, 256));
        assert_eq!(bucket(2, 510, 512), (2, 512));
        // A batch already past the limit is not cut.
        assert_eq!(bucket(1, 300, 256), (1, 300));
    }

    #[test]
    fn shapes_are_few() {
        let mut shapes = std::collections::HashSet::new();
        for rows in 1..=64 {
            for cols in 1..=256 {
                shapes.insert(bucket(rows, cols, 256));
            }
        }
        // 7 row sizes times 16 lengths, where every shape would be 16,384.
        assert_eq!(shapes.len(), 7 * 16);
    }
}
