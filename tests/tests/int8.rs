//! int8 on the onnx engine: the graph `scripts/quantize_onnx.py` makes from the fp32 one (setup
//! makes the default model's) against the fp32 engine on held-out text the quantizer never saw,
//! with the quality gates as assertions; and `dtype = "int8"` served through the HTTP API.

mod common;

use common::{cosine, load_document, minilm_dir, minilm_expected, minilm_model, repo_root, Server};
use embedrt_runtime::backend_core::guest::BackendPlugin;
use embedrt_runtime::backend_core::DType;
use embedrt_runtime::postprocess::l2_normalize;
use embedrt_runtime::tokenize::TextTokenizer;
use embedrt_runtime::{Backend, Batch, ModelCard};
use reqwest::blocking::Client;
use serde_json::{json, Value};

/// Per vector: the mean and the lowest cosine to the fp32 vector.
const MEAN_COSINE: f32 = 0.995;
const MIN_COSINE: f32 = 0.98;
/// Ranking: each sentence's nearest neighbours under int8 and under fp32 overlap this much on
/// average.
const NEIGHBOURS: usize = 10;
const MIN_OVERLAP: f32 = 0.9;

/// The held-out texts: the load generator's 1,000 sentences (the ranking set) and the golden
/// fixture's texts, none of which the quantizer calibrated on.
fn held_out() -> (Vec<String>, Vec<String>) {
    let read = |path: &str| -> Vec<String> {
        std::fs::read_to_string(repo_root().join(path))
            .unwrap()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(str::to_string)
            .collect()
    };
    let sentences = read("benches/data/sentences.txt");
    let calibration = read("scripts/data/calibration.txt");
    let golden = minilm_expected().texts;
    for text in sentences.iter().chain(&golden) {
        assert!(
            !calibration.contains(text),
            "{text:?} is a calibration text"
        );
    }
    assert_eq!(sentences.len(), 1000);
    (sentences, golden)
}

/// Normalized embeddings of `texts`, 32 at a time.
fn embed(backend: &mut dyn Backend, tokenizer: &TextTokenizer, texts: &[String]) -> Vec<Vec<f32>> {
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|text| tokenizer.encode(text, true).unwrap())
        .collect();
    let mut vectors = Vec::with_capacity(texts.len());
    for chunk in ids.chunks(32) {
        let batch = Batch::from_sequences(chunk.iter().map(|ids| (ids.as_slice(), 0)));
        let pooled = backend.embed(&batch).unwrap();
        for row in 0..chunk.len() {
            let mut vector = pooled.row(row).to_vec();
            l2_normalize(&mut vector);
            vectors.push(vector);
        }
    }
    vectors
}

/// The `k` nearest others of each vector, by cosine (the vectors are normalized).
fn neighbours(vectors: &[Vec<f32>], k: usize) -> Vec<Vec<usize>> {
    (0..vectors.len())
        .map(|i| {
            let mut scored: Vec<(f32, usize)> = (0..vectors.len())
                .filter(|&j| j != i)
                .map(|j| (cosine(&vectors[i], &vectors[j]), j))
                .collect();
            scored.sort_by(|a, b| b.0.total_cmp(&a.0));
            scored.into_iter().take(k).map(|(_, j)| j).collect()
        })
        .collect()
}

fn onnx_in(dtype: DType) -> embedrt_onnx::OnnxBackend {
    let card = ModelCard::load(&minilm_dir()).unwrap();
    let mut document = load_document(&card, Value::Null);
    document.settings.dtype = Some(dtype);
    embedrt_onnx::OnnxBackend::load(&document).unwrap()
}

#[test]
fn int8_minilm_passes_the_quality_gates_on_held_out_text() {
    let card = ModelCard::load(&minilm_dir()).unwrap();
    let tokenizer = TextTokenizer::load(&card.path, card.max_tokens, card.vocab_size).unwrap();
    let (sentences, golden) = held_out();
    let texts: Vec<String> = sentences.iter().chain(&golden).cloned().collect();
    let mut int8 = onnx_in(DType::Int8);
    assert_eq!(int8.capabilities().dtype, Some(DType::Int8));
    let reference = embed(&mut onnx_in(DType::F32), &tokenizer, &texts);
    let quantized = embed(&mut int8, &tokenizer, &texts);

    let cosines: Vec<f32> = reference
        .iter()
        .zip(&quantized)
        .map(|(a, b)| cosine(a, b))
        .collect();
    let mean = cosines.iter().sum::<f32>() / cosines.len() as f32;
    let lowest = cosines.iter().copied().fold(f32::INFINITY, f32::min);
    let (fp32_near, int8_near) = (
        neighbours(&reference[..1000], NEIGHBOURS),
        neighbours(&quantized[..1000], NEIGHBOURS),
    );
    let overlap = fp32_near
        .iter()
        .zip(&int8_near)
        .map(|(a, b)| a.iter().filter(|j| b.contains(j)).count() as f32 / NEIGHBOURS as f32)
        .sum::<f32>()
        / 1000.0;
    eprintln!("int8 vs fp32 on {} held-out texts: mean cosine {mean:.4}, min {lowest:.4}, {NEIGHBOURS}-NN overlap {overlap:.3}", texts.len());
    assert!(mean >= MEAN_COSINE, "mean cosine {mean}");
    assert!(lowest >= MIN_COSINE, "lowest cosine {lowest}");
    assert!(overlap >= MIN_OVERLAP, "{NEIGHBOURS}-NN overlap {overlap}");
    // Against sentence-transformers' own vectors too.
    for (i, want) in minilm_expected().embeddings.iter().enumerate() {
        let similarity = cosine(&quantized[1000 + i], want);
        assert!(
            similarity >= MIN_COSINE,
            "golden text {i}: cosine {similarity}"
        );
    }
}

#[test]
fn dtype_int8_is_served_and_reported_over_http() {
    let models = minilm_model("m8", "onnx", "dtype = \"int8\"");
    let server = Server::start("", &models);
    let client = Client::new();
    let expected = minilm_expected();
    let response = client
        .post(format!("{}/v1/embeddings", server.url))
        .json(&json!({ "model": "m8", "input": expected.texts }))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().unwrap();
    for (i, want) in expected.embeddings.iter().enumerate() {
        let got: Vec<f32> = serde_json::from_value(body["data"][i]["embedding"].clone()).unwrap();
        let similarity = cosine(&got, want);
        assert!(similarity >= MIN_COSINE, "text {i}: cosine {similarity}");
    }
    let models = server.models();
    assert_eq!(
        models["data"][0]["variants"][0]["dtype"], "int8",
        "{models}"
    );
}

#[test]
fn a_model_without_an_int8_graph_names_the_command_that_makes_it() {
    let card = ModelCard::load(&common::jina_dir()).unwrap();
    let mut document = load_document(&card, Value::Null);
    document.settings.dtype = Some(DType::Int8);
    let err = embedrt_onnx::OnnxBackend::load(&document).err().unwrap();
    assert!(
        err.to_string().contains("model_int8.onnx")
            && err.to_string().contains("scripts/quantize_onnx.py"),
        "{err}"
    );
}
