//! TCP acceptor: one std thread per connection, blocking sockets with short read
//! timeouts driving the session timers.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::codec::{self, Frame};
use crate::session::{Action, Application, Session, SessionConfig, SessionId};
use crate::store::Store;

/// Acceptor configuration.
#[derive(Debug, Clone)]
pub struct FixConfig {
    /// Sessions this acceptor accepts (CompID pairs).
    pub sessions: Vec<SessionConfig>,
    /// Directory for per-session store files; `None` keeps stores in memory.
    pub store_dir: Option<PathBuf>,
    /// Largest accepted frame in bytes.
    pub max_message_size: usize,
    /// Read timeout, i.e. timer resolution.
    pub poll_interval: Duration,
    /// How long to wait for the peer to close after our Logout.
    pub logout_timeout: Duration,
}

impl FixConfig {
    /// The QuickFIX acceptance-test setup: ISLD accepting TW44, ResetOnLogon.
    pub fn conformance(store_dir: Option<PathBuf>) -> Self {
        FixConfig {
            sessions: vec![SessionConfig::new("ISLD", "TW44")],
            store_dir,
            max_message_size: codec::DEFAULT_MAX_MESSAGE,
            poll_interval: Duration::from_millis(20),
            logout_timeout: Duration::from_secs(2),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

struct Shared {
    config: FixConfig,
    app: Arc<dyn Application>,
    active: Mutex<HashSet<SessionId>>,
    stop: AtomicBool,
}

/// A running acceptor.
pub struct FixServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FixServer {
    /// Start accepting on `listener`.
    pub fn start(
        listener: TcpListener,
        config: FixConfig,
        app: Arc<dyn Application>,
    ) -> io::Result<FixServer> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let shared = Arc::new(Shared {
            config,
            app,
            active: Mutex::new(HashSet::new()),
            stop: AtomicBool::new(false),
        });
        let s = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("fix-accept".into())
            .spawn(move || {
                while !s.stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let s2 = Arc::clone(&s);
                            let _ = std::thread::Builder::new().name("fix-conn".into()).spawn(
                                move || {
                                    if let Err(e) = connection(stream, &s2) {
                                        eprintln!("brokerx-gateway-fix: connection error: {e}");
                                    }
                                },
                            );
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5))
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })?;
        Ok(FixServer {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// Bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting and ask connections to close.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

impl Drop for FixServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Releases the "logged on" claim of a session when the connection ends.
struct Claim<'a> {
    shared: &'a Shared,
    id: SessionId,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        if let Ok(mut a) = self.shared.active.lock() {
            a.remove(&self.id);
        }
    }
}

fn graceful_close(mut stream: TcpStream, timeout: Duration) {
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + timeout;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut sink = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
}

fn connection(mut stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let cfg = &shared.config;
    let app: &dyn Application = &*shared.app;
    stream.set_read_timeout(Some(cfg.poll_interval))?;
    stream.set_nodelay(true)?;
    let started = Instant::now();
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 65536];
    let mut session: Option<(Session, Claim<'_>)> = None;
    let mut actions = Vec::new();
    let result = 'conn: loop {
        if shared.stop.load(Ordering::Relaxed) {
            break Ok(false);
        }
        match stream.read(&mut chunk) {
            Ok(0) => break Ok(false),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => break Err(e),
        }
        let mut at = 0;
        loop {
            match codec::next_frame(&buf[at..], cfg.max_message_size) {
                Frame::Incomplete => break,
                Frame::Garbled { skip } => {
                    at += skip;
                    match &mut session {
                        None => break 'conn Ok(false),
                        Some((s, _)) => s.on_garbled(app, &mut actions),
                    }
                }
                Frame::Message { len } => {
                    let frame = &buf[at..at + len];
                    at += len;
                    if session.is_none() {
                        let Some(new) = open_session(frame, shared)? else {
                            break 'conn Ok(false);
                        };
                        session = Some(new);
                    }
                    if let Some((s, _)) = &mut session {
                        s.on_frame(frame, now_ms(), app, &mut actions);
                    }
                }
            }
            if run(&mut stream, &mut actions)? {
                break 'conn Ok(true);
            }
        }
        buf.drain(..at);
        match &mut session {
            Some((s, _)) => s.on_timer(now_ms(), app, &mut actions),
            None if started.elapsed() > Duration::from_secs(30) => break Ok(false),
            None => {}
        }
        if run(&mut stream, &mut actions)? {
            break Ok(true);
        }
    };
    if let Some((s, _)) = &mut session {
        s.on_disconnected(app);
    }
    // Release the session before lingering, so the peer can log on again at once.
    drop(session);
    match result {
        Ok(true) => graceful_close(stream, cfg.logout_timeout),
        Ok(false) => {
            let _ = stream.shutdown(Shutdown::Both);
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Execute actions; `Ok(true)` when the connection must close.
fn run(stream: &mut TcpStream, actions: &mut Vec<Action>) -> io::Result<bool> {
    let mut close = false;
    for a in actions.drain(..) {
        match a {
            Action::Send(bytes) if !close => stream.write_all(&bytes)?,
            Action::Send(_) => {}
            Action::Disconnect => close = true,
        }
    }
    Ok(close)
}

/// Identify the session of a first frame and claim it; `None` means close silently.
fn open_session<'a>(frame: &[u8], shared: &'a Shared) -> io::Result<Option<(Session, Claim<'a>)>> {
    let Ok(fields) = codec::parse(frame) else {
        return Ok(None);
    };
    let get = |t: u32| fields.iter().find(|f| f.tag == t).map(|f| f.value);
    let Some(cfg) = shared.config.sessions.iter().find(|c| {
        get(56) == Some(c.id.sender_comp_id.as_bytes())
            && get(49) == Some(c.id.target_comp_id.as_bytes())
    }) else {
        return Ok(None);
    };
    {
        let mut active = shared
            .active
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        if !active.insert(cfg.id.clone()) {
            return Ok(None);
        }
    }
    let claim = Claim {
        shared,
        id: cfg.id.clone(),
    };
    let store = match &shared.config.store_dir {
        Some(dir) => Store::open(dir.join(format!(
            "{}-{}.store",
            cfg.id.sender_comp_id, cfg.id.target_comp_id
        )))?,
        None => Store::in_memory(),
    };
    Ok(Some((Session::new(cfg.clone(), store, now_ms()), claim)))
}
