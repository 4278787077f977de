//! The jina-embeddings-v3 fixture's checks, run by every backend in-process: every task ×
//! Matryoshka size × normalization case, the batch that mixes every adapter, and the official
//! export's one adapter a run.

use embedrt_runtime::backend_core::{AdapterId, Backend, BackendError, Batch};
use embedrt_runtime::postprocess::finish;
use embedrt_runtime::tokenize::TextTokenizer;
use embedrt_runtime::ModelCard;

use crate::golden::{self, Jina};
use crate::paths::jina_dir;
use crate::vectors::{assert_each_pair, max_abs_diff, Closeness};
use crate::TempDir;

/// The card and golden data of the jina fixture's folder `sub` (`""` for the fixture itself,
/// `"bf16"` for its bf16 copy).
///
/// # Panics
///
/// When the fixture cannot be read.
pub fn fixture(sub: &str) -> (ModelCard, Jina) {
    let dir = jina_dir().join(sub);
    (ModelCard::load(&dir).unwrap(), golden::jina(&dir))
}

/// A temporary folder with `files` of the jina fixture copied in.
///
/// # Panics
///
/// When a file cannot be copied.
pub fn fixture_copy(label: &str, files: &[&str]) -> TempDir {
    let dir = TempDir::new(label);
    for file in files {
        std::fs::copy(jina_dir().join(file), dir.path().join(file)).unwrap();
    }
    dir
}

/// The tokenizer of `card`, as the server loads it.
///
/// # Panics
///
/// When it cannot be loaded.
pub fn tokenizer(card: &ModelCard) -> TextTokenizer {
    TextTokenizer::load(&card.path, card.max_input_tokens, card.vocab_size).unwrap()
}

/// Token ids of `text` for the task `task` (`None`: `none`), with the adapter it runs with: the
/// task's instruction, then the text, as the server tokenizes it.
///
/// # Panics
///
/// When the model has no such task, or tokenizing fails.
pub fn sequence(
    card: &ModelCard,
    tokenizer: &TextTokenizer,
    task: Option<&str>,
    text: &str,
) -> (Vec<u32>, AdapterId) {
    let task = card.task(card.task_id(task.unwrap_or("none")).unwrap());
    let ids = tokenizer
        .encode(&format!("{}{text}", task.instruction), true)
        .unwrap();
    (ids, task.adapter)
}

/// Runs every case of `expected` whose task `backend` can run (all but the base weights' when
/// it cannot run them) and checks each vector; returns how many cases ran.
///
/// # Panics
///
/// When a vector is not close enough, naming the case and text.
pub fn check_cases(
    card: &ModelCard,
    expected: &Jina,
    backend: &mut dyn Backend,
    closeness: Closeness,
) -> usize {
    let tokenizer = tokenizer(card);
    let mut ran = 0;
    for case in &expected.cases {
        if case.task.is_none() && !backend.capabilities().base_task {
            continue;
        }
        let sequences: Vec<(Vec<u32>, AdapterId)> = expected
            .texts
            .iter()
            .map(|text| sequence(card, &tokenizer, case.task.as_deref(), text))
            .collect();
        let batch = Batch::from_sequences(sequences.iter().map(|(ids, a)| (ids.as_slice(), *a)));
        let pooled = backend.embed(&batch).unwrap();
        assert_each_pair(0..pooled.rows(), &case.embeddings, |i, row, want| {
            let got = finish(
                pooled.row(row).to_vec(),
                Some(case.dimensions),
                case.normalized.unwrap_or(true),
            );
            if let Err(why) = closeness.accepts(&got, want) {
                panic!(
                    "task {:?}, dimensions {}, normalized {:?}, text {i}: {why}",
                    case.task, case.dimensions, case.normalized
                );
            }
        });
        ran += 1;
    }
    ran
}

/// Runs the fixture's mixed-task batch (every adapter) in one pass of `backend` and checks every
/// row.
///
/// # Panics
///
/// When the fixture mixes fewer than five adapters, the backend cannot mix them, or a row is
/// not close enough.
pub fn check_mixed_batch(
    card: &ModelCard,
    expected: &Jina,
    backend: &mut dyn Backend,
    closeness: Closeness,
) {
    let mixed = expected.mixed_batch.as_ref().unwrap();
    let tokenizer = tokenizer(card);
    let rows: Vec<(Vec<u32>, AdapterId)> = mixed
        .rows
        .iter()
        .map(|row| sequence(card, &tokenizer, Some(&row.task), &row.text))
        .collect();
    let adapters: std::collections::HashSet<AdapterId> = rows.iter().map(|r| r.1).collect();
    assert!(adapters.len() >= 5, "the fixture mixes every adapter");
    assert!(backend.capabilities().mixed_tasks);
    let batch = Batch::from_sequences(rows.iter().map(|(ids, a)| (ids.as_slice(), *a)));
    let pooled = backend.embed(&batch).unwrap();
    assert_each_pair(0..pooled.rows(), &mixed.embeddings, |i, row, want| {
        let got = finish(pooled.row(row).to_vec(), None, true);
        if let Err(why) = closeness.accepts(&got, want) {
            panic!("row {i} ({}): {why}", mixed.rows[i].task);
        }
    });
}

/// Runs every token-state document of `expected` through `backend` and checks each token's
/// state.
///
/// # Panics
///
/// When the fixture has no token states, or a state is farther than `tolerance` from the
/// official one.
pub fn check_token_states(
    card: &ModelCard,
    expected: &Jina,
    backend: &mut dyn Backend,
    tolerance: f32,
) {
    assert!(
        !expected.token_states.is_empty(),
        "the fixture has token states"
    );
    for states in &expected.token_states {
        let adapter = card.task(card.task_id(&states.task).unwrap()).adapter;
        let got = backend
            .embed_tokens(&Batch::from_sequences([(
                states.input_ids.as_slice(),
                adapter,
            )]))
            .unwrap();
        assert_each_pair(0..got.rows(), &states.last_hidden_state, |t, row, want| {
            assert!(
                max_abs_diff(got.row(row), want) <= tolerance,
                "task {}, token {t}",
                states.task
            );
        });
    }
}

/// Asserts that `backend`, running jina-v3's official export (a scalar `task_id` input: one
/// adapter per run), refuses the base weights (task `none`) and a batch that mixes adapters.
///
/// # Panics
///
/// When it runs either.
pub fn check_one_adapter_per_run(backend: &mut dyn Backend) {
    let caps = backend.capabilities();
    assert!(!caps.mixed_tasks && !caps.base_task);
    let err = backend
        .embed(&Batch::from_sequences([(&[0, 5, 2][..], AdapterId::BASE)]))
        .unwrap_err();
    assert!(
        matches!(&err, BackendError::InvalidInput(m) if m.contains("none")),
        "{err}"
    );
    let err = backend
        .embed(&Batch::from_sequences([
            (&[0, 5, 2][..], AdapterId::adapter(0)),
            (&[0, 5, 2][..], AdapterId::adapter(1)),
        ]))
        .unwrap_err();
    assert!(matches!(err, BackendError::InvalidInput(_)), "{err}");
}
