//! The backend boundary in the dependency graph: a backend plugin depends on
//! `embedrt-backend-core` and the ABI, never on the runtime, so no async runtime, HTTP or gRPC
//! stack, hub client, tokenizer or plugin loader of embedrt's comes with it. Two crates are
//! allowed only as the inference library's own dependencies: `libloading` (how `ort` opens ONNX
//! Runtime) and `tokenizers` (which `candle-core` 0.11 always depends on).

use std::collections::BTreeSet;
use std::process::Command;

use crate::common::process::stdout_of;

/// Crates no backend plugin may depend on, by any path.
const NEVER: &[&str] = &[
    "embedrt-runtime",
    "embedrt-api",
    "tokio",
    "hf-hub",
    "axum",
    "tonic",
    "hyper",
    "reqwest",
];

/// Runs `cargo tree` with `args` and returns the package names it prints.
fn tree(args: &[&str]) -> BTreeSet<String> {
    stdout_of(
        Command::new(env!("CARGO"))
            .args([
                "tree", "--frozen", "-e", "normal", "--prefix", "none", "--format", "{p}",
            ])
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR")),
    )
    .lines()
    .filter_map(|line| line.split_whitespace().next())
    .map(str::to_string)
    .collect()
}

/// The crates that depend directly on `dependency` within `plugin`'s tree.
fn dependents(plugin: &str, dependency: &str) -> BTreeSet<String> {
    let mut users = tree(&["-p", plugin, "-i", dependency, "--depth", "1"]);
    users.remove(dependency);
    users
}

#[test]
fn backend_plugins_depend_on_the_backend_core_never_on_the_runtime() {
    let allowed: &[(&str, &[(&str, &str)])] = &[
        ("embedrt-plugin-onnx", &[("libloading", "ort")]),
        ("embedrt-plugin-tensorrt", &[("libloading", "ort")]),
        ("embedrt-plugin-candle", &[("tokenizers", "candle-core")]),
        ("embedrt-plugin-echo", &[]),
    ];
    for (plugin, exceptions) in allowed {
        let crates = tree(&["-p", plugin]);
        assert!(
            crates.contains("embedrt-backend-core"),
            "{plugin}: {crates:?}"
        );
        for forbidden in NEVER {
            assert!(
                !crates.contains(*forbidden),
                "{plugin} depends on {forbidden}"
            );
        }
        for dependency in ["libloading", "tokenizers"] {
            if !crates.contains(dependency) {
                continue;
            }
            let users = dependents(plugin, dependency);
            let expected = exceptions
                .iter()
                .find(|(name, _)| *name == dependency)
                .map(|(_, user)| BTreeSet::from([user.to_string()]));
            assert_eq!(
                Some(users.clone()),
                expected,
                "{plugin} gets {dependency} through {users:?}"
            );
        }
    }
}
