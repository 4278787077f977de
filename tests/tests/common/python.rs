//! Python clients of the server: pinned packages in venvs under `.assets`, installed on first
//! use, and the scripts of `tests/python` that drive a server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use embedrt_testkit::paths::repo_root;

/// The python of `.assets/test-venv` with `requirements` (`name==version` each) installed: the
/// venv is created, and missing packages installed from PyPI, on first use.
pub fn test_python(requirements: &[&str]) -> PathBuf {
    venv_python("test-venv", requirements)
}

/// The python of the venv `.assets/<name>` with `requirements` installed, as [`test_python`]
/// does, for tests whose packages must not meet the others'.
///
/// # Panics
///
/// When the venv cannot be made or a package cannot be installed.
pub fn venv_python(name: &str, requirements: &[&str]) -> PathBuf {
    // Tests run in parallel: one installs at a time.
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

/// Runs `python -m pip install --quiet ARGS`.
///
/// # Panics
///
/// When pip fails.
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

/// Runs the client script `tests/python/<script>` with `args`.
///
/// # Panics
///
/// Unless it succeeds and prints `ok` (its own assertions are the test's).
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
