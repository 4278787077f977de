//! OpenAI's token ids read back into text: tiktoken's `cl100k_base`, which OpenAI clients
//! (LangChain's `OpenAIEmbeddings` among them) send instead of texts. A model configured with
//! `token_ids = "cl100k_base"` takes them, decoded here, and tokenizes the text itself.

use crate::tokenize::TokenizeError;

/// How many token ids cl100k_base spans: its regular tokens and its special ones, the last of
/// which is 100276.
pub const ID_COUNT: usize = 100_277;

/// Builds the encoding (once per process; about a tenth of a second).
pub fn set_up() {
    tiktoken_rs::cl100k_base_singleton();
}

/// The text of `ids`; bytes that are no UTF-8 (a character cut between two requests) become
/// U+FFFD, as tiktoken's own decoding does.
///
/// # Errors
///
/// [`TokenizeError::NotCl100kId`] for an id cl100k_base does not have.
pub fn decode(ids: &[u32]) -> Result<String, TokenizeError> {
    let bytes = tiktoken_rs::cl100k_base_singleton()
        .decode_bytes(ids)
        .map_err(|error| TokenizeError::NotCl100kId(error.token))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_tiktoken_encodes() {
        let text = "The food was delicious and the waiter... caf\u{e9} \u{1f600}";
        let ids = tiktoken_rs::cl100k_base_singleton().encode_ordinary(text);
        assert_eq!(decode(&ids).unwrap(), text);
        // "hello world" in cl100k_base, as tiktoken writes it.
        assert_eq!(decode(&[15339, 1917]).unwrap(), "hello world");
    }

    #[test]
    fn refuses_ids_it_does_not_have() {
        assert_eq!(
            decode(&[15339, 100_300]),
            Err(TokenizeError::NotCl100kId(100_300))
        );
        assert_eq!(decode(&[ID_COUNT as u32 - 1]).unwrap(), "<|endofprompt|>");
    }
}
