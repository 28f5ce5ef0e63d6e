//! Checks on the untyped JSON, before it becomes a `Spec`.
//!
//! oci-spec's typed parse stops at the first unknown capability, namespace
//! type or rlimit. These checks find all of them, plus every field berth does
//! not implement yet, and take the offending parts out of the JSON so the typed
//! parse and the typed checks can still run and report everything else.

use serde_json::{Map, Value};

use crate::error::Validation;
use crate::jsonpath::{field, index, Removed};
use crate::tables::{capability_number, known_capabilities, CAPABILITY_SETS, NAMESPACES, RLIMITS};

/// Fields berth does not implement yet; setting any of them is an error.
const UNSUPPORTED: &[&[&str]] = &[
    &["vm"],
    &["linux", "intelRdt"],
    &["linux", "memoryPolicy"],
    &["linux", "netDevices"],
];

const DEVICE_CGROUP_TYPES: &[&str] = &["a", "b", "c"];
const DEVICE_NODE_TYPES: &[&str] = &["b", "c", "u", "p"];

/// Finds every name the typed parse would reject (capabilities, namespace,
/// rlimit and device types) and removes those entries, recording removed
/// array indices in `removed`. With `last_cap` (the running kernel's highest
/// capability number), capabilities the kernel lacks are warned about and
/// removed too.
pub(crate) fn names(
    config: &mut Value,
    last_cap: Option<u8>,
    out: &mut Validation,
    removed: &mut Removed,
) {
    capabilities(config, last_cap, out);
    typed_list(
        config,
        &["linux", "namespaces"],
        "namespace type",
        &namespace_names(),
        out,
        removed,
    );
    typed_list(
        config,
        &["process", "rlimits"],
        "rlimit type",
        RLIMITS,
        out,
        removed,
    );
    typed_list(
        config,
        &["linux", "devices"],
        "device type",
        DEVICE_NODE_TYPES,
        out,
        removed,
    );
    device_rules(config, out, removed);
}

/// Finds the fields berth does not implement yet and removes them from the
/// JSON, so the backend never sees them; checks the numbers in
/// `linux.resources` fit their fields (see `resources.rs`).
pub(crate) fn unsupported(config: &mut Value, out: &mut Validation) {
    unsupported_fields(config, out);
    crate::resources::raw(config, out);
}

fn namespace_names() -> Vec<&'static str> {
    NAMESPACES.iter().map(|(name, _)| *name).collect()
}

/// True unless the value is absent in effect: null, "", {} or [].
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

fn object_at<'a>(config: &'a mut Value, keys: &[&str]) -> Option<&'a mut Map<String, Value>> {
    keys.iter()
        .try_fold(config, |v, k| v.get_mut(*k))?
        .as_object_mut()
}

fn array_at<'a>(config: &'a mut Value, keys: &[&str]) -> Option<&'a mut Vec<Value>> {
    keys.iter()
        .try_fold(config, |v, k| v.get_mut(*k))?
        .as_array_mut()
}

fn unsupported_fields(config: &mut Value, out: &mut Validation) {
    for keys in UNSUPPORTED {
        let (name, parent) = keys.split_last().expect("non-empty path");
        let Some(obj) = object_at(config, parent) else {
            continue;
        };
        if obj.get(*name).is_some_and(is_set) {
            out.problem(keys.join("."), "not supported yet");
            obj.remove(*name);
        }
    }
}

pub(crate) fn device_rules(config: &mut Value, out: &mut Validation, removed: &mut Removed) {
    let Some(rules) = array_at(config, &["linux", "resources", "devices"]) else {
        return;
    };
    let base = "linux.resources.devices";
    let mut bad = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let at = index(base, i);
        let typ = rule.get("type").filter(|t| !t.is_null());
        if let Some(typ) =
            typ.filter(|t| !t.as_str().is_some_and(|t| DEVICE_CGROUP_TYPES.contains(&t)))
        {
            out.problem(
                field(&at, "type"),
                unknown("device type", typ, DEVICE_CGROUP_TYPES),
            );
            bad.push(i);
        }
        if let Some(access) = rule.get("access").and_then(Value::as_str) {
            if let Some(c) = access.chars().find(|c| !"rwm".contains(*c)) {
                out.problem(
                    field(&at, "access"),
                    format!("{c:?} in {access:?} is not an access type (allowed: any of \"rwm\")"),
                );
            }
        }
    }
    remove_indices(rules, &bad);
    removed.record(base.to_string(), bad);
}

fn capabilities(config: &mut Value, last_cap: Option<u8>, out: &mut Validation) {
    for set in CAPABILITY_SETS {
        let Some(caps) = array_at(config, &["process", "capabilities", set]) else {
            continue;
        };
        let base = format!("process.capabilities.{set}");
        let mut drop = Vec::new();
        for (i, cap) in caps.iter().enumerate() {
            let Some(name) = cap.as_str() else { continue };
            let at = index(&base, i);
            match capability_number(name) {
                None => {
                    out.problem(at, unknown_capability(name));
                    drop.push(i);
                }
                Some(n) if last_cap.is_some_and(|last| n > last) => {
                    out.warn(
                        &at,
                        format!("{name} is not supported by the running kernel; skipping"),
                    );
                    drop.push(i);
                }
                Some(_) => {}
            }
        }
        remove_indices(caps, &drop);
    }
}

fn unknown_capability(name: &str) -> String {
    let canonical = caps::to_canonical(name);
    if capability_number(&canonical).is_some() {
        format!("unknown capability {name:?}; did you mean {canonical:?}?")
    } else {
        format!(
            "unknown capability {name:?} (allowed: {} ... {}, see `berth features`)",
            known_capabilities()[0],
            known_capabilities()[known_capabilities().len() - 1]
        )
    }
}

/// Checks `<list>[i].type` against the allowed names; removes bad entries.
fn typed_list(
    config: &mut Value,
    keys: &[&str],
    what: &str,
    allowed: &[&str],
    out: &mut Validation,
    removed: &mut Removed,
) {
    let Some(list) = array_at(config, keys) else {
        return;
    };
    let base = keys.join(".");
    let mut bad = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let Some(typ) = entry.get("type") else {
            continue;
        };
        if !typ.as_str().is_some_and(|t| allowed.contains(&t)) {
            out.problem(field(&index(&base, i), "type"), unknown(what, typ, allowed));
            bad.push(i);
        }
    }
    remove_indices(list, &bad);
    removed.record(base, bad);
}

fn unknown(what: &str, got: &Value, allowed: &[&str]) -> String {
    format!("unknown {what} {got} (allowed: {})", allowed.join(", "))
}

fn remove_indices(list: &mut Vec<Value>, bad: &[usize]) {
    let mut i = 0;
    list.retain(|_| {
        let keep = !bad.contains(&i);
        i += 1;
        keep
    });
}
