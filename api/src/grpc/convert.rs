//! Between `embedrt.v1` messages and the runtime's request types, and from runtime errors to
//! gRPC statuses.

use embedrt_proto::v1 as pb;
use embedrt_runtime::{
    EmbedError, EmbedRequest, EmbedResponse, Input, ModelInfo, RerankRequest, RerankResponse,
    ServedBy, TokenizeRequest, TokenizeResponse,
};
use tonic::Status;

use crate::encoding::{offset_sign_bits, sign_bits, VectorEncoding};

/// The runtime request of `message`, and how to send its vectors (never
/// [`VectorEncoding::Base64`]: the proto has no such type). An empty `model` or `user` is none.
///
/// # Errors
///
/// INVALID_ARGUMENT for an unknown embedding type, or both texts and tokens.
pub fn embed_request(message: pb::EmbedRequest) -> Result<(EmbedRequest, VectorEncoding), Status> {
    let format = match pb::EmbeddingType::try_from(message.embedding_type) {
        Ok(pb::EmbeddingType::Unspecified | pb::EmbeddingType::Float) => VectorEncoding::Float,
        Ok(pb::EmbeddingType::Ubinary) => VectorEncoding::Ubinary,
        Ok(pb::EmbeddingType::Binary) => VectorEncoding::Binary,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "`embedding_type` {} is not an EmbeddingType",
                message.embedding_type
            )))
        }
    };
    if !message.texts.is_empty() && !message.tokens.is_empty() {
        return Err(Status::invalid_argument(
            "give either `texts` or `tokens`, not both",
        ));
    }
    let inputs = if message.tokens.is_empty() {
        message.texts.into_iter().map(Input::Text).collect()
    } else {
        message
            .tokens
            .into_iter()
            .map(|tokens| Input::Tokens(tokens.ids))
            .collect()
    };
    let request = EmbedRequest {
        dimensions: message.dimensions.map(|d| d as usize),
        truncate: message.truncate,
        task: message.task,
        normalize: message.normalize,
        late_chunking: message.late_chunking,
        user: non_empty(message.user),
        ..EmbedRequest::new(non_empty(message.model), inputs)
    };
    Ok((request, format))
}

/// `text`, unless it is empty (proto3's "not set").
fn non_empty(text: String) -> Option<String> {
    Some(text).filter(|text| !text.is_empty())
}

/// The message of `response`, with vectors as `format` (base64 is sent as floats: packed
/// `repeated float` is binary already).
pub fn embed_response(response: EmbedResponse, format: VectorEncoding) -> pb::EmbedResponse {
    let embeddings = response
        .embeddings
        .into_iter()
        .map(|values| match format {
            VectorEncoding::Float | VectorEncoding::Base64 => pb::Embedding {
                values,
                bits: Vec::new(),
            },
            VectorEncoding::Ubinary => pb::Embedding {
                values: Vec::new(),
                bits: sign_bits(&values),
            },
            VectorEncoding::Binary => pb::Embedding {
                values: Vec::new(),
                bits: offset_sign_bits(&values),
            },
        })
        .collect();
    let ServedBy {
        variant,
        backend,
        device,
    } = response.served_by;
    pb::EmbedResponse {
        model: response.model,
        embeddings,
        usage: Some(usage(response.prompt_tokens)),
        variant,
        backend,
        device,
    }
}

/// The usage of an answer that processed `tokens` tokens.
fn usage(tokens: usize) -> pb::Usage {
    pb::Usage {
        prompt_tokens: tokens as u64,
        total_tokens: tokens as u64,
    }
}

/// The runtime request of `message`; an empty `model` or `user` is none.
pub fn rerank_request(message: pb::RerankRequest) -> RerankRequest {
    RerankRequest {
        top_n: message.top_n.map(|n| n as usize),
        max_tokens_per_doc: message.max_tokens_per_doc.map(|n| n as usize),
        truncate: message.truncate,
        raw_scores: message.raw_scores,
        return_documents: message.return_documents,
        user: non_empty(message.user),
        ..RerankRequest::new(non_empty(message.model), message.query, message.documents)
    }
}

/// The message of `response`.
pub fn rerank_response(response: RerankResponse) -> pb::RerankResponse {
    let ServedBy {
        variant,
        backend,
        device,
    } = response.served_by;
    pb::RerankResponse {
        model: response.model,
        results: response
            .results
            .into_iter()
            .map(|result| pb::RerankResult {
                index: result.index as u32,
                relevance_score: result.score,
                document: result.document,
            })
            .collect(),
        usage: Some(usage(response.prompt_tokens)),
        variant,
        backend,
        device,
    }
}

/// The runtime request of `message`; an empty `model` is none.
pub fn tokenize_request(message: pb::TokenizeRequest) -> TokenizeRequest {
    TokenizeRequest {
        model: non_empty(message.model),
        texts: message.texts,
        task: message.task,
        truncate: message.truncate,
    }
}

/// The message of `response`.
pub fn tokenize_response(response: TokenizeResponse) -> pb::TokenizeResponse {
    let total_tokens = response.tokens.iter().map(|ids| ids.len() as u64).sum();
    pb::TokenizeResponse {
        model: response.model,
        tokens: response
            .tokens
            .into_iter()
            .map(|ids| pb::Tokens {
                count: ids.len() as u32,
                ids,
            })
            .collect(),
        total_tokens,
    }
}

/// One served model, as `ListModels` describes it.
pub fn model(info: ModelInfo) -> pb::Model {
    pb::Model {
        name: info.name,
        aliases: info.aliases,
        alias_tasks: info.alias_tasks.into_iter().collect(),
        backend: info.backend,
        variants: info
            .variants
            .into_iter()
            .map(|variant| pb::Variant {
                name: variant.name,
                backend: variant.backend,
                weight: variant.weight,
                shadow: variant.shadow,
                device: variant.device,
                dtype: variant.dtype.unwrap_or_default(),
                replicas: variant.replicas as u32,
            })
            .collect(),
        tasks: info.tasks,
        dimensions: info.dimensions as u32,
        matryoshka_dimensions: info
            .matryoshka_dimensions
            .iter()
            .map(|&d| d as u32)
            .collect(),
        max_tokens: info.max_input_tokens as u32,
        max_inputs: info.max_inputs as u32,
        kind: info.kind.name().to_string(),
    }
}

/// The status a unary call fails with.
pub fn status(error: EmbedError) -> Status {
    let message = error.to_string();
    match error {
        EmbedError::InvalidRequest { .. }
        | EmbedError::TooManyInputs { .. }
        | EmbedError::MissingModel => Status::invalid_argument(message),
        EmbedError::ModelNotFound(_) => Status::not_found(message),
        EmbedError::Overloaded(_) => Status::resource_exhausted(message),
        EmbedError::Unavailable(_) => Status::unavailable(message),
        EmbedError::Internal(_) => Status::internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn request() -> pb::EmbedRequest {
        pb::EmbedRequest {
            texts: vec!["a".into()],
            ..Default::default()
        }
    }

    #[test]
    fn empty_strings_are_unset() {
        let (request, format) = embed_request(request()).unwrap();
        assert_eq!(request.model, None, "the registry picks the only model");
        assert_eq!(request.user, None, "the sticky metadata key may fill it");
        assert_eq!(request.inputs, vec![Input::Text("a".into())]);
        assert_eq!(format, VectorEncoding::Float);
    }

    #[test]
    fn refuses_what_cannot_be_read() {
        let code = |message: pb::EmbedRequest| embed_request(message).unwrap_err().code();
        let both = pb::EmbedRequest {
            model: "m".into(),
            tokens: vec![pb::TokenIds { ids: vec![1] }],
            ..request()
        };
        assert_eq!(code(both), Code::InvalidArgument);
        let bad_type = pb::EmbedRequest {
            model: "m".into(),
            embedding_type: 99,
            ..request()
        };
        assert_eq!(code(bad_type), Code::InvalidArgument);
    }

    #[test]
    fn binary_is_ubinary_minus_128() {
        let response = EmbedResponse {
            model: "m".into(),
            embeddings: vec![vec![1.0, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]],
            prompt_tokens: 3,
            served_by: ServedBy {
                variant: "v".into(),
                backend: "e".into(),
                device: "cpu".into(),
            },
        };
        let bits = |format| {
            embed_response(response.clone(), format).embeddings[0]
                .bits
                .clone()
        };
        assert_eq!(bits(VectorEncoding::Ubinary), [0b1000_0000]);
        assert_eq!(bits(VectorEncoding::Binary), [0]);
    }

    #[test]
    fn errors_map_to_codes() {
        let cases = [
            (EmbedError::invalid("task", "bad"), Code::InvalidArgument),
            (EmbedError::MissingModel, Code::InvalidArgument),
            (EmbedError::ModelNotFound("x".into()), Code::NotFound),
            (
                EmbedError::Overloaded("full".into()),
                Code::ResourceExhausted,
            ),
            (EmbedError::Unavailable("loading".into()), Code::Unavailable),
        ];
        for (error, code) in cases {
            assert_eq!(status(error).code(), code);
        }
    }
}
