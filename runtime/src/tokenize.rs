//! Tokenization with the model's own `tokenizer.json`, and the small thread pool it runs on.

use std::path::Path;

use anyhow::{anyhow, Result};
use tokenizers::utils::truncation::truncate_encodings;
use tokenizers::{
    Encoding, PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::config::TokenIds;
use crate::telemetry;

/// Why an input could not be turned into token ids.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenizeError {
    /// The input is longer than the model accepts and truncation was not allowed.
    #[error(
        "input has {}{tokens} tokens, more than the model's limit of {max} (set `truncate` to \
         true to cut it)",
        if *.whole { "" } else { "at least " }
    )]
    TooLong {
        /// Tokens counted in the input, special tokens included: all of them, or (for a text
        /// longer than is read, see [`MAX_CHARS_PER_TOKEN`]) those of the part read.
        tokens: usize,
        /// Whether `tokens` counts the whole input.
        whole: bool,
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
    /// A text too long to be read without truncation: its first [`MAX_CHARS_PER_TOKEN`]
    /// characters per token of the limit hold fewer tokens than the limit, so whether the rest
    /// fits is not worked out.
    #[error(
        "input has {chars} characters, more than the {max} this model reads without truncation \
         ({MAX_CHARS_PER_TOKEN} per token of its limit); set `truncate` to true to cut it"
    )]
    TooManyChars {
        /// Characters in the input.
        chars: usize,
        /// The most characters read.
        max: usize,
    },
    /// A token id is outside the model's vocabulary.
    #[error(
        "token id {id} is outside the model's vocabulary of {vocab_size}; token ids are read as \
         the model's own unless it is configured with `token_ids = \"cl100k_base\"`, which \
         reads OpenAI's (tiktoken's cl100k_base, as LangChain's OpenAIEmbeddings sends)"
    )]
    UnknownTokenId {
        /// The offending id.
        id: u32,
        /// Size of the vocabulary.
        vocab_size: usize,
    },
    /// A token id is none of cl100k_base's (for a model with `token_ids = "cl100k_base"`).
    #[error(
        "token id {0} is not in OpenAI's cl100k_base, which this model reads token ids as \
         (`token_ids = \"cl100k_base\"`)"
    )]
    NotCl100kId(u32),
    /// The input holds no token.
    #[error("input is empty")]
    Empty,
    /// The tokenizer itself failed.
    #[error("tokenizer failed: {0}")]
    Failed(String),
}

/// Characters of a text tokenized first, per token the text may keep: enough for the tokens of
/// nearly every text to be settled in one pass (English runs at four to five characters a token).
const FIRST_CHARS_PER_TOKEN: usize = 8;

/// The most characters of one text ever tokenized, per token it may keep. A text is tokenized
/// from its start in growing parts, until the part holds more tokens than the limit (then the
/// text is cut, or refused, without reading further) or this bound is reached: however long a
/// text is, it costs the tokenizer no more than this.
pub const MAX_CHARS_PER_TOKEN: usize = 64;

/// A model's tokenizer, set up to add special tokens and to truncate at the model's real limit
/// (not the limit its `tokenizer.json` may carry).
pub struct TextTokenizer {
    inner: Tokenizer,
    max_input_tokens: usize,
    vocab_size: usize,
    /// Whose token ids requests send.
    token_ids: TokenIds,
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

/// What [`TextTokenizer::encode_head`] read of a text.
enum Head {
    /// The whole text's tokens.
    Whole(Encoding),
    /// The tokens of a start of the text whose first `keep + 1` are the whole text's.
    Settled(Encoding),
    /// The tokens of the longest start read, which did not settle them (runs of whitespace, or
    /// characters the normalizer drops).
    Capped(Encoding),
}

/// The characters of a text read first when it may keep `keep` tokens and may be cut.
fn first_part(keep: usize) -> usize {
    (keep + 1).saturating_mul(FIRST_CHARS_PER_TOKEN)
}

/// The most characters read of a text that may keep `keep` tokens.
fn head_cap(keep: usize) -> usize {
    (keep + 1).saturating_mul(MAX_CHARS_PER_TOKEN)
}

/// Whether the tokens of a start of a text settle the text's first `keep + 1` tokens: there are
/// more, and the last of them belongs to an earlier word than the part's last token (which the
/// cut may have split; the pre-tokenizer splits words apart, so earlier words are tokenized as
/// in the whole text).
fn settles(encoding: &Encoding, keep: usize) -> bool {
    let words = encoding.get_word_ids();
    words.len() > keep + 1 && words[keep].is_some() && words[keep] != words[words.len() - 1]
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
            token_ids: TokenIds::Model,
            frame,
        })
    }

    /// This tokenizer, reading the token ids of requests as `token_ids` says (the model's own
    /// by default). cl100k_base is set up here, so that the first request does not wait for it.
    pub fn reading_ids_as(mut self, token_ids: TokenIds) -> Self {
        if token_ids == TokenIds::Cl100kBase {
            crate::cl100k::set_up();
        }
        self.token_ids = token_ids;
        self
    }

    /// How many token ids requests may send: ids from 0 up to this, exclusive.
    pub fn id_count(&self) -> usize {
        match self.token_ids {
            TokenIds::Model => self.vocab_size,
            TokenIds::Cl100kBase => crate::cl100k::ID_COUNT,
        }
    }

    /// The model's token ids for the caller-supplied `ids`: the model's own, checked and used
    /// as they are (see [`TextTokenizer::check_ids`]); or OpenAI's, decoded to text and
    /// tokenized after `instruction` as a text would be.
    ///
    /// # Errors
    ///
    /// [`TokenizeError::Empty`] for no ids; for the model's own, as
    /// [`TextTokenizer::check_ids`]; for OpenAI's, [`TokenizeError::NotCl100kId`] for an id
    /// cl100k_base does not have, and as [`TextTokenizer::encode`].
    pub fn encode_ids(
        &self,
        ids: Vec<u32>,
        instruction: &str,
        truncate: bool,
    ) -> Result<Vec<u32>, TokenizeError> {
        match self.token_ids {
            TokenIds::Model => self.check_ids(ids, truncate),
            TokenIds::Cl100kBase if ids.is_empty() => Err(TokenizeError::Empty),
            TokenIds::Cl100kBase => {
                let text = crate::cl100k::decode(&ids)?;
                self.encode(&format!("{instruction}{text}"), truncate)
            }
        }
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
        let too_long = |tokens| TokenizeError::DocumentTooLong {
            tokens,
            max: self.max_input_tokens,
        };
        // A chunk is read no further than the model's limit (see `encode`): past it, the
        // document cannot fit.
        let max = self.max_input_tokens;
        let plain = |text: &str| -> Result<Vec<u32>, TokenizeError> {
            match self.encode_head(text, max, first_part(max))? {
                Head::Whole(encoding) if encoding.len() <= max => Ok(encoding.get_ids().to_vec()),
                Head::Whole(encoding) | Head::Settled(encoding) | Head::Capped(encoding) => {
                    Err(too_long(encoding.len().max(max + 1)))
                }
            }
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
    ///
    /// A long text is read no further than needed: only its start is tokenized, in growing
    /// parts, until the part holds more tokens than fit (the same first tokens as the whole
    /// text's) or reaches [`MAX_CHARS_PER_TOKEN`] characters per token that fit. Without
    /// `truncate`, a text within that bound is read whole, so a refusal counts its tokens.
    pub fn encode(&self, text: &str, truncate: bool) -> Result<Vec<u32>, TokenizeError> {
        let keep = self.max_input_tokens.saturating_sub(self.special_tokens());
        let (mut encoding, whole) = self.read_head(text, keep, truncate)?;
        if encoding.len() > keep {
            if !truncate {
                return Err(TokenizeError::TooLong {
                    tokens: encoding.len() + self.special_tokens(),
                    whole,
                    max: self.max_input_tokens,
                });
            }
            encoding.truncate(keep, 0, TruncationDirection::Right);
        }
        let encoding = self
            .inner
            .post_process(encoding, None, true)
            .map_err(|e| TokenizeError::Failed(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The tokens of `text` as [`TextTokenizer::encode_head`] reads them, and whether they are
    /// the whole text's; refused when they did not settle and the text may not be cut. A text
    /// that may not be cut is read in one part up to the bound, so that a refusal can say how
    /// many tokens it has.
    fn read_head(
        &self,
        text: &str,
        keep: usize,
        truncate: bool,
    ) -> Result<(Encoding, bool), TokenizeError> {
        let first = if truncate {
            first_part(keep)
        } else {
            head_cap(keep)
        };
        match self.encode_head(text, keep, first)? {
            Head::Capped(_) if !truncate => Err(TokenizeError::TooManyChars {
                chars: text.chars().count(),
                max: head_cap(keep),
            }),
            Head::Whole(encoding) => Ok((encoding, true)),
            Head::Settled(encoding) | Head::Capped(encoding) => Ok((encoding, false)),
        }
    }

    /// The tokens (without special tokens) of `text`, or of its start when that settles its
    /// first `keep + 1` tokens: parts of `first` characters, doubled until the part settles
    /// them, holds the whole text, or reaches [`head_cap`].
    fn encode_head(&self, text: &str, keep: usize, first: usize) -> Result<Head, TokenizeError> {
        let cap = head_cap(keep);
        let mut chars = first.min(cap);
        loop {
            let (part, whole) = match text.char_indices().nth(chars) {
                Some((end, _)) => (&text[..end], false),
                None => (text, true),
            };
            let encoding = self
                .inner
                .encode(part, false)
                .map_err(|e| TokenizeError::Failed(e.to_string()))?;
            if whole {
                return Ok(Head::Whole(encoding));
            }
            if settles(&encoding, keep) {
                return Ok(Head::Settled(encoding));
            }
            if chars == cap {
                return Ok(Head::Capped(encoding));
            }
            chars = chars.saturating_mul(2).min(cap);
        }
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
        // Each text is read no further than the model's whole limit (see `encode`).
        let read = |text: &str| self.read_head(text, self.max_input_tokens, truncate);
        let (query, whole_query) = read(query)?;
        let (mut document, whole_document) = read(document)?;
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
                    whole: whole_query && whole_document,
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
                    whole: true,
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
    /// A job whose caller stopped waiting before a thread took it (the future was dropped: the
    /// client went away or ran past its deadline) is skipped and counted in
    /// [`telemetry::ABANDONED_JOBS`].
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
            if tx.is_closed() {
                metrics::counter!(telemetry::ABANDONED_JOBS).increment(1);
                return;
            }
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

    /// Every tokenizer family of the fixtures: WordPiece (MiniLM, MPNet), SentencePiece
    /// (XLM-RoBERTa), byte-level BPE (ModernBERT, Qwen3), each with a 16-token limit.
    fn small_tokenizers() -> Vec<(&'static str, TextTokenizer)> {
        let mut tokenizers = vec![("all-MiniLM-L6-v2", minilm(16))];
        tokenizers.extend(
            [
                "all-mpnet-tiny",
                "multilingual-e5-tiny",
                "modernbert-embed-tiny",
                "qwen3-embedding-tiny",
            ]
            .into_iter()
            .map(|name| {
                let (dir, _) = fixture(name);
                (name, TextTokenizer::load(&dir, 16, 1 << 20).unwrap())
            }),
        );
        tokenizers
    }

    /// all-MiniLM-L6-v2's tokenizer (from the assets `scripts/setup.sh` fetches) with a limit of
    /// `max` tokens.
    fn minilm(max: usize) -> TextTokenizer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.assets/models/all-MiniLM-L6-v2");
        TextTokenizer::load(&dir, max, 1 << 20).unwrap()
    }

    /// The whole text tokenized, then cut to the limit (or refused over it): what
    /// [`TextTokenizer::encode`] must equal whatever part of the text it reads.
    fn tokenize_then_truncate(
        tokenizer: &TextTokenizer,
        text: &str,
        truncate: bool,
    ) -> Option<Vec<u32>> {
        let mut encoding = tokenizer.inner.encode(text, false).unwrap();
        let keep = tokenizer.max_input_tokens - tokenizer.special_tokens();
        if encoding.len() > keep {
            if !truncate {
                return None;
            }
            encoding.truncate(keep, 0, TruncationDirection::Right);
        }
        let encoding = tokenizer.inner.post_process(encoding, None, true).unwrap();
        Some(encoding.get_ids().to_vec())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn cutting_before_tokenizing_equals_tokenizing_then_truncating(
            words in proptest::collection::vec(
                "([a-zA-Z]{1,12}|[0-9]{1,6}|[.,;:!?'\"()-]|é|ß|中文|日本語|😀|\u{301}| {1,3}|\n)",
                0..400,
            ),
        ) {
            let text: String = words.concat();
            for (name, tokenizer) in small_tokenizers() {
                for truncate in [true, false] {
                    let cut = tokenizer.encode(&text, truncate).ok();
                    let whole = tokenize_then_truncate(&tokenizer, &text, truncate);
                    proptest::prop_assert_eq!(cut, whole, "{} truncate={} {:?}", name, truncate, text);
                }
            }
        }
    }

    #[test]
    fn a_long_text_is_read_no_further_than_its_limit_needs() {
        let tokenizer = minilm(256);
        let long = "the quick brown fox jumps over the lazy dog. ".repeat(50_000); // 2.2 MB
        let ids = tokenizer.encode(&long, true).unwrap();
        assert_eq!(ids.len(), 256);
        assert_eq!(
            Some(ids),
            tokenize_then_truncate(&tokenizer, &long[..20_000], true)
        );
        let err = tokenizer.encode(&long, false).unwrap_err();
        assert!(
            matches!(err, TokenizeError::TooLong { max: 256, .. }),
            "{err}"
        );
        // Whitespace holds no tokens: the text is cut at the bound, or refused uncut.
        let spaces = format!("a{}b", " ".repeat(100_000));
        assert_eq!(
            tokenizer.encode(&spaces, true).unwrap().len(),
            3,
            "[CLS] a [SEP]"
        );
        let err = tokenizer.encode(&spaces, false).unwrap_err();
        assert_eq!(
            err,
            TokenizeError::TooManyChars {
                chars: 100_002,
                max: 255 * MAX_CHARS_PER_TOKEN
            }
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
