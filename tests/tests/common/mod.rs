//! Shared helpers for the end-to-end tests: where things are, and a real `embedrt` server process.

#![allow(dead_code)] // each test binary uses its own subset

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use embedrt_runtime::backend_core::{BackendSettings, LoadDocument};
use embedrt_runtime::ModelCard;
use serde::Deserialize;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `target/<profile>`, where the `embedrt` binary and the plugins are built.
pub fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// The all-MiniLM-L6-v2 folder that scripts/setup.sh prepares.
pub fn minilm_dir() -> PathBuf {
    let dir = repo_root().join(".assets/models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.onnx").is_file(),
        "{} is missing: run scripts/setup.sh",
        dir.display()
    );
    dir
}

/// `../shared/fixtures`, the golden data made with the models' reference code.
pub fn fixtures_dir() -> PathBuf {
    repo_root().join("../shared/fixtures")
}

/// sentence-transformers' output for all-MiniLM-L6-v2.
#[derive(Deserialize)]
pub struct MiniLmExpected {
    /// The input texts.
    pub texts: Vec<String>,
    /// Token ids per text, special tokens included.
    pub token_ids: Vec<Vec<u32>>,
    /// Normalized embeddings per text.
    pub embeddings: Vec<Vec<f32>>,
}

/// Reads the all-MiniLM-L6-v2 golden data.
pub fn minilm_expected() -> MiniLmExpected {
    let path = fixtures_dir().join("all-MiniLM-L6-v2/expected.json");
    serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap()
}

/// The load document a backend gets for `card` with `options`, on the CPU in its default dtype.
pub fn load_document(card: &ModelCard, options: serde_json::Value) -> LoadDocument {
    LoadDocument::new(
        card.spec(),
        BackendSettings {
            options,
            ..BackendSettings::default()
        },
    )
}

/// Cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The largest absolute difference between two vectors of the same length.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs `f(0..n)` on `n` threads at once and returns the results in order.
pub fn concurrently<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = (0..n).map(|i| scope.spawn(move || f(i))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

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

/// A running `embedrt serve` process, killed when dropped (and when the test process dies).
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The gRPC API's `http://127.0.0.1:PORT`.
    pub grpc_url: String,
    _dir: TempDir,
}

/// A temporary folder removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Creates an empty folder named after `label`.
    pub fn new(label: &str) -> Self {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("embedrt-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    /// Replaces the `[[models]]` tables of the server's config file with `models`, keeping its
    /// `[server]` lines (a reload then picks them up).
    pub fn rewrite_models(&self, models: &str) {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).unwrap();
        let head = &text[..text.find("[[models]]").unwrap()];
        std::fs::write(&path, format!("{head}{models}")).unwrap();
    }

    /// The server's `GET /v1/models` answer.
    pub fn models(&self) -> serde_json::Value {
        reqwest::blocking::get(format!("{}/v1/models", self.url))
            .unwrap()
            .json()
            .unwrap()
    }

    /// Starts the server with `models_toml` (one or more `[[models]]` tables) and optional extra
    /// `[server]` lines, and waits until `/ready` answers 200.
    pub fn start(server_toml: &str, models_toml: &str) -> Self {
        let mut server = Self::spawn(server_toml, models_toml);
        server.wait_ready();
        server
    }

    /// Starts the server without waiting for it.
    pub fn spawn(server_toml: &str, models_toml: &str) -> Self {
        Self::spawn_with_env(server_toml, models_toml, &[])
    }

    /// Starts the server with extra environment variables, without waiting for it.
    pub fn spawn_with_env(server_toml: &str, models_toml: &str, env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new("server");
        let (port, grpc_port) = (free_port(), free_port());
        let config = format!(
            "[server]\nhttp = \"127.0.0.1:{port}\"\ngrpc = \"127.0.0.1:{grpc_port}\"\nplugin_dirs = [{:?}]\n{server_toml}\n{models_toml}\n",
            build_dir().display().to_string()
        );
        let config_path = dir.0.join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        Self::launch(
            &build_dir().join("embedrt"),
            &config_path,
            (port, grpc_port),
            dir,
            |command| {
                command.envs(env.iter().copied());
            },
        )
    }

    /// Starts `binary serve --config config_path`, whose HTTP and gRPC ports are `ports`, after
    /// `adjust` has set the command up (arguments, environment, working directory); `dir` is
    /// removed when the server is dropped.
    pub fn launch(
        binary: &Path,
        config_path: &Path,
        ports: (u16, u16),
        dir: TempDir,
        adjust: impl FnOnce(&mut Command),
    ) -> Self {
        assert!(
            binary.is_file(),
            "{} is missing: run `cargo build --workspace` first",
            binary.display()
        );
        let mut command = Command::new(binary);
        command
            .args(["serve", "--config"])
            .arg(config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        adjust(&mut command);
        let child = spawn_tied(command).unwrap();
        Self {
            child,
            url: format!("http://127.0.0.1:{}", ports.0),
            grpc_url: format!("http://127.0.0.1:{}", ports.1),
            _dir: dir,
        }
    }

    /// Polls `/ready` for up to two minutes; panics with the server's log if it exits first.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let client = reqwest::blocking::Client::new();
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "server exited ({status}) before it was ready:\n{}",
                    self.take_log()
                );
            }
            match client.get(format!("{}/ready", self.url)).send() {
                Ok(response) if response.status() == 200 => return,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        panic!("server at {} not ready in time", self.url);
    }

    /// What the server logged (stderr), once it has exited.
    fn take_log(&mut self) -> String {
        let mut log = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut log);
        }
        log
    }

    /// The config file the server was started with (rewrite it, then reload).
    pub fn config_path(&self) -> PathBuf {
        self._dir.0.join("config.toml")
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the server process.
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain syscall on our own child's pid.
        let status = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(status, 0, "kill({signal}) failed");
    }

    /// The sum of the samples of metric `name` whose labels include every pair of `labels`
    /// (0 when there is none), from `GET /metrics`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = reqwest::blocking::get(format!("{}/metrics", self.url))
            .unwrap()
            .text()
            .unwrap();
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit by itself and returns its log.
    pub fn wait_exit(mut self, timeout: Duration) -> (Option<i32>, String) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.take_log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not exit in time");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The vectors of an OpenAI-style embeddings response body, in order.
pub fn embeddings_of(body: &serde_json::Value) -> Vec<Vec<f32>> {
    body["data"]
        .as_array()
        .expect("a `data` array")
        .iter()
        .map(|d| serde_json::from_value(d["embedding"].clone()).unwrap())
        .collect()
}

/// Runs `embedrt serve` with `config` (and `extra_args`) on a free port until it exits, as
/// startup failures do; returns its exit code and its log.
pub fn serve_until_exit(config: &str, extra_args: &[&str]) -> (Option<i32>, String) {
    let dir = TempDir::new("serve-until-exit");
    let path = dir.0.join("config.toml");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new(build_dir().join("embedrt"));
    command
        .args(["serve", "--config"])
        .arg(&path)
        .args(["--http", &format!("127.0.0.1:{}", free_port())])
        .args(extra_args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let output = spawn_tied(command).unwrap().wait_with_output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The tiny jina-embeddings-v3 checkpoint of the fixtures.
pub fn jina_dir() -> PathBuf {
    fixtures_dir().join("jina-v3-tiny")
}

/// A `[[models]]` table for the tiny jina-embeddings-v3 named `name` on `backend`.
pub fn jina_model(name: &str, backend: &str) -> String {
    format!(
        "[[models]]\nname = {name:?}\npath = {:?}\nbackend = {backend:?}\n",
        jina_dir().display().to_string()
    )
}

/// Runs a Python client script from `tests/python` with `args` and asserts that it printed `ok`.
pub fn run_python_client(python: &Path, script: &str, args: &[&std::ffi::OsStr]) {
    let output = Command::new(python)
        .arg(repo_root().join("tests/python").join(script))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "{script} {args:?}: {stdout}\n{stderr}"
    );
}

/// A `[[models]]` table for all-MiniLM-L6-v2 named `name` on `backend`.
pub fn minilm_model(name: &str, backend: &str, extra: &str) -> String {
    format!(
        "[[models]]\nname = {name:?}\npath = {:?}\nbackend = {backend:?}\n{extra}\n",
        minilm_dir().display().to_string()
    )
}

/// The python of `.assets/test-venv` with `requirements` (`name==version` each) installed: the
/// venv is created, and missing packages installed from PyPI, on first use.
pub fn test_python(requirements: &[&str]) -> PathBuf {
    venv_python("test-venv", requirements)
}

/// The python of the venv `.assets/<name>` with `requirements` installed, as [`test_python`]
/// does, for tests whose packages must not meet the others'.
pub fn venv_python(name: &str, requirements: &[&str]) -> PathBuf {
    // Tests of one binary run in parallel: one installs at a time (binaries run one by one).
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _installing = INSTALLING.lock().unwrap_or_else(|p| p.into_inner());
    let venv = repo_root().join(".assets").join(name);
    let python = venv.join("bin/python");
    let check = "import sys, importlib.metadata as m\n\
        def has(r):\n    name, version = r.split('==')\n    try:\n        return m.version(name) == version\n    except m.PackageNotFoundError:\n        return False\n\
        sys.exit(0 if all(has(r) for r in sys.argv[1:]) else 1)";
    let installed = Command::new(&python)
        .args(["-c", check])
        .args(requirements)
        .status()
        .is_ok_and(|s| s.success());
    if !installed {
        if !python.is_file() {
            let status = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .unwrap();
            assert!(status.success(), "python3 -m venv failed");
        }
        pip_install(&python, requirements);
    }
    python
}

/// Runs `python -m pip install --quiet ARGS` and asserts that it succeeded.
pub fn pip_install<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(python: &Path, args: &[S]) {
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "pip install {args:?} failed");
}

/// What came of a load: requests sent and, for each one that did not get 200, what came back.
pub struct LoadOutcome {
    /// Requests sent.
    pub sent: usize,
    /// One line per request that did not get 200.
    pub failures: Vec<String>,
}

/// Runs `during` on this thread while `clients` threads send `POST {url}/v1/embeddings` with
/// `body(client, round)` back to back; the load stops when `during` returns or panics (a failed
/// assertion in `during` then fails the test instead of leaving the load running forever).
pub fn under_load<T>(
    url: &str,
    clients: usize,
    body: impl Fn(usize, usize) -> serde_json::Value + Sync,
    during: impl FnOnce() -> T,
) -> (T, LoadOutcome) {
    /// Sets the flag when dropped, on return and on unwinding alike.
    struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let load = scope.spawn(|| embed_until_stopped(url, clients, &stop, &body));
        let value = {
            let _stop = StopOnDrop(&stop);
            during()
        };
        let (sent, failures) = load.join().unwrap();
        (value, LoadOutcome { sent, failures })
    })
}

/// Sends `POST {url}/v1/embeddings` with `body(client, round)` from `clients` threads, back to
/// back, until `stop` is set. Returns how many requests were sent and what failed.
fn embed_until_stopped(
    url: &str,
    clients: usize,
    stop: &std::sync::atomic::AtomicBool,
    body: impl Fn(usize, usize) -> serde_json::Value + Sync,
) -> (usize, Vec<String>) {
    let outcomes = concurrently(clients, |client_index| {
        let client = reqwest::blocking::Client::new();
        let (mut sent, mut failures) = (0, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let response = client
                .post(format!("{url}/v1/embeddings"))
                .json(&body(client_index, sent))
                .send();
            match response {
                Ok(r) if r.status() == 200 => {}
                other => failures.push(format!("{other:?}")),
            }
            sent += 1;
        }
        (sent, failures)
    });
    outcomes
        .into_iter()
        .fold((0, Vec::new()), |(sent, mut failures), (n, mut more)| {
            failures.append(&mut more);
            (sent + n, failures)
        })
}

/// A `redis-server` of its own on a free loopback port, without persistence, killed when
/// dropped. `scripts/setup.sh` installs Debian's `redis-server` when it is missing.
pub struct RedisServer {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
}

impl RedisServer {
    /// Starts one and waits until it answers `PING`.
    pub fn start() -> Self {
        let port = free_port();
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child =
            spawn_tied(command).expect("redis-server is installed (scripts/setup.sh installs it)");
        let server = Self {
            child: Some(child),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if server.ping() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {port} did not answer PING");
    }

    /// Its URL, for `cache.redis_url`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Whether it answers `PING` with `PONG` (inline protocol).
    pub fn ping(&self) -> bool {
        use std::io::Write;
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut answer = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// Kills it at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
