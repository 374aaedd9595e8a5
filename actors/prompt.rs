//! Questions asked on the terminal by `pgagroal-admin`: a user name (echoed)
//! and passwords (not echoed). Prompts go to standard error so standard
//! output carries only the command's output. Nothing here is asked unless
//! standard input is a terminal, so a script without one never blocks. If
//! the program is interrupted while echo is off, the terminal's settings are
//! put back before it dies, so the shell does not stay silent.

use nix::sys::termios::{LocalFlags, SetArg, Termios, tcgetattr, tcsetattr};
use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::sync::OnceLock;

/// The terminal's settings before echo was first turned off, for the signal handler.
static SAVED: OnceLock<libc::termios> = OnceLock::new();

/// Signals that end the program while a hidden answer is being typed.
const FATAL_SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGQUIT, libc::SIGHUP];

extern "C" fn restore_and_die(signal: libc::c_int) {
    if let Some(saved) = SAVED.get() {
        // SAFETY: tcsetattr(3) is async-signal-safe, and `saved` points at a
        // termios that was fully written before this handler was installed
        // and is never modified or freed afterwards.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, saved) };
    }
    // SAFETY: signal(2) and raise(3) are async-signal-safe; with the default
    // action back in place, raising the signal ends the process the way it
    // would have ended without this handler.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}

/// Make the fatal signals restore the terminal first (once per process).
fn restore_on_signals(saved: &Termios) {
    if SAVED.set(libc::termios::from(saved.clone())).is_err() {
        return;
    }
    let handler = restore_and_die as extern "C" fn(libc::c_int);
    for signal in FATAL_SIGNALS {
        // SAFETY: the handler only calls async-signal-safe functions and reads
        // SAVED, which is set above and never changes again.
        unsafe { libc::signal(signal, handler as libc::sighandler_t) };
    }
}

/// Whether questions can be asked at all.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Puts the terminal's settings back when dropped.
struct EchoOff {
    saved: Termios,
}

impl EchoOff {
    fn new() -> Result<EchoOff, String> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).map_err(|e| format!("cannot read the terminal settings: {e}"))?;
        restore_on_signals(&saved);
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        // Still echo the newline, so the next prompt starts on its own line.
        quiet.local_flags.insert(LocalFlags::ECHONL);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &quiet).map_err(|e| format!("cannot turn echo off: {e}"))?;
        Ok(EchoOff { saved })
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Read one line of at most `limit` bytes from standard input, without the
/// line end. A longer line is read to its end and refused.
fn read_line(limit: usize) -> Result<String, String> {
    let stdin = std::io::stdin();
    let mut line = Vec::new();
    let mut too_long = false;
    let mut got_any = false;
    for byte in stdin.lock().bytes() {
        let byte = byte.map_err(|e| format!("cannot read standard input: {e}"))?;
        got_any = true;
        if byte == b'\n' {
            break;
        }
        if line.len() < limit + 1 {
            line.push(byte);
        } else {
            too_long = true;
        }
    }
    if !got_any {
        return Err("no answer (end of input)".into());
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    if too_long || line.len() > limit {
        line.fill(0);
        return Err(format!("the answer is longer than {limit} bytes"));
    }
    String::from_utf8(line).map_err(|e| {
        let mut bytes = e.into_bytes();
        bytes.fill(0);
        "the answer is not valid UTF-8".to_string()
    })
}

fn ask(prompt: &str) {
    let mut err = std::io::stderr();
    let _ = err.write_all(prompt.as_bytes());
    let _ = err.flush();
}

/// Ask for a visible answer, such as a user name.
pub fn line(prompt: &str, limit: usize) -> Result<String, String> {
    ask(prompt);
    read_line(limit)
}

/// Ask for a hidden answer, such as a password.
pub fn hidden(prompt: &str, limit: usize) -> Result<String, String> {
    // Echo goes off before the prompt shows, so nothing typed after it is echoed.
    let echo_off = EchoOff::new()?;
    ask(prompt);
    let answer = read_line(limit);
    drop(echo_off);
    answer
}
