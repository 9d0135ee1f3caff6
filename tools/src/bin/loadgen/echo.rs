//! The baseline: a bare TCP echo server (one blocking thread per
//! connection, in this process) and an open-loop client on the same
//! schedule, session count and message sizes as the surface it is the
//! baseline of. What it measures is the loopback, the scheduler and the
//! load generator itself; a gateway's figure divided by it is the
//! gateway's own cost.

use crate::measure::{Outcome, Tracker};
use crate::progress::Progress;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// One phase against a fresh echo server: `count` requests of
/// `request_bytes` at `rate` over `sessions` connections, each answered
/// with `reply_bytes` (both at least 8: the request index travels in the
/// first 8 bytes).
pub fn phase(
    sessions: usize,
    rate: f64,
    count: usize,
    request_bytes: usize,
    reply_bytes: usize,
    drain: Duration,
    progress: &Progress,
) -> Result<Arc<Tracker>, String> {
    let (request_bytes, reply_bytes) = (request_bytes.max(8), reply_bytes.max(8));
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("echo: bind: {e}"))?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("echo: address: {e}"))?;
    let server = std::thread::spawn(move || {
        let mut workers = Vec::new();
        for stream in listener.incoming().take(sessions) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_nodelay(true);
            workers.push(std::thread::spawn(move || {
                let mut request = vec![0u8; request_bytes];
                let mut reply = vec![0x20u8; reply_bytes];
                while stream.read_exact(&mut request).is_ok() {
                    reply[..8].copy_from_slice(&request[..8]);
                    if stream.write_all(&reply).is_err() {
                        break;
                    }
                }
            }));
        }
        for worker in workers {
            let _ = worker.join();
        }
    });
    let mut streams = Vec::new();
    for _ in 0..sessions {
        let stream = TcpStream::connect(address).map_err(|e| format!("echo: connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        streams.push(stream);
    }
    let tracker = Arc::new(Tracker::new(count, rate, sessions, 0));
    progress.start(tracker.clone());
    let mut readers = Vec::new();
    for (session, stream) in streams.iter().enumerate() {
        let mut stream = stream
            .try_clone()
            .map_err(|e| format!("echo: clone socket: {e}"))?;
        let _ = stream.set_read_timeout(Some(drain + Duration::from_secs(5)));
        let tracker = tracker.clone();
        let share = count / sessions + usize::from(session < count % sessions);
        readers.push(std::thread::spawn(move || {
            let mut reply = vec![0u8; reply_bytes];
            for _ in 0..share {
                if stream.read_exact(&mut reply).is_err() {
                    tracker.failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                let mut index = [0u8; 8];
                index.copy_from_slice(&reply[..8]);
                let index = u64::from_le_bytes(index) as usize;
                if index < tracker.count() {
                    tracker.answer(session, index, Outcome::Ack);
                }
            }
        }));
    }
    let mut request = vec![0x20u8; request_bytes];
    for index in 0..count {
        tracker.wait_turn(index);
        request[..8].copy_from_slice(&(index as u64).to_le_bytes());
        if streams[index % sessions].write_all(&request).is_err() {
            tracker.failures.fetch_add(1, Ordering::Relaxed);
        }
        tracker.sent.fetch_add(1, Ordering::Relaxed);
    }
    tracker.drain(drain);
    for reader in readers {
        let _ = reader.join();
    }
    drop(streams);
    let _ = server.join();
    progress.finish();
    Ok(tracker)
}
