//! The FIX gateway in front of the real engine pipeline (journal included),
//! driven over loopback sockets by a small raw FIX client: orders that rest,
//! fill and partially fill between two sessions, replace, cancel, mass
//! cancel, order status, market data, security list, rejects, credentials,
//! a reconnect with a resend of what was missed, cancel-on-disconnect and a
//! restart of the whole stack in the middle of a session.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brokerx_engine::pipeline::{Pipeline, PipelineConfig};
use brokerx_engine::{
    AccountId, Command, EngineConfig, Event, Limits, SelfTradePrevention, SymbolId, SymbolSpec,
};
use brokerx_gateway_fix::codec;
use brokerx_gateway_fix::dictionary::format_utc_timestamp;
use brokerx_gateway_fix::server::now_ms;
use brokerx_gateway_fix::{
    EngineApp, EngineAppConfig, EngineSession, FixConfig, FixServer, SessionConfig, Sessions,
    SymbolInfo,
};

const ALICE: AccountId = AccountId(1);
const BOB: AccountId = AccountId(2);
const AAPL: SymbolId = SymbolId(0);

struct Stack {
    server: Option<FixServer>,
    app: Arc<EngineApp>,
    pipeline: Arc<Pipeline>,
    addr: SocketAddr,
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
        self.app.shutdown();
        let _ = self.pipeline.shutdown();
    }
}

fn tmpdir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("brokerx-fix-engine-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn start(dir: &Path) -> Stack {
    start_cfg(dir, |_| {})
}

fn start_cfg(dir: &Path, tweak: impl FnOnce(&mut FixConfig)) -> Stack {
    start_full(dir, tweak, None, |_| {})
}

fn start_full(
    dir: &Path,
    tweak: impl FnOnce(&mut FixConfig),
    drop_outputs: Option<Arc<AtomicBool>>,
    pipeline_tweak: impl FnOnce(&mut PipelineConfig),
) -> Stack {
    let mut pc = PipelineConfig::new(dir.join("data"));
    pc.durable = false;
    pipeline_tweak(&mut pc);
    let pipeline = Arc::new(Pipeline::start(pc, EngineConfig::default()).expect("pipeline"));
    let mut fix = FixConfig::conformance(Some(dir.join("fix")));
    fix.sessions.clear();
    let mut bound = Vec::new();
    for (theirs, user, account, cod) in
        [("ALICE", "alice", ALICE, false), ("BOB", "bob", BOB, true)]
    {
        let mut s = SessionConfig::new("BRKX", theirs);
        s.reset_on_logon = false;
        s.credentials = Some((user.into(), format!("{user}-pw")));
        bound.push(EngineSession {
            id: s.id.clone(),
            account,
            cancel_on_disconnect: cod,
        });
        fix.sessions.push(s);
    }
    tweak(&mut fix);
    let sessions = Sessions::open(&fix).expect("stores");
    let app = EngineApp::start(
        pipeline.clone(),
        sessions.clone(),
        EngineAppConfig {
            sessions: bound,
            symbols: vec![SymbolInfo {
                id: AAPL,
                name: "AAPL".into(),
                tick: 100,
                lot: 1,
            }],
            dir: dir.join("fix/orders"),
            data_dir: dir.join("data"),
            engine_config: EngineConfig::default(),
            drop_outputs,
        },
    )
    .expect("app");
    if pipeline.recovered.last_seq == 0 {
        bootstrap(&pipeline);
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = FixServer::start_with(listener, fix, sessions, app.clone()).unwrap();
    Stack {
        server: Some(server),
        app,
        pipeline,
        addr,
    }
}

fn bootstrap(pipeline: &Pipeline) {
    let (submitter, handle) = pipeline.connect(&[], false);
    let mut commands = vec![Command::AddSymbol {
        symbol: AAPL,
        spec: SymbolSpec {
            tick_size: 100,
            lot_size: 1,
            reference_price: 1_900_000,
            band_bps: 1000,
            maker_fee_per_share: 0,
            taker_fee_per_share: 0,
        },
    }];
    for account in [ALICE, BOB] {
        commands.push(Command::CreateAccount {
            account,
            limits: Limits {
                max_order_qty: 1_000_000,
                max_order_notional: u64::MAX,
                max_open_orders: 1000,
            },
            self_trade: SelfTradePrevention::CancelNewest,
        });
        commands.push(Command::DepositCash {
            account,
            amount: 10_000_000_000_000,
            tag: 0,
        });
        commands.push(Command::DepositShares {
            account,
            symbol: AAPL,
            qty: 100_000,
            tag: 0,
        });
    }
    for c in &commands {
        submitter.submit(*c).unwrap();
    }
    let mut done = 0;
    while done < commands.len() {
        let out = handle
            .receiver
            .recv_timeout(Duration::from_secs(10))
            .unwrap();
        assert!(!matches!(out.event, Event::Rejected { .. }), "{out:?}");
        if out.last {
            done += 1;
        }
    }
    pipeline.disconnect(handle.id);
}

/// A raw FIX client: encodes what we tell it, decodes into tag maps.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    comp: String,
    seq: u64,
    /// The next MsgSeqNum we expect from the server.
    expected: u64,
}

type Msg = HashMap<u32, String>;

fn decode(frame: &[u8]) -> Msg {
    codec::parse(frame)
        .unwrap()
        .iter()
        .map(|f| (f.tag, String::from_utf8_lossy(f.value).into_owned()))
        .collect()
}

impl Client {
    fn connect(addr: SocketAddr, comp: &str) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
            comp: comp.into(),
            seq: 1,
            expected: 1,
        }
    }

    fn send(&mut self, msg_type: &str, extra: &[(u32, &str)]) {
        let seq = self.seq.to_string();
        self.seq += 1;
        let ts = format_utc_timestamp(now_ms());
        let mut f: Vec<(u32, &[u8])> = vec![
            (34, seq.as_bytes()),
            (49, self.comp.as_bytes()),
            (52, ts.as_bytes()),
            (56, b"BRKX"),
        ];
        f.extend(extra.iter().map(|(t, v)| (*t, v.as_bytes())));
        let bytes = codec::encode(b"FIX.4.4", msg_type.as_bytes(), &[], &f);
        self.stream.write_all(&bytes).unwrap();
    }

    fn logon(&mut self, password: &str) -> Msg {
        let user = self.comp.to_ascii_lowercase();
        self.send(
            "A",
            &[(98, "0"), (108, "30"), (553, &user), (554, password)],
        );
        let m = self.recv().expect("logon answer");
        assert_eq!(m[&35], "A", "{m:?}");
        m
    }

    /// Next message, or `None` on EOF or after 5 s.
    fn recv(&mut self) -> Option<Msg> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut chunk = [0u8; 8192];
        loop {
            if let codec::Frame::Message { len } = codec::next_frame(&self.buf, 1 << 20) {
                let m = decode(&self.buf[..len]);
                self.buf.drain(..len);
                return Some(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Skips heartbeats and test requests (answering the latter).
    fn next_app(&mut self) -> Msg {
        loop {
            let m = self.recv().expect("a message");
            match m[&35].as_str() {
                "0" => continue,
                "1" => {
                    let id = m[&112].clone();
                    self.send("0", &[(112, &id)]);
                }
                _ => return m,
            }
        }
    }

    fn order(&mut self, cl: &str, side: &str, qty: &str, price: &str, tif: &str) {
        let now = format_utc_timestamp(now_ms());
        self.send(
            "D",
            &[
                (11, cl),
                (21, "1"),
                (55, "AAPL"),
                (54, side),
                (60, &now),
                (38, qty),
                (40, "2"),
                (44, price),
                (59, tif),
            ],
        );
    }
}

impl Client {
    /// OrderCancelReplaceRequest of a limit buy in AAPL.
    fn replace_buy(&mut self, cl: &str, orig: &str, qty: &str, price: &str, tif: &str) {
        let now = format_utc_timestamp(now_ms());
        self.send(
            "G",
            &[
                (11, cl),
                (41, orig),
                (21, "1"),
                (55, "AAPL"),
                (54, "1"),
                (60, &now),
                (38, qty),
                (40, "2"),
                (44, price),
                (59, tif),
            ],
        );
    }
}

fn assert_fields(m: &Msg, want: &[(u32, &str)]) {
    for (tag, value) in want {
        assert_eq!(
            m.get(tag).map(String::as_str),
            Some(*value),
            "tag {tag} in {m:?}"
        );
    }
}

#[test]
fn wrong_password_is_logged_out_and_nothing_else() {
    let dir = tmpdir("password");
    let stack = start(&dir);
    let mut c = Client::connect(stack.addr, "ALICE");
    c.send(
        "A",
        &[(98, "0"), (108, "30"), (553, "alice"), (554, "guess")],
    );
    let m = c.recv().expect("logout");
    assert_fields(&m, &[(35, "5"), (58, "Invalid username or password")]);
    assert!(c.recv().is_none(), "connection closed");
    // The right password works afterwards, from sequence 1.
    let mut c = Client::connect(stack.addr, "ALICE");
    let m = c.logon("alice-pw");
    assert_eq!(m[&34], "1");
}

#[test]
fn orders_fill_replace_cancel_and_status_between_two_sessions() {
    let dir = tmpdir("flow");
    let stack = start(&dir);
    let mut alice = Client::connect(stack.addr, "ALICE");
    alice.logon("alice-pw");
    let mut bob = Client::connect(stack.addr, "BOB");
    bob.logon("bob-pw");

    alice.order("A1", "2", "100", "190.00", "0");
    let new = alice.next_app();
    assert_fields(
        &new,
        &[
            (35, "8"),
            (150, "0"),
            (39, "0"),
            (11, "A1"),
            (151, "100"),
            (14, "0"),
        ],
    );
    let order_id = new[&37].clone();

    bob.order("B1", "1", "60", "190.5", "3");
    let m = bob.next_app();
    assert_fields(&m, &[(35, "8"), (150, "0"), (11, "B1")]);
    let m = bob.next_app();
    assert_fields(
        &m,
        &[
            (150, "F"),
            (39, "2"),
            (32, "60"),
            (31, "190"),
            (14, "60"),
            (151, "0"),
            (6, "190"),
        ],
    );
    let m = alice.next_app();
    assert_fields(
        &m,
        &[
            (150, "F"),
            (39, "1"),
            (32, "60"),
            (31, "190"),
            (14, "60"),
            (151, "40"),
            (37, &order_id),
        ],
    );

    // Replace: total 80 (20 left), new price; the chain moves to A2.
    let now = format_utc_timestamp(now_ms());
    alice.send(
        "G",
        &[
            (11, "A2"),
            (41, "A1"),
            (21, "1"),
            (55, "AAPL"),
            (54, "2"),
            (60, &now),
            (38, "80"),
            (40, "2"),
            (44, "191.25"),
            (59, "0"),
        ],
    );
    let m = alice.next_app();
    assert_fields(
        &m,
        &[
            (150, "5"),
            (39, "1"),
            (11, "A2"),
            (41, "A1"),
            (38, "80"),
            (151, "20"),
            (14, "60"),
            (44, "191.25"),
        ],
    );

    // Status by the new ClOrdID.
    alice.send("H", &[(11, "A2"), (55, "AAPL"), (54, "2")]);
    let m = alice.next_app();
    assert_fields(&m, &[(150, "I"), (39, "1"), (151, "20"), (37, &order_id)]);

    // A duplicate ClOrdID is refused without reaching the engine.
    alice.order("A1", "2", "5", "190.00", "0");
    let m = alice.next_app();
    assert_fields(&m, &[(150, "8"), (39, "8"), (103, "6")]);
    // The same order resent with PossDupFlag or PossResend (a peer not sure
    // it was sent before) is ignored: processed already, no reject.
    let now = format_utc_timestamp(now_ms());
    for flag in [(43, "Y"), (97, "Y")] {
        alice.send(
            "D",
            &[
                flag,
                (122, &now),
                (11, "A1"),
                (21, "1"),
                (55, "AAPL"),
                (54, "2"),
                (60, &now),
                (38, "5"),
                (40, "2"),
                (44, "190.00"),
            ],
        );
    }
    alice.send("1", &[(112, "after-resends")]);
    let m = alice.recv().expect("the next message");
    assert_fields(&m, &[(35, "0"), (112, "after-resends")]);

    // Unknown symbol.
    let now = format_utc_timestamp(now_ms());
    alice.send(
        "D",
        &[
            (11, "A9"),
            (21, "1"),
            (55, "NOPE"),
            (54, "1"),
            (60, &now),
            (38, "1"),
            (40, "2"),
            (44, "1"),
            (59, "0"),
        ],
    );
    let m = alice.next_app();
    assert_fields(&m, &[(150, "8"), (103, "1"), (11, "A9")]);

    // An engine reject (price outside the band) carries its code.
    alice.order("A10", "2", "10", "500", "0");
    let m = alice.next_app();
    assert_fields(&m, &[(150, "8"), (39, "8"), (11, "A10")]);
    assert!(m[&58].contains("205"), "{m:?}");

    // Cancel with a new ClOrdID.
    let now = format_utc_timestamp(now_ms());
    alice.send(
        "F",
        &[(11, "A3"), (41, "A2"), (55, "AAPL"), (54, "2"), (60, &now)],
    );
    let m = alice.next_app();
    assert_fields(
        &m,
        &[
            (150, "4"),
            (39, "4"),
            (11, "A3"),
            (41, "A2"),
            (151, "0"),
            (14, "60"),
        ],
    );

    // Cancelling it again is too late.
    let now = format_utc_timestamp(now_ms());
    alice.send(
        "F",
        &[(11, "A4"), (41, "A3"), (55, "AAPL"), (54, "2"), (60, &now)],
    );
    let m = alice.next_app();
    assert_fields(&m, &[(35, "9"), (434, "1"), (102, "0")]);

    // Unknown order.
    alice.send(
        "F",
        &[(11, "A5"), (41, "ZZZ"), (55, "AAPL"), (54, "2"), (60, &now)],
    );
    let m = alice.next_app();
    assert_fields(&m, &[(35, "9"), (102, "1")]);

    // Unsupported message type: BusinessMessageReject.
    alice.send("B", &[(148, "hello")]);
    let m = alice.next_app();
    assert_fields(&m, &[(35, "j"), (380, "3"), (372, "B")]);

    // Security list.
    alice.send("x", &[(320, "S1"), (559, "4")]);
    let m = alice.next_app();
    assert_fields(&m, &[(35, "y"), (320, "S1"), (146, "1"), (55, "AAPL")]);
}

#[test]
fn mass_cancel_and_market_data() {
    let dir = tmpdir("md");
    let stack = start(&dir);
    let mut alice = Client::connect(stack.addr, "ALICE");
    alice.logon("alice-pw");
    let mut bob = Client::connect(stack.addr, "BOB");
    bob.logon("bob-pw");

    bob.send(
        "V",
        &[
            (262, "M1"),
            (263, "1"),
            (264, "0"),
            (265, "1"),
            (267, "3"),
            (269, "0"),
            (269, "1"),
            (269, "2"),
            (146, "1"),
            (55, "AAPL"),
        ],
    );
    let w = bob.next_app();
    assert_fields(&w, &[(35, "W"), (262, "M1"), (55, "AAPL"), (268, "0")]);

    alice.order("A1", "1", "10", "189", "1");
    assert_fields(&alice.next_app(), &[(150, "0")]);
    let x = bob.next_app();
    assert_fields(
        &x,
        &[
            (35, "X"),
            (262, "M1"),
            (268, "1"),
            (279, "0"),
            (269, "0"),
            (270, "189"),
            (271, "10"),
        ],
    );
    alice.order("A2", "1", "5", "189", "0");
    assert_fields(&alice.next_app(), &[(150, "0")]);
    let x = bob.next_app();
    assert_fields(
        &x,
        &[
            (279, "1"),
            (269, "0"),
            (270, "189"),
            (271, "15"),
            (346, "2"),
        ],
    );

    // Unknown symbol in a market data request.
    bob.send(
        "V",
        &[
            (262, "M2"),
            (263, "1"),
            (264, "1"),
            (267, "1"),
            (269, "0"),
            (146, "1"),
            (55, "NOPE"),
        ],
    );
    assert_fields(&bob.next_app(), &[(35, "Y"), (262, "M2"), (281, "0")]);

    // Mass cancel of all of Alice's orders: two cancels, then the report.
    let now = format_utc_timestamp(now_ms());
    alice.send("q", &[(11, "MC1"), (530, "7"), (60, &now)]);
    let mut cancelled = 0;
    loop {
        let m = alice.next_app();
        match m[&35].as_str() {
            "8" => {
                assert_fields(&m, &[(150, "4"), (39, "4")]);
                cancelled += 1;
            }
            "r" => {
                assert_fields(&m, &[(11, "MC1"), (531, "7"), (533, "2")]);
                break;
            }
            other => panic!("unexpected {other}: {m:?}"),
        }
    }
    assert_eq!(cancelled, 2);
    let x = bob.next_app();
    assert_fields(&x, &[(35, "X"), (279, "2"), (269, "0"), (270, "189")]);
}

#[test]
fn missed_reports_are_resent_after_reconnect_and_restart() {
    let dir = tmpdir("resend");
    let (order_id, alice_seq) = {
        let stack = start(&dir);
        let mut alice = Client::connect(stack.addr, "ALICE");
        alice.logon("alice-pw");
        alice.order("A1", "2", "50", "190", "1");
        let m = alice.next_app();
        assert_fields(&m, &[(150, "0")]);
        let order_id = m[&37].clone();
        alice.expected = m[&34].parse::<u64>().unwrap() + 1;
        // Alice logs out; Bob trades against her resting order meanwhile.
        alice.send("5", &[]);
        assert_fields(&alice.recv().unwrap(), &[(35, "5")]);
        drop(alice);
        let mut bob = Client::connect(stack.addr, "BOB");
        bob.logon("bob-pw");
        bob.order("B1", "1", "20", "190", "3");
        assert_fields(&bob.next_app(), &[(150, "0")]);
        assert_fields(&bob.next_app(), &[(150, "F")]);
        // Alice comes back without a reset: the fill was stored for her.
        let mut alice = Client::connect(stack.addr, "ALICE");
        alice.seq = 3;
        let logon = alice.logon("alice-pw");
        let their_seq: u64 = logon[&34].parse().unwrap();
        assert!(their_seq > 3, "the fill took a sequence number: {logon:?}");
        alice.send("2", &[(7, "3"), (16, "0")]);
        // 3 was our Logout (admin): gap-filled; 4 is the fill.
        let gap = alice.next_app();
        assert_fields(&gap, &[(35, "4"), (123, "Y"), (34, "3"), (36, "4")]);
        let fill = alice.next_app();
        assert_fields(
            &fill,
            &[
                (35, "8"),
                (150, "F"),
                (43, "Y"),
                (14, "20"),
                (151, "30"),
                (37, &order_id),
            ],
        );
        assert!(fill.contains_key(&122), "OrigSendingTime: {fill:?}");
        (order_id, alice.seq)
        // The whole stack stops here (Drop), Alice never logs out.
    };
    // Restart: sequence numbers and the order's ClOrdID chain survived.
    let stack = start(&dir);
    let mut alice = Client::connect(stack.addr, "ALICE");
    alice.seq = alice_seq;
    alice.logon("alice-pw");
    // The market data books came back too (read from the shutdown
    // snapshot's engine): 30 left on the offer at 190.
    alice.send(
        "V",
        &[
            (262, "MDR"),
            (263, "0"),
            (264, "0"),
            (267, "2"),
            (269, "0"),
            (269, "1"),
            (146, "1"),
            (55, "AAPL"),
        ],
    );
    assert_fields(
        &alice.next_app(),
        &[
            (35, "W"),
            (262, "MDR"),
            (268, "1"),
            (269, "1"),
            (270, "190"),
            (271, "30"),
        ],
    );
    let now = format_utc_timestamp(now_ms());
    alice.send(
        "F",
        &[(11, "A2"), (41, "A1"), (55, "AAPL"), (54, "2"), (60, &now)],
    );
    let m = alice.next_app();
    assert_fields(
        &m,
        &[
            (150, "4"),
            (11, "A2"),
            (41, "A1"),
            (37, &order_id),
            (14, "20"),
        ],
    );
    // ClOrdIDs used before the restart stay used.
    alice.order("A1", "2", "1", "190", "0");
    assert_fields(&alice.next_app(), &[(150, "8"), (103, "6")]);
}

#[test]
fn cancel_on_disconnect_cancels_resting_orders() {
    let dir = tmpdir("cod");
    let stack = start(&dir);
    let mut bob = Client::connect(stack.addr, "BOB");
    bob.logon("bob-pw");
    bob.order("B1", "1", "10", "185", "1");
    let m = bob.next_app();
    assert_fields(&m, &[(150, "0")]);
    let logon_seq: u64 = m[&34].parse().unwrap();
    drop(bob); // no Logout: the connection just drops
               // Reconnect and ask for everything since the order's acknowledgement.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut bob = loop {
        std::thread::sleep(Duration::from_millis(50));
        let mut c = Client::connect(stack.addr, "BOB");
        c.seq = 3;
        c.send(
            "A",
            &[(98, "0"), (108, "30"), (553, "bob"), (554, "bob-pw")],
        );
        if let Some(m) = c.recv() {
            if m[&35] == "A" && m[&34].parse::<u64>().unwrap() > logon_seq + 1 {
                break c;
            }
        }
        assert!(Instant::now() < deadline, "the cancel never happened");
    };
    let from = (logon_seq + 1).to_string();
    bob.send("2", &[(7, &from), (16, "0")]);
    let m = bob.next_app();
    assert_fields(&m, &[(35, "8"), (150, "4"), (11, "B1"), (43, "Y")]);
}

/// Replaces BodyLength (9) and CheckSum (10) of an encoded message.
fn tamper(bytes: &[u8], body_len: Option<&str>, checksum: Option<&str>) -> Vec<u8> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let mut parts: Vec<String> = text.split('\x01').map(str::to_string).collect();
    for p in parts.iter_mut() {
        if let (Some(v), true) = (body_len, p.starts_with("9=")) {
            *p = format!("9={v}");
        }
        if let (Some(v), true) = (checksum, p.starts_with("10=")) {
            *p = format!("10={v}");
        }
    }
    parts.join("\x01").into_bytes()
}

#[test]
fn malformed_and_hostile_input_never_reaches_the_engine() {
    let dir = tmpdir("hostile");
    let stack = start_cfg(&dir, |c| {
        c.logon_timeout = Duration::from_millis(500);
        c.max_connections = 8;
        c.max_message_size = 4096;
    });
    let mut alice = Client::connect(stack.addr, "ALICE");
    alice.logon("alice-pw");
    let commands = || {
        stack
            .app
            .stats
            .commands
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = commands();
    let now = format_utc_timestamp(now_ms());
    let order = |seq: u64, extra: &[(u32, &str)]| {
        let seq = seq.to_string();
        let mut f: Vec<(u32, &[u8])> = vec![
            (34, seq.as_bytes()),
            (49, b"ALICE"),
            (52, now.as_bytes()),
            (56, b"BRKX"),
        ];
        f.extend(extra.iter().map(|(t, v)| (*t, v.as_bytes())));
        codec::encode(b"FIX.4.4", b"D", &[], &f)
    };
    let full: &[(u32, &str)] = &[
        (11, "X1"),
        (21, "1"),
        (55, "AAPL"),
        (54, "1"),
        (60, &now),
        (38, "1"),
        (40, "2"),
        (44, "190"),
    ];
    // (what, bytes, expected answer: a session Reject's reason, or nothing)
    let mut cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        (
            "bad checksum",
            tamper(&order(2, full), None, Some("000")),
            None,
        ),
        (
            "body length too short",
            tamper(&order(2, full), Some("10"), None),
            None,
        ),
        (
            "garbage",
            b"\x01\x01garbage=\x01=\x0110=000\x01".to_vec(),
            None,
        ),
        (
            "oversize",
            order(
                2,
                &[(11, &"Z".repeat(8000)), (54, "1"), (40, "2"), (60, &now)],
            ),
            None,
        ),
    ];
    // Each consumes a sequence number and is rejected by the session layer.
    let required_missing: Vec<(u32, &str)> =
        full.iter().copied().filter(|(t, _)| *t != 54).collect();
    let bad_enum: Vec<(u32, &str)> = full
        .iter()
        .map(|&(t, v)| if t == 54 { (54, "Q") } else { (t, v) })
        .collect();
    let bad_format: Vec<(u32, &str)> = full
        .iter()
        .map(|&(t, v)| if t == 38 { (38, "ten") } else { (t, v) })
        .collect();
    cases.push((
        "required tag missing",
        order(2, &required_missing),
        Some("1"),
    ));
    cases.push(("bad enum value", order(3, &bad_enum), Some("5")));
    cases.push(("bad number format", order(4, &bad_format), Some("6")));
    for (what, bytes, reject) in cases {
        alice.stream.write_all(&bytes).unwrap();
        if let Some(reason) = reject {
            let m = alice.next_app();
            assert_eq!(m[&35], "3", "{what}: {m:?}");
            assert_eq!(m[&373], reason, "{what}: {m:?}");
        }
    }
    alice.seq = 5;
    // Session-valid orders that the gateway itself refuses.
    for (cl, qty, price, reason) in [
        ("Y1", "0", "190", "13"),
        ("Y2", "1.5", "190", "13"),
        ("Y3", "1", "190.00001", "99"),
    ] {
        alice.order(cl, "1", qty, price, "0");
        let m = alice.next_app();
        assert_fields(&m, &[(35, "8"), (150, "8"), (11, cl), (103, reason)]);
    }
    assert_eq!(commands(), before, "nothing reached the engine");
    // The session still trades.
    alice.order("OK1", "1", "1", "190", "0");
    assert_fields(&alice.next_app(), &[(150, "0"), (11, "OK1")]);
    assert_eq!(commands(), before + 1);

    // Garbage before a Logon closes that connection only.
    let mut raw = TcpStream::connect(stack.addr).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut sink = [0u8; 64];
    assert!(matches!(raw.read(&mut sink), Ok(0) | Err(_)), "closed");
    // Slow loris: half a Logon, then silence, is cut at the logon timeout.
    let mut slow = TcpStream::connect(stack.addr).unwrap();
    slow.write_all(b"8=FIX.4.4\x019=7").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    assert!(matches!(slow.read(&mut sink), Ok(0) | Err(_)), "closed");
    assert!(started.elapsed() < Duration::from_secs(4));
    // A connection flood is capped; the logged-on session is unaffected.
    let flood: Vec<TcpStream> = (0..20)
        .filter_map(|_| TcpStream::connect(stack.addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let (open, refused) = stack.server.as_ref().unwrap().connection_counts();
    assert!(open <= 8, "{open} connections open");
    assert!(refused >= 12, "{refused} refused");
    drop(flood);
    alice.order("OK2", "1", "1", "190", "0");
    assert_fields(&alice.next_app(), &[(150, "0"), (11, "OK2")]);
}

#[test]
fn reports_lost_in_a_crash_are_rebuilt_from_the_journal() {
    let dir = tmpdir("catchup");
    let alice_seq = {
        // The gateway "dies" between the engine's commit and its reports:
        // its event threads drop every output from here on.
        let frozen = Arc::new(AtomicBool::new(false));
        let stack = start_full(&dir, |_| {}, Some(frozen.clone()), |_| {});
        let mut alice = Client::connect(stack.addr, "ALICE");
        alice.logon("alice-pw");
        let mut bob = Client::connect(stack.addr, "BOB");
        bob.logon("bob-pw");
        frozen.store(true, std::sync::atomic::Ordering::Relaxed);
        let base = stack
            .pipeline
            .stats()
            .durable_seq
            .load(std::sync::atomic::Ordering::Relaxed);
        // Both commands are journaled and applied, in this order, with no
        // report anywhere.
        let sequenced = |n: u64| {
            let deadline = Instant::now() + Duration::from_secs(5);
            while stack
                .pipeline
                .stats()
                .durable_seq
                .load(std::sync::atomic::Ordering::Relaxed)
                < base + n
            {
                assert!(
                    Instant::now() < deadline,
                    "engine did not sequence the order"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        alice.order("A1", "2", "40", "190", "1");
        sequenced(1);
        bob.order("B1", "1", "15", "190", "3");
        sequenced(2);
        std::thread::sleep(Duration::from_millis(100));
        assert!(alice
            .stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .is_ok());
        let mut probe = [0u8; 1];
        assert!(
            alice.stream.read(&mut probe).is_err(),
            "no report reached Alice"
        );
        alice.seq
    };
    // Restart: the journal replay rebuilds what the dead gateway never sent.
    let stack = start(&dir);
    eprintln!(
        "DEBUG seqs {:?}",
        stack
            .server
            .as_ref()
            .unwrap()
            .sessions()
            .ids()
            .map(|i| (
                i.target_comp_id.clone(),
                stack
                    .server
                    .as_ref()
                    .unwrap()
                    .sessions()
                    .sequence_numbers(i)
            ))
            .collect::<Vec<_>>()
    );
    let mut alice = Client::connect(stack.addr, "ALICE");
    alice.seq = alice_seq;
    let logon = alice.logon("alice-pw");
    let their_seq: u64 = logon[&34].parse().unwrap();
    assert!(
        their_seq >= 4,
        "the rebuilt reports took sequence numbers: {logon:?}"
    );
    alice.send("2", &[(7, "2"), (16, "0")]);
    let new = alice.next_app();
    assert_fields(&new, &[(35, "8"), (150, "0"), (11, "A1"), (43, "Y")]);
    let fill = alice.next_app();
    assert_fields(
        &fill,
        &[(150, "F"), (11, "A1"), (14, "15"), (151, "25"), (43, "Y")],
    );
    // Our Logon answer was admin: gap-filled.
    assert_fields(&alice.next_app(), &[(35, "4"), (123, "Y")]);
    // The order is fully known again: it can be cancelled by ClOrdID.
    let now = format_utc_timestamp(now_ms());
    alice.send(
        "F",
        &[(11, "A2"), (41, "A1"), (55, "AAPL"), (54, "2"), (60, &now)],
    );
    let m = alice.next_app();
    assert_fields(&m, &[(150, "4"), (11, "A2"), (41, "A1"), (14, "15")]);
    // Bob's fill was rebuilt too.
    let mut bob = Client::connect(stack.addr, "BOB");
    bob.seq = 3;
    bob.logon("bob-pw");
    bob.send("2", &[(7, "2"), (16, "0")]);
    assert_fields(&bob.next_app(), &[(150, "0"), (11, "B1"), (43, "Y")]);
    assert_fields(
        &bob.next_app(),
        &[(150, "F"), (11, "B1"), (14, "15"), (43, "Y")],
    );
}

#[test]
fn daily_reset_logs_out_and_restarts_sequence_numbers() {
    let dir = tmpdir("reset");
    let stack = start(&dir);
    let sessions = stack.server.as_ref().unwrap().sessions().clone();
    let alice_id = sessions
        .ids()
        .find(|id| id.target_comp_id == "ALICE")
        .unwrap()
        .clone();
    let mut alice = Client::connect(stack.addr, "ALICE");
    alice.logon("alice-pw");
    alice.order("A1", "2", "5", "195", "1");
    assert_fields(&alice.next_app(), &[(150, "0")]);
    assert_eq!(sessions.sequence_numbers(&alice_id), Some((3, 3)));
    // No reset configured: a tick a day later changes nothing.
    sessions.tick(now_ms() + 86_400_000);
    assert_eq!(sessions.sequence_numbers(&alice_id), Some((3, 3)));
    drop(alice);
    drop(stack);

    // The same store with a daily reset at 00:00 UTC: the first tick after
    // the next midnight logs the session out and resets both numbers.
    let stack = start_cfg(&dir, |c| {
        for s in &mut c.sessions {
            s.reset_at_ms = Some(0);
        }
    });
    let sessions = stack.server.as_ref().unwrap().sessions().clone();
    let mut alice = Client::connect(stack.addr, "ALICE");
    alice.seq = 3;
    alice.logon("alice-pw");
    sessions.tick(now_ms());
    assert!(sessions.is_logged_on(&alice_id), "no midnight passed yet");
    let tomorrow = now_ms() + 86_400_000;
    sessions.tick(tomorrow);
    let m = alice.next_app();
    assert_fields(&m, &[(35, "5"), (58, "Daily session reset")]);
    assert_eq!(sessions.sequence_numbers(&alice_id), Some((1, 1)));
    sessions.tick(tomorrow + 1_000);
    // Once a day: the next tick leaves the new day's numbers alone.
    let mut alice = Client::connect(stack.addr, "ALICE");
    let deadline = Instant::now() + Duration::from_secs(5);
    let logon = loop {
        alice.send(
            "A",
            &[(98, "0"), (108, "30"), (553, "alice"), (554, "alice-pw")],
        );
        if let Some(m) = alice.recv() {
            break m;
        }
        assert!(Instant::now() < deadline, "no logon after the reset");
        alice = Client::connect(stack.addr, "ALICE");
    };
    assert_fields(&logon, &[(35, "A"), (34, "1")]);
    // GTC orders and their ClOrdIDs outlive the session reset.
    let now = format_utc_timestamp(now_ms());
    alice.send(
        "F",
        &[(11, "A2"), (41, "A1"), (55, "AAPL"), (54, "2"), (60, &now)],
    );
    assert_fields(&alice.next_app(), &[(150, "4"), (11, "A2"), (41, "A1")]);
}

#[test]
fn reset_boundaries() {
    use brokerx_gateway_fix::server::last_boundary;
    const DAY: i64 = 86_400_000;
    let midnight = 20_000 * DAY;
    assert_eq!(last_boundary(midnight + 5, 0), midnight);
    assert_eq!(last_boundary(midnight, 0), midnight);
    assert_eq!(
        last_boundary(midnight + 3_600_000, 7_200_000),
        midnight - DAY + 7_200_000
    );
    assert_eq!(
        last_boundary(midnight + 7_200_000, 7_200_000),
        midnight + 7_200_000
    );
}

#[test]
fn end_of_day_expires_day_orders_with_a_report() {
    let dir = tmpdir("expiry");
    let stack = start(&dir);
    let mut alice = Client::connect(stack.addr, "ALICE");
    alice.logon("alice-pw");
    alice.order("D1", "1", "7", "188", "0");
    assert_fields(&alice.next_app(), &[(150, "0"), (11, "D1"), (59, "0")]);
    alice.order("G1", "1", "3", "187", "1");
    assert_fields(&alice.next_app(), &[(150, "0"), (11, "G1"), (59, "1")]);
    let (operator, handle) = stack.pipeline.connect(&[], false);
    operator.submit(Command::EndOfDay).unwrap();
    let _ = handle
        .receiver
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
    let m = alice.next_app();
    assert_fields(
        &m,
        &[
            (35, "8"),
            (150, "C"),
            (39, "C"),
            (11, "D1"),
            (151, "0"),
            (14, "0"),
        ],
    );
    // The GTC order is still working.
    alice.send("H", &[(11, "G1"), (55, "AAPL"), (54, "1")]);
    assert_fields(&alice.next_app(), &[(150, "I"), (39, "0"), (151, "3")]);
}

#[test]
fn a_second_logon_for_a_connected_session_is_refused() {
    let dir = tmpdir("second");
    let stack = start(&dir);
    let mut alice = Client::connect(stack.addr, "ALICE");
    alice.logon("alice-pw");
    let mut intruder = Client::connect(stack.addr, "ALICE");
    intruder.seq = 2;
    intruder.send(
        "A",
        &[(98, "0"), (108, "30"), (553, "alice"), (554, "alice-pw")],
    );
    let asked = Instant::now();
    assert!(intruder.recv().is_none(), "no Logon answer");
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "closed at once, not timed out"
    );
    // The first connection still trades, in sequence.
    alice.order("S1", "1", "1", "190", "0");
    let m = alice.next_app();
    assert_fields(&m, &[(150, "0"), (11, "S1"), (34, "2")]);
}

/// A peer that drops its connection and logs on again at once is answered,
/// though the gateway may not have seen the close yet.
#[test]
fn an_immediate_logon_after_a_drop_is_answered() {
    let dir = tmpdir("relogon");
    let stack = start(&dir);
    let mut alice = Client::connect(stack.addr, "ALICE");
    alice.logon("alice-pw");
    let mut answered_seq = 0;
    for _ in 0..20 {
        let seq = alice.seq;
        drop(alice);
        alice = Client::connect(stack.addr, "ALICE");
        alice.seq = seq;
        // `logon` fails unless the answer is a Logon; its sequence number
        // carries on from the last connection's.
        let answer: u64 = alice.logon("alice-pw")[&34].parse().unwrap();
        assert!(answer > answered_seq, "{answer} after {answered_seq}");
        answered_seq = answer;
    }
    alice.order("S1", "1", "1", "190", "0");
    assert_fields(&alice.next_app(), &[(150, "0"), (11, "S1")]);
}

/// Connects as ALICE and sends a Logon with MsgSeqNum `seq` and
/// NextExpectedMsgSeqNum `next_expected`.
fn logon_expecting(addr: SocketAddr, seq: u64, next_expected: &str) -> Client {
    let mut alice = Client::connect(addr, "ALICE");
    alice.seq = seq;
    alice.send(
        "A",
        &[
            (98, "0"),
            (108, "30"),
            (553, "alice"),
            (554, "alice-pw"),
            (789, next_expected),
        ],
    );
    alice
}

/// NextExpectedMsgSeqNum (789) on Logon: the gateway answers with its own
/// 789 and resends what the peer says it has not had, without waiting for
/// a ResendRequest; a 789 beyond what it has sent ends the session.
#[test]
fn next_expected_msg_seq_num_on_logon() {
    let dir = tmpdir("seq789");
    let stack = start(&dir);
    let mut alice = Client::connect(stack.addr, "ALICE");
    let answer = alice.logon("alice-pw");
    assert!(
        !answer.contains_key(&789),
        "no 789 unless asked: {answer:?}"
    );
    alice.order("N1", "1", "5", "180", "1");
    let report = alice.next_app();
    assert_fields(&report, &[(35, "8"), (150, "0"), (11, "N1"), (34, "2")]);
    let seq = alice.seq;
    drop(alice);

    // Back, saying it has nothing from us after MsgSeqNum 0.
    let mut alice = logon_expecting(stack.addr, seq, "1");
    let logon = alice.recv().expect("Logon");
    assert_fields(
        &logon,
        &[(35, "A"), (34, "3"), (789, &(seq + 1).to_string())],
    );
    // Our Logon (1) as a gap fill, then the report again, as a resend.
    let fill = alice.recv().expect("gap fill");
    assert_fields(
        &fill,
        &[(35, "4"), (34, "1"), (123, "Y"), (36, "2"), (43, "Y")],
    );
    let again = alice.recv().expect("the report again");
    assert_fields(&again, &[(35, "8"), (34, "2"), (43, "Y"), (11, "N1")]);
    assert!(again.contains_key(&122), "OrigSendingTime: {again:?}");
    // The session goes on: a TestRequest is answered.
    alice.send("1", &[(112, "after-789")]);
    let beat = alice.recv().expect("Heartbeat");
    assert_fields(&beat, &[(35, "0"), (112, "after-789"), (34, "4")]);
    let seq = alice.seq;
    drop(alice);

    // Back with a gap in its own messages (two lost): the gateway's 789 is
    // the first it misses and it waits for the peer's resend instead of
    // asking; a TestRequest after the Logon waits for the gap too.
    let mut alice = logon_expecting(stack.addr, seq + 2, "5");
    let logon = alice.recv().expect("Logon");
    assert_fields(&logon, &[(35, "A"), (789, &seq.to_string())]);
    alice.send("1", &[(112, "queued")]);
    let gap_end = (seq + 3).to_string();
    let ts = format_utc_timestamp(now_ms());
    let saved = alice.seq;
    alice.seq = seq;
    alice.send("4", &[(43, "Y"), (122, &ts), (123, "Y"), (36, &gap_end)]);
    alice.seq = saved;
    let beat = alice.recv().expect("the queued TestRequest answered");
    assert_fields(&beat, &[(35, "0"), (112, "queued")]);
    let seq = alice.seq;
    drop(alice);

    // A 789 beyond the next MsgSeqNum the gateway sends: Logout, closed.
    let mut alice = logon_expecting(stack.addr, seq, "99");
    let logout = alice.recv().expect("Logout");
    assert_eq!(logout[&35], "5", "{logout:?}");
    assert!(logout[&58].contains("789"), "{logout:?}");
    assert!(alice.recv().is_none(), "closed after the Logout");
}

/// Waits until the engine has sequenced `n` commands after the bootstrap.
fn wait_for_commands(stack: &Stack, from: u64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while stack.pipeline.stats().durable_seq.load(Ordering::Acquire) < from + n {
        assert!(
            Instant::now() < deadline,
            "the engine did not sequence {n} commands"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn subscriptions_cut_off_by_the_engine_are_reattached_without_losing_a_report() {
    let dir = tmpdir("cutoff");
    // A 16-output queue per subscription: a stalled event thread is cut off
    // after a few orders. A snapshot every 7 commands: a re-attached session
    // replays from one.
    let stack = start_full(
        &dir,
        |_| {},
        None,
        |pc| {
            pc.outbound_capacity = 16;
            pc.snapshot_every = 7;
        },
    );
    let mut alice = Client::connect(stack.addr, "ALICE");
    alice.logon("alice-pw");
    let mut bob = Client::connect(stack.addr, "BOB");
    bob.logon("bob-pw");
    bob.send(
        "V",
        &[
            (262, "M1"),
            (263, "1"),
            (264, "0"),
            (265, "1"),
            (267, "2"),
            (269, "0"),
            (269, "1"),
            (146, "1"),
            (55, "AAPL"),
        ],
    );
    assert_fields(&bob.next_app(), &[(35, "W"), (262, "M1"), (268, "0")]);

    // The event thread stalls (as one starved of CPU would) while Alice
    // rests 30 buys and Bob sells 5 into them: far more outputs than the
    // queues hold, so the engine cuts the sessions and the feed off.
    let base = stack.pipeline.stats().durable_seq.load(Ordering::Acquire);
    stack.app.pause_events(true);
    for n in 0..30 {
        alice.order(&format!("A{n}"), "1", "1", "189", "1");
    }
    wait_for_commands(&stack, base, 30);
    bob.order("B1", "2", "5", "189", "3");
    wait_for_commands(&stack, base, 31);
    assert!(
        stack
            .pipeline
            .stats()
            .consumers_cut_off
            .load(Ordering::Relaxed)
            >= 2
    );
    assert_eq!(stack.app.stats.reattached.load(Ordering::Relaxed), 0);
    stack.app.pause_events(false);

    // Every report arrives once, in order: 30 new, then A0..A4 filled.
    let mut exec_ids = BTreeSet::new();
    for n in 0..30 {
        let m = alice.next_app();
        assert_fields(
            &m,
            &[(35, "8"), (150, "0"), (39, "0"), (11, &format!("A{n}"))],
        );
        assert!(exec_ids.insert(m[&17].clone()), "duplicate ExecID {m:?}");
    }
    for n in 0..5 {
        let m = alice.next_app();
        assert_fields(
            &m,
            &[
                (35, "8"),
                (150, "F"),
                (39, "2"),
                (11, &format!("A{n}")),
                (32, "1"),
                (14, "1"),
                (151, "0"),
            ],
        );
        assert!(exec_ids.insert(m[&17].clone()), "duplicate ExecID {m:?}");
    }
    // Bob: the IOC's new, then its fills, to 5 filled; and, interleaved,
    // market data that ends at the book as it is: 25 left at 189 (the
    // feed may have sent a few updates before the stall took hold).
    let mut filled = 0;
    let mut saw_new = false;
    let mut level_189 = (String::new(), String::new());
    while filled < 5 || level_189 != ("25".to_string(), "25".to_string()) {
        let m = bob.next_app();
        match m[&35].as_str() {
            "8" => {
                assert_fields(&m, &[(11, "B1")]);
                if m[&150] == "0" {
                    assert!(!saw_new && filled == 0, "{m:?}");
                    saw_new = true;
                } else {
                    assert_fields(&m, &[(150, "F")]);
                    assert!(saw_new);
                    filled = m[&14].parse().unwrap();
                }
            }
            "X" => {
                assert_fields(&m, &[(262, "M1"), (269, "0"), (270, "189")]);
                level_189 = (m[&271].clone(), m[&346].clone());
            }
            other => panic!("unexpected {other}: {m:?}"),
        }
    }
    let reattached = stack.app.stats.reattached.load(Ordering::Relaxed);
    assert!(reattached >= 2, "re-attached {reattached}");

    // Live again: a new order, a cancel (answers to Alice's own requests
    // now reach her through her account) and the feed.
    alice.order("A30", "1", "2", "188", "1");
    assert_fields(&alice.next_app(), &[(35, "8"), (150, "0"), (11, "A30")]);
    assert_fields(
        &bob.next_app(),
        &[(35, "X"), (279, "0"), (270, "188"), (271, "2")],
    );
    let now = format_utc_timestamp(now_ms());
    alice.send(
        "F",
        &[
            (11, "C1"),
            (41, "A5"),
            (55, "AAPL"),
            (54, "1"),
            (60, &now),
            (38, "1"),
        ],
    );
    assert_fields(
        &alice.next_app(),
        &[(35, "8"), (150, "4"), (39, "4"), (11, "C1"), (41, "A5")],
    );
    assert_fields(
        &bob.next_app(),
        &[(35, "X"), (279, "1"), (270, "189"), (271, "24")],
    );
    // Nothing is sent twice.
    alice
        .stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut chunk = [0u8; 4096];
    match alice.stream.read(&mut chunk) {
        Ok(0) | Err(_) => {}
        Ok(n) => {
            let extra = decode(&chunk[..n]);
            assert!(extra[&35] == "0", "unexpected message {extra:?}");
        }
    }
}

#[test]
fn a_replace_racing_a_fill_never_leaves_the_order_larger_than_its_order_qty() {
    let dir = tmpdir("replace-race");
    let stack = start(&dir);
    let mut alice = Client::connect(stack.addr, "ALICE");
    alice.logon("alice-pw");
    let mut bob = Client::connect(stack.addr, "BOB");
    bob.logon("bob-pw");
    alice.order("A1", "1", "10", "189", "1");
    assert_fields(&alice.next_app(), &[(150, "0"), (11, "A1")]);

    // Bob's sell fills 3 of Alice's 10 while her gateway has not seen the
    // fill yet (the event thread is stalled): her replace to OrderQty 8 is
    // written against CumQty 0.
    let base = stack.pipeline.stats().durable_seq.load(Ordering::Acquire);
    stack.app.pause_events(true);
    // The event thread notices at its next turn (it waits 100 ms at most).
    std::thread::sleep(Duration::from_millis(250));
    bob.order("B1", "2", "3", "189", "3");
    wait_for_commands(&stack, base, 1);
    alice.replace_buy("A2", "A1", "8", "189", "1");
    wait_for_commands(&stack, base, 2);
    stack.app.pause_events(false);
    assert_fields(
        &alice.next_app(),
        &[(150, "F"), (11, "A1"), (14, "3"), (151, "7")],
    );
    // OrderQty 8 in all: 5 left open, not 8.
    assert_fields(
        &alice.next_app(),
        &[
            (150, "5"),
            (11, "A2"),
            (41, "A1"),
            (38, "8"),
            (14, "3"),
            (151, "5"),
        ],
    );
    // Bob sweeps 10: Alice fills 5 more and is done at 8.
    for _ in 0..2 {
        bob.next_app(); // B1's new and fill
    }
    bob.order("B2", "2", "10", "189", "3");
    let fill = alice.next_app();
    assert_fields(
        &fill,
        &[(150, "F"), (39, "2"), (32, "5"), (14, "8"), (151, "0")],
    );
    for _ in 0..3 {
        bob.next_app(); // B2's new, its fill, the cancelled rest
    }

    // A replace to OrderQty 5 crosses fills of 6: the balance is cancelled
    // and the replace reported as filled (OrderQty = CumQty = 6), not left
    // open with 4 more to trade.
    alice.order("A3", "1", "10", "188", "1");
    assert_fields(&alice.next_app(), &[(150, "0"), (11, "A3")]);
    stack.app.pause_events(true);
    std::thread::sleep(Duration::from_millis(250));
    let base = stack.pipeline.stats().durable_seq.load(Ordering::Acquire);
    bob.order("B3", "2", "6", "188", "3");
    wait_for_commands(&stack, base, 1);
    alice.replace_buy("A4", "A3", "5", "188", "1");
    wait_for_commands(&stack, base, 2);
    stack.app.pause_events(false);
    assert_fields(
        &alice.next_app(),
        &[(150, "F"), (11, "A3"), (14, "6"), (151, "4")],
    );
    assert_fields(
        &alice.next_app(),
        &[
            (150, "5"),
            (39, "2"),
            (11, "A4"),
            (41, "A3"),
            (38, "6"),
            (14, "6"),
            (151, "0"),
        ],
    );
    // Nothing of A3 rests any more: Bob's next sell finds no buyer.
    for _ in 0..2 {
        bob.next_app(); // B3's new and fill
    }
    bob.order("B4", "2", "4", "188", "3");
    assert_fields(&bob.next_app(), &[(150, "0"), (11, "B4")]);
    assert_fields(&bob.next_app(), &[(150, "4"), (11, "B4"), (14, "0")]);
}
