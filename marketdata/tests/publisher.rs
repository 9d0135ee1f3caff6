//! The live publisher over loopback: MoldUDP64 stream and retransmission,
//! SoupBinTCP replay, the file, restart from the journal, and bad input.
//! Every wait is bounded by a deadline; every loop by a count.

mod support;

use brokerx_engine::pipeline::{replay_journal, Pipeline, PipelineConfig, WaitStrategy};
use brokerx_engine::state::StableHasher;
use brokerx_engine::{
    Command, Engine, EngineConfig, OrderType, SelfTradePrevention, Side, TimeInForce,
};
use brokerx_marketdata::feed::{FeedDeriver, SymbolDirectory};
use brokerx_marketdata::file::FrameReader;
use brokerx_marketdata::mold::{self, Session};
use brokerx_marketdata::publisher::{ItchConfig, ItchPublisher, ItchStatsSnapshot};
use brokerx_soupbin::{alpha, Decoder, LoginRejectReason, Packet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{directory, DecodedBook, Rig, Rng, ALICE, BOB, CAROL, OTHER, SYM};

const DEADLINE: Duration = Duration::from_secs(20);
const SESSION: &str = "BXTEST0001";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "brokerx-md-publisher-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn start_pipeline(dir: &Path) -> Arc<Pipeline> {
    let mut config = PipelineConfig::new(dir.to_path_buf());
    config.segment_bytes = 1 << 20;
    config.durable = false;
    config.wait = WaitStrategy::Park {
        spins: 100,
        timeout: Duration::from_millis(5),
    };
    Arc::new(Pipeline::start(config, EngineConfig::default()).unwrap())
}

/// A publisher with every transport on loopback, and the socket its
/// MoldUDP64 stream arrives on.
struct Harness {
    pipeline: Arc<Pipeline>,
    publisher: ItchPublisher,
    receiver: Collector,
    file: PathBuf,
}

/// Drains a UDP socket on its own thread (the kernel's receive buffer
/// holds only a few hundred small datagrams), keeping every packet.
struct Collector {
    packets: Arc<Mutex<Vec<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Collector {
    fn new(socket: UdpSocket) -> Collector {
        let packets: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let packets = packets.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 2048];
                while !stop.load(Ordering::Acquire) {
                    if let Ok(len) = socket.recv(&mut buffer) {
                        packets.lock().unwrap().push(buffer[..len].to_vec());
                    }
                }
            })
        };
        Collector {
            packets,
            stop,
            thread: Some(thread),
        }
    }

    fn packets(&self) -> Vec<Vec<u8>> {
        self.packets.lock().unwrap().clone()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn loopback_udp() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    socket
}

fn harness(dir: &Path, file_name: &str, tweak: impl FnOnce(&mut ItchConfig)) -> Harness {
    let pipeline = start_pipeline(dir);
    let receiver = loopback_udp();
    let file = dir.join(file_name);
    let mut config = ItchConfig::new(directory(), dir.to_path_buf());
    config.session = SESSION.into();
    config.mold_socket = Some(UdpSocket::bind("127.0.0.1:0").unwrap());
    config.mold_destination = receiver.local_addr().unwrap();
    config.mold_retransmit = Some(UdpSocket::bind("127.0.0.1:0").unwrap());
    config.soup_listener = Some(TcpListener::bind("127.0.0.1:0").unwrap());
    config.file_path = Some(file.clone());
    config.retransmit_capacity = 100_000;
    tweak(&mut config);
    let publisher = ItchPublisher::start(pipeline.clone(), config).unwrap();
    Harness {
        pipeline,
        publisher,
        receiver: Collector::new(receiver),
        file,
    }
}

/// Submits commands one at a time, waiting for each one's last output;
/// returns the sequence number of the last.
fn drive(pipeline: &Pipeline, commands: &[Command]) -> u64 {
    let (submitter, handle) = pipeline.connect(&[], false);
    let mut last_seq = 0;
    for command in commands {
        let deadline = Instant::now() + DEADLINE;
        while submitter.submit(*command).is_err() {
            assert!(Instant::now() < deadline, "engine busy too long");
            std::thread::yield_now();
        }
        loop {
            let output = handle
                .receiver
                .recv_timeout(DEADLINE)
                .expect("engine answers");
            last_seq = output.seq;
            if output.last {
                break;
            }
        }
    }
    pipeline.disconnect(handle.id);
    last_seq
}

/// Waits until the publisher has fed the deriver through `seq`.
fn wait_fed(publisher: &ItchPublisher, seq: u64) {
    let deadline = Instant::now() + DEADLINE;
    while publisher.stats().engine_seq < seq {
        assert!(
            Instant::now() < deadline,
            "publisher stuck: {:?}",
            publisher.stats()
        );
        assert_eq!(publisher.failure(), None);
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Stats once `ready` holds (counters are bumped just after the action a
/// test observes).
fn wait_stats(
    publisher: &ItchPublisher,
    ready: impl Fn(&ItchStatsSnapshot) -> bool,
) -> ItchStatsSnapshot {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let stats = publisher.stats();
        if ready(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "stats never ready: {stats:?}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Rig setup, a scripted scenario (add, partial fill, replace down,
/// replace to a new price, cancel, halt, resume), then seeded random flow.
fn scenario(rig: &mut Rig, random: usize, seed: u64) -> Vec<Command> {
    let mut commands: Vec<Command> = rig.log.iter().map(|(c, _)| c.command).collect();
    let mut run = |rig: &mut Rig, command: Command| {
        rig.ok(command);
        commands.push(command);
    };
    let order = |account, side, price, qty| Command::NewOrder {
        account,
        symbol: SYM,
        side,
        order_type: OrderType::Limit,
        tif: TimeInForce::Gtc,
        price,
        qty,
        self_trade: SelfTradePrevention::AccountDefault,
        tag: 0,
    };
    run(rig, order(ALICE, Side::Sell, 10_000, 100));
    let sell = rig.engine.account_orders(ALICE).next().unwrap();
    run(rig, order(BOB, Side::Buy, 10_000, 30));
    run(rig, order(CAROL, Side::Buy, 9_990, 40));
    run(
        rig,
        Command::Replace {
            account: ALICE,
            order_id: sell,
            price: 10_000,
            qty: 50,
            tag: 0,
        },
    );
    run(
        rig,
        Command::Replace {
            account: ALICE,
            order_id: sell,
            price: 10_010,
            qty: 50,
            tag: 0,
        },
    );
    let bid = rig.engine.account_orders(CAROL).next().unwrap();
    run(
        rig,
        Command::Cancel {
            account: CAROL,
            order_id: bid,
            tag: 0,
        },
    );
    run(rig, Command::Halt { symbol: SYM });
    run(rig, Command::Resume { symbol: SYM });
    let mut rng = Rng::new(seed);
    for _ in 0..random {
        let command = rig.random_command(&mut rng);
        rig.run(command);
        commands.push(command);
    }
    commands
}

/// One received MoldUDP64 packet: first sequence and its messages.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Received {
    seq: u64,
    messages: Vec<Vec<u8>>,
}

/// The data packets received once messages through `last` arrived
/// (heartbeats are checked and skipped).
fn receive_through(collector: &Collector, last: u64) -> Vec<Received> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut packets = Vec::new();
        let mut reach = 0;
        for bytes in collector.packets() {
            let packet = mold::decode_packet(&bytes).unwrap();
            assert_eq!(packet.session, Session::new(SESSION).unwrap());
            assert!(bytes.len() <= mold::DEFAULT_MAX_PACKET_BYTES);
            if packet.count == 0 {
                continue;
            }
            reach = packet.seq + packet.count as u64 - 1;
            packets.push(Received {
                seq: packet.seq,
                messages: packet.messages.iter().map(|m| m.to_vec()).collect(),
            });
        }
        if reach >= last {
            return packets;
        }
        assert!(Instant::now() < deadline, "udp: got through {reach}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Flattens packets into messages numbered from the first packet's seq,
/// checking there is no gap and no duplicate.
fn contiguous(packets: &[Received], first: u64) -> Vec<Vec<u8>> {
    let mut next = first;
    let mut messages = Vec::new();
    for packet in packets {
        assert_eq!(packet.seq, next, "gap or duplicate in the stream");
        next += packet.messages.len() as u64;
        messages.extend(packet.messages.iter().cloned());
    }
    messages
}

fn framed(messages: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for message in messages {
        out.extend_from_slice(&(message.len() as u16).to_be_bytes());
        out.extend_from_slice(message);
    }
    out
}

fn unframed(bytes: &[u8]) -> Vec<Vec<u8>> {
    FrameReader::new(bytes)
        .map(|m| m.unwrap().to_vec())
        .collect()
}

/// The engine after replaying the whole journal (the pipeline stopped).
fn replayed_engine(dir: &Path) -> (Engine, Vec<u8>) {
    let mut engine = Engine::new(EngineConfig::default());
    let mut hasher = StableHasher::default();
    let mut count = 0;
    let mut deriver = FeedDeriver::new(directory());
    let mut bytes = Vec::new();
    replay_journal(
        dir,
        &mut engine,
        &mut hasher,
        &mut count,
        None,
        |c, events| {
            deriver
                .on_command_framed(c.seq, c.timestamp_ns, events, &mut bytes)
                .unwrap();
        },
    )
    .unwrap();
    (engine, bytes)
}

fn assert_book_matches(decoded: &DecodedBook, engine: &Engine) {
    for symbol in [SYM, OTHER] {
        let locate = SymbolDirectory::locate(symbol).unwrap();
        for side in [Side::Buy, Side::Sell] {
            let book: Vec<(u64, u64)> = engine
                .orders_in_priority(symbol, side)
                .map(|(_, node)| (node.price, node.leaves))
                .collect();
            assert_eq!(decoded.side(locate, side), book, "{symbol:?} {side:?}");
        }
    }
}

/// A SoupBinTCP client.
struct Client {
    stream: TcpStream,
    decoder: Decoder,
}

impl Client {
    fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Client {
            stream,
            decoder: Decoder::new(4096),
        }
    }

    fn login(addr: SocketAddr, user: &str, password: &str, session: &str, seq: u64) -> Client {
        let mut client = Client::connect(addr);
        client.send(&Packet::LoginRequest {
            username: alpha(user.as_bytes()),
            password: alpha(password.as_bytes()),
            requested_session: alpha(session.as_bytes()),
            requested_sequence_number: seq,
        });
        client
    }

    fn send(&mut self, packet: &Packet) {
        self.stream.write_all(&packet.to_bytes().unwrap()).unwrap();
    }

    /// The next packet other than a heartbeat; `None` once closed.
    fn next(&mut self) -> Option<Packet> {
        let deadline = Instant::now() + DEADLINE;
        let mut buffer = [0u8; 4096];
        loop {
            if let Some(packet) = self.decoder.next_packet().unwrap() {
                if packet == Packet::ServerHeartbeat {
                    continue;
                }
                return Some(packet);
            }
            assert!(Instant::now() < deadline, "soup client waited too long");
            match self.stream.read(&mut buffer) {
                Ok(0) => return None,
                Ok(n) => self.decoder.feed(&buffer[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return None,
            }
        }
    }

    /// Login Accepted's sequence number.
    fn accepted(&mut self) -> u64 {
        match self.next() {
            Some(Packet::LoginAccepted {
                session,
                sequence_number,
            }) => {
                assert_eq!(&session, &alpha::<10>(SESSION.as_bytes()));
                sequence_number
            }
            other => panic!("expected Login Accepted, got {other:?}"),
        }
    }

    /// The next `count` Sequenced Data payloads.
    fn messages(&mut self, count: u64) -> Vec<Vec<u8>> {
        (0..count)
            .map(|_| match self.next() {
                Some(Packet::SequencedData(data)) => data,
                other => panic!("expected Sequenced Data, got {other:?}"),
            })
            .collect()
    }

    /// True if nothing but heartbeats arrives for `wait`.
    fn quiet_for(&mut self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        let mut buffer = [0u8; 4096];
        while Instant::now() < until {
            if let Some(packet) = self.decoder.next_packet().unwrap() {
                if packet != Packet::ServerHeartbeat {
                    return false;
                }
                continue;
            }
            match self.stream.read(&mut buffer) {
                Ok(0) => return true,
                Ok(n) => self.decoder.feed(&buffer[..n]),
                Err(_) => {}
            }
        }
        true
    }
}

#[test]
fn udp_stream_rebuilds_the_engine_book() {
    let dir = temp_dir("e2e");
    let h = harness(&dir, "feed.itch", |_| {});
    let mut rig = Rig::new();
    let commands = scenario(&mut rig, 400, 7);
    let last_seq = drive(&h.pipeline, &commands);
    wait_fed(&h.publisher, last_seq);
    let last = h.publisher.next_seq() - 1;
    let packets = receive_through(&h.receiver, last);
    let messages = contiguous(&packets, 1);
    assert_eq!(messages.len() as u64, last);
    assert!(
        packets.len() < messages.len(),
        "several messages per packet"
    );
    let types: Vec<u8> = messages.iter().map(|m| m[0]).collect();
    for kind in [b'S', b'R', b'H', b'A', b'E', b'X', b'U', b'D'] {
        assert!(types.contains(&kind), "no '{}' message", kind as char);
    }
    // Idle: heartbeats carry the next sequence number.
    let deadline = Instant::now() + Duration::from_secs(5);
    let data_packets = h.receiver.packets().len();
    loop {
        assert!(Instant::now() < deadline, "no heartbeat");
        if let Some(bytes) = h.receiver.packets().get(data_packets) {
            let packet = mold::decode_packet(bytes).unwrap();
            assert_eq!((packet.count, packet.seq), (0, last + 1));
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = wait_stats(&h.publisher, |s| s.mold_heartbeats >= 1);
    assert_eq!(stats.messages, last);
    assert_eq!(stats.packets, packets.len() as u64);
    assert!(stats.latency_count > 0);
    assert!(stats.latency_min_ns <= stats.latency_avg_ns());
    assert!(stats.latency_avg_ns() <= stats.latency_max_ns);
    h.pipeline.shutdown().unwrap().unwrap();

    let (engine, replay_bytes) = replayed_engine(&dir);
    let mut decoded = DecodedBook::default();
    decoded.apply_bytes(&framed(&messages));
    assert_book_matches(&decoded, &engine);
    for symbol in [SYM, OTHER] {
        for side in [Side::Buy, Side::Sell] {
            let book: Vec<(u64, u64)> = engine
                .orders_in_priority(symbol, side)
                .map(|(_, node)| (node.price, node.leaves))
                .collect();
            assert_eq!(book, rig.engine_side(symbol, side));
        }
    }
    assert_eq!(
        framed(&messages),
        replay_bytes,
        "live feed = journal replay feed"
    );
    h.publisher.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dropped_packet_is_retransmitted_exactly() {
    let dir = temp_dir("retransmit");
    let h = harness(&dir, "feed.itch", |_| {});
    let mut rig = Rig::new();
    let commands = scenario(&mut rig, 500, 11);
    let last_seq = drive(&h.pipeline, &commands);
    wait_fed(&h.publisher, last_seq);
    let last = h.publisher.next_seq() - 1;
    let mut packets = receive_through(&h.receiver, last);
    assert!(packets.len() > 4, "{} packets", packets.len());
    // The receiver "loses" a packet in the middle.
    let lost = packets.remove(packets.len() / 2);
    let gap_start = lost.seq;
    let gap_end = packets
        .iter()
        .find(|p| p.seq > gap_start)
        .map(|p| p.seq)
        .unwrap();
    assert_eq!(gap_end - gap_start, lost.messages.len() as u64);

    let requester = loopback_udp();
    let target = h.publisher.retransmit_addr().unwrap();
    let session = Session::new(SESSION).unwrap();
    let ask = |first: u64, count: u16| -> Option<Received> {
        requester
            .send_to(&mold::request(&session, first, count), target)
            .unwrap();
        let mut buffer = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            if let Ok(len) = requester.recv(&mut buffer) {
                let packet = mold::decode_packet(&buffer[..len]).unwrap();
                return Some(Received {
                    seq: packet.seq,
                    messages: packet.messages.iter().map(|m| m.to_vec()).collect(),
                });
            }
        }
        None
    };
    let answer = ask(gap_start, (gap_end - gap_start) as u16).expect("answered");
    assert_eq!(answer, lost, "exactly the missing messages");
    packets.insert(packets.len() / 2 + 1, answer);
    packets.sort_by_key(|p| p.seq);
    assert_eq!(contiguous(&packets, 1).len() as u64, last);

    // A request past the newest message is answered up to it; one for a
    // range that is not stored at all gets nothing.
    let tail = ask(last, 10).expect("clipped");
    assert_eq!((tail.seq, tail.messages.len()), (last, 1));
    assert_eq!(ask(last + 1, 5), None);
    assert_eq!(ask(0, 5), None);
    // A large request gets one packet's worth.
    let big = ask(1, 1_000).expect("answered");
    assert_eq!(big.seq, 1);
    assert!(big.messages.len() > 10 && (big.messages.len() as u64) < last.min(1_000));
    let stats = wait_stats(&h.publisher, |s| s.retransmit_served == 3);
    assert_eq!(stats.retransmit_requests, 5);
    assert_eq!(stats.retransmit_ignored, 2);
    h.publisher.shutdown();
    h.pipeline.shutdown().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn soupbintcp_replays_from_the_start_then_live_without_gap_or_duplicate() {
    let dir = temp_dir("soup");
    let h = harness(&dir, "feed.itch", |config| {
        config.soup_username = Some("MD".into());
        config.soup_password = Some("secret".into());
    });
    let addr = h.publisher.soup_addr().unwrap();
    let mut rig = Rig::new();
    let commands = scenario(&mut rig, 300, 21);
    let (first_half, second_half) = commands.split_at(commands.len() / 2);
    let seq = drive(&h.pipeline, first_half);
    wait_fed(&h.publisher, seq);
    let mid = h.publisher.next_seq();
    assert!(mid > 10);

    let mut from_start = Client::login(addr, "md", "secret", SESSION, 1);
    assert_eq!(from_start.accepted(), 1);
    let mut live_only = Client::login(addr, "MD", "secret", "", 0);
    assert_eq!(live_only.accepted(), mid);
    let early = from_start.messages(mid - 1);

    let seq = drive(&h.pipeline, second_half);
    wait_fed(&h.publisher, seq);
    let end = h.publisher.next_seq();
    let late = from_start.messages(end - mid);
    let live = live_only.messages(end - mid);
    assert_eq!(late, live);
    assert!(
        from_start.quiet_for(Duration::from_millis(300)),
        "no duplicate"
    );
    assert!(live_only.quiet_for(Duration::from_millis(50)));

    // Everything, in order, equals the file and the UDP stream.
    let all: Vec<Vec<u8>> = early.into_iter().chain(late).collect();
    let packets = receive_through(&h.receiver, end - 1);
    assert_eq!(contiguous(&packets, 1), all);
    from_start.send(&Packet::LogoutRequest);
    assert_eq!(from_start.next(), None, "closed after logout");
    let sent = all.len() as u64 + (end - mid);
    let stats = wait_stats(&h.publisher, |s| s.soup_messages_sent >= sent);
    assert_eq!(stats.soup_logins, 2);
    h.publisher.shutdown();
    h.pipeline.shutdown().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_file_decodes_to_the_udp_stream() {
    let dir = temp_dir("file");
    let h = harness(&dir, "feed.itch", |_| {});
    let mut rig = Rig::new();
    let commands = scenario(&mut rig, 200, 5);
    let last_seq = drive(&h.pipeline, &commands);
    wait_fed(&h.publisher, last_seq);
    let last = h.publisher.next_seq() - 1;
    let udp = contiguous(&receive_through(&h.receiver, last), 1);
    // The file is flushed per batch (just before the UDP send).
    let deadline = Instant::now() + DEADLINE;
    let mut bytes = std::fs::read(&h.file).unwrap();
    while bytes.len() < framed(&udp).len() {
        assert!(Instant::now() < deadline, "file incomplete");
        std::thread::sleep(Duration::from_millis(5));
        bytes = std::fs::read(&h.file).unwrap();
    }
    assert_eq!(unframed(&bytes), udp);
    let from_file: Vec<String> = itchy::MessageStream::from_reader(&bytes[..])
        .map(|m| format!("{:?}", m.unwrap()))
        .collect();
    let udp_bytes = framed(&udp);
    let from_udp: Vec<String> = itchy::MessageStream::from_reader(&udp_bytes[..])
        .map(|m| format!("{:?}", m.unwrap()))
        .collect();
    assert_eq!(from_file.len() as u64, last);
    assert_eq!(from_file, from_udp);
    h.publisher.shutdown();
    h.pipeline.shutdown().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_restart_rebuilds_the_same_feed_from_the_journal() {
    let dir = temp_dir("restart");
    let mut rig = Rig::new();
    let commands = scenario(&mut rig, 250, 99);
    let (part1, rest) = commands.split_at(commands.len() / 2);
    let (part2, part3) = rest.split_at(rest.len() / 2);

    // First run.
    let first_bytes = {
        let h = harness(&dir, "run1.itch", |_| {});
        let seq = drive(&h.pipeline, part1);
        wait_fed(&h.publisher, seq);
        h.publisher.shutdown();
        h.pipeline.shutdown().unwrap().unwrap();
        std::fs::read(&h.file).unwrap()
    };
    let first = unframed(&first_bytes);
    assert!(first.len() > 20);

    // Second run on the same data directory. Commands processed before
    // the publisher connects are not seen live: it fills them in from
    // the journal.
    let pipeline = start_pipeline(&dir);
    assert!(pipeline.recovered.last_seq > 0);
    let seq_before = drive(&pipeline, part2);
    drop(pipeline.shutdown());
    drop(pipeline);
    let pipeline = start_pipeline(&dir);
    let recovered = pipeline.recovered.last_seq;
    assert_eq!(recovered, seq_before);
    drop(pipeline.shutdown());
    drop(pipeline);

    let h = harness(&dir, "run2.itch", |_| {});
    assert_eq!(h.publisher.stats().engine_seq, recovered);
    let history = h.publisher.next_seq() - 1;
    assert!(history > first.len() as u64);
    let addr = h.publisher.soup_addr().unwrap();
    let mut client = Client::login(addr, "any", "thing", SESSION, 1);
    assert_eq!(client.accepted(), 1);
    let replayed = client.messages(history);
    assert_eq!(
        framed(&replayed[..first.len()]),
        first_bytes,
        "byte-identical to the first run's file"
    );
    let (_, journal_bytes) = replayed_engine(&dir);
    assert_eq!(framed(&replayed), journal_bytes);
    assert_eq!(
        std::fs::read(&h.file).unwrap(),
        journal_bytes,
        "file rewritten"
    );

    // Live commands continue the numbering; over UDP only they are sent.
    let seq = drive(&h.pipeline, part3);
    wait_fed(&h.publisher, seq);
    let end = h.publisher.next_seq() - 1;
    let live = client.messages(end - history);
    let packets = receive_through(&h.receiver, end);
    assert_eq!(packets[0].seq, history + 1, "history is not sent over UDP");
    let udp = contiguous(&packets, history + 1);
    assert_eq!(udp, live);
    h.publisher.shutdown();
    h.pipeline.shutdown().unwrap().unwrap();
    let (engine, journal_bytes) = replayed_engine(&dir);
    let all: Vec<Vec<u8>> = replayed.into_iter().chain(live).collect();
    assert_eq!(framed(&all), journal_bytes);
    let mut decoded = DecodedBook::default();
    decoded.apply_bytes(&journal_bytes);
    assert_book_matches(&decoded, &engine);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_gap_before_the_first_live_output_is_filled_from_the_journal() {
    let dir = temp_dir("gap");
    let pipeline = start_pipeline(&dir);
    let mut rig = Rig::new();
    let commands = scenario(&mut rig, 60, 3);
    let (before, after) = commands.split_at(commands.len() / 2);
    // Sequenced after the pipeline recovered (nothing) but before the
    // publisher connects.
    drive(&pipeline, before);
    let receiver = loopback_udp();
    let mut config = ItchConfig::new(directory(), dir.clone());
    config.session = SESSION.into();
    config.mold_socket = Some(UdpSocket::bind("127.0.0.1:0").unwrap());
    config.mold_destination = receiver.local_addr().unwrap();
    config.soup_listener = Some(TcpListener::bind("127.0.0.1:0").unwrap());
    let receiver = Collector::new(receiver);
    let publisher = ItchPublisher::start(pipeline.clone(), config).unwrap();
    assert_eq!(
        publisher.next_seq(),
        1,
        "nothing recovered at pipeline start"
    );
    let seq = drive(&pipeline, after);
    wait_fed(&publisher, seq);
    assert!(publisher.stats().gap_fills >= 1);
    let end = publisher.next_seq() - 1;
    let mut client = Client::login(publisher.soup_addr().unwrap(), "", "", "", 1);
    assert_eq!(client.accepted(), 1);
    let all = client.messages(end);
    // Filled while running, so sent over UDP too.
    assert_eq!(contiguous(&receive_through(&receiver, end), 1), all);
    publisher.shutdown();
    pipeline.shutdown().unwrap().unwrap();
    let (_, journal_bytes) = replayed_engine(&dir);
    assert_eq!(framed(&all), journal_bytes);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_requests_and_soup_garbage_are_ignored_or_closed() {
    let dir = temp_dir("malformed");
    let h = harness(&dir, "feed.itch", |config| {
        config.soup_password = Some("pw".into());
        config.client_timeout = Duration::from_millis(500);
    });
    let mut rig = Rig::new();
    let commands = scenario(&mut rig, 20, 1);
    let seq = drive(&h.pipeline, &commands);
    wait_fed(&h.publisher, seq);
    let last = h.publisher.next_seq() - 1;

    // MoldUDP64: nothing comes back for any of these.
    let requester = loopback_udp();
    let target = h.publisher.retransmit_addr().unwrap();
    let session = Session::new(SESSION).unwrap();
    let other = Session::new("OTHER").unwrap();
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xFF],
        vec![0; 19],
        vec![0xFF; 20],
        mold::request(&other, 1, 1),
        mold::request(&session, 1, 0),
        mold::request(&session, 1, 0xFFFF),
        mold::request(&session, 0, 1),
        mold::request(&session, u64::MAX, 10),
        mold::request(&session, last + 1, 1),
        vec![0x41; 1500],
    ];
    let mut long = mold::request(&session, 1, 1);
    long.push(0);
    bad.push(long);
    for request in &bad {
        requester.send_to(request, target).unwrap();
    }
    let mut buffer = [0u8; 2048];
    let quiet_until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < quiet_until {
        assert!(
            requester.recv(&mut buffer).is_err(),
            "answered a bad request"
        );
    }
    // The port still works.
    requester
        .send_to(&mold::request(&session, 1, 2), target)
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let len = loop {
        assert!(Instant::now() < deadline);
        if let Ok(len) = requester.recv(&mut buffer) {
            break len;
        }
    };
    assert_eq!(mold::decode_packet(&buffer[..len]).unwrap().count, 2);
    // Counted just after the send.
    let stats = wait_stats(&h.publisher, |s| s.retransmit_served == 1);
    assert_eq!(stats.retransmit_ignored, bad.len() as u64);

    // SoupBinTCP: garbage, a non-login packet, an oversized frame, and
    // silence are closed; bad credentials and sessions are rejected.
    let addr = h.publisher.soup_addr().unwrap();
    let garbage: [&[u8]; 4] = [
        b"\x00\x00",
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x00\x01R",
        b"\x7f\xff\x00",
    ];
    for bytes in garbage {
        let mut client = Client::connect(addr);
        client.stream.write_all(bytes).unwrap();
        assert_eq!(client.next(), None, "closed after {bytes:?}");
    }
    let mut silent = Client::connect(addr);
    let started = Instant::now();
    assert_eq!(silent.next(), None, "closed when silent");
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut wrong_password = Client::login(addr, "x", "nope", "", 1);
    assert_eq!(
        wrong_password.next(),
        Some(Packet::LoginRejected(LoginRejectReason::NotAuthorized))
    );
    let mut wrong_session = Client::login(addr, "x", "pw", "NOPE", 1);
    assert_eq!(
        wrong_session.next(),
        Some(Packet::LoginRejected(
            LoginRejectReason::SessionNotAvailable
        ))
    );
    // A sequence beyond the end starts at the next live message.
    let mut ok = Client::login(addr, "x", "pw", SESSION, 1_000_000);
    assert_eq!(ok.accepted(), last + 1);
    // Still serving.
    let mut ok = Client::login(addr, "x", "pw", SESSION, 2);
    assert_eq!(ok.accepted(), 2);
    assert_eq!(ok.messages(last - 1).len() as u64, last - 1);
    // A logged-in client sending a server packet is closed.
    ok.send(&Packet::LoginAccepted {
        session: alpha(b"X"),
        sequence_number: 1,
    });
    assert_eq!(ok.next(), None);
    let stats = wait_stats(&h.publisher, |s| s.soup_closed_before_login == 5);
    assert_eq!(stats.soup_logins_rejected, 2);
    assert_eq!(h.publisher.failure(), None);
    h.publisher.shutdown();
    h.pipeline.shutdown().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_consumer_cut_off_by_the_engine_reconnects_and_fills_from_the_journal() {
    let dir = temp_dir("cutoff");
    let mut config = PipelineConfig::new(dir.clone());
    config.segment_bytes = 1 << 20;
    config.durable = false;
    // Tiny outbound queues: a burst cuts the feed's session off.
    config.outbound_capacity = 4;
    config.wait = WaitStrategy::Park {
        spins: 100,
        timeout: Duration::from_millis(5),
    };
    let pipeline = Arc::new(Pipeline::start(config, EngineConfig::default()).unwrap());
    let mut itch = ItchConfig::new(directory(), dir.clone());
    itch.session = SESSION.into();
    itch.soup_listener = Some(TcpListener::bind("127.0.0.1:0").unwrap());
    let receiver = loopback_udp();
    itch.mold_socket = Some(UdpSocket::bind("127.0.0.1:0").unwrap());
    itch.mold_destination = receiver.local_addr().unwrap();
    let receiver = Collector::new(receiver);
    let publisher = ItchPublisher::start(pipeline.clone(), itch).unwrap();
    let mut rig = Rig::new();
    let commands = scenario(&mut rig, 3_000, 77);
    // Unpaced: submit everything, then wait for the engine to have run it.
    let (submitter, _replies) = pipeline.connect(&[], false);
    let deadline = Instant::now() + DEADLINE;
    for command in &commands {
        while submitter.submit(*command).is_err() {
            assert!(Instant::now() < deadline, "engine busy too long");
            std::thread::yield_now();
        }
    }
    let total = commands.len() as u64;
    while pipeline
        .stats()
        .commands
        .load(std::sync::atomic::Ordering::Relaxed)
        < total
    {
        assert!(Instant::now() < deadline, "engine too slow");
        std::thread::sleep(Duration::from_millis(2));
    }
    // One more command after the burst, so a cut-off session sees an
    // output after reconnecting and fills the gap before it.
    drive(&pipeline, &[Command::Halt { symbol: OTHER }]);
    wait_fed(&publisher, total + 1);
    let stats = publisher.stats();
    assert!(
        stats.reconnects >= 1 && stats.gap_fills >= 1,
        "the burst was expected to cut the feed off: {stats:?}"
    );
    let end = publisher.next_seq() - 1;
    let mut client = Client::login(publisher.soup_addr().unwrap(), "", "", "", 1);
    assert_eq!(client.accepted(), 1);
    let all = client.messages(end);
    // UDP carries the filled gap too; a burst may overflow the
    // receiver's socket buffer, so only check what arrived is in order
    // and matches.
    for bytes in receiver.packets() {
        let packet = mold::decode_packet(&bytes).unwrap();
        for (i, message) in packet.messages.iter().enumerate() {
            assert_eq!(*message, &all[(packet.seq - 1) as usize + i][..]);
        }
    }
    publisher.shutdown();
    pipeline.shutdown().unwrap().unwrap();
    let (_, journal_bytes) = replayed_engine(&dir);
    assert_eq!(framed(&all), journal_bytes);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_feed_failure_ends_soup_sessions_and_bad_configs_are_refused() {
    let dir = temp_dir("failure");
    let pipeline = start_pipeline(&dir);
    // OTHER is missing from the directory: its AddSymbol cannot be
    // published.
    let mut partial = SymbolDirectory::new();
    partial.insert(SYM, "BRKX", 10).unwrap();
    let mut config = ItchConfig::new(partial, dir.clone());
    config.soup_listener = Some(TcpListener::bind("127.0.0.1:0").unwrap());
    let publisher = ItchPublisher::start(pipeline.clone(), config).unwrap();
    let mut client = Client::login(publisher.soup_addr().unwrap(), "", "", "", 0);
    assert!(matches!(client.next(), Some(Packet::LoginAccepted { .. })));
    let rig = Rig::new();
    let commands: Vec<Command> = rig.log.iter().map(|(c, _)| c.command).collect();
    drive(&pipeline, &commands);
    let deadline = Instant::now() + DEADLINE;
    while publisher.failure().is_none() {
        assert!(Instant::now() < deadline, "no failure reported");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(publisher.failure().unwrap().contains("not in directory"));
    // Messages derived before the failure are delivered, then End of Session.
    let mut ended = false;
    for _ in 0..100 {
        match client.next() {
            Some(Packet::SequencedData(_)) => {}
            Some(Packet::EndOfSession) => {
                ended = true;
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(ended);
    let mut late = Client::login(publisher.soup_addr().unwrap(), "", "", "", 1);
    assert_eq!(
        late.next(),
        Some(Packet::LoginRejected(
            LoginRejectReason::SessionNotAvailable
        ))
    );
    publisher.shutdown();

    // Bad configurations, and a journal the directory cannot derive.
    let bad = |tweak: fn(&mut ItchConfig)| {
        let mut config = ItchConfig::new(directory(), dir.clone());
        tweak(&mut config);
        ItchPublisher::start(pipeline.clone(), config)
            .err()
            .unwrap()
            .to_string()
    };
    assert!(bad(|c| c.session = "ELEVENCHARS".into()).contains("session"));
    assert!(bad(|c| c.session = String::new()).contains("session"));
    assert!(bad(|c| c.max_packet_bytes = 40).contains("max_packet_bytes"));
    assert!(bad(|c| c.soup_username = Some("TOOLONGNAME".into())).contains("username"));
    assert!(bad(|c| c.heartbeat_interval = Duration::ZERO).contains("heartbeat"));
    pipeline.shutdown().unwrap().unwrap();
    drop(pipeline);
    let pipeline = start_pipeline(&dir);
    let mut partial = SymbolDirectory::new();
    partial.insert(SYM, "BRKX", 10).unwrap();
    let error = ItchPublisher::start(pipeline.clone(), ItchConfig::new(partial, dir.clone()))
        .err()
        .unwrap();
    assert!(error.to_string().contains("history"), "{error}");
    pipeline.shutdown().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
