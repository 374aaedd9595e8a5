//! Typed readers for configuration values: the spellings pgagroal accepts for
//! booleans, durations (`s` default, `ms m h d w`) and sizes (`B` default,
//! `K/KB M/MB G/GB`). Each returns a description of what was expected on error
//! so the caller can build a message naming file, line and key.

use std::time::Duration;

/// What a value should have looked like; becomes the tail of the error message.
pub type Expected = String;

pub fn parse_bool(value: &str) -> Result<bool, Expected> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "yes" | "1" | "true" => Ok(true),
        "off" | "no" | "0" | "false" => Ok(false),
        _ => Err(format!("a boolean (on/off, yes/no, true/false, 1/0), not '{value}'")),
    }
}

pub fn parse_int<T: std::str::FromStr>(value: &str, what: &str) -> Result<T, Expected> {
    value.trim().parse::<T>().map_err(|_| format!("{what}, not '{value}'"))
}

/// Split `123abc` into (123, "abc"); None when there are no leading digits.
fn split_number(value: &str) -> Option<(u64, String)> {
    let value = value.trim();
    let digits = value.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let number = value[..digits].parse::<u64>().ok()?;
    Some((number, value[digits..].trim().to_ascii_lowercase()))
}

pub fn parse_duration(value: &str) -> Result<Duration, Expected> {
    let expected = || format!("a duration such as 30, 30s, 500ms, 5m, 1h, 1d or 1w, not '{value}'");
    let (number, suffix) = split_number(value).ok_or_else(expected)?;
    let scale: u64 = match suffix.as_str() {
        "ms" => return Ok(Duration::from_millis(number)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(expected()),
    };
    number.checked_mul(scale).map(Duration::from_secs).ok_or_else(expected)
}

pub fn parse_size(value: &str) -> Result<u64, Expected> {
    let expected = || format!("a size such as 512, 256K, 16MB or 1G, not '{value}'");
    let (number, suffix) = split_number(value).ok_or_else(expected)?;
    let scale: u64 = match suffix.as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return Err(expected()),
    };
    number.checked_mul(scale).ok_or_else(expected)
}

/// Expand `$NAME` and `${NAME}` from the environment, as pgagroal does for
/// path values. An unset variable is an error rather than an empty string, so
/// `$HOME/x` never silently becomes `/x`.
pub fn expand_env(value: &str) -> Result<String, Expected> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, consumed) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').ok_or_else(|| format!("a closing '}}' in '{value}'"))?;
            (&braced[..end], end + 2)
        } else {
            let end = after.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(after.len());
            (&after[..end], end)
        };
        if name.is_empty() {
            out.push('$');
        } else {
            let expanded = std::env::var(name)
                .map_err(|_| format!("environment variable '{name}' to be set (used in '{value}')"))?;
            out.push_str(&expanded);
        }
        rest = &after[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bools() {
        for t in ["on", "YES", "1", "true", "True"] {
            assert_eq!(parse_bool(t), Ok(true));
        }
        for f in ["off", "No", "0", "FALSE"] {
            assert_eq!(parse_bool(f), Ok(false));
        }
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30S"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1W"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999999w").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("256k"), Ok(256 * 1024));
        assert_eq!(parse_size("16MB"), Ok(16 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert!(parse_size("1T").is_err());
    }

    #[test]
    fn env_expansion() {
        // SAFETY: test-only; no other thread of this test binary reads this variable.
        unsafe { std::env::set_var("PGAGROAL_TEST_DIR", "/srv") };
        assert_eq!(expand_env("$PGAGROAL_TEST_DIR/run").as_deref(), Ok("/srv/run"));
        assert_eq!(expand_env("${PGAGROAL_TEST_DIR}x").as_deref(), Ok("/srvx"));
        assert_eq!(expand_env("/plain").as_deref(), Ok("/plain"));
        assert!(expand_env("$PGAGROAL_SURELY_UNSET_VARIABLE/x").is_err());
    }
}
