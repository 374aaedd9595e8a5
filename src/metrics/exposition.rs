//! The Prometheus text exposition format (version 0.0.4, which Prometheus
//! reads for `text/plain; version=0.0.3` too): each family is `# HELP`,
//! `# TYPE` and its samples, with label values escaped. Families are
//! separated by a blank line, as upstream writes them.

use std::fmt::Write;

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A document being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

/// A label value with `\`, `"` and newlines escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition { out: String::with_capacity(16 * 1024) }
    }

    /// Start a family.
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        if !self.out.is_empty() {
            self.out.push('\n');
        }
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {}", kind.name());
    }

    /// One sample of the family started last (or of its `_bucket`, `_sum`
    /// and `_count` series).
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: impl std::fmt::Display) {
        self.family(name, help, kind);
        self.sample(name, &[], value);
    }

    /// A histogram from cumulative bucket counts (`bounds` in seconds,
    /// `counts[i]` the observations at most `bounds[i]`; `count` is also the
    /// `+Inf` bucket).
    pub fn histogram(&mut self, name: &str, help: &str, bounds: &[f64], counts: &[u64], sum: f64, count: u64) {
        self.family(name, help, Kind::Histogram);
        let bucket = format!("{name}_bucket");
        for (bound, n) in bounds.iter().zip(counts) {
            self.sample(&bucket, &[("le", &format_bound(*bound))], n);
        }
        self.sample(&bucket, &[("le", "+Inf")], count);
        self.sample(&format!("{name}_sum"), &[], sum);
        self.sample(&format!("{name}_count"), &[], count);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn format_bound(bound: f64) -> String {
    if bound.fract() == 0.0 { format!("{bound:.0}") } else { format!("{bound}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_escapes() {
        let mut e = Exposition::new();
        e.single("pgagroal_state", "The state of pgagroal", Kind::Gauge, 1);
        e.family("pgagroal_connection", "Connection information", Kind::Gauge);
        e.sample("pgagroal_connection", &[("id", "0"), ("user", "a\"b\\c\nd")], 1);
        e.histogram("pgagroal_session_time_seconds", "Session time", &[5.0, 0.25], &[1, 2], 7.5, 3);
        let text = e.finish();
        assert_eq!(
            text,
            "# HELP pgagroal_state The state of pgagroal\n# TYPE pgagroal_state gauge\npgagroal_state 1\n\n\
             # HELP pgagroal_connection Connection information\n# TYPE pgagroal_connection gauge\n\
             pgagroal_connection{id=\"0\",user=\"a\\\"b\\\\c\\nd\"} 1\n\n\
             # HELP pgagroal_session_time_seconds Session time\n# TYPE pgagroal_session_time_seconds histogram\n\
             pgagroal_session_time_seconds_bucket{le=\"5\"} 1\npgagroal_session_time_seconds_bucket{le=\"0.25\"} 2\n\
             pgagroal_session_time_seconds_bucket{le=\"+Inf\"} 3\npgagroal_session_time_seconds_sum 7.5\n\
             pgagroal_session_time_seconds_count 3\n"
        );
    }
}
