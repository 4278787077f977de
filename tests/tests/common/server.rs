//! A real `embedrt serve` process, started the one way every test starts one:
//! `Server::builder().model(..).server(key, value).start()` (or `.spawn()` without waiting, or
//! `.run_to_exit()` for startups that must fail), and the cap on how many run at once.
//!
//! Tests of every module run in one process, two at a time on two cores. A server a test starts
//! takes one of [`MAX_SERVERS`] places (waiting for one while they are taken) and gives it back
//! when dropped; a test that loads the machine runs [`alone`]. Shared servers (one per module,
//! in a static for the whole run) take no place.

use std::cell::Cell;
use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use embedrt_testkit::paths::build_dir;
use embedrt_testkit::TempDir;
use toml::{Table, Value};

use super::models::Model;
use super::process::{free_port, spawn_tied};

/// How many servers tests may run at once (shared servers, and those of a test run [`alone`],
/// aside).
pub const MAX_SERVERS: usize = 3;

/// The places servers take.
struct Places {
    free: Mutex<usize>,
    freed: Condvar,
}

static PLACES: Places = Places {
    free: Mutex::new(MAX_SERVERS),
    freed: Condvar::new(),
};

thread_local! {
    /// Whether this thread runs a test [`alone`] (its servers need no place).
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// `count` places, given back when dropped.
struct Taken(usize);

impl Taken {
    /// Waits until `count` places are free and takes them.
    fn take(count: usize) -> Self {
        let mut free = PLACES.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free < count {
            free = PLACES.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= count;
        Self(count)
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        *PLACES.free.lock().unwrap_or_else(|p| p.into_inner()) += self.0;
        PLACES.freed.notify_all();
    }
}

/// While held, this test is the only one with servers of its own running: for tests that load
/// the machine (many clients, timed shares, a whole pytest suite). Take it before starting any
/// server (a server already held would wait for itself).
pub struct Alone(Option<Taken>);

/// Waits until no other test runs a server of its own, and keeps it so while the guard lives.
pub fn alone() -> Alone {
    let taken = Taken::take(MAX_SERVERS);
    ALONE.with(|alone| alone.set(true));
    Alone(Some(taken))
}

impl Drop for Alone {
    fn drop(&mut self) {
        ALONE.with(|alone| alone.set(false));
        self.0.take();
    }
}

/// A running `embedrt serve` process, killed when dropped (and when the test process dies).
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The gRPC API's `http://127.0.0.1:PORT`.
    pub grpc_url: String,
    /// The folder of its config file (removed when dropped).
    dir: TempDir,
    /// The config it was started with (none when it serves a file of the repository).
    config: Option<Table>,
    /// Reads its stderr as it comes (a pipe nobody read would block the server once full),
    /// and returns all of it when the pipe closes.
    log: Option<std::thread::JoinHandle<String>>,
    _place: Option<Taken>,
}

/// How a process ended.
#[derive(Debug)]
pub struct Exit {
    /// Its exit code (none when a signal ended it).
    pub code: Option<i32>,
    /// What it logged (stderr).
    pub log: String,
}

/// How to start a [`Server`].
#[must_use]
pub struct ServerBuilder {
    models: Vec<Model>,
    server: Table,
    cache: Table,
    config_file: Option<PathBuf>,
    binary: PathBuf,
    plugin_dirs: bool,
    ports: Option<(u16, u16)>,
    ports_by_flags: bool,
    envs: Vec<(OsString, OsString)>,
    removed: Vec<OsString>,
    current_dir: Option<PathBuf>,
    shared: bool,
}

impl Server {
    /// A builder for a server of this build, listening on free loopback ports, its plugins
    /// found in the build folder.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            models: Vec::new(),
            server: Table::new(),
            cache: Table::new(),
            config_file: None,
            binary: build_dir().join("embedrt"),
            plugin_dirs: true,
            ports: None,
            ports_by_flags: false,
            envs: Vec::new(),
            removed: Vec::new(),
            current_dir: None,
            shared: false,
        }
    }
}

impl ServerBuilder {
    /// Serves `model` too.
    pub fn model(mut self, model: Model) -> Self {
        self.models.push(model);
        self
    }

    /// With `[server] key = value`.
    pub fn server(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.server.insert(key.into(), value.into());
        self
    }

    /// With `[cache] key = value`.
    pub fn cache(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.cache.insert(key.into(), value.into());
        self
    }

    /// Serves the config file `path` as it is (models and settings; the ports come as `--http`
    /// and `--grpc` flags).
    pub fn config_file(mut self, path: &Path) -> Self {
        self.config_file = Some(path.to_path_buf());
        self.ports_by_flags = true;
        self
    }

    /// Runs `binary` instead of this build's `embedrt`.
    pub fn binary(mut self, binary: &Path) -> Self {
        self.binary = binary.to_path_buf();
        self
    }

    /// Names no plugin folder in the config, so the binary's own folder is searched.
    pub fn without_plugin_dirs(mut self) -> Self {
        self.plugin_dirs = false;
        self
    }

    /// Listens on these ports (HTTP, gRPC), for a server started again where it was.
    pub fn ports(mut self, http: u16, grpc: u16) -> Self {
        self.ports = Some((http, grpc));
        self
    }

    /// Gives the ports as `--http` and `--grpc` flags, over a file whose own `http` is a port
    /// nothing listens on.
    pub fn ports_by_flags(mut self) -> Self {
        self.ports_by_flags = true;
        self
    }

    /// With the environment variable `key` set to `value`.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Without the environment variable `key`.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.removed.push(key.as_ref().to_os_string());
        self
    }

    /// Run in `dir`.
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.current_dir = Some(dir.to_path_buf());
        self
    }

    /// For a server shared by a module's tests (kept in a static): it takes no place.
    pub fn shared(mut self) -> Self {
        self.shared = true;
        self
    }

    /// Starts the server and waits until `/ready` answers 200.
    ///
    /// # Panics
    ///
    /// When it exits first (with its log), or is not ready in two minutes.
    pub fn start(self) -> Server {
        let mut server = self.spawn();
        server.wait_ready();
        server
    }

    /// Starts the server and runs it until it exits by itself (as a startup that fails does).
    ///
    /// # Panics
    ///
    /// When it runs longer than two minutes.
    pub fn run_to_exit(self) -> Exit {
        self.spawn().wait_exit(Duration::from_secs(120))
    }

    /// Starts the server without waiting for it.
    ///
    /// # Panics
    ///
    /// When the binary is not built, or the config cannot be written.
    pub fn spawn(self) -> Server {
        assert!(
            self.binary.is_file(),
            "{} is missing: run `cargo build --workspace` first",
            self.binary.display()
        );
        let place = (!self.shared && !ALONE.with(Cell::get)).then(|| Taken::take(1));
        let dir = TempDir::new("server");
        let (http, grpc) = self.ports.unwrap_or_else(|| (free_port(), free_port()));
        let (config_path, config) = match &self.config_file {
            Some(path) => (path.clone(), None),
            None => {
                let config = self.config(http, grpc);
                let path = dir.path().join("config.toml");
                write_config(&path, &config);
                (path, Some(config))
            }
        };
        let mut command = Command::new(&self.binary);
        command
            .args(["serve", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if self.ports_by_flags {
            command
                .args(["--http", &format!("127.0.0.1:{http}")])
                .args(["--grpc", &format!("127.0.0.1:{grpc}")]);
        }
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        for key in &self.removed {
            command.env_remove(key);
        }
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        let mut child = spawn_tied(command).unwrap();
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let log = std::thread::spawn(move || {
            let mut log = Vec::new();
            let _ = stderr.read_to_end(&mut log);
            String::from_utf8_lossy(&log).into_owned()
        });
        Server {
            child,
            url: format!("http://127.0.0.1:{http}"),
            grpc_url: format!("http://127.0.0.1:{grpc}"),
            dir,
            config,
            log: Some(log),
            _place: place,
        }
    }

    /// The config file's contents for a server on `http` and `grpc`.
    fn config(&self, http: u16, grpc: u16) -> Table {
        let mut server = Table::new();
        if self.ports_by_flags {
            // Nothing listens there: the flags must win.
            server.insert("http".into(), "127.0.0.1:1".into());
        } else {
            server.insert("http".into(), format!("127.0.0.1:{http}").into());
            server.insert("grpc".into(), format!("127.0.0.1:{grpc}").into());
        }
        if self.plugin_dirs {
            let dirs = vec![build_dir().display().to_string()];
            server.insert("plugin_dirs".into(), dirs.into());
        }
        server.extend(self.server.clone());
        let mut config = Table::new();
        config.insert("server".into(), Value::Table(server));
        if !self.cache.is_empty() {
            config.insert("cache".into(), Value::Table(self.cache.clone()));
        }
        let models = self.models.iter().map(Model::to_toml).collect();
        config.insert("models".into(), Value::Array(models));
        config
    }
}

fn write_config(path: &Path, config: &Table) {
    std::fs::write(path, toml::to_string(config).unwrap()).unwrap();
}

impl Server {
    /// Replaces the models of the server's config file with `models`, keeping its `[server]`
    /// and `[cache]` tables (a reload then picks them up).
    ///
    /// # Panics
    ///
    /// When the server serves a file of the repository (which is not rewritten).
    pub fn rewrite_models(&mut self, models: &[Model]) {
        let config = self
            .config
            .as_mut()
            .expect("only a server of the builder's own config can be rewritten");
        let models = models.iter().map(Model::to_toml).collect();
        config.insert("models".into(), Value::Array(models));
        write_config(&self.dir.path().join("config.toml"), config);
    }

    /// Polls `/ready` for up to two minutes.
    ///
    /// # Panics
    ///
    /// When the server exits first (with its log), or is not ready in time.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "server exited ({status}) before it was ready:\n{}",
                    self.take_log()
                );
            }
            match super::http::client()
                .get(format!("{}/ready", self.url))
                .send()
            {
                Ok(response) if response.status() == 200 => return,
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        panic!("server at {} not ready in time", self.url);
    }

    /// What the server logged (stderr), once it has exited.
    fn take_log(&mut self) -> String {
        self.log
            .take()
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default()
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the server process.
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent.
    pub fn signal(&self, signal: i32) {
        // SAFETY: plain syscall on our own child's pid.
        let status = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(status, 0, "kill({signal}) failed");
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit by itself.
    ///
    /// # Panics
    ///
    /// When it does not within `timeout`.
    pub fn wait_exit(mut self, timeout: Duration) -> Exit {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Exit {
                    code: status.code(),
                    log: self.take_log(),
                };
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

/// What the server logged when the model folder `dir` on `engine` stopped its startup.
///
/// # Panics
///
/// When the server did not exit with status 1.
pub fn refusal(dir: &std::path::Path, engine: &str) -> String {
    let Exit { code, log } = Server::builder()
        .model(crate::common::Model::named("m").path(dir).on(engine))
        .run_to_exit();
    assert_eq!(code, Some(1), "{log}");
    log
}
