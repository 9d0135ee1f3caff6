//! The server under test: what its config offers (symbols, OUCH users, FIX
//! sessions), and `--spawn`, which writes a config with as many sessions as
//! asked, runs the built `brokerx serve` on free loopback ports with a
//! temporary data directory, and waits for `brokerx ready`.

use crate::flow::Symbol;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The embedded default of `brokerx serve` (its demo logins).
const DEFAULT_CONFIG: &str = include_str!("../brokerx/default.toml");

/// The parts of a `brokerx serve` config the load generator uses.
#[derive(Debug, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub symbols: Vec<SymbolEntry>,
    #[serde(default)]
    pub ouch_users: Vec<OuchUser>,
    #[serde(default)]
    pub fix_sessions: Vec<FixSession>,
}

#[derive(Debug, Deserialize)]
pub struct SymbolEntry {
    pub name: String,
    pub tick: u64,
    pub lot: u64,
    pub reference: u64,
    pub band_bps: u32,
}

#[derive(Debug, Deserialize)]
pub struct OuchUser {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Deserialize)]
pub struct FixSession {
    pub sender_comp_id: String,
    pub target_comp_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Config {
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| format!("config: {e}"))
    }

    pub fn load(path: Option<&Path>) -> Result<Config, String> {
        match path {
            Some(path) => Config::parse(
                &std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read config {}: {e}", path.display()))?,
            ),
            None => Config::parse(DEFAULT_CONFIG),
        }
    }

    pub fn symbols(&self) -> Vec<Symbol> {
        self.symbols
            .iter()
            .map(|s| Symbol {
                name: s.name.clone(),
                tick: s.tick.max(1),
                lot: s.lot.max(1),
                reference: s.reference,
                band_bps: s.band_bps,
            })
            .collect()
    }
}

/// Symbols of a generated config: (name, reference price in 1/10000).
const SYMBOLS: [(&str, u64); 8] = [
    ("AAPL", 1_900_000),
    ("MSFT", 4_200_000),
    ("SPY", 5_000_000),
    ("NVDA", 1_200_000),
    ("AMZN", 1_800_000),
    ("GOOG", 1_700_000),
    ("META", 4_800_000),
    ("TSLA", 2_500_000),
];

pub const MAX_SYMBOLS: usize = SYMBOLS.len();

/// A config with `symbols` symbols and `sessions` funded accounts, each
/// with an OUCH user `LG<n>` and a FIX session `LG<n>` -> `BRKX`.
pub fn generate(
    data_dir: &Path,
    sessions: usize,
    symbols: usize,
    durability: &str,
    wait: &str,
) -> String {
    let mut text = format!(
        "# Written by loadgen --spawn.\n[server]\ndata_dir = {:?}\ndurability = {durability:?}\nwait = {wait:?}\nsnapshot_every = 0\n\n[ports]\nhttp = 0\nfix = 0\nouch = 0\n\n",
        data_dir.display().to_string()
    );
    for (id, (name, reference)) in SYMBOLS.iter().take(symbols).enumerate() {
        text.push_str(&format!(
            "[[symbols]]\nid = {id}\nname = \"{name}\"\ntick = 100\nlot = 1\nreference = {reference}\nband_bps = 1000\nmaker_fee = 20\ntaker_fee = 30\n\n"
        ));
    }
    let holdings: Vec<String> = SYMBOLS
        .iter()
        .take(symbols)
        .map(|(name, _)| format!("{name} = 1000000000"))
        .collect();
    for n in 0..sessions {
        text.push_str(&format!(
            "[[accounts]]\nid = {}\nname = \"loadgen-{n}\"\ncash = 100000000000000\nshares = {{ {} }}\n\n",
            n + 1,
            holdings.join(", ")
        ));
        text.push_str(&format!(
            "[[ouch_users]]\nusername = \"LG{n}\"\npassword = \"pw{n}\"\naccount = {}\n\n",
            n + 1
        ));
        text.push_str(&format!(
            "[[fix_sessions]]\nsender_comp_id = \"BRKX\"\ntarget_comp_id = \"LG{n}\"\nusername = \"lg{n}\"\npassword = \"pw{n}\"\naccount = {}\nreset_on_logon = true\n\n",
            n + 1
        ));
    }
    text
}

/// A `brokerx serve` started by the load generator; stopped (SIGTERM,
/// then killed after 30 s) and its directory removed when dropped.
pub struct Spawned {
    child: Child,
    pub dir: PathBuf,
    pub config: PathBuf,
    /// `<name> port listening on <address>` lines, by name.
    pub ports: BTreeMap<String, String>,
    keep: bool,
}

impl Spawned {
    pub fn start(
        binary: &Path,
        sessions: usize,
        symbols: usize,
        durability: &str,
        wait: &str,
        keep: bool,
    ) -> Result<Spawned, String> {
        if !binary.is_file() {
            return Err(format!(
                "--spawn: no brokerx binary at {} (build it: cargo build --release -p brokerx-tools --bin brokerx, or pass --brokerx PATH)",
                binary.display()
            ));
        }
        let dir = std::env::temp_dir().join(format!(
            "brokerx-loadgen-{}-{}",
            std::process::id(),
            crate::stream::run_prefix()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let data = dir.join("data");
        let config = dir.join("loadgen.toml");
        std::fs::write(
            &config,
            generate(&data, sessions, symbols, durability, wait),
        )
        .map_err(|e| format!("{}: {e}", config.display()))?;
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        // Both pipes are drained for the server's whole life, so it never
        // blocks on a full pipe; stderr is kept for an error message.
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let kept = errors.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() < 40 {
                    kept.push(line);
                }
            }
        });
        let mut spawned = Spawned {
            child,
            dir,
            config,
            ports: BTreeMap::new(),
            keep,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => {
                    if let Some((name, rest)) = line.split_once(" port listening on ") {
                        let at = rest.split_whitespace().next().unwrap_or_default();
                        spawned.ports.insert(name.to_string(), at.to_string());
                    }
                    if line == "brokerx ready" {
                        break;
                    }
                }
                Err(_) => {
                    let _ = spawned.child.kill();
                    let _ = spawned.child.wait();
                    std::thread::sleep(Duration::from_millis(100));
                    let text = errors.lock().unwrap_or_else(|e| e.into_inner()).join("\n");
                    return Err(format!("brokerx serve did not get ready:\n{text}"));
                }
            }
        }
        std::thread::spawn(move || while received.recv().is_ok() {});
        Ok(spawned)
    }

    pub fn port(&self, name: &str) -> Result<String, String> {
        self.ports
            .get(name)
            .cloned()
            .ok_or_else(|| format!("the spawned server printed no {name} port"))
    }

    pub fn stop(mut self) -> Result<(), String> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), String> {
        if let Ok(Some(_)) = self.child.try_wait() {
            return Ok(());
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => break,
                Ok(Some(status)) => {
                    return Err(format!("brokerx serve exited with {status}"));
                }
                _ if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    if !self.keep {
                        let _ = std::fs::remove_dir_all(&self.dir);
                    }
                    return Err("brokerx serve did not stop within 30 s of SIGTERM".into());
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        Ok(())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_config_has_every_session() {
        let text = generate(Path::new("/tmp/x"), 3, 2, "none", "park");
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.ouch_users.len(), 3);
        assert_eq!(config.fix_sessions.len(), 3);
        assert_eq!(config.symbols().len(), 2);
        let default = Config::load(None).unwrap();
        assert!(!default.ouch_users.is_empty() && !default.fix_sessions.is_empty());
    }
}
