//! jina-embeddings-v3 on both engines, directly, against the official code's outputs for the tiny
//! checkpoint in `../shared/fixtures/jina-v3-tiny`: token ids, every task × Matryoshka size ×
//! normalization, a mixed-task batch in one forward pass, the bf16 copy, and token states.

mod common;

use common::{cosine, fixtures_dir, load_document, max_abs_diff};
use embedrt_runtime::backend_core::guest::BackendPlugin;
use embedrt_runtime::backend_core::DType;
use embedrt_runtime::postprocess::finish;
use embedrt_runtime::tokenize::TextTokenizer;
use embedrt_runtime::{Backend, BackendError, Batch, ModelCard};
use serde::Deserialize;
use serde_json::Value;

const TOLERANCE: f32 = 1e-4;
/// What f16 and bf16 must reach (the bar for GPU engines).
const HALF_MIN_COSINE: f32 = 0.999;

/// How close an engine's vector must be to the official one.
#[derive(Clone, Copy, Debug)]
enum Closeness {
    /// Every component within this distance (f32 engines).
    MaxAbs(f32),
    /// Cosine similarity at least this (half-precision engines).
    Cosine(f32),
}

impl Closeness {
    fn accepts(self, got: &[f32], want: &[f32]) -> Result<(), String> {
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
        }
    }
}

#[derive(Deserialize)]
struct Expected {
    texts: Vec<String>,
    cases: Vec<Case>,
    #[serde(default)]
    token_ids: std::collections::HashMap<String, Vec<Vec<u32>>>,
    mixed_batch: Option<MixedBatch>,
    #[serde(default)]
    token_states: Vec<TokenStates>,
}

#[derive(Deserialize)]
struct Case {
    task: Option<String>,
    dimensions: usize,
    normalized: Option<bool>,
    embeddings: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct MixedBatch {
    rows: Vec<MixedRow>,
    embeddings: Vec<Vec<f32>>,
}

#[derive(Deserialize)]
struct MixedRow {
    text: String,
    task: String,
}

#[derive(Deserialize)]
struct TokenStates {
    task: String,
    input_ids: Vec<u32>,
    last_hidden_state: Vec<Vec<f32>>,
}

fn fixture(sub: &str) -> (ModelCard, Expected) {
    let dir = fixtures_dir().join("jina-v3-tiny").join(sub);
    let card = ModelCard::load(&dir).unwrap();
    let expected =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    (card, expected)
}

/// A temporary folder with `files` of the tiny jina fixture.
fn fixture_copy(label: &str, files: &[&str]) -> common::TempDir {
    let dir = common::TempDir::new(label);
    let source = fixtures_dir().join("jina-v3-tiny");
    for file in files {
        std::fs::copy(source.join(file), dir.0.join(file)).unwrap();
    }
    dir
}

fn tokenizer(card: &ModelCard) -> TextTokenizer {
    TextTokenizer::load(&card.path, card.max_tokens, card.vocab_size).unwrap()
}

fn task_id(card: &ModelCard, task: Option<&str>) -> u32 {
    card.task_id(task.unwrap_or("none")).unwrap()
}

/// Token ids of `text` for `task`: the task's instruction, then the text.
fn ids(card: &ModelCard, tokenizer: &TextTokenizer, task: u32, text: &str) -> Vec<u32> {
    tokenizer
        .encode(&format!("{}{text}", card.instruction(task)), true)
        .unwrap()
}

fn candle(card: &ModelCard) -> Box<dyn Backend> {
    candle_in(card, None)
}

fn candle_in(card: &ModelCard, dtype: Option<DType>) -> Box<dyn Backend> {
    let mut config = load_document(card, Value::Null);
    config.settings.dtype = dtype;
    Box::new(embedrt_candle::CandleBackend::load(&config).unwrap())
}

fn onnx(card: &ModelCard) -> Box<dyn Backend> {
    let config = load_document(card, Value::Null);
    Box::new(embedrt_onnx::OnnxBackend::load(&config).unwrap())
}

/// Runs every case whose task the engine can run; returns how many cases ran.
fn check_cases(
    card: &ModelCard,
    expected: &Expected,
    backend: &mut dyn Backend,
    closeness: Closeness,
) -> usize {
    let tokenizer = tokenizer(card);
    let mut ran = 0;
    for case in &expected.cases {
        let task = task_id(card, case.task.as_deref());
        if task == 0 && !backend.capabilities().base_task {
            continue;
        }
        let sequences: Vec<Vec<u32>> = expected
            .texts
            .iter()
            .map(|t| ids(card, &tokenizer, task, t))
            .collect();
        let batch = Batch::from_sequences(sequences.iter().map(|ids| (ids.as_slice(), task)));
        let pooled = backend.embed(&batch).unwrap();
        for (i, want) in case.embeddings.iter().enumerate() {
            let got = finish(
                pooled.row(i).to_vec(),
                Some(case.dimensions),
                case.normalized.unwrap_or(true),
            );
            if let Err(why) = closeness.accepts(&got, want) {
                panic!(
                    "task {:?}, dimensions {}, normalized {:?}, text {i}: {why}",
                    case.task, case.dimensions, case.normalized
                );
            }
        }
        ran += 1;
    }
    ran
}

#[test]
fn token_ids_match_the_official_tokenizer_for_every_task() {
    let (card, expected) = fixture("");
    let tokenizer = tokenizer(&card);
    for (task, want) in &expected.token_ids {
        let id = task_id(&card, Some(task));
        for (text, want) in expected.texts.iter().zip(want) {
            assert_eq!(
                &ids(&card, &tokenizer, id, text),
                want,
                "task {task}, text {text:?}"
            );
        }
    }
    assert_eq!(expected.token_ids.len(), 6, "five adapters and none");
}

#[test]
fn candle_matches_every_case() {
    let (card, expected) = fixture("");
    assert_eq!(
        check_cases(
            &card,
            &expected,
            candle(&card).as_mut(),
            Closeness::MaxAbs(TOLERANCE)
        ),
        24
    );
}

/// Runs the fixture's mixed-task batch (every adapter) in one pass of `backend`.
fn check_mixed_batch(
    card: &ModelCard,
    expected: &Expected,
    backend: &mut dyn Backend,
    closeness: Closeness,
) {
    let mixed = expected.mixed_batch.as_ref().unwrap();
    let tokenizer = tokenizer(card);
    let rows: Vec<(Vec<u32>, u32)> = mixed
        .rows
        .iter()
        .map(|row| {
            let task = task_id(card, Some(&row.task));
            (ids(card, &tokenizer, task, &row.text), task)
        })
        .collect();
    let tasks: std::collections::HashSet<u32> = rows.iter().map(|r| r.1).collect();
    assert!(tasks.len() >= 5, "the fixture mixes every adapter");
    assert!(backend.capabilities().mixed_tasks);
    let batch = Batch::from_sequences(rows.iter().map(|(ids, task)| (ids.as_slice(), *task)));
    let pooled = backend.embed(&batch).unwrap();
    for (i, want) in mixed.embeddings.iter().enumerate() {
        let got = finish(pooled.row(i).to_vec(), None, true);
        if let Err(why) = closeness.accepts(&got, want) {
            panic!("row {i} ({}): {why}", mixed.rows[i].task);
        }
    }
}

#[test]
fn candle_runs_a_mixed_task_batch_in_one_pass() {
    let (card, expected) = fixture("");
    let closeness = Closeness::MaxAbs(TOLERANCE);
    check_mixed_batch(&card, &expected, candle(&card).as_mut(), closeness);
}

/// The f16 and bf16 paths a GPU runs (16-bit masks, rotary tables, LoRA and softmax), on the
/// CPU: every task and size, and the mixed batch.
#[test]
fn candle_in_half_precision_matches_every_case_and_the_mixed_batch() {
    let (card, expected) = fixture("");
    let closeness = Closeness::Cosine(HALF_MIN_COSINE);
    for dtype in [DType::F16, DType::Bf16] {
        let mut backend = candle_in(&card, Some(dtype));
        assert_eq!(
            check_cases(&card, &expected, backend.as_mut(), closeness),
            24
        );
        check_mixed_batch(&card, &expected, backend.as_mut(), closeness);
    }
}

#[test]
fn candle_matches_the_bf16_copy() {
    let (card, expected) = fixture("bf16");
    assert!(
        check_cases(
            &card,
            &expected,
            candle(&card).as_mut(),
            Closeness::MaxAbs(TOLERANCE)
        ) > 0
    );
}

#[test]
fn onnx_matches_every_adapter_and_refuses_the_base_weights() {
    let (card, expected) = fixture("");
    let mut backend = onnx(&card);
    assert!(!backend.capabilities().mixed_tasks && !backend.capabilities().base_task);
    assert_eq!(
        check_cases(
            &card,
            &expected,
            backend.as_mut(),
            Closeness::MaxAbs(TOLERANCE)
        ),
        20,
        "5 adapters x 4 cases"
    );
    let err = backend
        .embed(&Batch::from_sequences([(&[0, 5, 2][..], 0)]))
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::InvalidInput(m) if m.contains("none")),
        "{err}"
    );
    let err = backend
        .embed(&Batch::from_sequences([
            (&[0, 5, 2][..], 1),
            (&[0, 5, 2][..], 2),
        ]))
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidInput(_)), "{err}");
}

#[test]
fn both_engines_return_the_official_token_states() {
    let (card, expected) = fixture("");
    for mut backend in [candle(&card), onnx(&card)] {
        for states in &expected.token_states {
            let task = task_id(&card, Some(&states.task));
            let got = backend
                .embed_tokens(&Batch::from_sequences([(
                    states.input_ids.as_slice(),
                    task,
                )]))
                .unwrap();
            assert_eq!(got.rows(), states.input_ids.len());
            for (t, want) in states.last_hidden_state.iter().enumerate() {
                assert!(
                    max_abs_diff(got.row(t), want) <= TOLERANCE,
                    "task {}, token {t}",
                    states.task
                );
            }
        }
    }
}

#[test]
fn a_checkpoint_with_a_missing_tensor_names_it() {
    let dir = fixture_copy(
        "broken-jina",
        &[
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ],
    );
    // Rewrite the checkpoint with one LoRA tensor under another name (its bytes stay in place).
    let bytes = std::fs::read(fixtures_dir().join("jina-v3-tiny/model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let dropped = "roberta.encoder.layers.1.mlp.fc2.parametrizations.weight.0.lora_B";
    let info = header.remove(dropped).unwrap();
    header.insert("unrelated.tensor".into(), info);
    let header = serde_json::to_vec(&header).unwrap();
    let mut rewritten = (header.len() as u64).to_le_bytes().to_vec();
    rewritten.extend(header);
    rewritten.extend(&bytes[8 + header_len..]);
    std::fs::write(dir.0.join("model.safetensors"), rewritten).unwrap();
    let card = ModelCard::load(&dir.0).unwrap();
    let config = load_document(&card, Value::Null);
    let err = embedrt_candle::CandleBackend::load(&config).err().unwrap();
    assert!(err.to_string().contains(dropped), "{err}");
}

#[test]
fn a_checkpoint_with_a_misshaped_tensor_names_it() {
    let dir = fixture_copy(
        "misshaped-jina",
        &[
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "model.safetensors",
        ],
    );
    // The config promises a wider feed-forward layer than the weights have.
    let config = std::fs::read_to_string(fixtures_dir().join("jina-v3-tiny/config.json")).unwrap();
    std::fs::write(
        dir.0.join("config.json"),
        config.replace("\"intermediate_size\": 64", "\"intermediate_size\": 48"),
    )
    .unwrap();
    let card = ModelCard::load(&dir.0).unwrap();
    let err = embedrt_candle::CandleBackend::load(&load_document(&card, Value::Null))
        .err()
        .unwrap();
    let message = err.to_string();
    assert!(
        message.contains("mlp.fc1") && message.contains("shape"),
        "{message}"
    );
}

/// `scripts/build_jina_onnx.py` (used for the full-size benchmark) writes a graph with the official
/// interface that gives the official outputs.
#[test]
fn the_onnx_builder_reproduces_the_official_export() {
    let dir = fixture_copy(
        "built-jina",
        &[
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "model.safetensors",
        ],
    );
    let python = common::repo_root().join(".assets/venv/bin/python");
    let status = std::process::Command::new(python)
        .arg(common::repo_root().join("scripts/build_jina_onnx.py"))
        .arg(&dir.0)
        .arg(dir.0.join("onnx/model.onnx"))
        .status()
        .unwrap();
    assert!(status.success());
    let (_, expected) = fixture("");
    let card = ModelCard::load(&dir.0).unwrap();
    assert_eq!(
        check_cases(
            &card,
            &expected,
            onnx(&card).as_mut(),
            Closeness::MaxAbs(TOLERANCE)
        ),
        20
    );
}

/// jina-v3's int8 graph: `scripts/quantize_onnx.py` rewrites the export's run-time-merged LoRA
/// weights into low-rank form and quantizes the base products; every adapter's cases stay within
/// cosine 0.99 of the official outputs.
#[test]
fn the_int8_graph_keeps_every_adapter_within_0_99_of_the_official_outputs() {
    let dir = fixture_copy(
        "jina-int8",
        &[
            "config.json",
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
        ],
    );
    std::fs::create_dir(dir.0.join("onnx")).unwrap();
    std::fs::copy(
        fixtures_dir().join("jina-v3-tiny/onnx/model.onnx"),
        dir.0.join("onnx/model.onnx"),
    )
    .unwrap();
    let quantize = || {
        let root = common::repo_root();
        let output = std::process::Command::new(root.join(".assets/venv/bin/python"))
            .arg(root.join("scripts/quantize_onnx.py"))
            .arg(&dir.0)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let stdout = quantize();
    assert!(stdout.contains("into low-rank form"), "{stdout}");
    // Keyed by the source's hash: a second run has nothing to do.
    let again = quantize();
    assert!(again.contains("is up to date"), "{again}");
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.0.join("onnx/model_int8.json")).unwrap())
            .unwrap();
    assert!(meta["quantized_matmuls"].as_u64().unwrap() > 0, "{meta}");

    let (_, expected) = fixture("");
    let card = ModelCard::load(&dir.0).unwrap();
    let mut config = load_document(&card, Value::Null);
    config.settings.dtype = Some(DType::Int8);
    let mut backend = embedrt_onnx::OnnxBackend::load(&config).unwrap();
    assert_eq!(backend.capabilities().dtype, Some(DType::Int8));
    let ran = check_cases(&card, &expected, &mut backend, Closeness::Cosine(0.99));
    assert_eq!(ran, 20, "5 adapters x 4 cases");
}
