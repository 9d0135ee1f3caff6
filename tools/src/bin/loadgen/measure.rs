//! The measuring core shared by every surface: the open-loop schedule (each
//! request has an intended send time and latency counts from it, so a stall
//! is charged to every request it delays: coordinated omission corrected),
//! per-request bookkeeping (each request is answered exactly once), and the
//! recorders (HdrHistograms in nanoseconds).

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Request kinds, as stored per request.
pub const NEW: u8 = 0;
pub const MARKETABLE: u8 = 1;
pub const CANCEL: u8 = 2;
pub const REPLACE: u8 = 3;
/// A resting order far from the touch, sent before the measured phases to
/// build book depth (`--prefill`).
pub const DEEP: u8 = 4;
pub const KIND_NAMES: [&str; 4] = ["new", "marketable", "cancel", "replace"];

/// 1 µs to 60 s, 3 significant digits, in nanoseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).expect("static bounds")
}

/// What one session's reader recorded in one phase.
pub struct Recorder {
    /// Request to its acknowledgement (every kind).
    pub ack: Histogram<u64>,
    /// The same, by kind (NEW, MARKETABLE, CANCEL, REPLACE).
    pub by_kind: [Histogram<u64>; 4],
    /// A marketable order to its first execution.
    pub exec: Histogram<u64>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            ack: histogram(),
            by_kind: [histogram(), histogram(), histogram(), histogram()],
            exec: histogram(),
        }
    }

    pub fn add(&mut self, other: &Recorder) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.ack.add(&other.ack);
        for (mine, theirs) in self.by_kind.iter_mut().zip(&other.by_kind) {
            let _ = mine.add(theirs);
        }
        let _ = self.exec.add(&other.exec);
    }
}

/// How a request was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Accepted / ExecutionReport new, replaced, cancelled / HTTP 2xx.
    Ack,
    /// A cancel or replace that reached an order already filled: answered
    /// (FIX OrderCancelReject "too late", OUCH Rejected, HTTP 422
    /// order_not_open), timed like an ack, counted apart.
    TooLate,
    /// The same race where the protocol sends no answer (an OUCH cancel of
    /// an order already executed is ignored): counted, not timed.
    TooLateSilent,
    /// Refused (risk, validation, rate limit, session error): an error.
    Rejected,
}

/// One phase's requests: intended send times, kinds and answers.
pub struct Tracker {
    base: Instant,
    start_ns: u64,
    rate: f64,
    count: usize,
    /// The first global request id of this phase (ids below it belong to
    /// earlier phases and are ignored here).
    pub offset: u64,
    kinds: Vec<AtomicU8>,
    answered: Vec<AtomicBool>,
    executed: Vec<AtomicBool>,
    pub sent: AtomicU64,
    pub acks: AtomicU64,
    pub too_late: AtomicU64,
    pub rejected: AtomicU64,
    pub executions: AtomicU64,
    /// Session-level failures (disconnects, unparseable replies).
    pub failures: AtomicU64,
    /// When the phase ended (ns since `base`; 0 while it runs).
    finished_ns: AtomicU64,
    /// The first few error texts, for the report.
    pub error_samples: Mutex<Vec<String>>,
    pub recorders: Vec<Mutex<Recorder>>,
}

impl Tracker {
    /// `count` requests at `rate` per second over `sessions` sessions,
    /// starting a few milliseconds from now.
    pub fn new(count: usize, rate: f64, sessions: usize, offset: u64) -> Tracker {
        let base = Instant::now();
        Tracker {
            base,
            start_ns: 5_000_000,
            rate,
            count,
            offset,
            kinds: (0..count).map(|_| AtomicU8::new(NEW)).collect(),
            answered: (0..count).map(|_| AtomicBool::new(false)).collect(),
            executed: (0..count).map(|_| AtomicBool::new(false)).collect(),
            sent: AtomicU64::new(0),
            acks: AtomicU64::new(0),
            too_late: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            executions: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            finished_ns: AtomicU64::new(0),
            error_samples: Mutex::new(Vec::new()),
            recorders: (0..sessions).map(|_| Mutex::new(Recorder::new())).collect(),
        }
    }

    pub fn count(&self) -> usize {
        self.count
    }

    pub fn now(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Request `index`'s intended send time (ns since `base`).
    pub fn intended(&self, index: usize) -> u64 {
        self.start_ns + (index as f64 / self.rate * 1e9) as u64
    }

    /// Waits for request `index`'s slot, never returning before it. It
    /// sleeps rather than spins (a spinning sender would take one of the
    /// machine's two cores from the system under test); requests that are
    /// due go out back to back, and the sleep's overshoot is charged to
    /// them, since latency counts from the intended time.
    pub fn wait_turn(&self, index: usize) {
        precise_sleep();
        let at = self.intended(index);
        let now = self.now();
        if at > now {
            std::thread::sleep(Duration::from_nanos(at - now));
        }
        // Never before the intended time: an early send would shorten the
        // measured latency.
        while self.now() < at {
            std::hint::spin_loop();
        }
    }

    /// The phase index of a global request id, if it is one of this phase.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        let index = id.checked_sub(self.offset)? as usize;
        (index < self.count).then_some(index)
    }

    pub fn set_kind(&self, index: usize, kind: u8) {
        self.kinds[index].store(kind, Ordering::Relaxed);
    }

    pub fn kind(&self, index: usize) -> u8 {
        self.kinds[index].load(Ordering::Relaxed)
    }

    pub fn note_error(&self, text: String) {
        let mut samples = self.error_samples.lock().unwrap_or_else(|e| e.into_inner());
        if samples.len() < 5 {
            samples.push(text);
        }
    }

    /// Records request `index`'s answer, once (a second answer is ignored).
    pub fn answer(&self, session: usize, index: usize, outcome: Outcome) {
        if self.answered[index].swap(true, Ordering::Relaxed) {
            return;
        }
        let latency = self.now().saturating_sub(self.intended(index));
        let kind = self.kind(index) as usize;
        let timed = matches!(outcome, Outcome::Ack | Outcome::TooLate);
        if timed {
            let mut recorder = self.recorders[session % self.recorders.len()]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            recorder.ack.saturating_record(latency);
            if let Some(h) = recorder.by_kind.get_mut(kind) {
                h.saturating_record(latency);
            }
        }
        match outcome {
            Outcome::Ack => &self.acks,
            Outcome::TooLate | Outcome::TooLateSilent => &self.too_late,
            Outcome::Rejected => &self.rejected,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// Records the first execution of marketable request `index`.
    pub fn execution(&self, session: usize, index: usize) {
        if self.executed[index].swap(true, Ordering::Relaxed) {
            return;
        }
        let latency = self.now().saturating_sub(self.intended(index));
        self.recorders[session % self.recorders.len()]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .exec
            .saturating_record(latency);
        self.executions.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests answered in any way.
    pub fn resolved(&self) -> u64 {
        self.acks.load(Ordering::Relaxed)
            + self.too_late.load(Ordering::Relaxed)
            + self.rejected.load(Ordering::Relaxed)
    }

    /// Waits until every request is answered or `timeout` passes.
    pub fn drain(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.resolved() < self.count as u64 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.finish();
    }

    /// Marks the end of the phase (the first call counts).
    pub fn finish(&self) {
        let _ = self.finished_ns.compare_exchange(
            0,
            self.now().max(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Every reader's recorder, merged.
    pub fn merged(&self) -> Recorder {
        let mut all = Recorder::new();
        for recorder in &self.recorders {
            all.add(&recorder.lock().unwrap_or_else(|e| e.into_inner()));
        }
        all
    }

    /// Seconds from the first intended send to the end of the phase
    /// (the last answer, or the drain timeout), or to now while it runs.
    pub fn elapsed_secs(&self) -> f64 {
        let end = match self.finished_ns.load(Ordering::Relaxed) {
            0 => self.now(),
            end => end,
        };
        end.saturating_sub(self.start_ns) as f64 / 1e9
    }
}

/// Asks the kernel to wake this thread's sleeps on time: Linux lets a
/// sleep of a normal thread overshoot by its timer slack (50 µs by
/// default), which the open-loop schedule would charge to every request
/// as latency. Set once per thread, to 1 µs.
pub fn precise_sleep() {
    thread_local! {
        static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    DONE.with(|done| {
        if !done.replace(true) {
            #[cfg(target_os = "linux")]
            // SAFETY: PR_SET_TIMERSLACK takes one integer argument and only
            // changes this thread's timer slack.
            unsafe {
                libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong);
            }
        }
    });
}

/// splitmix64: small, fast and seedable.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_request_is_answered_once() {
        let tracker = Tracker::new(4, 1000.0, 2, 100);
        assert_eq!(tracker.index_of(99), None);
        assert_eq!(tracker.index_of(103), Some(3));
        assert_eq!(tracker.index_of(104), None);
        tracker.answer(0, 1, Outcome::Ack);
        tracker.answer(0, 1, Outcome::Rejected);
        tracker.answer(1, 2, Outcome::TooLateSilent);
        assert_eq!(tracker.resolved(), 2);
        assert_eq!(tracker.merged().ack.len(), 1);
    }

    #[test]
    fn a_request_never_goes_out_before_its_time() {
        let tracker = Tracker::new(200, 100_000.0, 1, 0);
        for index in 0..200 {
            tracker.wait_turn(index);
            assert!(tracker.now() >= tracker.intended(index));
        }
    }
}
