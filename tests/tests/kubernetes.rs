//! `deploy/kubernetes/` against the Kubernetes API schemas (PyPI `kubernetes-validate`, strict:
//! unknown fields are errors), the embedrt configuration its ConfigMap carries resolved by
//! embedrt itself, and the admin key's path from a Secret. No cluster is reachable from these
//! machines, so nothing is applied.

use std::path::{Path, PathBuf};
use std::process::Command;

use embedrt_runtime::config::{AdminAccess, Config, Overrides};

use crate::common::process::stdout_of;
use crate::common::python::test_python;
use crate::common::{repo_root, TempDir};

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
    let broken = dir.path().join("deployment.yaml");
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
    stdout_of(
        Command::new(python)
            .args([
                "-c",
                "import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))['data'][sys.argv[2]], end='')",
            ])
            .arg(file)
            .arg(key),
    )
}

#[test]
fn the_config_map_holds_a_valid_embedrt_config_and_adapter_rule() {
    let python = test_python(&[VALIDATOR]);
    let dir = repo_root().join("deploy/kubernetes");
    let toml = config_map_entry(&python, &dir.join("configmap.yaml"), "embedrt.toml");
    // Resolved as the pod resolves it, with the Secret's file where the pod mounts it.
    let key_dir = TempDir::new("k8s-secret");
    std::fs::write(key_dir.path().join("admin-key"), "the-secret\n").unwrap();
    let toml_here = toml.replace(SECRET_DIR, &key_dir.path().display().to_string());
    let plan = Config::parse(&toml_here)
        .unwrap()
        .resolve(Path::new("/etc/embedrt"), &Overrides::default())
        .unwrap();
    let server = &plan.server;
    assert_eq!(server.listeners.http.port(), 8080);
    assert!(
        !server.listeners.http.ip().is_loopback(),
        "reachable in the cluster"
    );
    assert_eq!(
        server.access.admin,
        AdminAccess::Key("the-secret".into()),
        "so the admin endpoint needs the key"
    );
    assert_eq!(server.listeners.grpc.map(|a| a.port()), Some(50051));
    assert!(!server.drain_delay.is_zero(), "pods drain before they stop");
    assert_eq!(
        plan.cache.redis_url.as_deref(),
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
    assert!(grace as u128 * 1000 > server.drain_delay.as_millis() + 30_000);
}

/// Where deployment.yaml mounts the Secret of the admin key.
const SECRET_DIR: &str = "/var/run/secrets/embedrt";

#[test]
fn the_admin_key_comes_from_a_secret_that_is_never_committed() {
    let python = test_python(&[VALIDATOR]);
    let dir = repo_root().join("deploy/kubernetes");
    let toml = config_map_entry(&python, &dir.join("configmap.yaml"), "embedrt.toml");
    let config = Config::parse(&toml).unwrap();
    assert_eq!(
        config.server.admin_key_file.as_deref(),
        Some(Path::new(&format!("{SECRET_DIR}/admin-key"))),
        "the key is read from the Secret's file"
    );
    assert!(config.server.admin_key.is_none() && config.server.admin.is_none());
    // The Deployment mounts the Secret there, read-only.
    let script = "import sys, yaml\n\
        spec = yaml.safe_load(open(sys.argv[1]))['spec']['template']['spec']\n\
        volume = next(v for v in spec['volumes'] if 'secret' in v)\n\
        mount = next(m for c in spec['containers'] for m in c['volumeMounts'] if m['name'] == volume['name'])\n\
        print(volume['secret']['secretName'], mount['mountPath'], mount['readOnly'], volume['secret']['items'][0]['path'])";
    let mounted = stdout_of(
        Command::new(&python)
            .args(["-c", script])
            .arg(dir.join("deployment.yaml")),
    );
    assert_eq!(
        mounted.trim(),
        format!("embedrt-admin {SECRET_DIR} True admin-key")
    );
    // Kustomize makes that Secret from a file that git ignores, so no key is ever in the repo.
    let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap();
    assert!(
        kustomization.contains("- name: embedrt-admin")
            && kustomization.contains("admin-key=admin-key.txt"),
        "{kustomization}"
    );
    let ignored = Command::new("git")
        .args(["check-ignore", "-q", "deploy/kubernetes/admin-key.txt"])
        .current_dir(repo_root())
        .status()
        .unwrap();
    assert!(ignored.success(), "admin-key.txt must be git-ignored");
}
