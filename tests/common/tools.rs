//! Tools some tests need, set up on first use: Python packages installed
//! with pip and npm packages installed with npm into the target directory,
//! and Debian packages (as root, with apt-get) when their command or file is
//! missing.

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

/// apt-get runs one at a time.
static APT: Mutex<()> = Mutex::new(());

/// `command`, installing the Debian package `package` with apt-get when it
/// is missing and the tests run as root.
pub fn debian_command(command: &str, package: &str) -> PathBuf {
    let _one_at_a_time = APT.lock().unwrap_or_else(|e| e.into_inner());
    let found = || {
        std::env::var_os("PATH")
            .and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(command)).find(|p| p.is_file()))
    };
    if let Some(path) = found() {
        return path;
    }
    apt_get_install(package, command);
    found().unwrap_or_else(|| panic!("{command} is still missing after apt-get install {package}"))
}

/// `path`, a file of the Debian package `package` (a jar, say), installing
/// the package with apt-get when the file is missing and the tests run as
/// root.
pub fn debian_file(path: &str, package: &str) -> PathBuf {
    let _one_at_a_time = APT.lock().unwrap_or_else(|e| e.into_inner());
    let path = PathBuf::from(path);
    if !path.is_file() {
        apt_get_install(package, &path.display().to_string());
        assert!(path.is_file(), "{} is still missing after apt-get install {package}", path.display());
    }
    path
}

/// `apt-get install package`, with `apt-get update` and a second try when
/// the first fails (an old or missing package list); `what` names what the
/// package is needed for.
fn apt_get_install(package: &str, what: &str) {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "{what} is needed: apt-get install {package}");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run apt-get")
    };
    if !install().status.success() {
        let _ = Command::new("apt-get").args(["update", "-qq"]).stdin(std::process::Stdio::null()).status();
        let again = install();
        assert!(again.status.success(), "apt-get install {package}: {}", String::from_utf8_lossy(&again.stderr));
    }
}

/// A `node_modules` directory holding the npm package `spec` (`name@range`),
/// whose directory is `name`, installed under the target directory with npm
/// on first use; for NODE_PATH.
pub fn npm_package(spec: &str, name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("npm-{name}"));
    if !dir.join("node_modules").join(name).join("package.json").is_file() {
        std::fs::create_dir_all(&dir).expect("npm package directory");
        let out = Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(&dir)
            .arg(spec)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run npm");
        assert!(out.status.success(), "npm install {spec} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    dir.join("node_modules")
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
