//! berth-bundle: read an OCI bundle's config.json, check all of it at once,
//! and describe what berth supports (`berth spec`, `berth features`).
//!
//! [`load`] is what create/run use: it returns a [`Bundle`] whose spec berth
//! can honour in full, or every problem with its JSON path.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde_json::Value;

mod error;
mod features;
mod jsonpath;
mod raw;
mod resources;
mod tables;
mod template;
mod validate;

pub use error::{BundleError, Problem, Validation};
pub use features::{features, HostLsm};
pub use resources::{
    check_resources, parse_cpu_list, parse_page_size, parse_resources, unified_key_problem,
    UNIFIED_RESERVED,
};
pub use tables::{
    capability_number, kernel_last_cap, known_capabilities, mount_option, mount_options,
    namespace_name, MountOpt, MountOptions, BACKENDS, BACKEND_ANNOTATION, CAPABILITY_SETS, HOOKS,
    MOUNT_OPTIONS, NAMESPACES, OCI_VERSION_MAX, OCI_VERSION_MIN, RLIMITS,
};
pub use template::template;

use jsonpath::Removed;

/// A bundle that passed validation.
#[derive(Clone, Debug)]
pub struct Bundle {
    /// The bundle directory, absolute and canonical.
    pub dir: PathBuf,
    /// The config, minus capabilities the running kernel lacks (see
    /// `warnings`).
    pub spec: Spec,
    /// `root.path` resolved against `dir`, canonical.
    pub rootfs: PathBuf,
    /// Things berth adjusts but that don't stop the container.
    pub warnings: Vec<String>,
}

/// Reads `bundle_dir/config.json`, parses it and validates it, reporting every
/// problem at once.
pub fn load(bundle_dir: &Path) -> Result<Bundle, BundleError> {
    load_with(bundle_dir, kernel_last_cap())
}

/// [`load`] with the kernel's highest capability number given, for tests.
fn load_with(bundle_dir: &Path, last_cap: Option<u8>) -> Result<Bundle, BundleError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BundleError::Read { path, source }
    };
    let dir = bundle_dir.canonicalize().map_err(read_err(bundle_dir))?;
    let config = dir.join("config.json");
    let json = std::fs::read(&config).map_err(read_err(&config))?;

    let mut value = parse_value(&json)?;
    let mut out = Validation::default();
    let mut removed = Removed::default();
    raw::names(&mut value, last_cap, &mut out, &mut removed);
    raw::unsupported(&mut value, &mut out);
    let spec = match typed(value, &removed) {
        Ok(spec) => spec,
        Err(problem) => return Err(fail(out.problems, problem)),
    };
    let mut typed_out = Validation::default();
    validate::check(&spec, &dir, &mut typed_out);
    out.problems
        .extend(typed_out.problems.into_iter().map(|p| Problem {
            path: removed.remap(&p.path),
            msg: p.msg,
        }));
    out.warnings.extend(typed_out.warnings);
    if !out.is_ok() {
        return Err(BundleError::Invalid(out.problems));
    }
    let rootfs = validate::rootfs_path(&spec, &dir).expect("validated root.path");
    let rootfs = rootfs.canonicalize().map_err(read_err(&rootfs))?;
    Ok(Bundle {
        dir,
        spec,
        rootfs,
        warnings: out.warnings,
    })
}

/// Parses config.json text into a `Spec`. Unknown capability, namespace,
/// rlimit and device types are all reported together; a value of the wrong
/// type is reported with its JSON path. Does not validate anything else.
pub fn parse(json: &[u8]) -> Result<Spec, BundleError> {
    let mut value = parse_value(json)?;
    let mut out = Validation::default();
    let mut removed = Removed::default();
    raw::names(&mut value, None, &mut out, &mut removed);
    match typed(value, &removed) {
        Ok(spec) if out.is_ok() => Ok(spec),
        Ok(_) => Err(BundleError::Invalid(out.problems)),
        Err(problem) => Err(fail(out.problems, problem)),
    }
}

/// Checks a parsed spec against the bundle directory (for a relative
/// `root.path`), returning every problem and warning. Warnings about
/// capabilities the kernel lacks index the set as it serializes, since the
/// typed spec keeps capabilities in an unordered set; [`load`] reports the
/// index in the file instead.
pub fn validate(spec: &Spec, bundle_dir: &Path) -> Validation {
    let mut out = Validation::default();
    if let Ok(mut value) = serde_json::to_value(spec) {
        raw::names(
            &mut value,
            kernel_last_cap(),
            &mut out,
            &mut Removed::default(),
        );
        raw::unsupported(&mut value, &mut out);
    }
    validate::check(spec, bundle_dir, &mut out);
    out
}

fn parse_value(json: &[u8]) -> Result<Value, BundleError> {
    serde_json::from_slice(json).map_err(|e| {
        let at = format!("line {} column {}", e.line(), e.column());
        let msg = e.to_string();
        let msg = msg
            .strip_suffix(&format!(" at {at}"))
            .unwrap_or(&msg)
            .to_string();
        BundleError::Parse { at, msg }
    })
}

/// The typed parse; a type error becomes a problem at its path in the file.
fn typed(value: Value, removed: &Removed) -> Result<Spec, Problem> {
    serde_path_to_error::deserialize(value).map_err(|e| Problem {
        path: removed.remap(&jsonpath::from_serde(e.path())),
        msg: one_line(&e.inner().to_string()),
    })
}

/// serde quotes offending values raw; a value with a newline must not
/// split a message across lines.
fn one_line(msg: &str) -> String {
    msg.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// A type error alone is a parse error; with other problems, one of many.
fn fail(mut problems: Vec<Problem>, type_error: Problem) -> BundleError {
    if problems.is_empty() {
        return BundleError::Parse {
            at: type_error.path,
            msg: type_error.msg,
        };
    }
    problems.push(type_error);
    BundleError::Invalid(problems)
}

#[cfg(test)]
mod tests;
