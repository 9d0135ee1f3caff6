//! A progress bar on stderr, redrawn five times a second while a phase
//! runs: sent and answered requests against the phase's count, and the
//! time left on the schedule. Drawn only when stderr is a terminal (and
//! not with `--no-progress`); a dozen lines instead of a crate (see
//! docs/DEPENDENCIES.md).

use crate::measure::Tracker;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Progress {
    enabled: bool,
    label: Mutex<String>,
    running: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            label: Mutex::new(String::new()),
            running: Mutex::new(None),
        }
    }

    /// What the next phase is called on the bar.
    pub fn label(&self, text: String) {
        *self.label.lock().unwrap_or_else(|e| e.into_inner()) = text;
    }

    pub fn start(&self, tracker: Arc<Tracker>) {
        if !self.enabled {
            return;
        }
        self.finish();
        let stop = Arc::new(AtomicBool::new(false));
        let label = self.label.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let count = tracker.count().max(1) as u64;
            let total = tracker.intended(tracker.count()) as f64 / 1e9;
            while !flag.load(Ordering::Relaxed) {
                let sent = tracker.sent.load(Ordering::Relaxed);
                let answered = tracker.resolved();
                let filled = (answered * 30 / count) as usize;
                let elapsed = tracker.now() as f64 / 1e9;
                eprint!(
                    "\r\x1b[2K{label} [{}{}] {:3}% sent {sent}/{count}, answered {answered}, {:.1} s left",
                    "#".repeat(filled.min(30)),
                    "-".repeat(30 - filled.min(30)),
                    answered * 100 / count,
                    (total - elapsed).max(0.0),
                );
                let _ = std::io::stderr().flush();
                std::thread::sleep(Duration::from_millis(200));
            }
            eprint!("\r\x1b[2K");
            let _ = std::io::stderr().flush();
        });
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop, handle));
    }

    pub fn finish(&self) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((stop, handle)) = running {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}
