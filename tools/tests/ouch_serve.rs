//! `brokerx serve` with its OUCH 4.2 listener: two users trade over real
//! SoupBinTCP sessions, then the server restarts and a login from sequence
//! 1 replays the same messages byte for byte. The ITCH feed over
//! SoupBinTCP shows the same trading.

mod common;

use brokerx_gateway_ouch::codec::{EnterOrder, Inbound, Outbound};
use brokerx_soupbin::{Decoder, Packet};
use common::{start, temp_dir, terminate};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[server]
data_dir = "unused"

[ports]
test = 0
ouch = 0
itch = 0
mold = 0

[[symbols]]
id = 0
name = "ACME"
tick = 100
lot = 1
reference = 1000000
band_bps = 1000

[[accounts]]
id = 1
name = "a"
cash = 1000000000000
shares = { ACME = 10000 }

[[accounts]]
id = 2
name = "b"
cash = 1000000000000
shares = { ACME = 10000 }

[[ouch_users]]
username = "ALICE"
password = "alice1"
account = 1

[[ouch_users]]
username = "BOB"
password = "bob1"
account = 2
"#;

struct Session {
    stream: TcpStream,
    decoder: Decoder,
}

fn pad<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [b' '; N];
    out[..text.len()].copy_from_slice(text.as_bytes());
    out
}

impl Session {
    fn login(address: &str, user: &str, password: &str, from: u64) -> Session {
        let mut stream = TcpStream::connect(address).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let login = Packet::LoginRequest {
            username: pad(user),
            password: pad(password),
            requested_session: [b' '; 10],
            requested_sequence_number: from,
        };
        stream.write_all(&login.to_bytes().unwrap()).unwrap();
        let mut session = Session {
            stream,
            decoder: Decoder::new(1024),
        };
        match session.next_packet() {
            Packet::LoginAccepted { .. } => session,
            other => panic!("login refused: {other:?}"),
        }
    }

    fn next_packet(&mut self) -> Packet {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(packet) = self.decoder.next_packet().unwrap() {
                return packet;
            }
            assert!(Instant::now() < deadline, "no packet");
            let mut buffer = [0u8; 4096];
            match self.stream.read(&mut buffer) {
                Ok(0) => panic!("connection closed"),
                Ok(n) => self.decoder.feed(&buffer[..n]),
                Err(_) => continue,
            }
        }
    }

    /// The next sequenced message, skipping heartbeats.
    fn next_message(&mut self) -> Vec<u8> {
        loop {
            match self.next_packet() {
                Packet::SequencedData(bytes) => return bytes,
                Packet::ServerHeartbeat => continue,
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn enter(&mut self, token: &str, side: u8, shares: u32, price: u32) {
        let order = Inbound::Enter(EnterOrder {
            token: pad(token),
            side,
            shares,
            stock: pad("ACME"),
            price,
            tif_seconds: 99_999,
            firm: [b' '; 4],
            display: b'Y',
            capacity: b'A',
            intermarket_sweep: b'N',
            minimum_quantity: 0,
            cross_type: b'N',
            customer_type: b' ',
        });
        let packet = Packet::UnsequencedData(order.to_bytes());
        self.stream.write_all(&packet.to_bytes().unwrap()).unwrap();
    }
}

fn kind(message: &[u8]) -> char {
    message[0] as char
}

#[test]
fn trading_over_ouch_and_replay_after_restart() {
    let root = temp_dir("ouch-serve");
    let dir = root.join("data");
    let config = root.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let server = start(&dir, &config);
    let address = server
        .ports
        .get("ouch")
        .expect("ouch listener printed")
        .clone();

    let mut alice = Session::login(&address, "ALICE", "alice1", 1);
    let mut bob = Session::login(&address, "BOB", "bob1", 1);
    assert_eq!(kind(&alice.next_message()), 'S', "system event first");
    assert_eq!(kind(&bob.next_message()), 'S');
    alice.enter("A1", b'S', 100, 1_000_000);
    assert_eq!(kind(&alice.next_message()), 'A');
    bob.enter("B1", b'B', 40, 1_000_000);
    assert_eq!(kind(&bob.next_message()), 'A');
    assert_eq!(kind(&bob.next_message()), 'E', "the buyer's execution");
    let alice_fill = alice.next_message();
    match Outbound::decode(&alice_fill).unwrap() {
        Outbound::Executed {
            executed_shares,
            liquidity_flag,
            ..
        } => {
            assert_eq!((executed_shares, liquidity_flag), (40, b'A'));
        }
        other => panic!("expected Executed, got {other:?}"),
    }
    bob.enter("B2", b'B', 10, 900_000); // rests
    assert_eq!(kind(&bob.next_message()), 'A');
    bob.enter("B3", b'B', 10, 1_000_050); // off the tick grid
    assert_eq!(kind(&bob.next_message()), 'J', "rejected with a reason");

    // The ITCH feed over SoupBinTCP, from message 1: the resting sell, its
    // execution against Bob, and Bob's resting bid.
    let itch_address = server
        .ports
        .get("itch")
        .expect("itch listener printed")
        .clone();
    let mut feed = Session::login(&itch_address, "ANY", "ANY", 1);
    let kinds: String = (0..6).map(|_| kind(&feed.next_message())).collect();
    assert_eq!(
        kinds, "SRHAEA",
        "system event, directory, trading action, add, execute, add"
    );

    // Restart the server; Alice logs in from 1 and gets the same bytes.
    drop(alice);
    drop(bob);
    let first_run: Vec<Vec<u8>> = {
        let mut replay = Session::login(&address, "ALICE", "alice1", 1);
        (0..3).map(|_| replay.next_message()).collect()
    };
    terminate(server);
    let server = start(&dir, &config);
    let address = server.ports.get("ouch").unwrap().clone();
    let mut again = Session::login(&address, "ALICE", "alice1", 1);
    let second_run: Vec<Vec<u8>> = (0..3).map(|_| again.next_message()).collect();
    assert_eq!(
        first_run, second_run,
        "replay after restart is byte-identical"
    );
    terminate(server);
}
