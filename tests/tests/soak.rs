//! `benches/soak.py`, briefly: the soak's whole fault schedule (config reloads, an engine swap, a
//! backend panic, a replica SIGKILLed behind nginx, Redis killed and started again) squeezed into
//! 30 s of mixed traffic against this build, so the script keeps working and the faults cost no
//! valid request. The recorded 10-minute run is in BENCHMARKS.md ("Soak with faults").

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::common::process::spawn_tied;
use crate::common::python::venv_python;
use crate::common::{alone, build_dir, repo_root, TempDir};

#[test]
fn a_short_soak_with_every_fault_loses_no_valid_request() {
    let _alone = alone();
    let requirements =
        std::fs::read_to_string(repo_root().join("benches/soak-requirements.txt")).unwrap();
    let requirements: Vec<&str> = requirements.lines().filter(|l| !l.is_empty()).collect();
    let python = venv_python("soak-venv", &requirements);
    let out = TempDir::new("soak");
    let mut command = Command::new(python);
    command
        .arg(repo_root().join("benches/soak.py"))
        .arg("--embedrt")
        .arg(build_dir().join("embedrt"))
        .arg("--out")
        .arg(out.path())
        .args(["--seconds", "30", "--clients", "8", "--slow-clients", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let output = spawn_tied(command).unwrap().wait_with_output().unwrap();
    let printed = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");

    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("soak.json")).unwrap())
            .unwrap();
    let labels: Vec<&str> = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event[1].as_str().unwrap())
        .collect();
    for fault in [
        "reload",
        "engine swap",
        "backend panic",
        "replica SIGKILL",
        "Redis SIGKILL",
        "Redis back",
    ] {
        assert!(
            labels.contains(&fault),
            "no {fault} in {labels:?}\n{printed}"
        );
    }
    let minute = &report["minutes"][0];
    for (count, at_least) in [("valid_ok", 500), ("invalid_refused", 10), ("vanished", 10)] {
        assert!(
            minute[count].as_u64().unwrap() >= at_least,
            "{count}: {minute}\n{printed}"
        );
    }
    assert_eq!(minute["valid_failed"], 0, "{printed}");
    assert_eq!(minute["invalid_wrong"], 0, "{printed}");
    // The backend panic: the poison input failed alone, with a 500, twice.
    let panic = report["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event[1] == "backend panic")
        .unwrap();
    assert!(panic[2].as_str().unwrap().contains("[500, 500]"), "{panic}");
    let chart = std::fs::read(out.path().join("soak.png")).unwrap();
    assert!(chart.starts_with(b"\x89PNG"), "soak.png is no PNG");
}
