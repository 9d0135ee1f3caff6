//! Helpers shared by the end-to-end tests: start `brokerx serve` as a
//! child process, wait for `brokerx ready`, run operator commands.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_brokerx");

pub struct Server {
    pub child: Child,
    pub address: String,
    /// Every `<name> port listening on <address>` line, by name.
    pub ports: std::collections::BTreeMap<String, String>,
    /// Lines the server printed after `brokerx ready`.
    pub lines: std::sync::mpsc::Receiver<String>,
}

/// A test that fails must not leave its server running (it would hold the
/// test's output pipe open): the child is killed when dropped.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start(dir: &Path, config: &Path) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start brokerx");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut address = None;
    let mut ports = std::collections::BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in lines.by_ref() {
        let line = line.expect("read stdout");
        if let Some((name, rest)) = line.split_once(" port listening on ") {
            let at = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string();
            if name == "test" {
                address = Some(at.clone());
            }
            ports.insert(name.to_string(), at);
        }
        if line == "brokerx ready" {
            break;
        }
        assert!(Instant::now() < deadline, "server did not get ready");
    }
    // Keep draining stdout so the server never blocks on it.
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    Server {
        child,
        address: address.expect("test port address printed"),
        lines: receiver,
        ports,
    }
}

/// The tag in an event line (`... tag: 17 }`), if the event carries one.
pub fn tag_of(line: &str) -> Option<u64> {
    let rest = &line[line.find("tag: ")? + 5..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

pub fn run(args: &[&str], dir: &Path) -> String {
    let output = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "brokerx {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brokerx-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Stops a server with SIGTERM and returns what it printed on the way out.
pub fn terminate(mut server: Server) -> Vec<String> {
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(
        server.child.wait().unwrap().success(),
        "clean shutdown exits 0"
    );
    // The forwarding thread ends at EOF, which disconnects the channel.
    let mut printed = Vec::new();
    while let Ok(line) = server.lines.recv_timeout(Duration::from_secs(10)) {
        printed.push(line);
    }
    printed
}
