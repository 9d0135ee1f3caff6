//! The SoupBinTCP 3.0 ITCH server: each stored feed message travels in a
//! Sequenced Data packet. A Login Request with sequence N replays stored
//! messages from N, then live ones; 0 means "next live message". Server
//! heartbeats after a second of silence; a client silent for the client
//! timeout (or not logged in by then) is closed. Anything but a Login
//! Request first, or undecodable framing, closes the connection.

use super::{Shared, POLL_INTERVAL};
use brokerx_soupbin::{alpha, alpha_trimmed, Decoder, LoginRejectReason, Packet, SESSION_BYTES};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Most stored messages the writer sends in one write.
const WRITE_BATCH_MESSAGES: u64 = 256;
/// Largest frame a client may send (a Login Request is 49 bytes).
const MAX_CLIENT_FRAME_BYTES: usize = 256;

fn count(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(super) fn accept_loop(
    shared: &Arc<Shared>,
    listener: TcpListener,
    connections: &Mutex<Vec<JoinHandle<()>>>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    while !shared.stop.load(Ordering::Acquire) {
        match listener.accept() {
            Ok((stream, _)) => {
                if open.load(Ordering::Acquire) >= shared.soup_max_connections {
                    let _ = stream.shutdown(Shutdown::Both);
                    continue;
                }
                count(&shared.stats.soup_connections);
                open.fetch_add(1, Ordering::AcqRel);
                let session_shared = shared.clone();
                let session_open = open.clone();
                let spawned =
                    std::thread::Builder::new()
                        .name("itch-soup".into())
                        .spawn(move || {
                            let _ = connection(&session_shared, stream);
                            session_open.fetch_sub(1, Ordering::AcqRel);
                        });
                match spawned {
                    Ok(thread) => {
                        let mut list = connections.lock().unwrap_or_else(|e| e.into_inner());
                        list.retain(|t| !t.is_finished());
                        list.push(thread);
                    }
                    Err(_) => {
                        open.fetch_sub(1, Ordering::AcqRel);
                    }
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

enum ReadOutcome {
    Packet(Packet),
    Closed,
    TimedOut,
    Framing,
    Stopped,
}

struct PacketReader {
    stream: TcpStream,
    decoder: Decoder,
    buffer: Vec<u8>,
    last_received: Instant,
}

impl PacketReader {
    fn next(&mut self, shared: &Shared, alive: Option<&AtomicBool>) -> ReadOutcome {
        loop {
            match self.decoder.next_packet() {
                Ok(Some(packet)) => return ReadOutcome::Packet(packet),
                Ok(None) => {}
                Err(_) => return ReadOutcome::Framing,
            }
            if shared.stop.load(Ordering::Acquire)
                || alive.is_some_and(|a| !a.load(Ordering::Acquire))
            {
                return ReadOutcome::Stopped;
            }
            if self.last_received.elapsed() >= shared.client_timeout {
                return ReadOutcome::TimedOut;
            }
            match self.stream.read(&mut self.buffer) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => {
                    self.last_received = Instant::now();
                    self.decoder.feed(&self.buffer[..n]);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }
}

fn send_packet(stream: &mut TcpStream, packet: &Packet) -> std::io::Result<()> {
    let bytes = packet
        .to_bytes()
        .map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e.to_string()))?;
    stream.write_all(&bytes)
}

fn credentials_ok(expected: &Option<String>, given: &[u8]) -> bool {
    match expected {
        None => true,
        Some(expected) => expected
            .as_bytes()
            .eq_ignore_ascii_case(alpha_trimmed(given)),
    }
}

fn connection(shared: &Arc<Shared>, stream: TcpStream) -> std::io::Result<()> {
    let stats = &shared.stats;
    stream.set_nonblocking(false)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(POLL_INTERVAL))?;
    stream.set_write_timeout(Some(shared.write_timeout))?;
    let mut writer = stream.try_clone()?;
    let mut reader = PacketReader {
        stream,
        decoder: Decoder::new(MAX_CLIENT_FRAME_BYTES),
        buffer: vec![0; 1024],
        last_received: Instant::now(),
    };
    let (username, password, requested_session, requested_sequence) =
        match reader.next(shared, None) {
            ReadOutcome::Packet(Packet::LoginRequest {
                username,
                password,
                requested_session,
                requested_sequence_number,
            }) => (
                username,
                password,
                requested_session,
                requested_sequence_number,
            ),
            ReadOutcome::Packet(_) | ReadOutcome::Framing | ReadOutcome::TimedOut => {
                count(&stats.soup_closed_before_login);
                let _ = reader.stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            ReadOutcome::Closed | ReadOutcome::Stopped => return Ok(()),
        };
    // The password is compared exactly, the username case-insensitively.
    let password_ok = match &shared.soup_password {
        None => true,
        Some(expected) => expected.as_bytes() == alpha_trimmed(&password),
    };
    if !credentials_ok(&shared.soup_username, &username) || !password_ok {
        count(&stats.soup_logins_rejected);
        return send_packet(
            &mut writer,
            &Packet::LoginRejected(LoginRejectReason::NotAuthorized),
        );
    }
    let session: [u8; SESSION_BYTES] = alpha(shared.session.as_bytes());
    let requested = alpha_trimmed(&requested_session);
    let next = {
        let feed = shared.lock();
        if (!requested.is_empty() && requested != alpha_trimmed(&session)) || feed.failed.is_some()
        {
            drop(feed);
            count(&stats.soup_logins_rejected);
            return send_packet(
                &mut writer,
                &Packet::LoginRejected(LoginRejectReason::SessionNotAvailable),
            );
        }
        let next_live = feed.store.next_seq();
        if requested_sequence == 0 {
            next_live
        } else {
            // Evicted messages cannot be replayed: start at the oldest
            // stored one (Login Accepted says where).
            requested_sequence
                .max(feed.store.oldest_seq())
                .min(next_live)
        }
    };
    send_packet(
        &mut writer,
        &Packet::LoginAccepted {
            session,
            sequence_number: next,
        },
    )?;
    count(&stats.soup_logins);
    let alive = Arc::new(AtomicBool::new(true));
    let writer_thread = {
        let shared = shared.clone();
        let alive = alive.clone();
        std::thread::Builder::new()
            .name("itch-soup-writer".into())
            .spawn(move || write_loop(&shared, writer, &alive, next))?
    };
    // Logged in from here until the writer has ended.
    stats.soup_logged_in.fetch_add(1, Ordering::AcqRel);
    loop {
        match reader.next(shared, Some(&alive)) {
            ReadOutcome::Packet(Packet::ClientHeartbeat | Packet::Debug(_)) => {}
            // Unsequenced data has no meaning on a market data feed.
            ReadOutcome::Packet(Packet::UnsequencedData(_)) => {}
            ReadOutcome::Packet(_)
            | ReadOutcome::Framing
            | ReadOutcome::TimedOut
            | ReadOutcome::Closed
            | ReadOutcome::Stopped => break,
        }
    }
    alive.store(false, Ordering::Release);
    shared.changed.notify_all();
    let _ = reader.stream.shutdown(Shutdown::Both);
    let _ = writer_thread.join();
    stats.soup_logged_in.fetch_sub(1, Ordering::AcqRel);
    Ok(())
}

/// Sends stored messages from `next` on, and heartbeats when idle.
fn write_loop(shared: &Shared, mut stream: TcpStream, alive: &AtomicBool, mut next: u64) {
    let stats = &shared.stats;
    let heartbeat = shared.heartbeat_interval;
    let mut last_sent = Instant::now();
    let mut frames = Vec::with_capacity(8192);
    loop {
        frames.clear();
        let mut sent = 0u64;
        {
            let mut feed = shared.lock();
            loop {
                if !alive.load(Ordering::Acquire)
                    || shared.stop.load(Ordering::Acquire)
                    || feed.failed.is_some()
                {
                    let failed = feed.failed.is_some();
                    drop(feed);
                    if failed {
                        // The feed cannot go on: the session has ended.
                        let _ = Packet::EndOfSession.encode(&mut frames);
                        let _ = stream.write_all(&frames);
                    }
                    let _ = stream.shutdown(Shutdown::Both);
                    alive.store(false, Ordering::Release);
                    return;
                }
                if next < feed.store.oldest_seq() {
                    // Fell behind the bounded store: it cannot be served
                    // without a gap.
                    drop(feed);
                    count(&stats.soup_overrun);
                    let _ = stream.shutdown(Shutdown::Both);
                    alive.store(false, Ordering::Release);
                    return;
                }
                let available = feed.store.next_seq().saturating_sub(next);
                if available > 0 {
                    let take = available.min(WRITE_BATCH_MESSAGES) as u16;
                    if let Ok(messages) = feed.store.get(next, take) {
                        for message in messages {
                            let _ = Packet::SequencedData(message.to_vec()).encode(&mut frames);
                            sent += 1;
                        }
                    }
                    next += u64::from(take);
                    break;
                }
                let idle = last_sent.elapsed();
                if idle >= heartbeat {
                    let _ = Packet::ServerHeartbeat.encode(&mut frames);
                    break;
                }
                let wait = (heartbeat - idle).min(POLL_INTERVAL);
                feed = shared
                    .changed
                    .wait_timeout(feed, wait)
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
        }
        if stream.write_all(&frames).is_err() {
            let _ = stream.shutdown(Shutdown::Both);
            alive.store(false, Ordering::Release);
            return;
        }
        last_sent = Instant::now();
        if sent == 0 {
            count(&stats.soup_heartbeats);
        } else {
            stats.soup_messages_sent.fetch_add(sent, Ordering::Relaxed);
        }
    }
}
