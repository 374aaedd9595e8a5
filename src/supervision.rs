//! The supervisor's restart policy, as pure functions of what happened.
//!
//! A long-lived actor (a periodic service, later metrics and remote
//! management) that dies is restarted. One that dies again soon after a
//! start ([`QUICK_DEATH`]) is restarted after a delay that doubles with
//! each quick death, up to [`MAX_DELAY`], and from [`CRASH_LOOP_AFTER`]
//! quick deaths in a row it is reported as crashing repeatedly (log line and
//! `status`) instead of being restarted in a tight loop. One that ran
//! longer than [`QUICK_DEATH`] starts the count again.

use std::time::Duration;

/// An actor that dies within this time of its start counts as a quick death.
pub const QUICK_DEATH: Duration = Duration::from_secs(2);
/// Longest wait before a restart.
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// Quick deaths in a row from which an actor is reported as crash-looping.
pub const CRASH_LOOP_AFTER: u32 = 5;
/// How often the supervisor pings each long-lived actor.
pub const PING_EVERY: Duration = Duration::from_secs(2);
/// An actor that has not answered a ping within this time is taken to be
/// hung and is killed (then restarted). It is longer than any single wait a
/// service makes on a server (`authentication_timeout`'s default and the
/// pooler's five-second housekeeping timeout).
pub const PONG_WITHIN: Duration = Duration::from_secs(12);

/// Quick deaths in a row after a death of an actor that ran for `lived`,
/// given the count before it.
pub fn quick_deaths(before: u32, lived: Duration) -> u32 {
    if lived >= QUICK_DEATH { 1 } else { before.saturating_add(1) }
}

/// How long to wait before restarting an actor after its `n`th quick death
/// in a row: at once for the first, then 50 ms doubling up to [`MAX_DELAY`].
pub fn restart_delay(n: u32) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    let shift = (n - 2).min(20);
    Duration::from_millis(50u64 << shift).min(MAX_DELAY)
}

/// Whether `n` quick deaths in a row is a crash loop worth reporting.
pub fn crash_looping(n: u32) -> bool {
    n >= CRASH_LOOP_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(restart_delay(0), Duration::ZERO);
        assert_eq!(restart_delay(1), Duration::ZERO);
        assert_eq!(restart_delay(2), Duration::from_millis(50));
        assert_eq!(restart_delay(3), Duration::from_millis(100));
        assert_eq!(restart_delay(6), Duration::from_millis(800));
        assert_eq!(restart_delay(40), MAX_DELAY);
        assert!((1..200).all(|n| restart_delay(n) <= restart_delay(n + 1)));
    }

    #[test]
    fn a_long_run_starts_the_count_again() {
        assert_eq!(quick_deaths(7, QUICK_DEATH), 1);
        assert_eq!(quick_deaths(7, Duration::from_millis(10)), 8);
        assert_eq!(quick_deaths(u32::MAX, Duration::ZERO), u32::MAX);
        assert!(!crash_looping(4) && crash_looping(5));
    }

    #[test]
    fn four_quick_kills_are_all_restarted_within_a_second() {
        let waited: Duration = (1..=4).map(restart_delay).max().unwrap_or_default();
        assert!(waited < Duration::from_secs(1));
    }
}
