//! Socket-level tests of `FixServer` with the `AtEcho` application.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use brokerx_gateway_fix::codec;
use brokerx_gateway_fix::dictionary::format_utc_timestamp;
use brokerx_gateway_fix::server::now_ms;
use brokerx_gateway_fix::{AtEcho, FixConfig, FixServer};

fn start() -> FixServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    FixServer::start(
        listener,
        FixConfig::conformance(None),
        Arc::new(AtEcho::new()),
    )
    .unwrap()
}

fn msg(msg_type: &str, seq: u64, extra: &[(u32, &str)]) -> Vec<u8> {
    let seq = seq.to_string();
    let ts = format_utc_timestamp(now_ms());
    let mut f: Vec<(u32, &[u8])> = vec![
        (34, seq.as_bytes()),
        (49, b"TW44"),
        (52, ts.as_bytes()),
        (56, b"ISLD"),
    ];
    f.extend(extra.iter().map(|(t, v)| (*t, v.as_bytes())));
    codec::encode(b"FIX.4.4", msg_type.as_bytes(), &[], &f)
}

/// Read one framed message, or `None` on EOF.
fn read_msg(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    loop {
        if let codec::Frame::Message { len } = codec::next_frame(buf, 1 << 20) {
            let m = buf.drain(..len).collect::<Vec<u8>>();
            return Some(String::from_utf8_lossy(&m).replace('\x01', "|"));
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn garbage_before_logon_closes_and_server_survives() {
    let server = start();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    let garbage: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = s.write_all(&garbage);
    let mut buf = Vec::new();
    assert_eq!(
        read_msg(&mut s, &mut buf),
        None,
        "no reply to garbage, then close"
    );

    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(&msg("A", 1, &[(98, "0"), (108, "30")]))
        .unwrap();
    let logon = read_msg(&mut s, &mut buf).expect("logon reply");
    assert!(
        logon.contains("|35=A|34=1|49=ISLD|") && logon.contains("|98=0|108=30|"),
        "{logon}"
    );
}

#[test]
fn oversize_and_garbled_after_logon_are_dropped() {
    let server = start();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    let mut buf = Vec::new();
    s.write_all(&msg("A", 1, &[(98, "0"), (108, "30")]))
        .unwrap();
    read_msg(&mut s, &mut buf).expect("logon reply");
    let big = "X".repeat(100_000);
    s.write_all(&msg("1", 2, &[(112, &big)])).unwrap(); // over the 64 KiB bound: dropped
    s.write_all(b"8=FIX.4.4\x019=5\x0135=0\x0110=000\x01")
        .unwrap(); // bad checksum: dropped
    s.write_all(&msg("1", 2, &[(112, "PING")])).unwrap();
    let hb = read_msg(&mut s, &mut buf).expect("heartbeat");
    assert!(
        hb.contains("|35=0|34=2|") && hb.contains("|112=PING|"),
        "{hb}"
    );
}

#[test]
fn logout_handshake_and_echo() {
    let server = start();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    let mut buf = Vec::new();
    s.write_all(&msg("A", 1, &[(98, "0"), (108, "30")]))
        .unwrap();
    read_msg(&mut s, &mut buf).expect("logon reply");
    s.write_all(&msg(
        "D",
        2,
        &[
            (11, "ID"),
            (21, "1"),
            (40, "1"),
            (54, "1"),
            (38, "002000.00"),
            (55, "INTC"),
            (60, "20240101-00:00:00"),
        ],
    ))
    .unwrap();
    let echo = read_msg(&mut s, &mut buf).expect("echo");
    assert!(
        echo.contains(
            "|56=TW44|11=ID|21=1|38=002000.00|40=1|54=1|55=INTC|60=20240101-00:00:00|10="
        ),
        "{echo}"
    );
    s.write_all(&msg("5", 3, &[])).unwrap();
    let logout = read_msg(&mut s, &mut buf).expect("logout reply");
    assert!(logout.contains("|35=5|34=3|"), "{logout}");
    assert_eq!(read_msg(&mut s, &mut buf), None, "closed after Logout");
}
