//! Pooling of token states into one vector per sequence.

use serde::{Deserialize, Serialize};

/// How token states become one sequence embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// The mean of every token's state (padding excluded).
    Mean,
    /// The state of the first token (`[CLS]` / `<s>`).
    Cls,
    /// The state of the last token (decoder-style embedding models).
    LastToken,
    /// The largest value of each dimension over the tokens (padding excluded).
    Max,
}

impl Pooling {
    /// Pools `states` (row-major, `hidden` wide) over `spans` of `(first row, row count)`, one output
    /// row per span.
    pub fn pool(
        self,
        states: &[f32],
        hidden: usize,
        spans: impl IntoIterator<Item = (usize, usize)>,
    ) -> Vec<f32> {
        let mut out = Vec::new();
        for (start, len) in spans {
            let len = len.max(1);
            let rows = &states[start * hidden..(start + len) * hidden];
            match self {
                Pooling::Cls => out.extend_from_slice(&rows[..hidden]),
                Pooling::LastToken => out.extend_from_slice(&rows[(len - 1) * hidden..]),
                Pooling::Max => {
                    let mut max = vec![f32::NEG_INFINITY; hidden];
                    for row in rows.chunks_exact(hidden) {
                        max.iter_mut().zip(row).for_each(|(m, v)| *m = m.max(*v));
                    }
                    out.extend(max);
                }
                Pooling::Mean => {
                    let mut sum = vec![0f32; hidden];
                    for row in rows.chunks_exact(hidden) {
                        sum.iter_mut().zip(row).for_each(|(s, v)| *s += v);
                    }
                    let scale = 1.0 / len as f32;
                    out.extend(sum.into_iter().map(|s| s * scale));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_cls_last_token_and_max() {
        let states = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        assert_eq!(Pooling::Max.pool(&states, 2, [(0, 2)]), vec![3.0, 4.0]);
        let mixed = [1.0, 9.0, 5.0, -2.0];
        assert_eq!(Pooling::Max.pool(&mixed, 2, [(0, 2)]), vec![5.0, 9.0]);
        assert_eq!(Pooling::Mean.pool(&states, 2, [(0, 2)]), vec![2.0, 3.0]);
        assert_eq!(Pooling::Cls.pool(&states, 2, [(1, 2)]), vec![3.0, 4.0]);
        assert_eq!(
            Pooling::LastToken.pool(&states, 2, [(0, 2)]),
            vec![3.0, 4.0]
        );
        assert_eq!(
            Pooling::LastToken.pool(&states, 2, [(0, 1), (1, 2)]),
            vec![1.0, 2.0, 100.0, 100.0]
        );
    }

    #[test]
    fn names_in_the_load_document() {
        let name = |p: Pooling| serde_json::to_string(&p).unwrap();
        assert_eq!(
            [
                name(Pooling::Mean),
                name(Pooling::Cls),
                name(Pooling::LastToken),
                name(Pooling::Max)
            ],
            ["\"mean\"", "\"cls\"", "\"last-token\"", "\"max\""]
        );
    }
}
