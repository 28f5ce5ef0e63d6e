//! What loading and validating a bundle can report.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a config, at a JSON path such as
/// `process.capabilities.bounding[3]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub msg: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, msg: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.msg)
    }
}

/// Everything validation found: problems stop the container, warnings don't.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Validation {
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
}

impl Validation {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    pub(crate) fn problem(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.problems.push(Problem::new(path, msg));
    }

    pub(crate) fn warn(&mut self, path: &str, msg: impl fmt::Display) {
        self.warnings.push(format!("{path}: {msg}"));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed JSON (`at` is "line L column C") or a value of the wrong type
    /// (`at` is the JSON path).
    #[error("parse config.json: {at}: {msg}")]
    Parse { at: String, msg: String },
    /// Every problem found; Display puts them on one line separated by "; ".
    #[error("invalid config.json: {}", join(.0))]
    Invalid(Vec<Problem>),
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
