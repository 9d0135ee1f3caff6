//! Operator commands on a stopped store: `replay`, `journal dump`,
//! `snapshot`. They read the journal and snapshots and never modify them
//! (except `snapshot`, which adds one).

use crate::Flags;
use brokerx_engine::codec::decode_command;
use brokerx_engine::pipeline::{
    load_snapshot, replay_journal, write_snapshot_file, SnapshotHeader,
};
use brokerx_engine::state::StableHasher;
use brokerx_engine::{Engine, EngineConfig};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn data_dir(flags: &Flags) -> Result<PathBuf, String> {
    let dir = PathBuf::from(flags.value("data-dir").ok_or("--data-dir is required")?);
    if !dir.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    Ok(dir)
}

/// `brokerx replay`: rebuild the state from the journal, print counts,
/// hashes and throughput; `--verify` checks the result against the newest
/// snapshot's recorded hashes and the engine invariants.
pub fn replay(flags: &Flags) -> Result<(), String> {
    let dir = data_dir(flags)?;
    let snapshot = load_snapshot(&dir).map_err(|e| e.to_string())?;
    let (mut engine, mut hasher, mut events, start) =
        match (&snapshot, flags.switch("from-snapshot")) {
            (Some((header, engine, _)), true) => (
                engine.clone(),
                header.event_hasher,
                header.event_count,
                Some(header.seq),
            ),
            (None, true) => return Err("--from-snapshot: the store has no snapshot".into()),
            _ => (
                Engine::new(EngineConfig::default()),
                StableHasher::default(),
                0,
                None,
            ),
        };
    if let Some(seq) = start {
        println!("starting from snapshot at seq {seq}");
    }
    let verify_at = snapshot
        .as_ref()
        .map(|(header, _, _)| *header)
        .filter(|_| flags.switch("verify"));
    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut commands = 0u64;
    let mut progress_shown = false;
    let replayed = replay_journal(
        &dir,
        &mut engine,
        &mut hasher,
        &mut events,
        None,
        |command, _| {
            commands += 1;
            if last_report.elapsed() > Duration::from_secs(1) {
                eprint!(
                    "\rreplaying: seq {} ({} commands, {:.0}/s)   ",
                    command.seq,
                    commands,
                    commands as f64 / started.elapsed().as_secs_f64()
                );
                last_report = Instant::now();
                progress_shown = true;
            }
        },
    );
    let replayed = replayed.map_err(|e| e.to_string())?;
    if progress_shown {
        eprintln!();
    }
    let elapsed = started.elapsed();
    // The snapshot check needs the hashes at the snapshot's own sequence,
    // so it replays a second leg up to there.
    let checked = verify_at.map(|header| verify_against(&dir, start, &header));
    println!("commands replayed: {replayed}");
    println!("last seq:          {}", engine.last_seq());
    println!("events:            {events}");
    println!("event hash:        {:016x}", hasher.finish());
    println!("state hash:        {:016x}", engine.state_hash());
    println!(
        "throughput:        {:.0} commands/s ({:.3} s)",
        replayed as f64 / elapsed.as_secs_f64().max(1e-9),
        elapsed.as_secs_f64()
    );
    if flags.switch("verify") {
        engine
            .check_invariants()
            .map_err(|e| format!("verify: invariant broken: {e}"))?;
        println!("verify: invariants hold");
        match checked {
            Some(Ok(())) => println!("verify: matches the snapshot's recorded hashes"),
            Some(Err(e)) => return Err(format!("verify FAILED: {e}")),
            None => println!("verify: no snapshot to compare against"),
        }
    }
    Ok(())
}

/// Replays from the start (or `start` snapshot) up to the snapshot's
/// sequence and compares hashes with what the snapshot recorded.
fn verify_against(
    dir: &std::path::Path,
    start: Option<u64>,
    header: &SnapshotHeader,
) -> Result<(), String> {
    if start == Some(header.seq) {
        return Ok(());
    }
    let mut engine = Engine::new(EngineConfig::default());
    let mut hasher = StableHasher::default();
    let mut events = 0;
    replay_journal(
        dir,
        &mut engine,
        &mut hasher,
        &mut events,
        Some(header.seq),
        |_, _| {},
    )
    .map_err(|e| e.to_string())?;
    if engine.last_seq() != header.seq {
        return Err(format!(
            "journal ends at {} before the snapshot's seq {}",
            engine.last_seq(),
            header.seq
        ));
    }
    if engine.state_hash() != header.state_hash {
        return Err(format!(
            "state hash {:016x} != snapshot's {:016x} at seq {}",
            engine.state_hash(),
            header.state_hash,
            header.seq
        ));
    }
    if hasher != header.event_hasher || events != header.event_count {
        return Err(format!(
            "event stream differs from the one recorded at seq {}",
            header.seq
        ));
    }
    Ok(())
}

/// `brokerx journal dump`: one line per record.
pub fn dump(flags: &Flags) -> Result<(), String> {
    let dir = data_dir(flags)?;
    let from = flags.number::<u64>("from")?.unwrap_or(1);
    let to = flags.number::<u64>("to")?.unwrap_or(u64::MAX);
    let reader = brokerx_journal::read_journal(&brokerx_engine::pipeline::journal_dir(&dir), from)
        .map_err(|e| e.to_string())?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for record in reader {
        let (seq, payload) = record.map_err(|e| e.to_string())?;
        if seq > to {
            break;
        }
        let line = match decode_command(&payload) {
            Ok(command) => format!(
                "seq={seq} ts={} {:?}",
                command.timestamp_ns, command.command
            ),
            Err(error) => format!("seq={seq} UNDECODABLE ({error}): {} bytes", payload.len()),
        };
        use std::io::Write;
        writeln!(out, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `brokerx snapshot`: recover a stopped store and write a snapshot of it.
pub fn snapshot(flags: &Flags) -> Result<(), String> {
    let dir = data_dir(flags)?;
    let lock = std::fs::File::create(dir.join("LOCK")).map_err(|e| e.to_string())?;
    lock.try_lock()
        .map_err(|_| "the store is in use by a running brokerx".to_string())?;
    let (mut engine, mut hasher, mut events) =
        match load_snapshot(&dir).map_err(|e| e.to_string())? {
            Some((header, engine, _)) => (engine, header.event_hasher, header.event_count),
            None => (
                Engine::new(EngineConfig::default()),
                StableHasher::default(),
                0,
            ),
        };
    replay_journal(&dir, &mut engine, &mut hasher, &mut events, None, |_, _| {})
        .map_err(|e| e.to_string())?;
    let header = SnapshotHeader {
        seq: engine.last_seq(),
        event_count: events,
        event_hasher: hasher,
        state_hash: engine.state_hash(),
    };
    let path = write_snapshot_file(&dir, &header, &engine).map_err(|e| e.to_string())?;
    println!(
        "snapshot at seq {} written to {}",
        header.seq,
        path.display()
    );
    Ok(())
}
