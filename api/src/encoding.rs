//! The binary encodings of a vector that both APIs offer: little-endian f32 bytes in base64, and
//! packed sign bits (unsigned, or signed as Jina's `binary` type).

use base64::Engine as _;

/// Base64 of `vector` as little-endian f32 bytes.
pub fn base64_f32(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The [`sign_bits`] bytes minus 128, as signed integers -128..=127 (Jina's `binary` type).
pub fn signed_sign_bits(vector: &[f32]) -> Vec<i8> {
    sign_bits(vector)
        .into_iter()
        .map(|byte| byte.wrapping_sub(128) as i8)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_bits_pack_most_significant_first() {
        let v = [0.5, -1.0, 0.0, 2.0, -0.1, 0.1, 0.3, -3.0, 1.0];
        assert_eq!(sign_bits(&v), vec![0b1001_0110, 0b1000_0000]);
        assert_eq!(signed_sign_bits(&v), vec![22, 0], "150 - 128 and 128 - 128");
    }

    #[test]
    fn base64_is_little_endian_f32() {
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
    }
}
