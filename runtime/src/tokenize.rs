//! Tokenization with the model's own `tokenizer.json`, and the small thread pool it runs on.

use std::path::Path;

use anyhow::{anyhow, Result};
use tokenizers::utils::truncation::truncate_encodings;
use tokenizers::{
    Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// Why an input could not be turned into token ids.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenizeError {
    /// The input is longer than the model accepts and truncation was not allowed.
    #[error("input has {tokens} tokens, more than the model's limit of {max} (set `truncate` to true to cut it)")]
    TooLong {
        /// Tokens in the input, special tokens included.
        tokens: usize,
        /// The model's limit.
        max: usize,
    },
    /// A late-chunking document is longer than the model's limit (it must fit in one pass).
    #[error(
        "the document has {tokens} tokens, more than the model's limit of {max}; late chunking encodes the whole \
         document in one pass, so send fewer or shorter chunks"
    )]
    DocumentTooLong {
        /// Tokens in the document, special tokens and instruction included.
        tokens: usize,
        /// The model's limit.
        max: usize,
    },
    /// A token id is outside the model's vocabulary.
    #[error("token id {id} is outside the model's vocabulary of {vocab_size}")]
    UnknownTokenId {
        /// The offending id.
        id: u32,
        /// Size of the vocabulary.
        vocab_size: usize,
    },
    /// The input holds no token.
    #[error("input is empty")]
    Empty,
    /// The tokenizer itself failed.
    #[error("tokenizer failed: {0}")]
    Failed(String),
}

/// A model's tokenizer, set up to add special tokens and to truncate at the model's real limit
/// (not the limit its `tokenizer.json` may carry).
pub struct TextTokenizer {
    inner: Tokenizer,
    max_input_tokens: usize,
    vocab_size: usize,
    /// The special tokens the template puts before and after a single sequence.
    frame: (Vec<u32>, Vec<u32>),
}

/// The tokenizer classes of transformers that follow SentencePiece's whitespace rule (see
/// [`add_sentencepiece_whitespace`]).
const SENTENCEPIECE_CLASSES: [&str; 2] = ["XLMRobertaTokenizer", "XLMRobertaTokenizerFast"];

/// Whether `tokenizer_config.json` in `model_dir` names one of [`SENTENCEPIECE_CLASSES`] and was
/// written by transformers 5 (it has a `backend` key), which reads it with that class's own
/// pipeline; transformers 4 ran `tokenizer.json` as it is.
fn is_sentencepiece_class(model_dir: &Path) -> Result<bool> {
    let path = model_dir.join("tokenizer_config.json");
    if !path.is_file() {
        return Ok(false);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{} is not valid JSON: {e}", path.display()))?;
    let class = config.get("tokenizer_class").and_then(|c| c.as_str());
    Ok(config.get("backend").is_some()
        && class.is_some_and(|class| SENTENCEPIECE_CLASSES.contains(&class)))
}

/// Appends SentencePiece's whitespace rule to the normalizer: trailing whitespace dropped, runs
/// of spaces folded into one. transformers' XLM-RoBERTa tokenizer applies it whatever the
/// `tokenizer.json` says (conversions write the fold as a literal-string `Replace` that the
/// tokenizers library never matches), so without it `"a   b "` gets stray `▁` tokens the
/// model never saw and vectors that differ from sentence-transformers'.
fn add_sentencepiece_whitespace(tokenizer: &mut Tokenizer) -> tokenizers::Result<()> {
    use tokenizers::normalizers::replace::ReplacePattern;
    use tokenizers::normalizers::{Replace, Sequence, Strip};
    use tokenizers::NormalizerWrapper;
    let mut steps: Vec<NormalizerWrapper> =
        tokenizer.get_normalizer().cloned().into_iter().collect();
    steps.push(Strip::new(false, true).into());
    steps.push(Replace::new(ReplacePattern::Regex(" {2,}".into()), " ")?.into());
    tokenizer.with_normalizer(Some(Sequence::new(steps)))?;
    Ok(())
}

/// A (query, document) pair as a cross-encoder reads it: both texts in the template's pair
/// frame (`[CLS] q [SEP] d [SEP]`, `<s> q </s></s> d </s>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedPair {
    /// Token ids, special tokens included.
    pub ids: Vec<u32>,
    /// Each token's segment as the template numbers it (0 for the query's, 1 for the
    /// document's in BERT's; 0 throughout in XLM-RoBERTa's).
    pub type_ids: Vec<u32>,
}

impl EncodedPair {
    /// This pair as a model with `token_types` token types reads it: a model with one
    /// (XLM-RoBERTa's `type_vocab_size` of 1) reads every token as type 0, whatever its
    /// tokenizer's template numbers the document.
    pub fn for_token_types(mut self, token_types: usize) -> Self {
        if token_types < 2 {
            self.type_ids.fill(0);
        }
        self
    }
}

/// A document for late chunking: one token sequence and where each chunk lies in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkedDocument {
    /// `<s> [instruction] chunk1 chunk2 ... </s>` as token ids.
    pub ids: Vec<u32>,
    /// The token range of each chunk in `ids`.
    pub spans: Vec<std::ops::Range<usize>>,
}

impl TextTokenizer {
    /// Loads `tokenizer.json` from `model_dir`; inputs longer than `max_input_tokens` are
    /// truncated or rejected, and ids at or past `vocab_size` are rejected.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is no tokenizer.
    pub fn load(model_dir: &Path, max_input_tokens: usize, vocab_size: usize) -> Result<Self> {
        let path = model_dir.join("tokenizer.json");
        let mut inner = Tokenizer::from_file(&path)
            .map_err(|e| anyhow!("cannot load {}: {e}", path.display()))?;
        inner.with_padding(None);
        inner
            .with_truncation(None)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        if is_sentencepiece_class(model_dir)? {
            add_sentencepiece_whitespace(&mut inner)
                .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        }
        let framed = inner
            .encode("x", true)
            .map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let mask = framed.get_special_tokens_mask();
        let head = mask.iter().take_while(|&&m| m == 1).count();
        let tail = mask.iter().rev().take_while(|&&m| m == 1).count();
        let ids = framed.get_ids();
        let frame = (ids[..head].to_vec(), ids[ids.len() - tail..].to_vec());
        Ok(Self {
            inner,
            max_input_tokens,
            vocab_size,
            frame,
        })
    }

    /// Builds one late-chunking document: each chunk tokenized without special tokens, after
    /// `instruction`, inside the model's special tokens.
    ///
    /// # Errors
    ///
    /// [`TokenizeError::DocumentTooLong`] when the whole document does not fit (late chunking
    /// needs it in one pass), [`TokenizeError::Empty`] for a chunk without a token,
    /// [`TokenizeError::Failed`] when the tokenizer fails.
    pub fn encode_document(
        &self,
        instruction: &str,
        chunks: &[&str],
    ) -> Result<ChunkedDocument, TokenizeError> {
        let plain = |text: &str| -> Result<Vec<u32>, TokenizeError> {
            let encoding = self
                .inner
                .encode(text, false)
                .map_err(|e| TokenizeError::Failed(e.to_string()))?;
            Ok(encoding.get_ids().to_vec())
        };
        let mut ids = self.frame.0.clone();
        // The instruction's trailing space separates it from the text; tokenized alone it would
        // become a token of its own, while every chunk already starts a new word.
        let instruction = instruction.trim_end();
        if !instruction.is_empty() {
            ids.extend(plain(instruction)?);
        }
        let mut spans = Vec::with_capacity(chunks.len());
        for chunk in chunks {
            let start = ids.len();
            ids.extend(plain(chunk)?);
            if ids.len() == start {
                return Err(TokenizeError::Empty);
            }
            spans.push(start..ids.len());
        }
        ids.extend_from_slice(&self.frame.1);
        if ids.len() > self.max_input_tokens {
            return Err(TokenizeError::DocumentTooLong {
                tokens: ids.len(),
                max: self.max_input_tokens,
            });
        }
        Ok(ChunkedDocument { ids, spans })
    }

    /// Token ids of `text` with the model's special tokens; cut to the limit when `truncate` is set.
    ///
    /// # Errors
    ///
    /// [`TokenizeError::TooLong`] for a text over the limit without `truncate`,
    /// [`TokenizeError::Failed`] when the tokenizer fails.
    pub fn encode(&self, text: &str, truncate: bool) -> Result<Vec<u32>, TokenizeError> {
        let failed = |e: tokenizers::Error| TokenizeError::Failed(e.to_string());
        let mut encoding = self.inner.encode(text, false).map_err(failed)?;
        let tokens = encoding.len() + self.special_tokens();
        if tokens > self.max_input_tokens {
            if !truncate {
                return Err(TokenizeError::TooLong {
                    tokens,
                    max: self.max_input_tokens,
                });
            }
            encoding.truncate(
                self.max_input_tokens.saturating_sub(self.special_tokens()),
                0,
                TruncationDirection::Right,
            );
        }
        let encoding = self
            .inner
            .post_process(encoding, None, true)
            .map_err(failed)?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of the pair (`query`, `document`) with the template's special tokens, as the
    /// reference cross-encoders tokenize pairs: the document first cut to `max_document_tokens`
    /// when given, then, when the pair is over the model's limit and `truncate` is set, the
    /// longer of the two cut first until it fits (transformers' `longest_first`).
    ///
    /// # Errors
    ///
    /// [`TokenizeError::TooLong`] for a pair over the limit without `truncate`,
    /// [`TokenizeError::Failed`] when the tokenizer fails.
    pub fn encode_pair(
        &self,
        query: &str,
        document: &str,
        truncate: bool,
        max_document_tokens: Option<usize>,
    ) -> Result<EncodedPair, TokenizeError> {
        let failed = |e: tokenizers::Error| TokenizeError::Failed(e.to_string());
        let query = self.inner.encode(query, false).map_err(failed)?;
        let mut document: Encoding = self.inner.encode(document, false).map_err(failed)?;
        if let Some(max) = max_document_tokens {
            document.truncate(max, 0, TruncationDirection::Right);
        }
        let added = self
            .inner
            .get_post_processor()
            .map_or(0, |processor| processor.added_tokens(true));
        let tokens = query.len() + document.len() + added;
        let (query, document) = if tokens > self.max_input_tokens {
            if !truncate {
                return Err(TokenizeError::TooLong {
                    tokens,
                    max: self.max_input_tokens,
                });
            }
            let params = TruncationParams {
                max_length: self.max_input_tokens.saturating_sub(added),
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            };
            truncate_encodings(query, Some(document), &params).map_err(failed)?
        } else {
            (query, Some(document))
        };
        let pair = self
            .inner
            .post_process(query, document, true)
            .map_err(failed)?;
        Ok(EncodedPair {
            ids: pair.get_ids().to_vec(),
            type_ids: pair.get_type_ids().to_vec(),
        })
    }

    /// Checks caller-supplied token ids (used as they are, without added special tokens); cuts
    /// them to the limit when `truncate` is set.
    ///
    /// # Errors
    ///
    /// [`TokenizeError::Empty`] for no ids, [`TokenizeError::UnknownTokenId`] for an id outside
    /// the vocabulary, [`TokenizeError::TooLong`] for too many ids without `truncate`.
    pub fn check_ids(&self, mut ids: Vec<u32>, truncate: bool) -> Result<Vec<u32>, TokenizeError> {
        if ids.is_empty() {
            return Err(TokenizeError::Empty);
        }
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            return Err(TokenizeError::UnknownTokenId {
                id,
                vocab_size: self.vocab_size,
            });
        }
        if ids.len() > self.max_input_tokens {
            if !truncate {
                return Err(TokenizeError::TooLong {
                    tokens: ids.len(),
                    max: self.max_input_tokens,
                });
            }
            ids.truncate(self.max_input_tokens);
        }
        Ok(ids)
    }

    /// How many special tokens the template adds around one sequence.
    fn special_tokens(&self) -> usize {
        self.frame.0.len() + self.frame.1.len()
    }

    /// The longest input in tokens, special tokens included.
    pub fn max_input_tokens(&self) -> usize {
        self.max_input_tokens
    }
}

/// A fixed-size pool of threads for CPU work that must stay off the async runtime (tokenization).
pub struct WorkerPool {
    pool: rayon::ThreadPool,
}

impl WorkerPool {
    /// Starts `threads` worker threads named `name-N`.
    ///
    /// # Errors
    ///
    /// When the threads cannot be started.
    pub fn new(name: &str, threads: usize) -> Result<Self> {
        let name = name.to_string();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(move |i| format!("{name}-{i}"))
            .build()?;
        Ok(Self { pool })
    }

    /// Runs `job` on the pool and waits for its result without blocking the async runtime.
    ///
    /// # Errors
    ///
    /// [`JobPanicked`] when the job panics; the pool and the process carry on.
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, JobPanicked> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.pool.spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)));
        });
        rx.await.ok().and_then(Result::ok).ok_or(JobPanicked)
    }
}

/// A [`WorkerPool`] job panicked.
#[derive(Clone, Copy, Debug, thiserror::Error, PartialEq, Eq)]
#[error("a worker job panicked")]
pub struct JobPanicked;

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> (std::path::PathBuf, serde_json::Value) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures")
            .join(name);
        let text = std::fs::read_to_string(dir.join("expected.json")).unwrap();
        (dir, serde_json::from_str(&text).unwrap())
    }

    #[test]
    fn pairs_are_tokenized_as_the_reference_cross_encoders_do() {
        for (name, max, second_type) in [
            ("ms-marco-reranker-tiny", 512, 1),
            ("bge-reranker-tiny", 8192, 0),
        ] {
            let (dir, expected) = fixture(name);
            let tokenizer = TextTokenizer::load(&dir, max, 1 << 20).unwrap();
            let query = expected["query"].as_str().unwrap();
            for (document, ids) in expected["documents"]
                .as_array()
                .unwrap()
                .iter()
                .zip(expected["token_ids"].as_array().unwrap())
            {
                let pair = tokenizer
                    .encode_pair(query, document.as_str().unwrap(), false, None)
                    .unwrap();
                let ids: Vec<u32> = serde_json::from_value(ids.clone()).unwrap();
                assert_eq!(pair.ids, ids, "{name}");
                let query_tokens = pair.type_ids.iter().take_while(|&&t| t == 0).count();
                assert!(pair.type_ids[query_tokens..]
                    .iter()
                    .all(|&t| t == second_type));
            }
        }
    }

    #[test]
    fn a_long_pair_is_cut_longest_first_or_refused() {
        let (dir, _) = fixture("ms-marco-reranker-tiny");
        let tokenizer = TextTokenizer::load(&dir, 16, 1 << 20).unwrap();
        let long = "capital gains are taxed differently in france ".repeat(8);
        let err = tokenizer
            .encode_pair("what is the capital of france?", &long, false, None)
            .unwrap_err();
        assert!(
            matches!(err, TokenizeError::TooLong { max: 16, .. }),
            "{err}"
        );
        let pair = tokenizer
            .encode_pair("capital?", &long, true, None)
            .unwrap();
        assert_eq!(pair.ids.len(), 16);
        let query = tokenizer.encode("capital?", false).unwrap();
        assert!(query.len() < 8, "{query:?}");
        assert!(
            pair.ids.starts_with(&query),
            "the short query is kept whole, the long document cut"
        );
        let short = tokenizer
            .encode_pair("capital?", &long, true, Some(2))
            .unwrap();
        assert_eq!(
            short.ids.len(),
            query.len() + 3,
            "the document cut to 2 tokens, then its [SEP]"
        );
    }

    #[tokio::test]
    async fn pool_survives_a_panicking_job() {
        let pool = WorkerPool::new("test", 1).unwrap();
        assert_eq!(pool.run(|| 1 + 1).await, Ok(2));
        assert_eq!(
            pool.run(|| -> i32 { panic!("boom") }).await,
            Err(JobPanicked)
        );
        assert_eq!(pool.run(|| 3).await, Ok(3));
    }
}
