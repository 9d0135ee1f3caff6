//! The load generator end to end: a short run of each surface against a
//! `brokerx serve` it spawns, its echo / `/health` baselines, the files it
//! writes (percentile distributions that parse back, the summary, the
//! plot), and clear errors for malformed arguments.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const LOADGEN: &str = env!("CARGO_BIN_EXE_loadgen");
const BROKERX: &str = env!("CARGO_BIN_EXE_brokerx");

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "brokerx-loadgen-test-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A percentile distribution file: (rows of value, percentile, total
/// count; the footer's total count).
fn parse_hgrm(path: &Path) -> (Vec<(f64, f64, u64)>, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"],
        "{}",
        path.display()
    );
    let mut rows = Vec::new();
    let mut total = None;
    for line in lines {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("#[Max") {
            let count = rest.split("Total count").nth(1).unwrap();
            total = Some(count.trim_matches([' ', '=', ']']).parse::<u64>().unwrap());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert!((3..=4).contains(&columns.len()), "{line:?}");
        let row = (
            columns[0].parse::<f64>().unwrap(),
            columns[1].parse::<f64>().unwrap(),
            columns[2].parse::<u64>().unwrap(),
        );
        if columns.len() == 4 {
            let inverse: f64 = columns[3].parse().unwrap();
            assert!(
                (inverse - 1.0 / (1.0 - row.1)).abs() <= 0.01 * inverse.max(1.0),
                "{line:?}"
            );
        }
        rows.push(row);
    }
    for pair in rows.windows(2) {
        assert!(pair[0].0 <= pair[1].0 && pair[0].1 <= pair[1].1 && pair[0].2 <= pair[1].2);
    }
    (rows, total.expect("Total count footer"))
}

/// Runs `surfaces` against a spawned server (400 requests/s for 0.75 s
/// over 2 sessions, with the baseline) and checks everything it wrote;
/// `kinds` are the request kinds the mix must have exercised.
fn run_and_check(name: &str, surfaces: &[&str], mix: &str, kinds: &[&str]) {
    let out = temp_dir(name);
    let output = Command::new(LOADGEN)
        .args([
            "--spawn",
            "--brokerx",
            BROKERX,
            "--surfaces",
            &surfaces.join(","),
        ])
        .args([
            "--rates",
            "400",
            "--duration",
            "0.75",
            "--sessions",
            "2",
            "--symbols",
            "2",
        ])
        .args([
            "--durability",
            "none",
            "--seed",
            "7",
            "--max-live",
            "8",
            "--no-progress",
        ])
        .args(["--mix", mix])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "loadgen failed: {stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("| surface | offered/s"), "{stdout}");

    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let runs = summary.as_array().unwrap();
    assert_eq!(runs.len(), surfaces.len(), "{summary:#}");
    for (run, surface) in runs.iter().zip(surfaces) {
        let surface = *surface;
        assert_eq!(run["surface"], surface);
        for field in [
            "rate_offered",
            "rate_achieved",
            "sessions",
            "offered",
            "errors",
            "latency",
            "baseline",
            "ratio_to_baseline",
            "executions",
            "by_kind",
            "durability",
        ] {
            assert!(!run[field].is_null(), "{surface}: no {field}: {run:#}");
        }
        for q in ["p50", "p90", "p99", "p99_9", "p99_99", "max"] {
            assert!(
                run["latency"][q].as_f64().unwrap() > 0.0,
                "{surface} {q}: {run:#}"
            );
            assert!(
                run["baseline"][q].as_f64().unwrap() > 0.0,
                "{surface} baseline {q}"
            );
            assert!(
                run["ratio_to_baseline"][q].as_f64().unwrap() > 0.0,
                "{surface} ratio {q}"
            );
        }
        assert_eq!(run["errors"], 0, "{surface}: {run:#}");
        let offered = run["offered"].as_u64().unwrap();
        assert_eq!(offered, 300, "{surface}: 400/s for 0.75 s");
        assert_eq!(run["sent"].as_u64().unwrap(), offered, "{surface}");
        let answered = run["acked"].as_u64().unwrap() + run["too_late"].as_u64().unwrap();
        assert_eq!(
            answered, offered,
            "{surface}: every request answered: {run:#}"
        );
        for kind in kinds {
            assert!(
                run["by_kind"][kind]["count"].as_u64().unwrap() > 0,
                "{surface} {kind}: {run:#}"
            );
        }
        let timed = run["timed"].as_u64().unwrap();
        assert!(timed > 0 && timed <= offered);
        // The latency counts from the intended send time, so no answer can
        // be faster than the loopback (the histogram's first bucket is 1 µs).
        assert!(run["latency"]["p50"].as_f64().unwrap() >= 5.0, "{run:#}");

        let (rows, total) = parse_hgrm(&out.join(format!("{surface}-400.hgrm")));
        assert_eq!(
            total, timed,
            "{surface}: the histogram holds every timed answer"
        );
        assert_eq!(rows.last().unwrap().1, 1.0);
        assert_eq!(rows.last().unwrap().2, total);
        let baseline = if surface == "rest" {
            "health-rest-400.hgrm".to_string()
        } else {
            format!("echo-{surface}-400.hgrm")
        };
        let (_, baseline_total) = parse_hgrm(&out.join(&baseline));
        assert_eq!(
            baseline_total, offered,
            "{surface}: the baseline answered every request"
        );
        assert_eq!(run["baseline"]["count"].as_u64().unwrap(), offered);
        // FIX and OUCH marketable orders execute against the other
        // session's resting orders (REST clients only buy).
        if surface != "rest" {
            assert!(run["executions"]["count"].as_u64().unwrap() > 0, "{run:#}");
        }
        let svg = std::fs::read_to_string(out.join("latency.svg")).unwrap();
        assert!(svg.starts_with("<svg"), "an SVG");
        let label = format!("{surface}-400");
        assert!(svg.lines().any(|l| l.trim() == label), "legend for {label}");
        let label = baseline.trim_end_matches(".hgrm");
        assert!(svg.lines().any(|l| l.trim() == label), "legend for {label}");
    }
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + surfaces.len(), "{csv}");
    assert!(csv.starts_with("surface,rate_offered,rate_achieved,sessions"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn ouch_and_rest_against_a_spawned_server_with_their_baselines() {
    run_and_check(
        "ouch-rest",
        &["ouch", "rest"],
        "new=45,marketable=10,cancel=27,replace=18",
        &["new", "marketable", "cancel", "replace"],
    );
}

/// FIX with the full mix: replaces race fills here (the gateway replaces
/// by total quantity, `Command::ReplaceTotal`, so the order never exceeds
/// its OrderQty; a debug build asserts it).
#[test]
fn fix_against_a_spawned_server_with_its_baseline() {
    run_and_check(
        "fix",
        &["fix"],
        "new=45,marketable=10,cancel=27,replace=18",
        &["new", "marketable", "cancel", "replace"],
    );
}

#[test]
fn plot_draws_a_line_per_file() {
    let dir = temp_dir("plot");
    let write = |name: &str, scale: f64| {
        let mut text = format!(
            "{:>12} {:>14} {:>10} {:>14}\n\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        for (i, p) in [0.0, 0.5, 0.9, 0.99, 0.999].iter().enumerate() {
            text.push_str(&format!(
                "{:12.3} {p:2.12} {:10} {:14.2}\n",
                scale * (i + 1) as f64,
                (i + 1) * 10,
                1.0 / (1.0 - p)
            ));
        }
        text.push_str(&format!("{:12.3} {:2.12} {:10}\n", scale * 9.0, 1.0, 60));
        text.push_str("#[Mean    =        1.000, StdDeviation   =        1.000]\n#[Max     =        9.000, Total count    =             60]\n#[Buckets =           27, SubBuckets     =           2048]\n");
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let a = write("ouch-100.hgrm", 10.0);
    let b = write("echo-ouch-100.hgrm", 1.0);
    let c = write("fix-100.hgrm", 20.0);
    let svg = dir.join("img/plot.svg");
    let output = Command::new(LOADGEN)
        .arg("plot")
        .args([&a, &b, &c])
        .arg("-o")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in ["ouch-100", "echo-ouch-100", "fix-100"] {
        assert!(
            text.lines().any(|l| l.trim() == label),
            "legend for {label}"
        );
    }
    // One polyline per series, and one per legend sample.
    assert!(text.matches("<polyline").count() >= 6, "{text}");
    // A file that is not a distribution is refused, naming it.
    let bad = dir.join("bad.hgrm");
    std::fs::write(&bad, "hello\n").unwrap();
    let output = Command::new(LOADGEN)
        .arg("plot")
        .arg(&bad)
        .arg("-o")
        .arg(&svg)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("bad.hgrm"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_arguments_give_clear_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "no arguments"),
        (&["--spawn", "--rates", "fast"], "--rates: not a number"),
        (&["--spawn", "--rates", "0"], "--rates: 0 is out of range"),
        (&["--spawn", "--rates", "2000000"], "out of range"),
        (
            &["--spawn", "--sessions", "0"],
            "--sessions: 0 is out of range",
        ),
        (
            &["--spawn", "--sessions", "many"],
            "--sessions: not a number",
        ),
        (
            &["--spawn", "--duration", "-1"],
            "--duration: -1 is out of range",
        ),
        (
            &["--spawn", "--surfaces", "smtp"],
            "unknown surface \"smtp\"",
        ),
        (&["--spawn", "--surfaces", ""], "name at least one"),
        (
            &["--spawn", "--mix", "new=1,bogus=2"],
            "unknown kind \"bogus\"",
        ),
        (&["--spawn", "--mix", "cancel=1"], "cannot both be 0"),
        (&["--spawn", "--mix", "new"], "expected name=share"),
        (
            &["--spawn", "--durability", "sometimes"],
            "--durability: none or fsync",
        ),
        (&["--spawn", "--wait", "nap"], "--wait:"),
        (
            &["--spawn", "--count", "10", "--duration", "1"],
            "exclude each other",
        ),
        (
            &["--spawn", "--symbols", "99"],
            "--symbols: 99 is out of range",
        ),
        (
            &["--spawn", "--fix", "127.0.0.1:1"],
            "--fix and --spawn exclude each other",
        ),
        (&["--fix", "10.0.0.1:9878"], "not a loopback address"),
        (&["--ouch", "localhost"], "not an address"),
        (&["--rates", "100"], "give --spawn, or the address"),
        (
            &["--fix", "127.0.0.1:9", "--surfaces", "ouch"],
            "--surfaces ouch: give its address with --ouch",
        ),
        (
            &["--fix", "127.0.0.1:9", "--durability", "none"],
            "only applies with --spawn",
        ),
        (&["--spawn", "--bogus", "1"], "unknown option --bogus"),
        (&["--spawn", "--rates"], "--rates needs a value"),
        (
            &["--spawn", "--seed", "1", "--seed", "2"],
            "--seed given twice",
        ),
        (&["--spawn", "stray"], "unexpected argument \"stray\""),
        (
            &["--spawn", "--plot", "x.svg", "--no-plot"],
            "exclude each other",
        ),
        (
            &[
                "--spawn",
                "--brokerx",
                "/nonexistent/brokerx",
                "--no-progress",
            ],
            "no brokerx binary",
        ),
        (&["plot"], "-o OUT.svg"),
        (&["plot", "-o", "x.svg"], "at least one .hgrm"),
        (
            &["plot", "/nonexistent.hgrm", "-o", "x.svg"],
            "/nonexistent.hgrm",
        ),
    ];
    let dir = temp_dir("args");
    for (args, expected) in cases {
        let output = Command::new(LOADGEN)
            .args(*args)
            .args(if args.first() == Some(&"plot") || args.is_empty() {
                vec![]
            } else {
                vec!["--out".to_string(), dir.join("out").display().to_string()]
            })
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr:?}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let output = Command::new(LOADGEN).arg("help").output().unwrap();
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("loadgen plot"));
    let _ = std::fs::remove_dir_all(&dir);
}
