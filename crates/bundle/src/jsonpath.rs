//! Building JSON paths for problems: `process.args`, `mounts[2].destination`,
//! `annotations["run.berth.backend"]`.

/// `parent.name`, or `name` at the top level.
pub(crate) fn field(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}.{name}")
    }
}

/// `parent[i]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}

/// `parent["key"]`, for map keys, which may contain dots.
pub(crate) fn key(parent: &str, key: &str) -> String {
    format!("{parent}[{key:?}]")
}

/// Renders a path reported by serde_path_to_error in the same style. Struct
/// fields and map keys look alike there; keys that aren't plain identifiers
/// get the `["key"]` form.
pub(crate) fn from_serde(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        out = match segment {
            Segment::Seq { index: i } => index(&out, *i),
            Segment::Map { key: k } | Segment::Enum { variant: k } if is_ident(k) => field(&out, k),
            Segment::Map { key: k } | Segment::Enum { variant: k } => key(&out, k),
            Segment::Unknown => field(&out, "?"),
        };
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Indices removed from arrays before typed parsing, so paths found on the
/// shortened arrays can be turned back into paths into the original file.
#[derive(Debug, Default)]
pub(crate) struct Removed {
    arrays: Vec<(String, Vec<usize>)>,
}

impl Removed {
    pub(crate) fn record(&mut self, array: String, mut indices: Vec<usize>) {
        if !indices.is_empty() {
            indices.sort_unstable();
            self.arrays.push((array, indices));
        }
    }

    /// `linux.namespaces[1].path` becomes `linux.namespaces[2].path` if
    /// element 0 or 1 of the original array was removed.
    pub(crate) fn remap(&self, path: &str) -> String {
        for (array, removed) in &self.arrays {
            let Some(rest) = path
                .strip_prefix(array.as_str())
                .and_then(|r| r.strip_prefix('['))
            else {
                continue;
            };
            let Some((num, tail)) = rest.split_once(']') else {
                continue;
            };
            let Ok(mut i) = num.parse::<usize>() else {
                continue;
            };
            for r in removed {
                if *r <= i {
                    i += 1;
                }
            }
            return format!("{array}[{i}]{tail}");
        }
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_paths() {
        assert_eq!(field("", "process"), "process");
        assert_eq!(index(&field("process", "args"), 0), "process.args[0]");
        assert_eq!(
            key("annotations", "run.berth.backend"),
            r#"annotations["run.berth.backend"]"#
        );
    }

    #[test]
    fn remaps_indices_past_removed_elements() {
        let mut removed = Removed::default();
        removed.record("linux.namespaces".into(), vec![2, 0]);
        assert_eq!(
            removed.remap("linux.namespaces[0].path"),
            "linux.namespaces[1].path"
        );
        assert_eq!(removed.remap("linux.namespaces[1]"), "linux.namespaces[3]");
        assert_eq!(removed.remap("process.args[0]"), "process.args[0]");
    }
}
