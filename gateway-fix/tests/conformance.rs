//! Runs QuickFIX's 59 server-side FIX.4.4 acceptance files (shared/conformance) with
//! fixat.py against the AtEcho acceptor, and asserts the ratchet list
//! `tests/conformance_passing.txt`: every file listed there must pass.
//!
//! Files run in 4 parallel groups, each against its own acceptor (one ISLD/TW44 session
//! can only be logged on once). The whole run is bounded by `SUITE_DEADLINE`.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use brokerx_gateway_fix::{AtEcho, FixConfig, FixServer};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance");
const RATCHET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance_passing.txt");
const GROUPS: usize = 4;
const SUITE_DEADLINE: Duration = Duration::from_secs(240);

fn python_available() -> bool {
    Command::new("python3")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn quickfix_fix44_acceptance() {
    let shared = Path::new(SHARED);
    let suite = shared.join("quickfix-fix44");
    let runner = shared.join("fixat.py");
    if !suite.is_dir() || !runner.is_file() {
        eprintln!(
            "SKIPPED: conformance suite not found at {}",
            suite.display()
        );
        return;
    }
    if !python_available() {
        eprintln!("SKIPPED: python3 is not available");
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&suite)
        .expect("read suite dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "def"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        59,
        "expected the 59 QuickFIX FIX.4.4 server files"
    );

    let work = std::env::temp_dir().join(format!("brokerx-fix-conformance-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("temp dir");

    let mut servers = Vec::new();
    let mut children = Vec::new();
    for g in 0..GROUPS {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let config = FixConfig::conformance(Some(work.join(format!("store{g}"))));
        let server =
            FixServer::start(listener, config, Arc::new(AtEcho::new())).expect("start server");
        let port = server.local_addr().port();
        servers.push(server);
        let out_path = work.join(format!("fixat{g}.out"));
        let out = File::create(&out_path).expect("output file");
        let mine: Vec<&PathBuf> = files.iter().skip(g).step_by(GROUPS).collect();
        let child = Command::new("python3")
            .arg(&runner)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--timeout-s",
                "10",
            ])
            .args(mine)
            .stdout(Stdio::from(out))
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fixat.py");
        children.push((child, out_path));
    }

    let started = Instant::now();
    for (child, _) in &mut children {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if started.elapsed() > SUITE_DEADLINE => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(100)),
                Err(e) => panic!("waiting for fixat.py: {e}"),
            }
        }
    }
    drop(servers);

    // name -> (passed, failure detail)
    let mut results: BTreeMap<String, (bool, String)> = BTreeMap::new();
    for (_, out_path) in &children {
        let text = std::fs::read_to_string(out_path).unwrap_or_default();
        let mut current: Option<String> = None;
        for line in text.lines() {
            let status = line
                .strip_prefix("PASS ")
                .map(|p| (true, p))
                .or_else(|| line.strip_prefix("FAIL ").map(|p| (false, p)));
            if let Some((ok, path)) = status {
                let name = Path::new(path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                results.insert(name.clone(), (ok, String::new()));
                current = Some(name);
            } else if let (Some(name), Some(detail)) = (&current, line.strip_prefix("    ")) {
                if let Some(r) = results.get_mut(name) {
                    r.1.push_str(detail);
                    r.1.push('\n');
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);

    println!(
        "\nQuickFIX FIX.4.4 acceptance ({:.1} s):",
        started.elapsed().as_secs_f64()
    );
    let mut passed = 0;
    for f in &files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match results.get(&name) {
            Some((true, _)) => {
                passed += 1;
                println!("  PASS  {name}");
            }
            Some((false, detail)) => println!("  FAIL  {name}\n{}", indent(detail)),
            None => println!("  ----  {name} (not run: suite deadline)"),
        }
    }
    println!("{passed}/{} passed", files.len());

    let ratchet = std::fs::read_to_string(RATCHET).expect("read tests/conformance_passing.txt");
    let mut regressions = Vec::new();
    for name in ratchet
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if !matches!(results.get(name), Some((true, _))) {
            regressions.push(name.to_string());
        }
    }
    let newly: Vec<&String> = results
        .iter()
        .filter(|(n, (ok, _))| *ok && !ratchet.lines().any(|l| l.trim() == n.as_str()))
        .map(|(n, _)| n)
        .collect();
    if !newly.is_empty() {
        println!("passing but not in the ratchet list (add them): {newly:?}");
    }
    assert!(
        regressions.is_empty(),
        "ratchet regressions (listed in conformance_passing.txt but not passing): {regressions:?}"
    );
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("        {l}\n")).collect()
}
