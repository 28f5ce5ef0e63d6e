//! Log lines as runc writes them: `--log-format text` gives logrus's
//! `time="…" level=… msg="…"`, `json` gives `{"level","msg","time"}` (what
//! containerd's shim parses). Without `--log`, lines go to stderr as
//! `berth: …` for people.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::cli::LogFormat;

pub struct Logger {
    file: Option<File>,
    format: LogFormat,
    debug: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Debug,
    Warning,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

impl Logger {
    pub fn open(path: Option<&Path>, format: LogFormat, debug: bool) -> std::io::Result<Logger> {
        let file = match path {
            Some(p) => Some(OpenOptions::new().create(true).append(true).open(p)?),
            None => None,
        };
        Ok(Logger {
            file,
            format,
            debug,
        })
    }

    pub fn stderr() -> Logger {
        Logger {
            file: None,
            format: LogFormat::Text,
            debug: false,
        }
    }

    pub fn log(&self, level: Level, msg: &str) {
        if level == Level::Debug && !self.debug {
            return;
        }
        match &self.file {
            Some(f) => {
                let mut f: &File = f;
                let _ = f.write_all(
                    format_line(self.format, level, msg, &berth_state::now_rfc3339()).as_bytes(),
                );
            }
            None => {
                let prefix = if level == Level::Warning {
                    "warning: "
                } else {
                    ""
                };
                eprintln!("berth: {prefix}{msg}");
            }
        }
    }

    /// Errors are logged and also printed on stderr (as runc does), one line each.
    pub fn error(&self, msg: &str) {
        self.log(Level::Error, msg);
        if self.file.is_some() {
            eprintln!("berth: {msg}");
        }
    }
}

pub fn format_line(format: LogFormat, level: Level, msg: &str, time: &str) -> String {
    match format {
        LogFormat::Json => {
            let v = serde_json::json!({ "level": level.as_str(), "msg": msg, "time": time });
            format!("{v}\n")
        }
        LogFormat::Text => {
            let quoted = serde_json::to_string(msg).unwrap_or_default();
            format!("time=\"{time}\" level={} msg={quoted}\n", level.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_text_lines() {
        let j = format_line(
            LogFormat::Json,
            Level::Error,
            "container \"x\" failed",
            "2026-01-01T00:00:00Z",
        );
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" failed");
        assert_eq!(v["time"], "2026-01-01T00:00:00Z");
        let t = format_line(LogFormat::Text, Level::Warning, "a \"b\"", "T");
        assert_eq!(t, "time=\"T\" level=warning msg=\"a \\\"b\\\"\"\n");
    }
}
