//! How both APIs write vectors: [`VectorEncoding`], and its binary forms (little-endian f32 bytes
//! in base64, and packed sign bits, unsigned or offset as Jina's `binary` type).

use base64::Engine as _;

/// How the vectors of an answer are written. HTTP offers all four (OpenAI's `encoding_format`,
/// Jina's `embedding_type`); gRPC's `EmbeddingType` has no base64, since its floats travel as
/// packed binary already.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VectorEncoding {
    /// The f32 values.
    Float,
    /// Base64 of the little-endian f32 bytes (the `openai` Python client's default).
    Base64,
    /// Sign bits packed 8 per byte ([`sign_bits`]).
    Ubinary,
    /// The [`sign_bits`] bytes minus 128 ([`offset_sign_bits`]): read as signed bytes, -128..=127.
    Binary,
}

impl VectorEncoding {
    /// The encoding the HTTP API names `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "float" => Some(Self::Float),
            "base64" => Some(Self::Base64),
            "ubinary" => Some(Self::Ubinary),
            "binary" => Some(Self::Binary),
            _ => None,
        }
    }
}

/// Base64 of `vector` as little-endian f32 bytes.
pub fn base64_f32(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Sign bits of `vector` (1 for values > 0), 8 per byte, the first dimension in the most
/// significant bit; a last partial byte is padded with zeros.
pub fn sign_bits(vector: &[f32]) -> Vec<u8> {
    vector
        .chunks(8)
        .map(|chunk| {
            chunk
                .iter()
                .enumerate()
                .fold(0u8, |byte, (i, &v)| byte | (u8::from(v > 0.0) << (7 - i)))
        })
        .collect()
}

/// The [`sign_bits`] bytes minus 128 (wrapping): the two's-complement bytes of Jina's signed
/// `binary` values.
pub fn offset_sign_bits(vector: &[f32]) -> Vec<u8> {
    sign_bits(vector)
        .into_iter()
        .map(|byte| byte.wrapping_sub(128))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_bits_pack_most_significant_first() {
        let v = [0.5, -1.0, 0.0, 2.0, -0.1, 0.1, 0.3, -3.0, 1.0];
        assert_eq!(sign_bits(&v), vec![0b1001_0110, 0b1000_0000]);
        let signed: Vec<i8> = offset_sign_bits(&v).into_iter().map(|b| b as i8).collect();
        assert_eq!(signed, vec![22, 0], "150 - 128 and 128 - 128");
    }

    #[test]
    fn base64_is_little_endian_f32() {
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
    }

    #[test]
    fn names_are_the_http_apis() {
        for (name, encoding) in [
            ("float", VectorEncoding::Float),
            ("base64", VectorEncoding::Base64),
            ("ubinary", VectorEncoding::Ubinary),
            ("binary", VectorEncoding::Binary),
        ] {
            assert_eq!(VectorEncoding::from_name(name), Some(encoding));
        }
        assert_eq!(VectorEncoding::from_name("hex"), None);
    }
}
