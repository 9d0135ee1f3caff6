//! A failing disk stops `brokerx serve`: when an fsync fails, the server
//! exits with status 70 and a FATAL message, and the command whose batch
//! failed is never acknowledged.

mod common;

use common::{temp_dir, BIN};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[server]
data_dir = "unused"

[ports]
test = 0

[[accounts]]
id = 1
name = "a"
cash = 1000
"#;

#[test]
fn a_failed_fsync_stops_the_server_with_status_70() {
    let root = temp_dir("fatal");
    let config = root.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(root.join("data"))
        .env("BROKERX_TEST_FAIL_SYNC_AT_BATCH", "6")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut address = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("test port listening on ") {
            address = rest.split_whitespace().next().map(str::to_string);
        }
        if line == "brokerx ready" {
            break;
        }
    }
    let stream = TcpStream::connect(address.expect("test port")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream).lines();
    let mut acknowledged = 0;
    for tag in 1..=20 {
        if writer
            .write_all(format!("DEPOSIT 1 5 {tag}\n").as_bytes())
            .is_err()
        {
            break;
        }
        let mut ended = false;
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if line.starts_with("END ") {
                ended = true;
                break;
            }
        }
        if !ended {
            break;
        }
        acknowledged += 1;
    }
    assert!(
        acknowledged >= 1,
        "commands before the failure are acknowledged"
    );
    assert!(
        acknowledged < 20,
        "acknowledgements stop at the failed fsync"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the server must exit on its own");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(70));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("FATAL: journal failure"), "{stderr}");
}
