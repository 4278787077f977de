//! Processes a test starts: forked so that they cannot outlive the test process, the loopback
//! ports they listen on, whether they still run, their memory, and what a command prints.

use std::net::TcpListener;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

/// A free loopback port (closed again before the server binds it), never one this process was
/// given before: the system may hand a just-closed port out again, and two servers of one test
/// run (or one server's HTTP and gRPC ports) must not collide.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<std::collections::BTreeSet<u16>> =
        Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if GIVEN.lock().unwrap().insert(port) {
            return port;
        }
    }
}

/// A request to the spawner thread: a command, and where to send the started child.
type SpawnJob = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Starts `command` so that it cannot outlive this test process: the child gets SIGKILL when its
/// parent dies (Linux's parent-death signal), also when a test leaves it running (a shared
/// server in a static is never dropped).
///
/// The parent-death signal fires when the *thread* that forked the child ends, so every child is
/// forked by one thread that lives as long as the process.
pub fn spawn_tied(mut command: Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as i32;
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1); // the test process is gone already
            }
            Ok(())
        });
    }
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, queue) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("test-spawner".into())
            .spawn(move || {
                for (mut command, reply) in queue {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the spawner thread starts");
        Mutex::new(jobs)
    });
    let (reply, child) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .send((command, reply))
        .expect("the spawner thread runs");
    child.recv().expect("the spawner thread answers")
}

/// Runs `command` to its end and returns what it printed on stdout.
///
/// # Panics
///
/// Unless it succeeds (the message holds the command and both its outputs).
pub fn stdout_of(command: &mut Command) -> String {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Whether process `pid` still runs (a zombie waiting for its reaper does not).
pub fn running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .chars()
        .next();
    !matches!(state, Some('Z' | 'X'))
}

/// A `VmHWM` (peak) or `VmRSS` (now) line of `/proc/<pid>/status`, in MB.
pub fn memory_mb(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    let kb: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024.0
}
