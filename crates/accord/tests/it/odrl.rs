//! What "valid JSON-LD with the ODRL context" means in these tests, checked
//! offline against the ODRL 2.2 context shipped in `shared/vocab`: every
//! key is a JSON-LD keyword, a term the contexts define, or an IRI; every
//! action, operator and left operand is an ODRL term; the policy is an
//! `Agreement` with at least one permission that has an action, a target,
//! an assigner and an assignee.

use std::collections::HashSet;

use serde_json::Value;

const ODRL_CONTEXT_URL: &str = "http://www.w3.org/ns/odrl.jsonld";

fn odrl_terms() -> HashSet<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vocab/odrl.jsonld"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!("the ODRL context must be at {path} (shared/vocab beside the repository): {e}")
    });
    let doc: Value = serde_json::from_str(&text).expect("odrl.jsonld is JSON");
    doc["@context"]
        .as_object()
        .expect("a @context object")
        .keys()
        .cloned()
        .collect()
}

/// Terms and prefixes the document's own context adds to the ODRL one.
fn local_terms(context: &Value) -> (bool, HashSet<String>) {
    let mut has_odrl = false;
    let mut terms = HashSet::new();
    let items: Vec<&Value> = match context {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for item in items {
        match item {
            Value::String(url) if url == ODRL_CONTEXT_URL => has_odrl = true,
            Value::Object(map) => terms.extend(map.keys().cloned()),
            other => panic!("unexpected @context entry {other}"),
        }
    }
    (has_odrl, terms)
}

fn is_defined(key: &str, terms: &HashSet<String>) -> bool {
    if key.starts_with('@') || terms.contains(key) {
        return true;
    }
    match key.split_once(':') {
        Some((prefix, _)) => terms.contains(prefix) || matches!(prefix, "http" | "https" | "urn"),
        None => false,
    }
}

fn walk(value: &Value, terms: &HashSet<String>, path: &str) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                if key == "@context" {
                    continue;
                }
                assert!(
                    is_defined(key, terms),
                    "{path}.{key} is neither an ODRL term, a defined term nor an IRI"
                );
                if matches!(key.as_str(), "@value" | "@type" | "@id") {
                    continue;
                }
                walk(inner, terms, &format!("{path}.{key}"));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, terms, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

fn term_value(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Object(m) => m.get("@id").and_then(|i| i.as_str()).map(str::to_owned),
        _ => None,
    }
}

fn check_vocabulary(value: &Value, terms: &HashSet<String>) {
    match value {
        Value::Object(map) => {
            for key in ["leftOperand", "operator", "action"] {
                if let Some(v) = map.get(key) {
                    let items: Vec<&Value> = match v {
                        Value::Array(a) => a.iter().collect(),
                        other => vec![other],
                    };
                    for item in items {
                        let name = term_value(item)
                            .or_else(|| item.get("rdf:value").and_then(term_value))
                            .unwrap_or_else(|| panic!("{key} {item} names no term"));
                        assert!(
                            is_defined(&name, terms),
                            "{key} {name:?} is not an ODRL term or IRI"
                        );
                    }
                }
            }
            map.values().for_each(|v| check_vocabulary(v, terms));
        }
        Value::Array(items) => items.iter().for_each(|v| check_vocabulary(v, terms)),
        _ => {}
    }
}

pub fn assert_valid_odrl_agreement(doc: &Value) {
    let (has_odrl, local) = local_terms(&doc["@context"]);
    assert!(
        has_odrl,
        "the @context must include {ODRL_CONTEXT_URL}: {}",
        doc["@context"]
    );
    let mut terms = odrl_terms();
    terms.extend(local);
    assert!(
        doc["@type"] == "Agreement" || doc["@type"] == "odrl:Agreement",
        "an ODRL Agreement, found {}",
        doc["@type"]
    );
    let uid = doc["uid"]
        .as_str()
        .or_else(|| doc["@id"].as_str())
        .expect("a policy uid");
    assert!(uid.contains(':'), "the uid {uid} is an IRI");
    walk(doc, &terms, "$");
    check_vocabulary(doc, &terms);
    let permissions = doc["permission"].as_array().expect("permissions");
    assert!(!permissions.is_empty());
    for p in permissions {
        for key in ["action", "target", "assigner", "assignee"] {
            assert!(!p[key].is_null(), "a permission without {key}: {p}");
        }
    }
}
