//! `brokerx serve --config config/quickfix-at.toml --fix-port PORT`: the
//! binary's FIX conformance mode, checked with the QuickFIX acceptance
//! runner on a sample of the suite (the whole suite runs in
//! `gateway-fix/tests/conformance.rs` against the same session layer).

mod common;

use common::{terminate, Server, BIN};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance");
const PROFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/quickfix-at.toml");
const SAMPLE: &[&str] = &[
    "1a_ValidLogonWithCorrectMsgSeqNum.def",
    "2b_MsgSeqNumTooHigh.def",
    "14b_RequiredFieldMissing.def",
];

#[test]
fn serve_with_the_quickfix_profile_passes_the_acceptance_runner() {
    let shared = Path::new(SHARED);
    let python = Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if !shared.is_dir() || !python.is_ok_and(|s| s.success()) {
        eprintln!("SKIPPED: needs ../shared/conformance and python3");
        return;
    }
    let mut child = Command::new(BIN)
        .args(["serve", "--config", PROFILE, "--fix-port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut address = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("fix port listening on ") {
            address = rest.split_whitespace().next().map(str::to_string);
        }
        if line == "brokerx ready" {
            break;
        }
    }
    let (forward, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = forward.send(line);
        }
    });
    let address = address.expect("fix listener printed");
    let port = address.rsplit(':').next().unwrap().to_string();
    let files: Vec<_> = SAMPLE
        .iter()
        .map(|f| shared.join("quickfix-fix44").join(f))
        .collect();
    for file in &files {
        assert!(file.is_file(), "{} exists", file.display());
    }
    let output = Command::new("python3")
        .arg(shared.join("fixat.py"))
        .args(["--host", "127.0.0.1", "--port", &port, "--timeout-s", "10"])
        .args(&files)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    let server = Server {
        child,
        address: String::new(),
        ports: Default::default(),
        lines: receiver,
        startup: Vec::new(),
    };
    terminate(server);
    assert!(
        output.status.success(),
        "acceptance runner failed:\n{report}"
    );
}
