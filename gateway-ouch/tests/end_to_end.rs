//! End to end over real loopback sockets: an in-process pipeline (temp
//! dir), the OUCH server, and a minimal SoupBinTCP client written against
//! the codecs. Covers login rules, enter/fill/replace/cancel, gateway and
//! engine rejects, replay by requested sequence number with no gap and no
//! duplicate (also across a gateway restart), cancel-on-disconnect,
//! heartbeats and the idle timeout, and the day rollover at the engine's
//! end of day (also across a gateway restart).

use brokerx_engine::pipeline::{Pipeline, PipelineConfig, WaitStrategy};
use brokerx_engine::{
    AccountId, Command, EngineConfig, Limits, SelfTradePrevention, SymbolId, SymbolSpec,
};
use brokerx_gateway_ouch::book::NS_PER_DAY;
use brokerx_gateway_ouch::codec::{
    alpha, CancelOrder, EnterOrder, Inbound, Outbound, ReplaceOrder, Token, TIF_IOC_SECONDS,
    TIF_MARKET_HOURS, TIF_SYSTEM_HOURS,
};
use brokerx_gateway_ouch::{OuchConfig, OuchServer, OuchUser};
use brokerx_soupbin::{Decoder, LoginRejectReason, Packet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PRICE: u32 = 1_000_000; // $100.0000
const TICK: u64 = 100;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brokerx-ouch-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start_pipeline(dir: &Path) -> Arc<Pipeline> {
    let mut config = PipelineConfig::new(dir.join("engine"));
    config.segment_bytes = 1 << 20;
    config.durable = false;
    config.wait = WaitStrategy::Park {
        spins: 100,
        timeout: Duration::from_millis(5),
    };
    let pipeline = Pipeline::start(config, EngineConfig::default()).unwrap();
    let mut commands = vec![Command::AddSymbol {
        symbol: SymbolId(0),
        spec: SymbolSpec {
            tick_size: TICK,
            lot_size: 1,
            reference_price: u64::from(PRICE),
            band_bps: 2_000,
            maker_fee_per_share: 0,
            taker_fee_per_share: 0,
        },
    }];
    // Alice (1) sells, Bob (2) buys with cash for about 150 shares.
    for (account, cash, shares) in [(1, 0u64, 1_000u64), (2, 150 * u64::from(PRICE), 0)] {
        let account = AccountId(account);
        commands.push(Command::CreateAccount {
            account,
            limits: Limits::UNLIMITED,
            self_trade: SelfTradePrevention::CancelNewest,
        });
        if cash > 0 {
            commands.push(Command::DepositCash {
                account,
                amount: cash,
                tag: 0,
            });
        }
        if shares > 0 {
            commands.push(Command::DepositShares {
                account,
                symbol: SymbolId(0),
                qty: shares,
                tag: 0,
            });
        }
    }
    let (submitter, handle) = pipeline.connect(&[], false);
    for command in &commands {
        submitter.submit(*command).unwrap();
        let output = loop {
            let output = handle
                .receiver
                .recv_timeout(Duration::from_secs(10))
                .unwrap();
            if output.last {
                break output;
            }
        };
        assert!(
            !matches!(output.event, brokerx_engine::Event::Rejected { .. }),
            "{command:?}: {output:?}"
        );
    }
    pipeline.disconnect(handle.id);
    Arc::new(pipeline)
}

fn ouch_config(dir: &Path) -> OuchConfig {
    let mut config = OuchConfig::new(dir.join("ouch"));
    config.users = vec![
        OuchUser {
            username: "ALICE".into(),
            password: "alicepw".into(),
            account: AccountId(1),
            cancel_on_disconnect: false,
        },
        OuchUser {
            username: "BOB".into(),
            password: "bobpw".into(),
            account: AccountId(2),
            cancel_on_disconnect: true,
        },
    ];
    config.symbols = vec![("AAPL".into(), SymbolId(0))];
    config
}

fn start_server(pipeline: &Arc<Pipeline>, config: OuchConfig) -> OuchServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    OuchServer::start(listener, pipeline.clone(), config).unwrap()
}

/// A bare SoupBinTCP client.
struct Client {
    stream: TcpStream,
    decoder: Decoder,
    /// Sequence number of the next Sequenced Data packet.
    next_sequence: u64,
    /// Every sequenced message received, with its sequence number.
    received: Vec<(u64, Vec<u8>)>,
    heartbeats: u64,
    /// Session name from Login Accepted.
    session: [u8; 10],
}

enum Received {
    Packet(Packet),
    Closed,
    TimedOut,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        Client {
            stream,
            decoder: Decoder::new(4096),
            next_sequence: 0,
            received: Vec::new(),
            heartbeats: 0,
            session: [b' '; 10],
        }
    }

    fn send(&mut self, packet: &Packet) {
        self.stream.write_all(&packet.to_bytes().unwrap()).unwrap();
    }

    fn receive(&mut self, timeout: Duration) -> Received {
        let deadline = Instant::now() + timeout;
        let mut buffer = [0u8; 4096];
        loop {
            if let Some(packet) = self.decoder.next_packet().unwrap() {
                return Received::Packet(packet);
            }
            if Instant::now() >= deadline {
                return Received::TimedOut;
            }
            match self.stream.read(&mut buffer) {
                Ok(0) => return Received::Closed,
                Ok(n) => self.decoder.feed(&buffer[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Received::Closed,
            }
        }
    }

    fn login(
        addr: SocketAddr,
        user: &str,
        password: &str,
        sequence: u64,
    ) -> Result<Client, LoginRejectReason> {
        Client::login_session(addr, user, password, "", sequence)
    }

    fn login_session(
        addr: SocketAddr,
        user: &str,
        password: &str,
        session: &str,
        sequence: u64,
    ) -> Result<Client, LoginRejectReason> {
        let mut client = Client::connect(addr);
        client.send(&Packet::LoginRequest {
            username: alpha(user.as_bytes()),
            password: alpha(password.as_bytes()),
            requested_session: alpha(session.as_bytes()),
            requested_sequence_number: sequence,
        });
        match client.receive(Duration::from_secs(5)) {
            Received::Packet(Packet::LoginAccepted {
                sequence_number,
                session,
            }) => {
                client.next_sequence = sequence_number;
                client.session = session;
                Ok(client)
            }
            Received::Packet(Packet::LoginRejected(reason)) => Err(reason),
            _ => panic!("no login answer"),
        }
    }

    /// Logs in, retrying while the previous connection of the user is
    /// still being torn down.
    fn login_retry(addr: SocketAddr, user: &str, password: &str, sequence: u64) -> Client {
        Client::login_session_retry(addr, user, password, "", sequence)
    }

    fn login_session_retry(
        addr: SocketAddr,
        user: &str,
        password: &str,
        session: &str,
        sequence: u64,
    ) -> Client {
        for _ in 0..100 {
            match Client::login_session(addr, user, password, session, sequence) {
                Ok(client) => return client,
                Err(LoginRejectReason::SessionNotAvailable) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(other) => panic!("login refused: {other:?}"),
            }
        }
        panic!("user never became available");
    }

    /// The next sequenced message (heartbeats skipped).
    fn message(&mut self) -> Outbound {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "no message in time");
            match self.receive(Duration::from_secs(5)) {
                Received::Packet(Packet::SequencedData(bytes)) => {
                    self.received.push((self.next_sequence, bytes.clone()));
                    self.next_sequence += 1;
                    return Outbound::decode(&bytes).unwrap();
                }
                Received::Packet(Packet::ServerHeartbeat) => self.heartbeats += 1,
                Received::Packet(other) => panic!("unexpected {other:?}"),
                Received::Closed => panic!("closed while waiting for a message"),
                Received::TimedOut => {}
            }
        }
    }

    /// Asserts nothing but heartbeats arrives for `wait`.
    fn quiet(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            match self.receive(Duration::from_millis(50)) {
                Received::Packet(Packet::ServerHeartbeat) => self.heartbeats += 1,
                Received::TimedOut => {}
                Received::Packet(other) => panic!("unexpected {other:?}"),
                Received::Closed => panic!("closed"),
            }
        }
    }

    /// Expects End of Session (heartbeats skipped), then the close.
    fn end_of_session(mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "no End of Session in time");
            match self.receive(Duration::from_secs(5)) {
                Received::Packet(Packet::ServerHeartbeat) | Received::TimedOut => {}
                Received::Packet(Packet::EndOfSession) => break,
                Received::Packet(other) => panic!("expected End of Session, got {other:?}"),
                Received::Closed => panic!("closed without End of Session"),
            }
        }
        loop {
            assert!(Instant::now() < deadline, "not closed after End of Session");
            match self.receive(Duration::from_secs(5)) {
                Received::Closed => return,
                Received::TimedOut => {}
                Received::Packet(other) => panic!("after End of Session: {other:?}"),
            }
        }
    }

    fn ouch(&mut self, message: Inbound) {
        self.send(&Packet::UnsequencedData(message.to_bytes()));
    }

    fn logout(mut self) -> Vec<(u64, Vec<u8>)> {
        self.send(&Packet::LogoutRequest);
        std::mem::take(&mut self.received)
    }
}

fn token(text: &str) -> Token {
    alpha(text.as_bytes())
}

fn enter(token_text: &str, side: u8, shares: u32, price: u32, tif_seconds: u32) -> Inbound {
    Inbound::Enter(EnterOrder {
        token: token(token_text),
        side,
        shares,
        stock: alpha(b"AAPL"),
        price,
        tif_seconds,
        firm: alpha(b"BRKX"),
        display: b'Y',
        capacity: b'A',
        intermarket_sweep: b'N',
        minimum_quantity: 0,
        cross_type: b'N',
        customer_type: b'R',
    })
}

fn cancel(token_text: &str, shares: u32) -> Inbound {
    Inbound::Cancel(CancelOrder {
        token: token(token_text),
        shares,
    })
}

fn expect_rejected(client: &mut Client, token_text: &str, reason: u8) {
    match client.message() {
        Outbound::Rejected {
            token: t,
            reason: r,
            timestamp_ns,
        } => {
            assert_eq!(t, token(token_text));
            assert_eq!(r as char, reason as char, "reject reason for {token_text}");
            assert!(timestamp_ns < NS_PER_DAY);
        }
        other => panic!("expected Rejected for {token_text}, got {other:?}"),
    }
}

#[test]
fn trading_day_over_ouch() {
    trading_day_over_ouch_with(true);
}

/// The same with one event thread per user instead of the engine thread.
#[test]
fn trading_day_over_ouch_threaded() {
    trading_day_over_ouch_with(false);
}

fn trading_day_over_ouch_with(inline: bool) {
    let dir = temp_dir(if inline { "day" } else { "day-threaded" });
    let ouch_config = |dir: &Path| OuchConfig {
        inline_events: inline,
        ..ouch_config(dir)
    };
    let pipeline = start_pipeline(&dir);
    let server = start_server(&pipeline, ouch_config(&dir));
    let addr = server.local_addr();

    // Login rules.
    assert_eq!(
        Client::login(addr, "ALICE", "wrong", 1).err(),
        Some(LoginRejectReason::NotAuthorized)
    );
    assert_eq!(
        Client::login(addr, "NOBODY", "x", 1).err(),
        Some(LoginRejectReason::NotAuthorized)
    );
    let mut alice = Client::login(addr, "ALICE", "alicepw", 1).unwrap();
    assert_eq!(alice.next_sequence, 1);
    assert_eq!(
        Client::login(addr, "ALICE", "alicepw", 1).err(),
        Some(LoginRejectReason::SessionNotAvailable)
    );
    assert!(matches!(
        alice.message(),
        Outbound::SystemEvent {
            event_code: b'S',
            ..
        }
    ));

    // Alice rests a sell of 100.
    alice.ouch(enter("A1", b'S', 100, PRICE, TIF_SYSTEM_HOURS));
    let Outbound::Accepted(accepted) = alice.message() else {
        panic!("accepted");
    };
    assert_eq!((accepted.token, accepted.shares), (token("A1"), 100));
    assert_ne!(accepted.order_reference_number, 0);

    // Bob (requested 0: only live messages) takes 30 with an IOC.
    let mut bob = Client::login(addr, "BOB", "bobpw", 0).unwrap();
    assert_eq!(bob.next_sequence, 2, "after Bob's start-of-day event");
    bob.ouch(enter("B1", b'B', 30, PRICE, TIF_IOC_SECONDS));
    assert!(matches!(bob.message(), Outbound::Accepted(a) if a.token == token("B1")));
    match bob.message() {
        Outbound::Executed {
            token: t,
            executed_shares: 30,
            execution_price,
            liquidity_flag: b'R',
            match_number,
            ..
        } => {
            assert_eq!(t, token("B1"));
            assert_eq!(execution_price, PRICE);
            assert_ne!(match_number, 0);
        }
        other => panic!("expected Bob's execution, got {other:?}"),
    }
    // The maker hears of its fill through the account subscription.
    assert!(matches!(
        alice.message(),
        Outbound::Executed {
            executed_shares: 30,
            liquidity_flag: b'A',
            ..
        }
    ));

    // Replace A1 (70 open) by A2: 50 at a higher price.
    alice.ouch(Inbound::Replace(ReplaceOrder {
        existing_token: token("A1"),
        replacement_token: token("A2"),
        shares: 50,
        price: PRICE + 100,
        tif_seconds: TIF_SYSTEM_HOURS,
        display: b'Y',
        intermarket_sweep: b'N',
        minimum_quantity: 0,
    }));
    match alice.message() {
        Outbound::Replaced {
            order,
            previous_token,
        } => {
            assert_eq!(previous_token, token("A1"));
            assert_eq!(
                (order.token, order.shares, order.price),
                (token("A2"), 50, PRICE + 100)
            );
            assert_eq!(
                order.order_reference_number,
                accepted.order_reference_number
            );
        }
        other => panic!("expected Replaced, got {other:?}"),
    }
    // Cancel down to 20: Canceled with a decrement of 30.
    alice.ouch(cancel("A2", 20));
    assert!(matches!(
        alice.message(),
        Outbound::Canceled {
            decrement_shares: 30,
            reason: b'U',
            ..
        }
    ));
    // The old token is dead: cancelling it is silently ignored.
    alice.ouch(cancel("A1", 0));

    // Gateway rejects: never reach the engine.
    alice.ouch(enter("A1", b'S', 10, PRICE, TIF_SYSTEM_HOURS));
    expect_rejected(&mut alice, "A1", b'd');
    alice.ouch(enter("A3", b'S', 0, PRICE, TIF_SYSTEM_HOURS));
    expect_rejected(&mut alice, "A3", b'q');
    alice.ouch(enter("A4", b'X', 10, PRICE, TIF_SYSTEM_HOURS));
    expect_rejected(&mut alice, "A4", b's');
    alice.ouch(enter("A5", b'S', 10, PRICE, 42));
    expect_rejected(&mut alice, "A5", b't');
    alice.send(&Packet::UnsequencedData(b"QA6".to_vec()));
    expect_rejected(&mut alice, "A6", b'm');
    alice.send(&Packet::UnsequencedData(b"OA7  short".to_vec()));
    expect_rejected(&mut alice, "A7  short", b'm');
    // Engine rejects, mapped: price off the tick, and Bob's cash.
    alice.ouch(enter("A8", b'S', 10, PRICE + 50, TIF_SYSTEM_HOURS));
    expect_rejected(&mut alice, "A8", b'X');
    bob.ouch(enter("B2", b'B', 10_000, PRICE, TIF_SYSTEM_HOURS));
    expect_rejected(&mut bob, "B2", b'f');

    let stats = server.stats();
    assert_eq!(stats.duplicate_tokens, 1);
    assert_eq!(stats.invalid_fields, 3);
    assert_eq!(stats.malformed_messages, 2);
    assert_eq!(stats.engine_rejections, 2);
    assert_eq!(stats.ignored_cancels, 1);
    assert_eq!(stats.logins_rejected_not_authorized, 2);
    assert_eq!(stats.logins_rejected_session_unavailable, 1);

    // Alice logs out. While she is away Bob lifts 10 of her A2.
    let alice_first = alice.logout();
    let last_seen = alice_first.last().unwrap().0;
    bob.ouch(enter("B3", b'B', 10, PRICE + 100, TIF_IOC_SECONDS));
    assert!(matches!(bob.message(), Outbound::Accepted(_)));
    assert!(matches!(
        bob.message(),
        Outbound::Executed {
            executed_shares: 10,
            ..
        }
    ));

    // Alice comes back asking from sequence 3: the stored messages 3..,
    // her fill while away, then live ones. No gap, no duplicate.
    let mut alice = Client::login_retry(addr, "ALICE", "alicepw", 3);
    assert_eq!(alice.next_sequence, 3);
    for (sequence, bytes) in alice_first.iter().filter(|(s, _)| *s >= 3) {
        let message = alice.message();
        assert_eq!(alice.received.last().unwrap().0, *sequence);
        assert_eq!(&message.to_bytes(), bytes, "replayed message {sequence}");
    }
    match alice.message() {
        Outbound::Executed {
            token: t,
            executed_shares: 10,
            liquidity_flag: b'A',
            ..
        } => assert_eq!(t, token("A2")),
        other => panic!("expected the fill made while away, got {other:?}"),
    }
    assert_eq!(alice.received.last().unwrap().0, last_seen + 1);
    // Live: cancel the rest (10) of A2.
    alice.ouch(cancel("A2", 0));
    assert!(matches!(
        alice.message(),
        Outbound::Canceled {
            decrement_shares: 10,
            reason: b'U',
            ..
        }
    ));
    alice.quiet(Duration::from_millis(200));

    // Cancel-on-disconnect (Bob opted in): a resting bid is cancelled
    // when his connection drops without a logout.
    bob.ouch(enter("B4", b'B', 5, PRICE - 1_000, TIF_SYSTEM_HOURS));
    assert!(matches!(bob.message(), Outbound::Accepted(_)));
    let bob_next = bob.next_sequence;
    drop(bob);
    let mut bob = Client::login_retry(addr, "BOB", "bobpw", bob_next);
    match bob.message() {
        Outbound::Canceled {
            token: t,
            decrement_shares: 5,
            ..
        } => assert_eq!(t, token("B4")),
        other => panic!("expected cancel-on-disconnect, got {other:?}"),
    }
    assert!(server.stats().cancel_on_disconnect_sent >= 1);
    drop(bob);

    // Gateway restart: same store, same messages, tokens still used.
    let alice_all: Vec<(u64, Vec<u8>)> = alice.logout();
    drop(server);
    let server = start_server(&pipeline, ouch_config(&dir));
    let addr = server.local_addr();
    let mut alice = Client::login(addr, "ALICE", "alicepw", 1).unwrap();
    let total = alice_all.last().unwrap().0;
    for _ in 1..=total {
        alice.message();
    }
    for (sequence, bytes) in &alice_all {
        let replayed = &alice.received[(*sequence - 1) as usize];
        assert_eq!(replayed, &(*sequence, bytes.clone()));
    }
    alice.ouch(enter("A2", b'S', 10, PRICE, TIF_SYSTEM_HOURS));
    expect_rejected(&mut alice, "A2", b'd');
    assert_eq!(alice.received.last().unwrap().0, total + 1);
}

#[test]
fn bad_sessions_are_closed() {
    let dir = temp_dir("sessions");
    let pipeline = start_pipeline(&dir);
    let mut config = ouch_config(&dir);
    config.heartbeat_interval = Duration::from_millis(100);
    config.client_timeout = Duration::from_millis(600);
    let server = start_server(&pipeline, config);
    let addr = server.local_addr();

    // Bytes before a login: closed without an answer.
    let mut early = Client::connect(addr);
    early.send(&Packet::ClientHeartbeat);
    assert!(matches!(
        early.receive(Duration::from_secs(3)),
        Received::Closed
    ));
    // Garbage framing before login: closed.
    let mut garbage = Client::connect(addr);
    garbage.stream.write_all(&[0xff, 0xff, 0xff]).unwrap();
    assert!(matches!(
        garbage.receive(Duration::from_secs(3)),
        Received::Closed
    ));

    // A logged-in client that keeps heartbeating stays; idle ones get
    // server heartbeats.
    let mut alice = Client::login(addr, "ALICE", "alicepw", 0).unwrap();
    for _ in 0..10 {
        alice.send(&Packet::ClientHeartbeat);
        alice.quiet(Duration::from_millis(100));
    }
    assert!(alice.heartbeats >= 5, "heartbeats: {}", alice.heartbeats);
    // A framing error after login (a server-only packet type): closed.
    alice.send(&Packet::EndOfSession);
    let closed = loop {
        match alice.receive(Duration::from_secs(3)) {
            Received::Packet(Packet::ServerHeartbeat) => continue,
            Received::Closed => break true,
            _ => break false,
        }
    };
    assert!(closed);

    // Silent past the timeout: closed.
    let mut bob = Client::login(addr, "BOB", "bobpw", 0).unwrap();
    let started = Instant::now();
    let closed = loop {
        match bob.receive(Duration::from_secs(3)) {
            Received::Packet(Packet::ServerHeartbeat) => continue,
            Received::Closed => break true,
            _ => break false,
        }
    };
    assert!(closed);
    assert!(started.elapsed() >= Duration::from_millis(500));

    let stats = server.stats();
    assert_eq!(stats.closed_before_login, 2);
    assert_eq!(stats.framing_errors, 2);
    assert_eq!(stats.client_timeouts, 1);
    assert!(stats.heartbeats_sent >= 5);
}

#[test]
fn connection_limit_and_sequence_clamp() {
    let dir = temp_dir("limits");
    let pipeline = start_pipeline(&dir);
    let mut config = ouch_config(&dir);
    config.max_connections = 1;
    let server = start_server(&pipeline, config);
    let addr = server.local_addr();

    // A requested sequence past the end starts at the next live message
    // (the store holds only the start-of-day event).
    let mut alice = Client::login(addr, "ALICE", "alicepw", 1_000).unwrap();
    assert_eq!(alice.next_sequence, 2);
    // The one connection slot is taken: another is closed at once.
    let mut other = Client::connect(addr);
    assert!(matches!(
        other.receive(Duration::from_secs(3)),
        Received::Closed
    ));
    assert_eq!(server.stats().connections_refused, 1);
    alice.ouch(enter("A1", b'S', 1, PRICE, TIF_SYSTEM_HOURS));
    assert!(matches!(alice.message(), Outbound::Accepted(_)));
    assert_eq!(alice.received.last().unwrap().0, 2);
}

/// A client that drops its connection and logs straight in again is let in,
/// without retrying, though the server may not have seen the close yet.
/// A second client on a live session is still refused.
#[test]
fn immediate_relogin_after_a_drop_is_accepted() {
    let dir = temp_dir("relogin");
    let pipeline = start_pipeline(&dir);
    let server = start_server(&pipeline, ouch_config(&dir));
    let addr = server.local_addr();
    // Two users at once, so the server's threads compete for the cores and
    // the old connection's teardown is more often still running.
    let relogins = |user: &'static str, password: &'static str| {
        std::thread::spawn(move || {
            let mut client = Client::login(addr, user, password, 0).unwrap();
            for round in 0..100 {
                drop(client);
                client = match Client::login(addr, user, password, 0) {
                    Ok(client) => client,
                    Err(reason) => panic!("{user} round {round}: re-login refused: {reason:?}"),
                };
            }
            client
        })
    };
    let bob = relogins("BOB", "bobpw");
    let mut alice = relogins("ALICE", "alicepw").join().unwrap();
    let _bob = bob.join().unwrap();
    let started = Instant::now();
    assert_eq!(
        Client::login(addr, "ALICE", "alicepw", 0).err(),
        Some(LoginRejectReason::SessionNotAvailable)
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a second connection is refused after a bounded wait"
    );
    alice.ouch(enter("A1", b'S', 1, PRICE, TIF_SYSTEM_HOURS));
    assert!(matches!(alice.message(), Outbound::Accepted(_)));
}

/// Submits `Command::EndOfDay` through a session of its own, as an
/// operator would, and waits for the engine's `DayEnded`.
fn end_of_day(pipeline: &Pipeline) -> u32 {
    let (submitter, handle) = pipeline.connect(&[], false);
    submitter.submit(Command::EndOfDay).unwrap();
    let expired = loop {
        let output = handle
            .receiver
            .recv_timeout(Duration::from_secs(10))
            .unwrap();
        if let brokerx_engine::Event::DayEnded { expired } = output.event {
            break expired;
        }
    };
    pipeline.disconnect(handle.id);
    expired
}

fn expect_accepted(client: &mut Client, token_text: &str) -> u64 {
    match client.message() {
        Outbound::Accepted(a) if a.token == token(token_text) => a.order_reference_number,
        other => panic!("expected Accepted for {token_text}, got {other:?}"),
    }
}

fn expect_canceled(client: &mut Client, token_text: &str, shares: u32, reason: u8) {
    match client.message() {
        Outbound::Canceled {
            token: t,
            decrement_shares,
            reason: r,
            ..
        } => {
            assert_eq!(t, token(token_text));
            assert_eq!(decrement_shares, shares, "canceled shares of {token_text}");
            assert_eq!(r as char, reason as char, "cancel reason of {token_text}");
        }
        other => panic!("expected Canceled for {token_text}, got {other:?}"),
    }
}

fn expect_system_event(client: &mut Client, code: u8) {
    match client.message() {
        Outbound::SystemEvent { event_code, .. } => {
            assert_eq!(event_code as char, code as char)
        }
        other => panic!("expected System Event {}, got {other:?}", code as char),
    }
}

#[test]
fn day_rollover_at_the_engine_end_of_day() {
    day_rollover_at_the_engine_end_of_day_with(true);
}

/// The same with one event thread per user instead of the engine thread.
#[test]
fn day_rollover_at_the_engine_end_of_day_threaded() {
    day_rollover_at_the_engine_end_of_day_with(false);
}

fn day_rollover_at_the_engine_end_of_day_with(inline: bool) {
    let dir = temp_dir(if inline {
        "rollover"
    } else {
        "rollover-threaded"
    });
    let ouch_config = |dir: &Path| OuchConfig {
        inline_events: inline,
        ..ouch_config(dir)
    };
    let pipeline = start_pipeline(&dir);
    let server = start_server(&pipeline, ouch_config(&dir));
    let addr = server.local_addr();

    // Day 1. Alice rests a DAY sell and two GTC sells; an IOC that trades
    // nothing finishes at once.
    let mut alice = Client::login(addr, "ALICE", "alicepw", 1).unwrap();
    assert_eq!(&alice.session, b"BRKX000001");
    expect_system_event(&mut alice, b'S');
    alice.ouch(enter("D1", b'S', 10, PRICE + 1_000, TIF_MARKET_HOURS));
    expect_accepted(&mut alice, "D1");
    alice.ouch(enter("G1", b'S', 10, PRICE + 2_000, TIF_SYSTEM_HOURS));
    expect_accepted(&mut alice, "G1");
    alice.ouch(enter("G2", b'S', 20, PRICE + 2_000, TIF_SYSTEM_HOURS));
    expect_accepted(&mut alice, "G2");
    alice.ouch(enter("I1", b'S', 5, PRICE + 3_000, TIF_IOC_SECONDS));
    expect_accepted(&mut alice, "I1");
    expect_canceled(&mut alice, "I1", 5, b'I');
    // Bob (cancel-on-disconnect) rests a GTC bid and stays connected.
    let mut bob = Client::login(addr, "BOB", "bobpw", 1).unwrap();
    expect_system_event(&mut bob, b'S');
    bob.ouch(enter("B1", b'B', 10, PRICE - 1_000, TIF_SYSTEM_HOURS));
    expect_accepted(&mut bob, "B1");

    // The engine's end of day, from another session: the DAY order
    // expires; each connected client gets the day's last messages, 'E',
    // then End of Session and the close.
    assert_eq!(end_of_day(&pipeline), 1);
    expect_canceled(&mut alice, "D1", 10, b'T');
    expect_system_event(&mut alice, b'E');
    let alice_day_1 = alice.received.clone();
    alice.end_of_session();
    expect_system_event(&mut bob, b'E');
    bob.end_of_session();
    let ouch_dir = dir.join("ouch");
    for user in ["ALICE", "BOB"] {
        assert!(ouch_dir.join(format!("{user}.day-1.msgs")).exists());
        assert!(ouch_dir.join(format!("{user}.msgs")).exists());
    }
    let stats = server.stats();
    assert_eq!(stats.days_closed, 2);
    assert_eq!(
        stats.cancel_on_disconnect_sent, 0,
        "End of Session is no disconnect"
    );

    // Day 2: a new session whose sequence 1 is the start of day; day 1's
    // session is gone.
    let alice = Client::login_session_retry(addr, "ALICE", "alicepw", "BRKX000002", 1);
    assert_eq!((&alice.session, alice.next_sequence), (b"BRKX000002", 1));
    alice.logout();
    assert_eq!(
        Client::login_session(addr, "ALICE", "alicepw", "BRKX000003", 1).err(),
        Some(LoginRejectReason::SessionNotAvailable)
    );
    assert_eq!(
        Client::login_session(addr, "ALICE", "alicepw", "BRKX000001", 1).err(),
        Some(LoginRejectReason::SessionNotAvailable)
    );
    let mut alice = Client::login_retry(addr, "ALICE", "alicepw", 1);
    assert_eq!((&alice.session, alice.next_sequence), (b"BRKX000002", 1));
    expect_system_event(&mut alice, b'S');
    // The expired DAY order's token is free again; a live GTC order's
    // token is still taken, and still cancels its order.
    alice.ouch(enter("D1", b'S', 7, PRICE + 1_000, TIF_MARKET_HOURS));
    expect_accepted(&mut alice, "D1");
    alice.ouch(enter("G1", b'S', 10, PRICE, TIF_SYSTEM_HOURS));
    expect_rejected(&mut alice, "G1", b'd');
    alice.ouch(cancel("G1", 0));
    expect_canceled(&mut alice, "G1", 10, b'U');
    // Bob's bid survived the day's End of Session.
    let mut bob = Client::login_retry(addr, "BOB", "bobpw", 1);
    assert_eq!(&bob.session, b"BRKX000002");
    expect_system_event(&mut bob, b'S');
    bob.quiet(Duration::from_millis(200));
    bob.ouch(cancel("B1", 0));
    expect_canceled(&mut bob, "B1", 10, b'U');
    drop(bob);

    // Gateway restart in the middle of day 2: same day, same session,
    // same token rules.
    let alice_day_2 = alice.logout();
    drop(server);
    let server = start_server(&pipeline, ouch_config(&dir));
    let addr = server.local_addr();
    let mut alice = Client::login(addr, "ALICE", "alicepw", 1).unwrap();
    assert_eq!(&alice.session, b"BRKX000002");
    for _ in &alice_day_2 {
        alice.message();
    }
    assert_eq!(alice.received, alice_day_2, "day 2 replayed from 1");
    alice.ouch(enter("G2", b'S', 5, PRICE, TIF_SYSTEM_HOURS));
    expect_rejected(&mut alice, "G2", b'd');
    alice.ouch(enter("D1", b'S', 5, PRICE, TIF_SYSTEM_HOURS));
    expect_rejected(&mut alice, "D1", b'd');
    alice.ouch(enter("G1", b'S', 5, PRICE, TIF_SYSTEM_HOURS));
    expect_rejected(&mut alice, "G1", b'd');
    alice.ouch(enter("I1", b'S', 5, PRICE + 3_000, TIF_SYSTEM_HOURS));
    expect_accepted(&mut alice, "I1");
    alice.ouch(cancel("G2", 15));
    expect_canceled(&mut alice, "G2", 5, b'U');

    // The restarted gateway closes day 2 too; day 1's archive is intact.
    assert_eq!(end_of_day(&pipeline), 1);
    expect_canceled(&mut alice, "D1", 7, b'T');
    expect_system_event(&mut alice, b'E');
    alice.end_of_session();
    let mut alice = Client::login_retry(addr, "ALICE", "alicepw", 1);
    assert_eq!(&alice.session, b"BRKX000003");
    expect_system_event(&mut alice, b'S');
    alice.ouch(cancel("G2", 0));
    expect_canceled(&mut alice, "G2", 15, b'U');
    alice.ouch(cancel("I1", 0));
    expect_canceled(&mut alice, "I1", 5, b'U');
    let day_1 =
        brokerx_gateway_ouch::store::MessageStore::open(&ouch_dir.join("ALICE.day-1.msgs"), false)
            .unwrap();
    let stored: Vec<Vec<u8>> = day_1.messages().map(<[u8]>::to_vec).collect();
    let sent: Vec<Vec<u8>> = alice_day_1.into_iter().map(|(_, bytes)| bytes).collect();
    assert_eq!(stored, sent, "day 1 archive = what day 1's session sent");
    assert!(ouch_dir.join("ALICE.day-2.msgs").exists());
    drop(alice);
    drop(server);
}

/// Starts a pipeline on an existing data directory (no setup commands).
fn reopen_pipeline(dir: &Path) -> Arc<Pipeline> {
    let mut config = PipelineConfig::new(dir.join("engine"));
    config.segment_bytes = 1 << 20;
    config.durable = false;
    config.wait = WaitStrategy::Park {
        spins: 100,
        timeout: Duration::from_millis(5),
    };
    Arc::new(Pipeline::start(config, EngineConfig::default()).unwrap())
}

/// Rewrites a store file as a crash would have left it if the user's event
/// thread had stored nothing after its `keep`-th message: later messages
/// and marks are dropped, intents (written by the session reader before
/// each command went to the engine) stay; then, as a power loss could
/// leave a write, the next message without its mark and a torn half
/// record.
fn cut_store(path: &Path, keep: usize) {
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    let mut torn: Option<Vec<u8>> = None;
    let mut messages = 0;
    let mut at = 0;
    while at < bytes.len() {
        let word = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
        let length = usize::from(word & 0x7fff);
        let record = &bytes[at..at + 2 + length];
        let meta = word & 0x8000 != 0;
        if !meta {
            messages += 1;
        }
        // A mark is written with the messages before it: it stays with
        // them.
        let kept = messages <= keep || (meta && matches!(record[2], b'I' | b'V' | b'D'));
        if kept {
            out.extend_from_slice(record);
        } else if !meta && torn.is_none() {
            torn = Some(record.to_vec());
        }
        at += 2 + length;
    }
    assert!(messages > keep, "nothing to cut");
    out.extend_from_slice(&torn.unwrap());
    out.extend_from_slice(&[0, 45, b'E', 1, 2]);
    std::fs::write(path, out).unwrap();
}

fn stored_messages(path: &Path) -> Vec<Vec<u8>> {
    brokerx_gateway_ouch::store::MessageStore::open(path, false)
        .unwrap()
        .messages()
        .map(<[u8]>::to_vec)
        .collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The outputs of journaled commands that a crash kept out of the stores
/// are rebuilt from the journal at start: a client logging in from 1 gets
/// byte for byte what was sent before, then what it never got.
fn regenerates_the_missing_tail(with_end_of_day: bool) {
    let dir = temp_dir(if with_end_of_day {
        "regen-eod"
    } else {
        "regen"
    });
    let ouch_dir = dir.join("ouch");
    let pipeline = start_pipeline(&dir);
    // One run with the stores fsynced (intents before the engine, messages
    // before the clients), one without: the same files either way.
    let mut config = ouch_config(&dir);
    config.fsync = !with_end_of_day;
    let server = start_server(&pipeline, config);
    let addr = server.local_addr();
    let mut alice = Client::login(addr, "ALICE", "alicepw", 1).unwrap();
    let mut bob = Client::login(addr, "BOB", "bobpw", 1).unwrap();
    expect_system_event(&mut alice, b'S');
    expect_system_event(&mut bob, b'S');
    alice.ouch(enter("A1", b'S', 10, PRICE, TIF_SYSTEM_HOURS));
    expect_accepted(&mut alice, "A1");
    alice.ouch(enter("A2", b'S', 10, PRICE + 100, TIF_SYSTEM_HOURS));
    expect_accepted(&mut alice, "A2");
    alice.ouch(enter("D1", b'S', 7, PRICE + 3_000, TIF_MARKET_HOURS));
    expect_accepted(&mut alice, "D1");
    bob.ouch(enter("BAD", b'X', 1, PRICE, TIF_SYSTEM_HOURS));
    expect_rejected(&mut bob, "BAD", b's');
    bob.ouch(enter("B1", b'B', 15, PRICE + 100, TIF_MARKET_HOURS));
    expect_accepted(&mut bob, "B1");
    for _ in 0..2 {
        assert!(matches!(alice.message(), Outbound::Executed { .. }));
        assert!(matches!(bob.message(), Outbound::Executed { .. }));
    }
    alice.ouch(cancel("A2", 2));
    expect_canceled(&mut alice, "A2", 3, b'U');
    bob.ouch(enter("B2", b'B', 100, PRICE - 100_000, TIF_SYSTEM_HOURS));
    expect_accepted(&mut bob, "B2");
    if with_end_of_day {
        assert_eq!(end_of_day(&pipeline), 1);
        expect_canceled(&mut alice, "D1", 7, b'T');
        expect_system_event(&mut alice, b'E');
        alice.end_of_session();
        expect_system_event(&mut bob, b'E');
        bob.end_of_session();
    } else {
        drop(alice);
        // Bob cancels on disconnect: wait for it, so the stores are what
        // the clients saw.
        let next = bob.next_sequence;
        bob.logout();
        let mut bob = Client::login_retry(addr, "BOB", "bobpw", next);
        expect_canceled(&mut bob, "B2", 100, b'U');
    }
    server.shutdown();
    drop(server);
    pipeline.shutdown().unwrap().unwrap();
    drop(pipeline);

    // What the stores held (what the clients were sent), then the crash.
    let mut before = Vec::new();
    for (user, keep) in [("ALICE", 3), ("BOB", 2)] {
        let live = brokerx_gateway_ouch::day::live_path(&ouch_dir, user);
        if with_end_of_day {
            let archive = brokerx_gateway_ouch::day::archive_path(&ouch_dir, user, 1);
            before.push((stored_messages(&archive), stored_messages(&live), user));
            // The day had not closed on disk either.
            std::fs::rename(&archive, &live).unwrap();
            std::fs::remove_file(brokerx_gateway_ouch::day::open_orders_path(
                &ouch_dir, user, 2,
            ))
            .unwrap();
        } else {
            before.push((stored_messages(&live), Vec::new(), user));
        }
        cut_store(&live, keep);
        assert_eq!(stored_messages(&live).len(), keep, "the torn write is cut");
    }

    let pipeline = reopen_pipeline(&dir);
    let server = start_server(&pipeline, ouch_config(&dir));
    let addr = server.local_addr();
    let stats = server.stats();
    assert!(stats.outputs_regenerated >= 8, "{stats:?}");
    assert_eq!(stats.regeneration_orphans, 0, "{stats:?}");
    if with_end_of_day {
        wait_for("both days closed again", || server.stats().days_closed == 2);
    }
    for (day_1, day_2, user) in before {
        let password = if user == "ALICE" { "alicepw" } else { "bobpw" };
        let mut client = Client::login_retry(addr, user, password, 1);
        if with_end_of_day {
            let archive = brokerx_gateway_ouch::day::archive_path(&ouch_dir, user, 1);
            assert_eq!(stored_messages(&archive), day_1, "{user} day 1");
            assert_eq!(&client.session, b"BRKX000002");
            for _ in 0..day_2.len() {
                client.message();
            }
            let got: Vec<Vec<u8>> = client.received.iter().map(|(_, b)| b.clone()).collect();
            assert_eq!(got, day_2, "{user} day 2");
        } else {
            for _ in 0..day_1.len() {
                client.message();
            }
            let sequences: Vec<u64> = client.received.iter().map(|(n, _)| *n).collect();
            assert_eq!(sequences, (1..=day_1.len() as u64).collect::<Vec<_>>());
            let got: Vec<Vec<u8>> = client.received.iter().map(|(_, b)| b.clone()).collect();
            assert_eq!(got, day_1, "{user}: same bytes, no gap, no duplicate");
        }
        client.quiet(Duration::from_millis(200));
    }
    // The rebuilt token state is whole: the open orders cancel, their
    // tokens are still duplicates. (Bob's B2 went with his cancel on
    // disconnect when the comparing client left.)
    let mut alice = Client::login_retry(addr, "ALICE", "alicepw", 0);
    alice.ouch(cancel("A2", 0));
    expect_canceled(&mut alice, "A2", 2, b'U');
    let mut bob = Client::login_retry(addr, "BOB", "bobpw", 0);
    bob.ouch(enter("B2", b'B', 1, PRICE, TIF_SYSTEM_HOURS));
    expect_rejected(&mut bob, "B2", b'd');
    if !with_end_of_day {
        alice.ouch(cancel("D1", 0));
        expect_canceled(&mut alice, "D1", 7, b'U');
    }
    drop(server);
}

#[test]
fn missing_store_tail_is_regenerated_from_the_journal() {
    regenerates_the_missing_tail(false);
}

#[test]
fn missing_store_tail_across_an_end_of_day_is_regenerated() {
    regenerates_the_missing_tail(true);
}
