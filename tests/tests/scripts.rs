//! The shell library of `scripts/` and `benches/` (`scripts/lib.sh`) and the benchmark tools:
//! a server started on a free port is stopped when its script fails or is stopped, and the load
//! generator's JSON (with its tags and the server's CPU time) is what `benches/table.py` prints.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use embedrt_testkit::golden::read_json;
use serde_json::Value;

use crate::common::process::{running, stdout_of};
use crate::common::{build_dir, repo_root, Model, Server, TempDir};

/// Waits up to 30 s for process `pid` to be gone.
fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if !running(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// `bash -c SCRIPT` in the repository, with `$1` the folder `dir` and this build's `embedrt`.
fn bash(script: &str, dir: &TempDir) -> Command {
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(script)
        .arg("lib-test")
        .arg(dir.path())
        .env("EMBEDRT_BIN", build_dir().join("embedrt"))
        .current_dir(repo_root())
        .stdout(Stdio::null());
    command
}

/// The pid `start_server` reported into `dir/pid`, once it is there.
fn reported_pid(dir: &TempDir) -> u32 {
    let path = dir.path().join("pid");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| text.trim().parse().ok())
        {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "the script never started its server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the default config on a free port, writes the server's pid, checks that it answers.
const START: &str = r#"source scripts/lib.sh
start_server "$1/server.log" --config configs/default.toml
answers "$SERVER_URL/ready"
echo "$SERVER_PID" > "$1/pid"
"#;

#[test]
fn a_script_that_fails_leaves_no_server_running() {
    let dir = TempDir::new("lib-fails");
    let script = format!("{START}false\necho reached > \"$1/reached\"\n");
    let status = bash(&script, &dir).status().unwrap();
    assert!(!status.success(), "`false` under set -e fails the script");
    assert!(!dir.path().join("reached").exists());
    let pid = reported_pid(&dir);
    assert!(gone(pid), "server {pid} outlived its failed script");
}

#[test]
fn a_script_that_is_stopped_stops_its_server() {
    let dir = TempDir::new("lib-stopped");
    let script = format!("{START}sleep 600 & wait $!\n");
    let mut child = bash(&script, &dir).spawn().unwrap();
    let pid = reported_pid(&dir);
    assert!(running(pid));
    // SAFETY: plain syscall on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "the script ends as SIGTERM asks");
    assert!(gone(pid), "server {pid} outlived its stopped script");
}

/// Runs `embedrt-bench` of this build against `server` for a second; its JSON summary.
fn bench(server: &Server, dir: &TempDir, name: &str, tags: &[&str]) -> std::path::PathBuf {
    let json = dir.path().join(format!("{name}.json"));
    let mut command = Command::new(build_dir().join("embedrt-bench"));
    command
        .args(["--url", &format!("{}/v1/embeddings", server.url)])
        .args(["-c", "2", "-d", "1", "--warmup", "0", "--label", name])
        .args(["--server-pid", &server.pid().to_string()])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::null());
    for tag in tags {
        command.args(["--tag", tag]);
    }
    assert!(command.status().unwrap().success());
    json
}

/// `benches/table.py ARGS`, its output.
fn table(args: &[&str], files: &[&std::path::Path]) -> String {
    stdout_of(
        Command::new("python3")
            .arg(repo_root().join("benches/table.py"))
            .args(args)
            .arg("--")
            .args(files),
    )
}

#[test]
fn the_load_generator_measures_the_server_and_the_table_prints_it() {
    let dir = TempDir::new("bench-table");
    let server = Server::builder()
        .model(Model::minilm("all-MiniLM-L6-v2").on("echo"))
        .start();
    let base = bench(&server, &dir, "base", &["engine=echo", "build=base"]);
    let head = bench(&server, &dir, "head", &["engine=echo", "build=head"]);
    let summary: Value = read_json(&head);
    assert_eq!(summary["tags"]["engine"], "echo");
    assert!(summary["requests"].as_u64().unwrap() > 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    let cpu = summary["server_cpu_ms_per_input"].as_f64().unwrap();
    assert!(cpu > 0.0, "the server's CPU time per input: {summary}");

    let printed = table(
        &[
            "label=run",
            "engine",
            "concurrency=clients",
            "server_cpu_ms_per_input:.3=cpu",
            "-",
        ],
        &[&base, &head],
    );
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines[0], "| run | engine | clients | cpu |  |", "{printed}");
    assert_eq!(lines[1], "|---|---|---:|---:|---:|", "{printed}");
    assert!(lines[3].starts_with("| head | echo | 2 | "), "{printed}");
    assert_eq!(lines.len(), 4, "{printed}");

    let ratios = table(
        &[
            "--ratio",
            "build=head/base",
            "engine",
            "concurrency=clients",
            "requests_per_s=ratio",
        ],
        &[&base, &head],
    );
    // One row per pair: the load as it is, the measured numbers as head/base.
    let row = ratios.lines().last().unwrap();
    assert!(
        row.starts_with("| echo | 2 | ") && row.ends_with("x |"),
        "{ratios}"
    );
    assert_eq!(ratios.lines().count(), 3, "{ratios}");
}
