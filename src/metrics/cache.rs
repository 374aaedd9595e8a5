//! The scrape cache: a body is served again while it is younger than
//! `metrics_cache_max_age` and no larger than `metrics_cache_max_size`.

use std::time::{Duration, Instant};

/// The last body made, and when.
#[derive(Debug, Default)]
pub struct Cache {
    kept: Option<(Instant, String)>,
}

impl Cache {
    /// The kept body, if still fresh at `now` under `max_age` (0: off).
    pub fn get(&self, now: Instant, max_age: Duration) -> Option<&str> {
        match &self.kept {
            Some((made, body)) if !max_age.is_zero() && now.saturating_duration_since(*made) < max_age => Some(body),
            _ => None,
        }
    }

    /// Keep `body` made at `made`, when caching is on and it fits.
    pub fn put(&mut self, made: Instant, body: &str, max_age: Duration, max_size: u64) {
        self.kept = (!max_age.is_zero() && body.len() as u64 <= max_size).then(|| (made, body.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_small_bodies_are_served_again() {
        let t0 = Instant::now();
        let mut c = Cache::default();
        let age = Duration::from_secs(5);
        c.put(t0, "body", age, 10);
        assert_eq!(c.get(t0 + Duration::from_secs(4), age), Some("body"));
        assert_eq!(c.get(t0 + Duration::from_secs(5), age), None, "stale");
        assert_eq!(c.get(t0, Duration::ZERO), None, "off");
        c.put(t0, "a body too large", age, 10);
        assert_eq!(c.get(t0, age), None);
        c.put(t0, "body", Duration::ZERO, 10);
        assert_eq!(c.get(t0, age), None);
    }
}
