//! The test harness's own promise: a server a test starts dies with the test process, also when
//! the test leaves it running (shared servers live in statics, which are never dropped).

use std::process::Command;
use std::time::Duration;

use crate::common::process::{running, stdout_of};
use crate::common::{Model, Server, TempDir};

/// Where `leave_a_server_running` writes its server's pid.
const PID_FILE: &str = "EMBEDRT_TEST_PID_FILE";

/// Run by `test_servers_die_with_the_test_process` in a test process of its own: starts a server
/// and ends without stopping it.
#[test]
#[ignore = "a helper: run by test_servers_die_with_the_test_process"]
fn leave_a_server_running() {
    let Ok(pid_file) = std::env::var(PID_FILE) else {
        return;
    };
    let server = Server::builder()
        .model(Model::minilm("left").on("echo"))
        .start();
    std::fs::write(pid_file, server.pid().to_string()).unwrap();
    std::mem::forget(server);
}

#[test]
fn test_servers_die_with_the_test_process() {
    let dir = TempDir::new("survivors");
    let pid_file = dir.path().join("pid");
    // The helper test must pass (stdout_of asserts it).
    stdout_of(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "test_servers::leave_a_server_running",
            ])
            .env(PID_FILE, &pid_file),
    );
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .expect("the helper wrote its server's pid")
        .parse()
        .unwrap();
    let gone = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        !running(pid)
    });
    assert!(
        gone,
        "server {pid} outlived the test process that started it"
    );
}
