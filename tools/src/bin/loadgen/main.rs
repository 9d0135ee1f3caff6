//! `loadgen`: an open-loop load generator for BrokerX's FIX 4.4, OUCH 4.2
//! and REST surfaces, with a bare TCP echo (or, for REST, the trivial
//! `/health` endpoint) measured in the same invocation on the same schedule
//! as the baseline, full HdrHistograms in the percentile-distribution text
//! format, a summary (JSON and CSV) and the "nines" plot. See
//! `docs/BENCHMARKS.md` ("The load generator") and `tools/README.md`.

mod echo;
mod fix;
mod flow;
mod hgrm;
mod measure;
mod ouch;
mod plot;
mod progress;
mod rest;
mod server;
mod stream;

use crate::flow::{Flow, Mix, Symbol};
use crate::measure::{Recorder, Tracker, KIND_NAMES};
use crate::progress::Progress;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

const USAGE: &str = "usage:
  loadgen [run] (--spawn [--brokerx PATH] [--durability none|fsync] [--wait STRATEGY] [--keep-server]
                 | [--fix ADDR] [--ouch ADDR] [--http ADDR] [--config FILE])
                [--surfaces fix,ouch,rest] [--rates 10000,50000] [--duration SECS | --count N]
                [--sessions N] [--symbols N] [--mix new=45,marketable=10,cancel=27,replace=18]
                [--seed N] [--max-live N] [--prefill N] [--warmup SECS] [--drain SECS]
                [--no-echo] [--out DIR] [--plot FILE | --no-plot] [--no-progress]
  loadgen plot FILE.hgrm... -o OUT.svg [--title TEXT]
  loadgen help

  Open loop: request i is due at i/rate s; latency runs from that intended
  time to the answer (coordinated omission corrected). Output in --out
  (default target/loadgen): <surface>-<rate>.hgrm (acks), <surface>-<rate>-exec.hgrm
  (marketable order to its first execution), echo-<surface>-<rate>.hgrm or
  health-rest-<rate>.hgrm (the baseline), summary.json, summary.csv, latency.svg.
  Values in the .hgrm files are microseconds.";

/// Parsed `--flag value` pairs, bare `--switch`es and positional words.
struct Flags {
    values: BTreeMap<String, String>,
    switches: Vec<String>,
    positional: Vec<String>,
}

const SWITCHES: &[&str] = &["spawn", "keep-server", "no-echo", "no-plot", "no-progress"];

impl Flags {
    fn parse(args: &[String], values_known: &[&str]) -> Result<Flags, String> {
        let mut flags = Flags {
            values: BTreeMap::new(),
            switches: Vec::new(),
            positional: Vec::new(),
        };
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let name = if arg == "-o" {
                "output"
            } else if let Some(name) = arg.strip_prefix("--") {
                name
            } else {
                flags.positional.push(arg.clone());
                continue;
            };
            if SWITCHES.contains(&name) {
                flags.switches.push(name.to_string());
                continue;
            }
            if !values_known.contains(&name) {
                return Err(format!("unknown option {arg}"));
            }
            let value = iter
                .next()
                .filter(|v| !v.starts_with("--"))
                .ok_or_else(|| format!("{arg} needs a value"))?;
            if flags
                .values
                .insert(name.to_string(), value.clone())
                .is_some()
            {
                return Err(format!("{arg} given twice"));
            }
        }
        Ok(flags)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }

    /// A number in `range`, or `default`.
    fn number<T>(
        &self,
        name: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, String>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(text) = self.value(name) else {
            return Ok(default);
        };
        let value: T = text
            .trim()
            .parse()
            .map_err(|_| format!("--{name}: not a number: {text:?}"))?;
        if !range.contains(&value) {
            return Err(format!(
                "--{name}: {value} is out of range ({} to {})",
                range.start(),
                range.end()
            ));
        }
        Ok(value)
    }
}

const RUN_VALUES: &[&str] = &[
    "brokerx",
    "durability",
    "wait",
    "fix",
    "ouch",
    "http",
    "config",
    "surfaces",
    "rates",
    "duration",
    "count",
    "sessions",
    "symbols",
    "mix",
    "seed",
    "max-live",
    "prefill",
    "warmup",
    "drain",
    "out",
    "plot",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Surface {
    Fix,
    Ouch,
    Rest,
}

impl Surface {
    fn name(self) -> &'static str {
        match self {
            Surface::Fix => "fix",
            Surface::Ouch => "ouch",
            Surface::Rest => "rest",
        }
    }
}

/// Everything a run was asked for.
struct Options {
    spawn: bool,
    brokerx: PathBuf,
    durability: String,
    wait: String,
    keep_server: bool,
    addresses: BTreeMap<&'static str, String>,
    config: Option<PathBuf>,
    surfaces: Vec<Surface>,
    rates: Vec<f64>,
    duration: f64,
    count: Option<usize>,
    sessions: usize,
    symbols: usize,
    mix: Mix,
    mix_text: String,
    seed: u64,
    max_live: usize,
    prefill: usize,
    warmup: f64,
    drain: Duration,
    echo: bool,
    out: PathBuf,
    plot: Option<PathBuf>,
    progress: bool,
}

fn options(flags: &Flags) -> Result<Options, String> {
    if let Some(extra) = flags.positional.first() {
        return Err(format!("unexpected argument {extra:?}"));
    }
    let spawn = flags.switch("spawn");
    let mut addresses = BTreeMap::new();
    for (flag, name) in [("fix", "fix"), ("ouch", "ouch"), ("http", "rest")] {
        if let Some(address) = flags.value(flag) {
            if spawn {
                return Err(format!(
                    "--{flag} and --spawn exclude each other (--spawn picks its own ports)"
                ));
            }
            let parsed: std::net::SocketAddr = address
                .parse()
                .map_err(|_| format!("--{flag}: not an address (IP:PORT): {address:?}"))?;
            if !parsed.ip().is_loopback() {
                return Err(format!("--{flag}: {address} is not a loopback address; loadgen only drives servers on this machine"));
            }
            addresses.insert(name, address.to_string());
        }
    }
    let surfaces_text = flags.value("surfaces").unwrap_or("fix,ouch,rest");
    let mut surfaces = Vec::new();
    for name in surfaces_text.split(',').filter(|s| !s.is_empty()) {
        let surface = match name.trim() {
            "fix" => Surface::Fix,
            "ouch" => Surface::Ouch,
            "rest" => Surface::Rest,
            other => {
                return Err(format!(
                    "--surfaces: unknown surface {other:?} (fix, ouch, rest)"
                ))
            }
        };
        if !surfaces.contains(&surface) {
            surfaces.push(surface);
        }
    }
    if surfaces.is_empty() {
        return Err("--surfaces: name at least one of fix, ouch, rest".into());
    }
    if !spawn {
        if addresses.is_empty() {
            return Err(
                "give --spawn, or the address of a running server (--fix, --ouch, --http)".into(),
            );
        }
        if flags.value("surfaces").is_none() {
            surfaces.retain(|s| addresses.contains_key(s.name()));
        }
        for surface in &surfaces {
            if !addresses.contains_key(surface.name()) {
                let flag = if *surface == Surface::Rest {
                    "http"
                } else {
                    surface.name()
                };
                return Err(format!(
                    "--surfaces {}: give its address with --{flag}",
                    surface.name()
                ));
            }
        }
    }
    let mut rates = Vec::new();
    for text in flags
        .value("rates")
        .unwrap_or("10000")
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let rate: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("--rates: not a number: {text:?}"))?;
        if !(1.0..=1_000_000.0).contains(&rate) {
            return Err(format!(
                "--rates: {text} is out of range (1 to 1000000 per second)"
            ));
        }
        rates.push(rate);
    }
    if rates.is_empty() {
        return Err("--rates: give at least one rate".into());
    }
    let durability = flags.value("durability").unwrap_or("none").to_string();
    if !matches!(durability.as_str(), "none" | "fsync") {
        return Err(format!("--durability: none or fsync, not {durability:?}"));
    }
    let wait = flags.value("wait").unwrap_or("park").to_string();
    if !matches!(wait.as_str(), "spin" | "yield" | "park" | "spin-park") {
        return Err(format!(
            "--wait: spin, yield, park or spin-park, not {wait:?}"
        ));
    }
    if !spawn {
        for flag in ["durability", "wait", "brokerx"] {
            if flags.value(flag).is_some() {
                return Err(format!("--{flag} only applies with --spawn"));
            }
        }
    }
    let mix_text = flags
        .value("mix")
        .unwrap_or("new=45,marketable=10,cancel=27,replace=18")
        .to_string();
    let mix = Mix::parse(&mix_text)?;
    let count = match flags.value("count") {
        Some(_) => Some(flags.number("count", 0usize, 1..=10_000_000)?),
        None => None,
    };
    if count.is_some() && flags.value("duration").is_some() {
        return Err("--count and --duration exclude each other".into());
    }
    let brokerx = match flags.value("brokerx") {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this executable: {e}"))?
            .with_file_name("brokerx"),
    };
    let out = PathBuf::from(flags.value("out").unwrap_or("target/loadgen"));
    let plot = if flags.switch("no-plot") {
        if flags.value("plot").is_some() {
            return Err("--plot and --no-plot exclude each other".into());
        }
        None
    } else {
        Some(
            flags
                .value("plot")
                .map(PathBuf::from)
                .unwrap_or_else(|| out.join("latency.svg")),
        )
    };
    Ok(Options {
        spawn,
        brokerx,
        durability,
        wait,
        keep_server: flags.switch("keep-server"),
        addresses,
        config: flags.value("config").map(PathBuf::from),
        surfaces,
        rates,
        duration: flags.number("duration", 2.0, 0.01..=600.0)?,
        count,
        sessions: flags.number("sessions", 4usize, 1..=256)?,
        symbols: flags.number("symbols", 3usize, 1..=server::MAX_SYMBOLS)?,
        mix,
        mix_text,
        seed: flags.number("seed", 1u64, 0..=u64::MAX)?,
        max_live: flags.number("max-live", 20usize, 1..=100_000)?,
        prefill: flags.number("prefill", 0usize, 0..=2_000_000)?,
        warmup: flags.number("warmup", 0.0, 0.0..=60.0)?,
        drain: Duration::from_secs_f64(flags.number("drain", 10.0, 0.1..=120.0)?),
        echo: !flags.switch("no-echo"),
        out,
        plot,
        progress: !flags.switch("no-progress") && std::io::stderr().is_terminal(),
    })
}

/// One measured (surface, rate) and its baseline.
struct Measured {
    surface: &'static str,
    rate: f64,
    tracker: std::sync::Arc<Tracker>,
    recorder: Recorder,
    baseline: Option<(String, Recorder)>,
    request_bytes: usize,
    reply_bytes: usize,
}

fn us(h: &hdrhistogram::Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0 && a > 0.0).then(|| a / b)
}

fn json_number(value: Option<f64>) -> serde_json::Value {
    value
        .filter(|v| v.is_finite())
        .map(|v| serde_json::json!((v * 1000.0).round() / 1000.0))
        .unwrap_or(serde_json::Value::Null)
}

impl Measured {
    fn summary(&self, options: &Options, server: &str) -> serde_json::Value {
        use serde_json::json;
        let t = &self.tracker;
        let h = &self.recorder.ack;
        let count = t.count() as u64;
        let resolved = t.resolved();
        let unanswered = count.saturating_sub(resolved);
        let rejected = t.rejected.load(Ordering::Relaxed);
        let failures = t.failures.load(Ordering::Relaxed);
        let elapsed = t.elapsed_secs().max(1e-9);
        let quantiles = [
            ("p50", 0.5),
            ("p90", 0.9),
            ("p99", 0.99),
            ("p99_9", 0.999),
            ("p99_99", 0.9999),
        ];
        let mut latency = serde_json::Map::new();
        for (name, q) in quantiles {
            latency.insert(name.into(), json_number(Some(us(h, q))));
        }
        latency.insert("max".into(), json_number(Some(h.max() as f64 / 1000.0)));
        latency.insert("mean".into(), json_number(Some(h.mean() / 1000.0)));
        let mut baseline = serde_json::Map::new();
        let mut ratios = serde_json::Map::new();
        if let Some((name, recorder)) = &self.baseline {
            let b = &recorder.ack;
            baseline.insert("kind".into(), json!(name));
            baseline.insert("count".into(), json!(b.len()));
            for (name, q) in quantiles {
                baseline.insert(name.into(), json_number(Some(us(b, q))));
                ratios.insert(name.into(), json_number(ratio(us(h, q), us(b, q))));
            }
            baseline.insert("max".into(), json_number(Some(b.max() as f64 / 1000.0)));
            ratios.insert(
                "max".into(),
                json_number(ratio(h.max() as f64, b.max() as f64)),
            );
        }
        let mut by_kind = serde_json::Map::new();
        for (name, kh) in KIND_NAMES.iter().zip(&self.recorder.by_kind) {
            by_kind.insert(
                (*name).into(),
                json!({"count": kh.len(), "p50": json_number(Some(us(kh, 0.5))), "p99": json_number(Some(us(kh, 0.99))), "p99_9": json_number(Some(us(kh, 0.999)))}),
            );
        }
        let e = &self.recorder.exec;
        json!({
            "surface": self.surface,
            "unit": "us",
            "server": server,
            "durability": if options.spawn { options.durability.as_str() } else { "as configured" },
            "rate_offered": self.rate,
            "rate_achieved": (resolved as f64 / elapsed).round(),
            "duration_s": (elapsed * 1000.0).round() / 1000.0,
            "sessions": options.sessions,
            "symbols": options.symbols,
            "mix": options.mix_text,
            "seed": options.seed,
            "prefill": options.prefill,
            "offered": count,
            "sent": t.sent.load(Ordering::Relaxed),
            "acked": t.acks.load(Ordering::Relaxed),
            "too_late": t.too_late.load(Ordering::Relaxed),
            "rejected": rejected,
            "failures": failures,
            "unanswered": unanswered,
            "errors": rejected + failures + unanswered,
            "error_samples": *t.error_samples.lock().unwrap_or_else(|e| e.into_inner()),
            "timed": h.len(),
            "latency": latency,
            "by_kind": by_kind,
            "executions": {"count": e.len(), "p50": json_number(Some(us(e, 0.5))), "p99": json_number(Some(us(e, 0.99))), "p99_9": json_number(Some(us(e, 0.999))), "max": json_number(Some(e.max() as f64 / 1000.0))},
            "baseline": baseline,
            "ratio_to_baseline": ratios,
            "request_bytes": self.request_bytes,
            "reply_bytes": self.reply_bytes,
            "co_correction": "latency from each request's intended send time (open loop)",
        })
    }
}

const CSV_COLUMNS: &[&str] = &[
    "surface",
    "rate_offered",
    "rate_achieved",
    "sessions",
    "offered",
    "acked",
    "too_late",
    "errors",
    "p50",
    "p90",
    "p99",
    "p99_9",
    "p99_99",
    "max",
    "baseline_p50",
    "baseline_p99",
    "baseline_p99_9",
    "ratio_p50",
    "ratio_p99",
    "ratio_p99_9",
    "exec_p50",
    "exec_p99",
];

fn csv_row(s: &serde_json::Value) -> String {
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let values = [
        text(&s["surface"]),
        text(&s["rate_offered"]),
        text(&s["rate_achieved"]),
        text(&s["sessions"]),
        text(&s["offered"]),
        text(&s["acked"]),
        text(&s["too_late"]),
        text(&s["errors"]),
        text(&s["latency"]["p50"]),
        text(&s["latency"]["p90"]),
        text(&s["latency"]["p99"]),
        text(&s["latency"]["p99_9"]),
        text(&s["latency"]["p99_99"]),
        text(&s["latency"]["max"]),
        text(&s["baseline"]["p50"]),
        text(&s["baseline"]["p99"]),
        text(&s["baseline"]["p99_9"]),
        text(&s["ratio_to_baseline"]["p50"]),
        text(&s["ratio_to_baseline"]["p99"]),
        text(&s["ratio_to_baseline"]["p99_9"]),
        text(&s["executions"]["p50"]),
        text(&s["executions"]["p99"]),
    ];
    values.join(",")
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The flows of `sessions` sessions, seeded from `seed`.
fn flows(options: &Options, symbols: &[Symbol], buy_only: bool) -> Vec<Flow> {
    (0..options.sessions)
        .map(|n| {
            Flow::new(
                options
                    .seed
                    .wrapping_mul(0x1000_0000_01b3)
                    .wrapping_add(n as u64 + 1),
                options.mix,
                symbols.to_vec(),
                options.max_live,
                buy_only,
            )
        })
        .collect()
}

fn phase_count(options: &Options, rate: f64) -> usize {
    options
        .count
        .unwrap_or(((rate * options.duration).round() as usize).max(1))
}

fn run(options: &Options) -> Result<(), String> {
    std::fs::create_dir_all(&options.out)
        .map_err(|e| format!("--out {}: {e}", options.out.display()))?;
    let config = server::Config::load(options.config.as_deref())?;
    let spawned = if options.spawn {
        eprintln!(
            "loadgen: starting {} serve ({} sessions, {} symbols, durability {}, wait {})",
            options.brokerx.display(),
            options.sessions,
            options.symbols,
            options.durability,
            options.wait
        );
        Some(server::Spawned::start(
            &options.brokerx,
            options.sessions,
            options.symbols,
            &options.durability,
            &options.wait,
            options.keep_server,
        )?)
    } else {
        None
    };
    let config = match &spawned {
        Some(s) => server::Config::load(Some(&s.config))?,
        None => config,
    };
    let mut symbols = config.symbols();
    if symbols.is_empty() {
        return Err("the server's config lists no symbols".into());
    }
    if options.symbols > symbols.len() {
        return Err(format!(
            "--symbols {}: the server's config has only {}",
            options.symbols,
            symbols.len()
        ));
    }
    symbols.truncate(options.symbols);
    let address = |name: &str| -> Result<String, String> {
        match &spawned {
            Some(s) => s.port(if name == "rest" { "http" } else { name }),
            None => options
                .addresses
                .get(name)
                .cloned()
                .ok_or_else(|| format!("no address for {name}")),
        }
    };
    let server_label = match &spawned {
        Some(_) => "spawned brokerx serve".to_string(),
        None => "running server".to_string(),
    };
    let progress = Progress::new(options.progress);
    let prefix = stream::run_prefix();
    let mut results: Vec<Measured> = Vec::new();
    for surface in &options.surfaces {
        let name = surface.name();
        let address = address(name)?;
        eprintln!(
            "loadgen: {name} at {address}, {} sessions, rates {:?}/s",
            options.sessions, options.rates
        );
        match surface {
            Surface::Ouch | Surface::Fix => {
                let mut connected = if *surface == Surface::Ouch {
                    if config.ouch_users.len() < options.sessions {
                        return Err(format!(
                            "--sessions {}: the config has {} OUCH users (use --spawn, which writes a config with enough, or --config FILE with more)",
                            options.sessions,
                            config.ouch_users.len()
                        ));
                    }
                    let users: Vec<ouch::Login> = config.ouch_users[..options.sessions]
                        .iter()
                        .map(|u| ouch::Login {
                            username: u.username.clone(),
                            password: u.password.clone(),
                        })
                        .collect();
                    ouch::connect(&address, &users, flows(options, &symbols, false), &prefix)?
                } else {
                    if config.fix_sessions.len() < options.sessions {
                        return Err(format!(
                            "--sessions {}: the config has {} FIX sessions (use --spawn, which writes a config with enough, or --config FILE with more)",
                            options.sessions,
                            config.fix_sessions.len()
                        ));
                    }
                    let identities = fix_identities(&config, options.sessions);
                    fix::connect(
                        &address,
                        &identities,
                        flows(options, &symbols, false),
                        &prefix,
                    )?
                };
                let names: Vec<String> = symbols.iter().map(|s| s.name.clone()).collect();
                let (request_bytes, reply_bytes) = if *surface == Surface::Ouch {
                    (ouch::REQUEST_BYTES, ouch::REPLY_BYTES)
                } else {
                    let identities = fix_identities(&config, 1);
                    (
                        fix::request_bytes(&identities[0], &prefix, &names[0]),
                        fix::REPLY_BYTES,
                    )
                };
                let encode: Box<stream::Encoder> = if *surface == Surface::Ouch {
                    let stocks = ouch::stocks(&connected.flows[0]);
                    Box::new(ouch::encoder(prefix.clone(), stocks))
                } else {
                    Box::new(fix::encoder(
                        prefix.clone(),
                        fix_identities(&config, options.sessions),
                        names.clone(),
                    ))
                };
                if options.prefill > 0 {
                    progress.label(format!("{name} prefill"));
                    // Not measured: as fast as the gateways comfortably take.
                    let rate = 50_000.0;
                    let t = connected.phase(
                        rate,
                        options.prefill,
                        true,
                        options.drain * 3,
                        &progress,
                        &encode,
                    );
                    eprintln!(
                        "loadgen: {name}: {} resting orders prefilled far from the touch ({} answered)",
                        options.prefill,
                        t.resolved()
                    );
                }
                if options.warmup > 0.0 {
                    let rate = options.rates[0];
                    progress.label(format!("{name} warm-up"));
                    connected.phase(
                        rate,
                        ((rate * options.warmup) as usize).max(1),
                        false,
                        options.drain,
                        &progress,
                        &encode,
                    );
                }
                for &rate in &options.rates {
                    let count = phase_count(options, rate);
                    let baseline = if options.echo {
                        progress.label(format!("echo ({name}) {rate}/s"));
                        let t = echo::phase(
                            options.sessions,
                            rate,
                            count,
                            request_bytes,
                            reply_bytes,
                            options.drain,
                            &progress,
                        )?;
                        Some((format!("echo-{name}"), t.merged()))
                    } else {
                        None
                    };
                    progress.label(format!("{name} {rate}/s"));
                    let tracker =
                        connected.phase(rate, count, false, options.drain, &progress, &encode);
                    results.push(Measured {
                        surface: name,
                        rate,
                        recorder: tracker.merged(),
                        tracker,
                        baseline,
                        request_bytes,
                        reply_bytes,
                    });
                    report_line(results.last());
                }
                if *surface == Surface::Ouch {
                    ouch::close(connected);
                } else {
                    fix::close(connected, &fix_identities(&config, options.sessions));
                }
            }
            Surface::Rest => {
                let server: std::net::SocketAddr = address
                    .parse()
                    .map_err(|_| format!("REST address {address:?}"))?;
                let per_session =
                    options.rates.iter().cloned().fold(0.0, f64::max) / options.sessions as f64;
                if per_session > 1000.0 {
                    eprintln!("loadgen: warning: {per_session:.0} requests/s per REST session is above the gateway's default per-account limit (1000/s): expect HTTP 429 errors; add --sessions");
                }
                let flows = flows(options, &symbols, true);
                let mut sessions = Vec::new();
                for (n, flow) in flows.into_iter().enumerate() {
                    sessions.push(rest::setup(server, n, &prefix, flow, 12)?);
                }
                let mut next_id = 0u64;
                if options.warmup > 0.0 {
                    let rate = options.rates[0];
                    let count = ((rate * options.warmup) as usize).max(1);
                    progress.label(format!("{name} warm-up"));
                    let (_, back) = rest::phase(
                        sessions,
                        rate,
                        count,
                        next_id,
                        rest::Load::Orders,
                        &progress,
                    );
                    sessions = back;
                    next_id += count as u64;
                }
                for &rate in &options.rates {
                    let count = phase_count(options, rate);
                    let baseline = if options.echo {
                        progress.label(format!("GET /health {rate}/s"));
                        let (t, back) =
                            rest::phase(sessions, rate, count, 0, rest::Load::Health, &progress);
                        sessions = back;
                        Some(("health-rest".to_string(), t.merged()))
                    } else {
                        None
                    };
                    progress.label(format!("{name} {rate}/s"));
                    let (tracker, back) = rest::phase(
                        sessions,
                        rate,
                        count,
                        next_id,
                        rest::Load::Orders,
                        &progress,
                    );
                    sessions = back;
                    next_id += count as u64;
                    if sessions.len() < options.sessions {
                        return Err("REST: a session thread failed".into());
                    }
                    results.push(Measured {
                        surface: name,
                        rate,
                        recorder: tracker.merged(),
                        tracker,
                        baseline,
                        request_bytes: 0,
                        reply_bytes: 0,
                    });
                    report_line(results.last());
                }
            }
        }
    }
    // Files: histograms, summary, plot (before the server is stopped: an
    // overloaded server may take long to drain).
    let mut summaries = Vec::new();
    let mut plotted = Vec::new();
    for m in &results {
        let rate = m.rate.round() as u64;
        let main = options.out.join(format!("{}-{rate}.hgrm", m.surface));
        write(&main, &hgrm::render(&m.recorder.ack))?;
        plotted.push(main);
        if !m.recorder.exec.is_empty() {
            write(
                &options.out.join(format!("{}-{rate}-exec.hgrm", m.surface)),
                &hgrm::render(&m.recorder.exec),
            )?;
        }
        if let Some((name, recorder)) = &m.baseline {
            let path = options.out.join(format!("{name}-{rate}.hgrm"));
            write(&path, &hgrm::render(&recorder.ack))?;
            plotted.push(path);
        }
        summaries.push(m.summary(options, &server_label));
    }
    let json = serde_json::to_string_pretty(&summaries).map_err(|e| e.to_string())?;
    write(&options.out.join("summary.json"), &(json + "\n"))?;
    let mut csv = CSV_COLUMNS.join(",") + "\n";
    for s in &summaries {
        csv.push_str(&csv_row(s));
        csv.push('\n');
    }
    write(&options.out.join("summary.csv"), &csv)?;
    print_table(&summaries);
    if let Some(path) = &options.plot {
        plot_files(
            &plotted,
            path,
            "BrokerX round trip (open loop, CO corrected)",
        )?;
        eprintln!("loadgen: plot written to {}", path.display());
    }
    eprintln!(
        "loadgen: histograms and summary.json / summary.csv in {}",
        options.out.display()
    );
    if let Some(spawned) = spawned {
        if let Err(e) = spawned.stop() {
            eprintln!("loadgen: warning: {e} (it was killed; the results above stand)");
        }
    }
    Ok(())
}

fn fix_identities(config: &server::Config, sessions: usize) -> Vec<fix::Identity> {
    config
        .fix_sessions
        .iter()
        .take(sessions)
        .map(|s| fix::Identity {
            comp_id: s.target_comp_id.clone(),
            target: s.sender_comp_id.clone(),
            username: s.username.clone(),
            password: s.password.clone(),
        })
        .collect()
}

fn report_line(m: Option<&Measured>) {
    let Some(m) = m else { return };
    let h = &m.recorder.ack;
    let t = &m.tracker;
    eprintln!(
        "loadgen: {} {}/s: {} acked, {} too late, {} rejected, {} failures; p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs",
        m.surface,
        m.rate,
        t.acks.load(Ordering::Relaxed),
        t.too_late.load(Ordering::Relaxed),
        t.rejected.load(Ordering::Relaxed),
        t.failures.load(Ordering::Relaxed),
        us(h, 0.5),
        us(h, 0.99),
        us(h, 0.999)
    );
}

fn print_table(summaries: &[serde_json::Value]) {
    println!("| surface | offered/s | achieved/s | sessions | errors | p50 µs | p90 | p99 | p99.9 | p99.99 | max | baseline p50 / p99 / p99.9 | ratio p50 / p99 / p99.9 | exec p50 / p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|");
    let f = |v: &serde_json::Value| {
        v.as_f64()
            .map(|x| format!("{x:.1}"))
            .unwrap_or_else(|| "-".into())
    };
    let r = |v: &serde_json::Value| {
        v.as_f64()
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into())
    };
    for s in summaries {
        let l = &s["latency"];
        let b = &s["baseline"];
        let q = &s["ratio_to_baseline"];
        let e = &s["executions"];
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} / {} / {} | {} / {} / {} | {} / {} |",
            s["surface"].as_str().unwrap_or(""),
            s["rate_offered"],
            s["rate_achieved"],
            s["sessions"],
            s["errors"],
            f(&l["p50"]),
            f(&l["p90"]),
            f(&l["p99"]),
            f(&l["p99_9"]),
            f(&l["p99_99"]),
            f(&l["max"]),
            f(&b["p50"]),
            f(&b["p99"]),
            f(&b["p99_9"]),
            r(&q["p50"]),
            r(&q["p99"]),
            r(&q["p99_9"]),
            f(&e["p50"]),
            f(&e["p99"]),
        );
    }
}

fn plot_files(files: &[PathBuf], out: &Path, title: &str) -> Result<(), String> {
    let mut series = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let distribution = hgrm::parse(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        if distribution.total_count == 0 {
            eprintln!("loadgen: {}: empty histogram, not drawn", file.display());
            continue;
        }
        let label = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        series.push((label, distribution));
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    plot::draw(out, title, &series)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("plot") => Flags::parse(&args[1..], &["output", "title"]).and_then(|flags| {
            let out = flags
                .value("output")
                .ok_or("plot: give the output file with -o OUT.svg")?;
            if flags.positional.is_empty() {
                return Err("plot: give at least one .hgrm file".into());
            }
            let files: Vec<PathBuf> = flags.positional.iter().map(PathBuf::from).collect();
            plot_files(
                &files,
                Path::new(out),
                flags.value("title").unwrap_or("Latency by percentile"),
            )
        }),
        Some("run") => Flags::parse(&args[1..], RUN_VALUES).and_then(|f| run(&options(&f)?)),
        Some(_) => Flags::parse(&args, RUN_VALUES).and_then(|f| run(&options(&f)?)),
        None => Err("no arguments".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("loadgen: {message}\n(see `loadgen help`)");
            ExitCode::from(2)
        }
    }
}
