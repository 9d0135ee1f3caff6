//! What the two full-duplex surfaces (FIX, OUCH) share: sessions with a
//! writer (one sending thread for all sessions, on the schedule) and a
//! reader thread each that matches answers to requests, kept for the whole
//! surface so no bytes are lost between phases; and the phase loop.

use crate::flow::{Action, Book, Flow};
use crate::measure::Tracker;
use crate::progress::Progress;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a failure against the phase being measured, if any.
pub fn fail(current: &Current, text: String) {
    if let Some(tracker) = lock(current).clone() {
        tracker.failures.fetch_add(1, Ordering::Relaxed);
        tracker.note_error(text);
    }
}

/// One read on a session's socket: `Some(n)` bytes (0 after a read
/// timeout), `None` once the connection is over (a failure of `surface`
/// unless the run is stopping).
pub fn read_some(
    stream: &mut TcpStream,
    into: &mut [u8],
    surface: &str,
    current: &Current,
    stop: &AtomicBool,
) -> Option<usize> {
    let failed = |text: String| {
        if !stop.load(Ordering::Relaxed) {
            fail(current, text);
        }
        None
    };
    match stream.read(into) {
        Ok(0) => failed(format!("{surface}: connection closed by the server")),
        Ok(n) => Some(n),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Some(0)
        }
        Err(e) => failed(format!("{surface}: read: {e}")),
    }
}

/// The sending half of a session.
pub struct Writer {
    pub stream: TcpStream,
    /// FIX MsgSeqNum of the next message.
    pub seq: u64,
    pub last_send: Instant,
    /// The session's index.
    pub session: usize,
}

impl Writer {
    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.last_send = Instant::now();
        self.stream.write_all(bytes)
    }
}

/// One logged-on session.
pub struct Session {
    pub index: usize,
    pub writer: Mutex<Writer>,
    pub book: Mutex<Book>,
}

/// Turns an action into a session's bytes.
pub type Encoder = dyn Fn(&mut Writer, &Action) -> Vec<u8>;

/// The phase now measured (readers look it up per message).
pub type Current = Arc<Mutex<Option<Arc<Tracker>>>>;

/// A connected surface: its sessions, their flows and reader threads.
pub struct Surface {
    pub sessions: Vec<Arc<Session>>,
    pub flows: Vec<Flow>,
    pub current: Current,
    pub stop: Arc<AtomicBool>,
    pub readers: Vec<JoinHandle<()>>,
    /// The next global request id.
    pub next_id: u64,
}

impl Surface {
    /// Runs one phase: `count` requests at `rate`, round robin over the
    /// sessions; `deep` sends resting orders far from the touch (book
    /// depth). Returns once every request is answered or `drain` passed.
    pub fn phase<F>(
        &mut self,
        rate: f64,
        count: usize,
        deep: bool,
        drain: Duration,
        progress: &Progress,
        encode: F,
    ) -> Arc<Tracker>
    where
        F: Fn(&mut Writer, &Action) -> Vec<u8>,
    {
        let sessions = self.sessions.len();
        let tracker = Arc::new(Tracker::new(count, rate, sessions, self.next_id));
        *lock(&self.current) = Some(tracker.clone());
        progress.start(tracker.clone());
        for index in 0..count {
            tracker.wait_turn(index);
            let at = index % sessions;
            let session = &self.sessions[at];
            let id = self.next_id + index as u64;
            let action = {
                let mut book = lock(&session.book);
                self.flows[at].next(&mut book, id, deep)
            };
            tracker.set_kind(index, action.kind());
            let mut writer = lock(&session.writer);
            let bytes = encode(&mut writer, &action);
            if let Err(e) = writer.send(&bytes) {
                tracker.failures.fetch_add(1, Ordering::Relaxed);
                tracker.note_error(format!("session {at}: send failed: {e}"));
            }
            tracker
                .sent
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        tracker.drain(drain);
        // Whatever arrives after the drain is no longer this phase's.
        *lock(&self.current) = None;
        progress.finish();
        self.next_id += count as u64;
        tracker
    }

    /// Sends each session's goodbye (`bye`) and stops the readers.
    pub fn close(self, bye: impl Fn(&mut Writer) -> Vec<u8>) {
        self.stop.store(true, Ordering::Relaxed);
        for session in &self.sessions {
            let mut writer = lock(&session.writer);
            let bytes = bye(&mut writer);
            let _ = writer.send(&bytes);
        }
        for reader in self.readers {
            let _ = reader.join();
        }
    }
}

/// A prefix that makes this run's order ids unique on a long-running
/// server: 4 base-36 characters from the clock.
pub fn run_prefix() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64 / 100)
        .unwrap_or(0);
    let mut n = secs % 36u64.pow(4);
    let mut out = [b'0'; 4];
    for slot in out.iter_mut().rev() {
        *slot = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An id as 4 prefix characters then 10 digits.
pub fn format_id(prefix: &str, id: u64) -> String {
    format!("{prefix}{id:010}")
}

/// The id in a text written by `format_id` with this prefix.
pub fn parse_id(prefix: &str, text: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(text).ok()?.trim_end();
    let digits = text.strip_prefix(prefix)?;
    if digits.len() != 10 {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        let prefix = run_prefix();
        assert_eq!(prefix.len(), 4);
        let text = format_id(&prefix, 42);
        assert_eq!(text.len(), 14);
        assert_eq!(parse_id(&prefix, text.as_bytes()), Some(42));
        assert_eq!(parse_id("ZZZZ", b"AAAA0000000042"), None);
        assert_eq!(parse_id(&prefix, b"short"), None);
    }
}
