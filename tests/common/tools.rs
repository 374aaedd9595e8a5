//! Tools some tests need, set up on first use: Python packages installed
//! with pip into the target directory, and Debian packages (as root, with
//! apt-get) when their command is missing.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// A directory holding the Python package `package` (imported as
/// `module`), installed there with pip on first use; for PYTHONPATH.
pub fn python_package(package: &str, module: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("python-{package}"));
    let present = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .env("PYTHONPATH", &dir)
        .status()
        .is_ok_and(|s| s.success());
    if !present {
        let out = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target"])
            .arg(&dir)
            .arg(package)
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .output()
            .expect("run pip");
        assert!(out.status.success(), "pip install {package} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    dir
}

/// `command`, installing the Debian package `package` with apt-get when it
/// is missing and the tests run as root.
pub fn debian_command(command: &str, package: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let found = || {
        std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(command)).find(|p| p.is_file()))
    };
    if let Some(path) = found() {
        return path;
    }
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "{command} is needed: apt-get install {package}");
    let out = Command::new("apt-get")
        .args(["install", "-y", "-qq", "--no-install-recommends", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .expect("run apt-get");
    if !out.status.success() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).status();
        let again = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("run apt-get");
        assert!(again.status.success(), "apt-get install {package}: {}", String::from_utf8_lossy(&again.stderr));
    }
    found().unwrap_or_else(|| panic!("{command} is still missing after apt-get install {package}"))
}

/// Run `command` with `input` on its standard input; its output.
pub fn run_with_input(command: &mut Command, input: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    child.wait_with_output().expect("wait")
}
