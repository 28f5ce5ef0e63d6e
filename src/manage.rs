//! ps, update and events: argv to library calls, output as runc prints it.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use berth_backends::{BackendError, Runtime};
use serde_json::{json, Map, Value};

use crate::cli::{EventsArgs, ListFormat, PsArgs, UpdateArgs};

/// `ps`: the container's pids as JSON, or ps(1)'s output (default `-ef`)
/// cut down to the container's processes.
pub fn ps(rt: &Runtime, a: &PsArgs) -> Result<()> {
    let pids = rt
        .ps(&a.id)
        .with_context(|| format!("ps of container {}", a.id))?;
    let mut out = std::io::stdout().lock();
    if a.format == ListFormat::Json {
        if !a.ps_args.is_empty() {
            return Err(anyhow!(
                "ps: options for ps(1) cannot be used with --format json"
            ));
        }
        writeln!(out, "{}", serde_json::to_string(&pids)?)?;
        return Ok(());
    }
    let args: Vec<&str> = if a.ps_args.is_empty() {
        vec!["-ef"]
    } else {
        a.ps_args.iter().map(String::as_str).collect()
    };
    let output = std::process::Command::new("ps")
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .context("ps: run ps(1)")?;
    if !output.status.success() {
        return Err(anyhow!(
            "ps: ps {} failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    write!(out, "{}", filter_ps(&text, &pids)?)?;
    Ok(())
}

/// ps(1)'s header, then the lines whose PID column is one of `pids`.
fn filter_ps(text: &str, pids: &[i32]) -> Result<String> {
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let col = header
        .split_whitespace()
        .position(|f| f == "PID")
        .ok_or_else(|| anyhow!("ps: no PID column in ps(1)'s output (header {header:?})"))?;
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// `update`: resources from `-r` (a file, or `-` for stdin) or from the
/// flags, checked as config.json's are, then applied.
pub fn update(rt: &Runtime, a: &UpdateArgs) -> Result<()> {
    for (flag, set) in [
        ("--l3-cache-schema", a.l3_cache_schema.is_some()),
        ("--mem-bw-schema", a.mem_bw_schema.is_some()),
    ] {
        if set {
            return Err(anyhow!(
                "update container {}: {flag}: Intel RDT is not supported by berth",
                a.id
            ));
        }
    }
    let json = match &a.resources {
        Some(path) => {
            let mut text = Vec::new();
            if path.as_os_str() == "-" {
                std::io::stdin()
                    .read_to_end(&mut text)
                    .context("update: read resources from stdin")?;
            } else {
                text = std::fs::read(path)
                    .with_context(|| format!("update: read {}", path.display()))?;
            }
            text
        }
        None => serde_json::to_vec(&flags_to_resources(a)?)?,
    };
    let resources = berth_bundle::parse_resources(&json).map_err(|e| match e {
        berth_bundle::BundleError::Invalid(problems) => anyhow!(
            "update container {}: invalid resources: {}",
            a.id,
            problems
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ),
        e => anyhow::Error::new(e).context(format!("update container {}", a.id)),
    })?;
    rt.update(&a.id, &resources)
        .with_context(|| format!("update container {}", a.id))
}

/// The update flags as a `linux.resources` object (runc's flag names).
fn flags_to_resources(a: &UpdateArgs) -> Result<Value> {
    let mut memory = Map::new();
    for (key, flag, v) in [
        ("limit", "--memory", &a.memory),
        ("reservation", "--memory-reservation", &a.memory_reservation),
        ("swap", "--memory-swap", &a.memory_swap),
        ("kernel", "--kernel-memory", &a.kernel_memory),
        ("kernelTCP", "--kernel-memory-tcp", &a.kernel_memory_tcp),
    ] {
        if let Some(v) = v {
            let bytes = parse_bytes(v).map_err(|e| anyhow!("update: {flag} {v:?}: {e}"))?;
            memory.insert(key.into(), json!(bytes));
        }
    }
    let mut cpu = Map::new();
    let mut put = |key: &str, v: Option<Value>| {
        if let Some(v) = v {
            cpu.insert(key.into(), v);
        }
    };
    put("shares", a.cpu_share.map(|v| json!(v)));
    put("quota", a.cpu_quota.map(|v| json!(v)));
    put("period", a.cpu_period.map(|v| json!(v)));
    put("realtimeRuntime", a.cpu_rt_runtime.map(|v| json!(v)));
    put("realtimePeriod", a.cpu_rt_period.map(|v| json!(v)));
    put("cpus", a.cpuset_cpus.clone().map(Value::String));
    put("mems", a.cpuset_mems.clone().map(Value::String));
    let mut res = Map::new();
    if !memory.is_empty() {
        res.insert("memory".into(), Value::Object(memory));
    }
    if !cpu.is_empty() {
        res.insert("cpu".into(), Value::Object(cpu));
    }
    if let Some(l) = a.pids_limit {
        res.insert("pids".into(), json!({ "limit": l }));
    }
    if let Some(w) = a.blkio_weight {
        res.insert("blockIO".into(), json!({ "weight": w }));
    }
    if res.is_empty() {
        return Err(anyhow!(
            "update container {}: nothing to update (give -r FILE or a resource flag)",
            a.id
        ));
    }
    Ok(Value::Object(res))
}

/// A size as docker and runc take it: a number of bytes, optionally with
/// a binary suffix (k, m, g, t, p; with or without "b", any case); -1 is
/// "no limit".
fn parse_bytes(s: &str) -> std::result::Result<i64, String> {
    let t = s.trim();
    if t == "-1" {
        return Ok(-1);
    }
    let lower = t.to_ascii_lowercase();
    let lower = lower.strip_suffix('b').unwrap_or(&lower);
    let (num, mult): (&str, i64) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        Some('p') => (&lower[..lower.len() - 1], 1 << 50),
        _ => (lower, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| {
        "not a size (a number of bytes, or with a k, m, g, t or p suffix)".to_string()
    })?;
    if !n.is_finite() || n < 0.0 {
        return Err("a size must be a non-negative number (or -1 for no limit)".into());
    }
    let v = n * mult as f64;
    if v > i64::MAX as f64 {
        return Err("too large".into());
    }
    Ok(v as i64)
}

/// `events`: with --stats one stats line; else a stats line every
/// --interval and an `oom` line whenever the OOM killer strikes, until
/// the container stops.
pub fn events(rt: &Runtime, a: &EventsArgs) -> Result<()> {
    let ctx = || format!("events of container {}", a.id);
    let interval = parse_duration(&a.interval)
        .map_err(|e| anyhow!("events: --interval {:?}: {e}", a.interval))?;
    let mut out = std::io::stdout().lock();
    let stats_line = |data: Value| json!({"type": "stats", "id": a.id, "data": data});
    if a.stats {
        let data = rt.stats(&a.id).with_context(ctx)?;
        writeln!(out, "{}", stats_line(data))?;
        return Ok(());
    }
    let mut ooms = rt.oom_kills(&a.id).with_context(ctx)?;
    let mut next = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next {
            match rt.stats(&a.id) {
                Ok(data) => writeln!(out, "{}", stats_line(data))?,
                Err(BackendError::NotRunning) => return Ok(()),
                Err(e) if is_gone(&e) => return Ok(()),
                Err(e) => return Err(anyhow::Error::new(e).context(ctx())),
            }
            out.flush()?;
            next = now + interval;
        }
        match rt.oom_kills(&a.id) {
            Ok(n) if n > ooms => {
                writeln!(out, "{}", json!({"type": "oom", "id": a.id}))?;
                out.flush()?;
                ooms = n;
            }
            Ok(_) => {}
            Err(BackendError::NotRunning) => return Ok(()),
            Err(e) if is_gone(&e) => return Ok(()),
            Err(e) => return Err(anyhow::Error::new(e).context(ctx())),
        }
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        std::thread::sleep(wait);
    }
}

fn is_gone(e: &BackendError) -> bool {
    matches!(e, BackendError::State(berth_state::StateError::NotFound(_)))
}

/// A Go-style duration: "5s", "500ms", "1m30s", "2h", "1.5s".
fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("missing unit (ns, us, ms, s, m or h)")?;
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("{:?} is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => return Err(format!("unknown unit {u:?} (ns, us, ms, s, m or h)")),
        };
        total += n * secs;
        rest = &rest[unit_len..];
    }
    if total <= 0.0 {
        return Err("must be positive".into());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_runc() {
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("10kb"), Ok(10 << 10));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("-1"), Ok(-1));
        assert!(parse_bytes("-2").is_err());
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("99999999p").is_err());
    }

    #[test]
    fn durations_like_go() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("3x").is_err());
    }

    #[test]
    fn ps_lines_of_the_container_only() {
        let text = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                    root           1       0  0 10:00 ?        00:00:01 init\n\
                    root          42       1  0 10:00 ?        00:00:00 sleep 100\n";
        let out = filter_ps(text, &[42]).unwrap();
        assert_eq!(out.lines().count(), 2);
        assert!(out.lines().nth(1).unwrap().ends_with("sleep 100"));
        assert!(filter_ps("USER COMMAND\nroot x\n", &[1]).is_err());
    }
}
