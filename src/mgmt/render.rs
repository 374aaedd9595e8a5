//! How `pgagroal-cli` prints a reply: `-F json` pretty-prints the document
//! with the header's codes turned into names, `-F raw` keeps the codes, and
//! `-F text` (the default) prints the same tree as indented `Key: value`
//! lines, arrays as `- ` items.

use super::Command;
use serde_json::Value;

/// Replace `Header.Command`, `Output`, `Compression` and `Encryption` codes by
/// the names pgagroal-cli prints.
pub fn translate_header(document: &mut Value) {
    let Some(header) = document.get_mut("Header").and_then(Value::as_object_mut) else { return };
    if let Some(command) = header.get("Command").and_then(Value::as_i64).and_then(Command::from_id) {
        header.insert("Command".into(), Value::from(command.name()));
    }
    if let Some(output) = header.get("Output").and_then(Value::as_i64) {
        let name = match output {
            0 => Some("text"),
            1 => Some("json"),
            _ => None,
        };
        if let Some(name) = name {
            header.insert("Output".into(), Value::from(name));
        }
    }
    if let Some(c) = header.get("Compression").and_then(Value::as_i64) {
        let name = match c {
            1 => "gzip",
            2 => "zstd",
            3 => "lz4",
            4 => "bzip2",
            _ => "none",
        };
        header.insert("Compression".into(), Value::from(name));
    }
    if let Some(e) = header.get("Encryption").and_then(Value::as_i64) {
        let name = match e {
            1 => "aes-256-cbc",
            2 => "aes-192-cbc",
            3 => "aes-128-cbc",
            4 => "aes-256-ctr",
            5 => "aes-192-ctr",
            6 => "aes-128-ctr",
            _ => "none",
        };
        header.insert("Encryption".into(), Value::from(name));
    }
}

/// Pretty JSON with two-space indentation.
pub fn json(document: &Value) -> String {
    serde_json::to_string_pretty(document).unwrap_or_else(|_| document.to_string())
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) if s.is_empty() => "''".into(),
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Object(o) if o.is_empty() => "{}".into(),
        Value::Array(a) if a.is_empty() => "[]".into(),
        other => other.to_string(),
    }
}

fn is_leaf(value: &Value) -> bool {
    match value {
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => true,
    }
}

/// Write the entries of an object at `indent`. `first_prefix` replaces the
/// indentation of the first line (used for `- ` array items).
fn object(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize, first_prefix: Option<&str>) {
    for (i, (key, value)) in map.iter().enumerate() {
        match (i, first_prefix) {
            (0, Some(prefix)) => out.push_str(prefix),
            _ => out.push_str(&" ".repeat(indent)),
        }
        out.push_str(key);
        out.push(':');
        if is_leaf(value) {
            out.push(' ');
            out.push_str(&scalar(value));
            out.push('\n');
        } else {
            out.push('\n');
            nested(out, value, indent + 2);
        }
    }
}

fn nested(out: &mut String, value: &Value, indent: usize) {
    match value {
        Value::Object(map) => object(out, map, indent, None),
        Value::Array(items) => {
            for item in items {
                let dash = format!("{}- ", " ".repeat(indent));
                match item {
                    Value::Object(map) if !map.is_empty() => object(out, map, indent + 2, Some(&dash)),
                    leaf if is_leaf(leaf) => {
                        out.push_str(&dash);
                        out.push_str(&scalar(leaf));
                        out.push('\n');
                    }
                    other => {
                        out.push_str(dash.trim_end());
                        out.push('\n');
                        nested(out, other, indent + 2);
                    }
                }
            }
        }
        leaf => {
            out.push_str(&" ".repeat(indent));
            out.push_str(&scalar(leaf));
            out.push('\n');
        }
    }
}

/// The text form.
pub fn text(document: &Value) -> String {
    let mut out = String::new();
    nested(&mut out, document, 0);
    if out.ends_with('\n') {
        out.pop();
    }
    out
}

/// What the CLI prints for `reply` to `parsed` in `output`, and whether the
/// command succeeded (the exit status). `conf get KEY` selects the key from
/// the whole configuration (text: its value, or `Error`; JSON: the reply
/// with only that key in `Response`); `conf set`, `conf ls` and
/// `conf alias` have upstream's text layouts.
pub fn reply(parsed: &super::command::Parsed, output: super::Output, mut reply: Value) -> (String, bool) {
    use super::{Command, Output, conf};
    let mut success = reply.pointer("/Outcome/Status") == Some(&Value::Bool(true));
    if output != Output::Raw {
        translate_header(&mut reply);
    }
    let as_json = |doc: &Value| format!("{}\n", json(doc));
    let response = reply.get("Response").cloned().unwrap_or(Value::Null);
    let printed = match (parsed.command, output) {
        (Command::ConfigGet, _) if parsed.conf_key.is_some() => {
            let key = parsed.conf_key.as_deref().unwrap_or("");
            let selected = if success { conf::select(&response, key) } else { None };
            success = selected.is_some();
            match (output, selected) {
                (Output::Text, Some(found)) => format!("{}\n", found.text),
                (Output::Text, None) => "Error\n".to_string(),
                (_, found) => {
                    let mut filtered = serde_json::Map::new();
                    if let Some(found) = found {
                        filtered.insert(found.name, found.value);
                    }
                    if let Some(doc) = reply.as_object_mut() {
                        doc.insert("Response".into(), Value::Object(filtered));
                        if !success && let Some(outcome) = doc.get_mut("Outcome").and_then(Value::as_object_mut) {
                            outcome.insert("Status".into(), Value::Bool(false));
                        }
                    }
                    as_json(&reply)
                }
            }
        }
        (Command::ConfigSet, Output::Text) => {
            let key = reply.pointer("/Request/ConfigKey").and_then(Value::as_str).unwrap_or("unknown").to_string();
            conf::set_text(&key, &reply)
        }
        (Command::ConfigLs, Output::Text) if success => conf::ls_text(&response),
        (Command::ConfigAlias, Output::Text) if success => conf::alias_text(&response),
        (_, Output::Text) => format!("{}\n", text(&reply)),
        _ => as_json(&reply),
    };
    (printed, success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_layout() {
        let doc = json!({
            "Header": {"Command": 16, "Output": 0, "Compression": 0, "Encryption": 0},
            "Outcome": {"Status": true, "Time": "00:00:00"},
            "Request": {},
            "Response": {
                "ActiveConnections": 0,
                "Servers": [{"Host": "localhost", "Port": 5432, "Server": "primary", "State": "Primary"}],
                "Status": "Running",
                "Empty": ""
            }
        });
        let mut doc = doc;
        translate_header(&mut doc);
        let t = text(&doc);
        let expected = "Header:\n  Command: status\n  Compression: none\n  Encryption: none\n  Output: text\n\
Outcome:\n  Status: true\n  Time: 00:00:00\nRequest: {}\nResponse:\n  ActiveConnections: 0\n  Empty: ''\n  \
Servers:\n    - Host: localhost\n      Port: 5432\n      Server: primary\n      State: Primary\n  Status: Running";
        assert_eq!(t, expected);
    }

    #[test]
    fn json_is_pretty_with_names() {
        let mut doc = json!({"Header": {"Command": 11, "Output": 1}, "Request": {}});
        translate_header(&mut doc);
        assert_eq!(
            json(&doc),
            "{\n  \"Header\": {\n    \"Command\": \"ping\",\n    \"Output\": \"json\"\n  },\n  \"Request\": {}\n}"
        );
    }
}
