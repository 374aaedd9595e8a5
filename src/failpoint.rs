//! Named failpoints for the fault-injection tests, compiled in only with
//! the `failpoints` cargo feature (release builds have none: the macro
//! expands to nothing).
//!
//! A point is armed through the environment of the daemon, which every
//! forked actor inherits:
//!
//! ```text
//! PGAGROAL_FAILPOINTS="worker-mid-relay=once:crash;service-pass=delay(200)"
//! PGAGROAL_FAILPOINT_DIR=/tmp/markers   # needed for once:
//! ```
//!
//! Actions: `crash` (the process kills itself with SIGKILL), `hang` (it
//! sleeps forever), `delay(MS)`, `error` (the point's error branch runs).
//! `once:` fires the action in only the first process that reaches the
//! point: it creates `<name>` in `PGAGROAL_FAILPOINT_DIR` exclusively.

/// An armed point's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Crash,
    Hang,
    Delay(u64),
    Error,
}

/// One armed point.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Armed {
    pub name: String,
    pub action: Action,
    pub once: bool,
}

/// Parse the `PGAGROAL_FAILPOINTS` syntax; malformed entries are skipped.
pub fn parse(spec: &str) -> Vec<Armed> {
    spec.split(';')
        .filter_map(|entry| {
            let (name, action) = entry.trim().split_once('=')?;
            let (once, action) = match action.strip_prefix("once:") {
                Some(rest) => (true, rest),
                None => (false, action),
            };
            let action = match action {
                "crash" => Action::Crash,
                "hang" => Action::Hang,
                "error" => Action::Error,
                delay => Action::Delay(delay.strip_prefix("delay(")?.strip_suffix(')')?.parse().ok()?),
            };
            Some(Armed { name: name.trim().to_string(), action, once })
        })
        .collect()
}

#[cfg(feature = "failpoints")]
static ARMED: std::sync::OnceLock<Vec<Armed>> = std::sync::OnceLock::new();

/// Read `PGAGROAL_FAILPOINTS`. Called by the daemon before its allocator
/// changes arenas: the list must live in memory every forked actor keeps
/// (a child unmaps what the supervisor allocates later). Nothing without
/// the `failpoints` feature.
pub fn arm() {
    #[cfg(feature = "failpoints")]
    ARMED.get_or_init(|| std::env::var("PGAGROAL_FAILPOINTS").map(|s| parse(&s)).unwrap_or_default());
}

/// Run the point `name`'s action, if armed; true when its error branch
/// should run.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) -> bool {
    let Some(armed) = ARMED.get() else { return false };
    let Some(point) = armed.iter().find(|a| a.name == name) else { return false };
    if point.once {
        let Some(dir) = std::env::var_os("PGAGROAL_FAILPOINT_DIR") else { return false };
        let marker = std::path::Path::new(&dir).join(name);
        if std::fs::OpenOptions::new().write(true).create_new(true).open(marker).is_err() {
            return false;
        }
    }
    match point.action {
        Action::Crash => {
            // SAFETY: raising SIGKILL against ourselves; nothing returns.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            false
        }
        Action::Hang => loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        },
        Action::Delay(ms) => {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            false
        }
        Action::Error => true,
    }
}

/// `fail_point!("name")` runs the point's action; `fail_point!("name",
/// expr)` also evaluates `expr` (a `return`, say) when it is armed with
/// `error`. Nothing without the `failpoints` feature.
#[cfg(feature = "failpoints")]
#[macro_export]
macro_rules! fail_point {
    ($name:literal) => {
        let _ = $crate::failpoint::hit($name);
    };
    ($name:literal, $on_error:expr) => {
        if $crate::failpoint::hit($name) {
            $on_error;
        }
    };
}

/// `fail_point!("name")` runs the point's action; `fail_point!("name",
/// expr)` also evaluates `expr` (a `return`, say) when it is armed with
/// `error`. Nothing without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[macro_export]
macro_rules! fail_point {
    ($name:literal) => {};
    ($name:literal, $on_error:expr) => {};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses() {
        let armed = parse("a=crash; b=once:delay(250);c=error;d=hang;bad;e=delay(x)");
        assert_eq!(
            armed,
            vec![
                Armed { name: "a".into(), action: Action::Crash, once: false },
                Armed { name: "b".into(), action: Action::Delay(250), once: true },
                Armed { name: "c".into(), action: Action::Error, once: false },
                Armed { name: "d".into(), action: Action::Hang, once: false },
            ]
        );
    }
}
