//! `deploy/kubernetes/` against the Kubernetes API schemas (PyPI `kubernetes-validate`, strict:
//! unknown fields are errors), and the embedrt configuration its ConfigMap carries against
//! embedrt's own parser. No cluster is reachable from these machines, so nothing is applied.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{repo_root, test_python, TempDir};

const VALIDATOR: &str = "kubernetes-validate==1.37.0";

/// The manifests (every YAML file but kustomize's own, which is no API object).
fn manifests() -> Vec<PathBuf> {
    let dir = repo_root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .filter(|path| !path.ends_with("kustomization.yaml"))
        .collect();
    files.sort();
    files
}

/// Runs the strict validator on `files`; its exit status and output.
fn validate(files: &[PathBuf]) -> (bool, String) {
    let python = test_python(&[VALIDATOR]);
    let validator = python.with_file_name("kubernetes-validate");
    let output = Command::new(validator)
        .args(["--strict", "-k", "1.31.0"])
        .args(files)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn every_manifest_passes_the_kubernetes_schemas() {
    let files = manifests();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in [
        "configmap.yaml",
        "deployment.yaml",
        "hpa.yaml",
        "redis.yaml",
        "service.yaml",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    let (ok, output) = validate(&files);
    assert!(ok, "{output}");
    assert!(!output.contains("WARN"), "{output}");
    // Every file the kustomization lists exists, and every manifest is listed.
    let kustomization =
        std::fs::read_to_string(repo_root().join("deploy/kubernetes/kustomization.yaml")).unwrap();
    for name in &names {
        assert!(
            kustomization.contains(&format!("- {name}")),
            "{name} not in kustomization.yaml"
        );
    }
}

#[test]
fn the_validator_rejects_a_misspelled_field() {
    let dir = TempDir::new("k8s");
    let deployment =
        std::fs::read_to_string(repo_root().join("deploy/kubernetes/deployment.yaml")).unwrap();
    let broken = dir.0.join("deployment.yaml");
    std::fs::write(
        &broken,
        deployment.replace("readinessProbe", "readinesProbe"),
    )
    .unwrap();
    let (ok, output) = validate(&[broken]);
    assert!(!ok, "a misspelled field must fail: {output}");
}

/// The `data` entry `key` of the ConfigMap in `file`, read with the validator's own YAML parser.
fn config_map_entry(python: &Path, file: &Path, key: &str) -> String {
    let output = Command::new(python)
        .args([
            "-c",
            "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['data'][sys.argv[2]], end='')",
        ])
        .arg(file)
        .arg(key)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_config_map_holds_a_valid_embedrt_config_and_adapter_rule() {
    let python = test_python(&[VALIDATOR]);
    let dir = repo_root().join("deploy/kubernetes");
    let toml = config_map_entry(&python, &dir.join("configmap.yaml"), "embedrt.toml");
    let config = embedrt_runtime::Config::parse(&toml).unwrap();
    assert_eq!(config.server.http.port(), 8080);
    assert_eq!(config.server.grpc.map(|a| a.port()), Some(50051));
    assert!(
        config.server.drain_delay_ms > 0,
        "pods drain before they stop"
    );
    assert_eq!(
        config.cache.redis_url.as_deref(),
        Some("redis://embedrt-redis:6379/0"),
        "the Redis of redis.yaml"
    );
    // The HPA's metric is what the adapter rule serves, which is what embedrt exports.
    let rules = config_map_entry(&python, &dir.join("prometheus-adapter.yaml"), "config.yaml");
    assert!(
        rules.contains(embedrt_runtime::telemetry::QUEUE_DEPTH),
        "{rules}"
    );
    let hpa = std::fs::read_to_string(dir.join("hpa.yaml")).unwrap();
    assert!(hpa.contains(&format!(
        "name: {}",
        embedrt_runtime::telemetry::QUEUE_DEPTH
    )));
    // Probes use the server's own routes, and the grace period outlasts the drain.
    let deployment = std::fs::read_to_string(dir.join("deployment.yaml")).unwrap();
    assert!(deployment.contains("path: /ready") && deployment.contains("path: /health"));
    let grace: u64 = deployment
        .lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(grace * 1000 > config.server.drain_delay_ms + 30_000);
}
