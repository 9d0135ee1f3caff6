//! `brokerx serve`'s log lines: `tracing` events as JSON, one object per
//! line, on stderr. The level comes from `BROKERX_LOG`, else `RUST_LOG`
//! (`error`, `warn`, `info` (default), `debug`, `trace` or `off`; in a
//! `RUST_LOG`-style list such as `info,brokerx=debug` the most verbose
//! level named applies: per-target filters are not supported).
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
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

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

/// The level asked for in the environment.
pub fn level_from_env() -> Result<LevelFilter, String> {
    let text = ["BROKERX_LOG", "RUST_LOG"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.trim().is_empty()));
    let Some(text) = text else {
        return Ok(LevelFilter::INFO);
    };
    parse_level(&text).ok_or_else(|| {
        format!(
            "BROKERX_LOG/RUST_LOG: {text:?} names no level (error, warn, info, debug, trace, off)"
        )
    })
}

fn parse_level(text: &str) -> Option<LevelFilter> {
    text.split(',')
        .filter_map(|part| {
            let level = part.rsplit('=').next().unwrap_or(part).trim();
            level.parse::<LevelFilter>().ok()
        })
        .max()
}

/// Installs the JSON subscriber (once per process).
pub fn install() -> Result<(), String> {
    let level = level_from_env()?;
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
        .with_max_level(level)
        .with_writer(Lines(queue.clone()))
        .finish();
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

    #[test]
    fn levels_parse_like_a_simple_rust_log() {
        assert_eq!(parse_level("debug"), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level("WARN"), Some(LevelFilter::WARN));
        assert_eq!(
            parse_level("info,brokerx_gateway_fix=trace"),
            Some(LevelFilter::TRACE)
        );
        assert_eq!(parse_level("off"), Some(LevelFilter::OFF));
        assert_eq!(parse_level("loud"), None);
    }
}
