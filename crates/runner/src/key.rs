//! Stage keys: the one place where what a stage depends on becomes a hash.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::digest::hash_bytes;

/// blake3 over (name, code version, canonical params, input digests).
pub fn stage_key(
    name: &str,
    version: u32,
    params: &Value,
    input_digests: &BTreeMap<String, String>,
) -> String {
    let mut doc = String::new();
    doc.push_str("stage-key-v1\n");
    doc.push_str(&canonical_json(&Value::String(name.to_string())));
    doc.push('\n');
    doc.push_str(&version.to_string());
    doc.push('\n');
    doc.push_str(&canonical_json(params));
    doc.push('\n');
    for (input, digest) in input_digests {
        doc.push_str(&canonical_json(&Value::String(input.clone())));
        doc.push('=');
        doc.push_str(digest);
        doc.push('\n');
    }
    hash_bytes(doc.as_bytes())
}

/// Parameters as the runner sees them: object keys sorted, null members
/// dropped (an absent optional and an explicit default must hash alike).
pub fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, Value> = map
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, canonical(v)))
                .collect();
            Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// JSON text with object keys in sorted order whatever the map type.
pub fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let sorted: BTreeMap<&String, &Value> = map.iter().collect();
            let members: Vec<String> = sorted
                .into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical_json(v)))
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(canonical_json)
                .collect::<Vec<_>>()
                .join(",")
        ),
        other => other.to_string(),
    }
}

/// `a.b.c = value` lines of a parameter tree, for explaining what changed.
pub fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                flatten(&format!("{prefix}.{k}"), v, out);
            }
        }
        Value::Null => {}
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_ignores_member_order_and_nulls() {
        let inputs = BTreeMap::from([("csv".to_string(), "abc".to_string())]);
        let a = stage_key(
            "ingest",
            1,
            &json!({"seed": 1, "frac": 0.7, "x": null}),
            &inputs,
        );
        let b = stage_key("ingest", 1, &json!({"frac": 0.7, "seed": 1}), &inputs);
        assert_eq!(a, b);
    }

    #[test]
    fn key_changes_with_each_component() {
        let inputs = BTreeMap::from([("csv".to_string(), "abc".to_string())]);
        let base = stage_key("ingest", 1, &json!({"seed": 1}), &inputs);
        assert_ne!(base, stage_key("encode", 1, &json!({"seed": 1}), &inputs));
        assert_ne!(base, stage_key("ingest", 2, &json!({"seed": 1}), &inputs));
        assert_ne!(base, stage_key("ingest", 1, &json!({"seed": 2}), &inputs));
        let other = BTreeMap::from([("csv".to_string(), "abd".to_string())]);
        assert_ne!(base, stage_key("ingest", 1, &json!({"seed": 1}), &other));
    }

    #[test]
    fn flatten_names_nested_parameters() {
        let mut out = BTreeMap::new();
        flatten(
            "ingest",
            &json!({"labels": {"neg": 0}, "seed": 3}),
            &mut out,
        );
        assert_eq!(
            out.keys().collect::<Vec<_>>(),
            ["ingest.labels.neg", "ingest.seed"]
        );
    }
}
