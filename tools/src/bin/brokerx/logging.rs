//! `brokerx serve`'s log lines: `tracing` events as JSON, one object per
//! line, on stderr. What is logged comes from `BROKERX_LOG`, else
//! `RUST_LOG`: a level (`error`, `warn`, `info` (default), `debug`,
//! `trace` or `off`), or a `RUST_LOG`-style list of directives such as
//! `warn,brokerx_gateway_fix=debug`: a bare level is the default, and
//! `target=level` applies to events whose target (module path) starts
//! with `target`, the longest match winning.
//!
//! Writing never blocks the thread that logs: each line goes into a
//! bounded queue that one writer thread drains to stderr. When the queue
//! is full the line is dropped and counted; the count is reported in the
//! next line written (`"log lines dropped"`) and as the metric
//! `brokerx_log_lines_dropped_total`.

use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;

const QUEUE_LINES: usize = 65_536;

struct Queue {
    sender: Sender<Vec<u8>>,
    /// Lines queued and not yet written.
    pending: AtomicU64,
    dropped: AtomicU64,
    dropped_total: AtomicU64,
}

static QUEUE: OnceLock<Arc<Queue>> = OnceLock::new();

/// Hands each formatted event to the queue.
struct Lines(Arc<Queue>);

struct LineWriter<'a> {
    queue: &'a Queue,
    line: Vec<u8>,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter<'_> {
    fn drop(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let line = std::mem::take(&mut self.line);
        self.queue.pending.fetch_add(1, Ordering::AcqRel);
        match self.queue.sender.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.queue.pending.fetch_sub(1, Ordering::AcqRel);
                self.queue.dropped.fetch_add(1, Ordering::Relaxed);
                self.queue.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            queue: &self.0,
            line: Vec::with_capacity(256),
        }
    }
}

fn write_loop(queue: Arc<Queue>, receiver: Receiver<Vec<u8>>) {
    let stderr = std::io::stderr();
    while let Ok(first) = receiver.recv() {
        let mut out = stderr.lock();
        let dropped = queue.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "{{\"level\":\"WARN\",\"message\":\"log lines dropped\",\"count\":{dropped},\"target\":\"brokerx::logging\"}}"
            );
        }
        let mut written = 1;
        let _ = out.write_all(&first);
        while let Ok(line) = receiver.try_recv() {
            let _ = out.write_all(&line);
            written += 1;
            if written >= 1_024 {
                break;
            }
        }
        let _ = out.flush();
        queue.pending.fetch_sub(written, Ordering::AcqRel);
    }
}

/// The filter asked for in the environment.
pub fn filter_from_env() -> Result<Targets, String> {
    let text = ["BROKERX_LOG", "RUST_LOG"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()));
    let Some(text) = text else {
        return Ok(Targets::new().with_default(LevelFilter::INFO));
    };
    parse_filter(&text).map_err(|why| format!("BROKERX_LOG/RUST_LOG: {text:?}: {why}"))
}

/// `level` or `target=level` directives, comma-separated. Unlike a bare
/// `Targets` parse, a list with no bare level keeps `info` as the default
/// for every other target, and every part must name a known level.
fn parse_filter(text: &str) -> Result<Targets, String> {
    let mut targets = Targets::new();
    let mut default = None;
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (target, level) = match part.split_once('=') {
            Some((target, level)) => (Some(target.trim()), level.trim()),
            None => (None, part),
        };
        let level: LevelFilter = level.parse().map_err(|_| {
            format!("{part:?} names no level (error, warn, info, debug, trace, off)")
        })?;
        match target {
            Some("") => return Err(format!("{part:?} has an empty target")),
            Some(target) => targets = targets.with_target(target.to_string(), level),
            None => default = Some(level),
        }
    }
    if default.is_none() && targets.iter().next().is_none() {
        return Err("no directive".into());
    }
    Ok(targets.with_default(default.unwrap_or(LevelFilter::INFO)))
}

/// Installs the JSON subscriber (once per process).
pub fn install() -> Result<(), String> {
    let filter = filter_from_env()?;
    if QUEUE.get().is_some() {
        return Ok(());
    }
    let (sender, receiver) = crossbeam_channel::bounded(QUEUE_LINES);
    let queue = Arc::new(Queue {
        sender,
        pending: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        dropped_total: AtomicU64::new(0),
    });
    let writer_queue = queue.clone();
    std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || write_loop(writer_queue, receiver))
        .map_err(|e| format!("log writer thread: {e}"))?;
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_max_level(LevelFilter::TRACE)
        .with_writer(Lines(queue.clone()))
        .finish()
        .with(filter);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| format!("log subscriber: {e}"))?;
    let _ = QUEUE.set(queue);
    brokerx_metrics::global().add_source("logging", |out| {
        let dropped = QUEUE
            .get()
            .map_or(0, |q| q.dropped_total.load(Ordering::Relaxed));
        out.push(brokerx_metrics::family::counter(
            "brokerx_log_lines_dropped_total",
            "Log lines dropped because the log writer's queue was full (stderr too slow)",
            &[(&[], dropped as f64)],
        ));
    });
    Ok(())
}

/// Waits (at most `limit`) until every queued line is written.
pub fn flush(limit: Duration) {
    let Some(queue) = QUEUE.get() else { return };
    let deadline = Instant::now() + limit;
    while queue.pending.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use tracing::Level;

    fn enabled(filter: &str, target: &str, level: Level) -> bool {
        parse_filter(filter).unwrap().would_enable(target, &level)
    }

    #[test]
    fn directives_filter_per_target() {
        assert!(enabled("debug", "brokerx::serve", Level::DEBUG));
        assert!(!enabled("WARN", "brokerx::serve", Level::INFO));
        // Per target, the longest prefix wins; others get the default.
        let filter = "warn,brokerx_gateway_fix=debug,brokerx_gateway_fix::store=error";
        assert!(enabled(filter, "brokerx_gateway_fix::server", Level::DEBUG));
        assert!(!enabled(
            filter,
            "brokerx_gateway_fix::server",
            Level::TRACE
        ));
        assert!(!enabled(filter, "brokerx_gateway_fix::store", Level::WARN));
        assert!(enabled(filter, "brokerx_gateway_ouch::server", Level::WARN));
        assert!(!enabled(
            filter,
            "brokerx_gateway_ouch::server",
            Level::INFO
        ));
        // Only targets named: the rest stay at info.
        assert!(enabled(
            "brokerx_gateway_rest=trace",
            "brokerx::serve",
            Level::INFO
        ));
        assert!(!enabled(
            "brokerx_gateway_rest=trace",
            "brokerx::serve",
            Level::DEBUG
        ));
        assert!(!enabled("off", "brokerx::serve", Level::ERROR));
    }

    #[test]
    fn bad_directives_are_refused_with_the_reason() {
        let cases = [
            ("loud", "names no level"),
            ("info,brokerx=loud", "names no level"),
            ("=debug", "empty target"),
            (",,", "no directive"),
        ];
        for (text, why) in cases {
            let error = parse_filter(text)
                .err()
                .unwrap_or_else(|| panic!("{text:?} accepted"));
            assert!(error.contains(why), "{text:?}: {error}");
        }
    }
}
