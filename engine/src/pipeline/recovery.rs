//! Recovery: newest valid snapshot, then the journal after it, through the
//! same `Engine::apply` the live pipeline uses. `brokerx replay` uses the
//! same functions, so replay and recovery cannot drift apart.

use super::PipelineConfig;
use crate::codec::decode_command;
use crate::state::StableHasher;
use crate::{Engine, EngineConfig, Event, SequencedCommand};
use brokerx_journal::{read_journal, snapshot, Durability, Journal, JournalConfig, JournalError};
use std::path::{Path, PathBuf};

const SNAPSHOT_MAGIC: &[u8; 8] = b"BXSNAP01";

/// What a snapshot records besides the engine image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnapshotHeader {
    pub seq: u64,
    pub event_count: u64,
    pub event_hasher: StableHasher,
    pub state_hash: u64,
}

/// The state a pipeline starts from.
#[derive(Clone, Debug)]
pub struct Recovered {
    pub last_seq: u64,
    pub event_count: u64,
    pub event_hasher: StableHasher,
    pub from_snapshot: Option<u64>,
    pub replayed: u64,
    pub torn_tail: Option<String>,
    pub skipped_snapshots: Vec<String>,
}

#[derive(Debug)]
#[non_exhaustive]
pub enum RecoveryError {
    Journal(JournalError),
    Snapshot(String),
    Record { seq: u64, reason: String },
    Io(String),
}

impl std::fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoveryError::Journal(e) => write!(f, "journal: {e}"),
            RecoveryError::Snapshot(e) => write!(f, "snapshot: {e}"),
            RecoveryError::Record { seq, reason } => write!(f, "journal record {seq}: {reason}"),
            RecoveryError::Io(e) => write!(f, "i/o: {e}"),
        }
    }
}

impl std::error::Error for RecoveryError {}

impl From<JournalError> for RecoveryError {
    fn from(error: JournalError) -> RecoveryError {
        RecoveryError::Journal(error)
    }
}

pub fn journal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("journal")
}

pub fn snapshot_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("snapshots")
}

/// Snapshot payload: magic, header, engine image.
pub fn snapshot_payload(header: &SnapshotHeader, engine: &Engine) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 << 16);
    out.extend_from_slice(SNAPSHOT_MAGIC);
    let (state, count) = header.event_hasher.parts();
    for value in [
        header.seq,
        header.event_count,
        state,
        count,
        header.state_hash,
    ] {
        out.extend_from_slice(&value.to_le_bytes());
    }
    engine.encode_snapshot(&mut out);
    out
}

pub fn parse_snapshot(payload: &[u8]) -> Result<(SnapshotHeader, Engine), RecoveryError> {
    let bad = |why: &str| RecoveryError::Snapshot(why.to_string());
    if payload.len() < 48 || &payload[..8] != SNAPSHOT_MAGIC {
        return Err(bad("not a BrokerX snapshot"));
    }
    let word =
        |i: usize| u64::from_le_bytes(payload[8 + i * 8..16 + i * 8].try_into().expect("8 bytes"));
    let header = SnapshotHeader {
        seq: word(0),
        event_count: word(1),
        event_hasher: StableHasher::from_parts(word(2), word(3)),
        state_hash: word(4),
    };
    let engine = Engine::decode_snapshot(&payload[48..]).map_err(|e| bad(&e.to_string()))?;
    if engine.last_seq() != header.seq || engine.state_hash() != header.state_hash {
        return Err(bad("header does not match the engine image"));
    }
    Ok((header, engine))
}

/// The newest valid snapshot in `data_dir`, if any.
pub fn load_snapshot(
    data_dir: &Path,
) -> Result<Option<(SnapshotHeader, Engine, Vec<String>)>, RecoveryError> {
    load_snapshot_at_most(data_dir, u64::MAX)
}

/// The newest snapshot that includes no command after `max_seq`: the
/// starting point for rebuilding the state as of `max_seq`.
pub fn load_snapshot_at_most(
    data_dir: &Path,
    max_seq: u64,
) -> Result<Option<(SnapshotHeader, Engine, Vec<String>)>, RecoveryError> {
    let Some(loaded) = snapshot::load_newest_at_most(&snapshot_dir(data_dir), max_seq)? else {
        return Ok(None);
    };
    let skipped = loaded
        .skipped
        .iter()
        .map(|(path, why)| format!("{}: {why}", path.display()))
        .collect();
    let (header, engine) = parse_snapshot(&loaded.payload)?;
    if header.seq != loaded.seq {
        return Err(RecoveryError::Snapshot(
            "file name and header disagree".into(),
        ));
    }
    Ok(Some((header, engine, skipped)))
}

/// Replays journal records after `engine.last_seq()` (up to `until`,
/// inclusive, if given), folding events into the running hash.
pub fn replay_journal(
    data_dir: &Path,
    engine: &mut Engine,
    hasher: &mut StableHasher,
    event_count: &mut u64,
    until: Option<u64>,
    mut on_step: impl FnMut(&SequencedCommand, &[Event]),
) -> Result<u64, RecoveryError> {
    let mut events = Vec::with_capacity(64);
    let mut scratch = Vec::with_capacity(128);
    let first = engine.last_seq() + 1;
    let mut replayed = 0;
    for record in read_journal(&journal_dir(data_dir), first)? {
        let expected = first + replayed;
        let (seq, payload) = record?;
        if until.is_some_and(|last| seq > last) {
            break;
        }
        if seq != expected {
            return Err(RecoveryError::Record {
                seq,
                reason: format!(
                    "expected sequence {expected}: the journal does not continue the snapshot"
                ),
            });
        }
        let command = decode_command(&payload).map_err(|e| RecoveryError::Record {
            seq,
            reason: e.to_string(),
        })?;
        if command.seq != seq {
            return Err(RecoveryError::Record {
                seq,
                reason: format!("record holds command {}", command.seq),
            });
        }
        events.clear();
        engine.apply(&command, &mut events);
        for event in &events {
            super::hash_event(hasher, event, &mut scratch);
        }
        *event_count += events.len() as u64;
        on_step(&command, &events);
        replayed += 1;
        if until == Some(seq) {
            // Do not read past `until`: the live journal may be mid-write.
            break;
        }
    }
    Ok(replayed)
}

/// Opens the journal (truncating a torn tail), loads the newest snapshot
/// and replays the rest.
pub fn recover(
    config: &PipelineConfig,
    engine_config: EngineConfig,
) -> Result<(Journal, Recovered, Engine), RecoveryError> {
    std::fs::create_dir_all(snapshot_dir(&config.data_dir))
        .map_err(|e| RecoveryError::Io(e.to_string()))?;
    let durability = if config.durable {
        Durability::Fsync
    } else {
        Durability::None
    };
    let (journal, recovery) = Journal::open(JournalConfig {
        dir: journal_dir(&config.data_dir),
        segment_bytes: config.segment_bytes,
        durability,
    })?;
    let torn_tail = recovery.truncated.as_ref().map(|t| {
        format!(
            "{} at offset {}: {} bytes discarded ({})",
            t.segment.display(),
            t.offset,
            t.bytes_discarded,
            t.reason
        )
    });
    let (mut engine, mut hasher, mut event_count, from_snapshot, skipped) =
        match load_snapshot(&config.data_dir)? {
            Some((header, engine, skipped)) => (
                engine,
                header.event_hasher,
                header.event_count,
                Some(header.seq),
                skipped,
            ),
            None => (
                Engine::new(engine_config),
                StableHasher::default(),
                0,
                None,
                Vec::new(),
            ),
        };
    if let (Some(snapshot_seq), Some(last)) = (from_snapshot, recovery.last_seq) {
        if last < snapshot_seq {
            return Err(RecoveryError::Snapshot(format!(
                "snapshot covers sequence {snapshot_seq} but the journal ends at {last}"
            )));
        }
    }
    let replayed = replay_journal(
        &config.data_dir,
        &mut engine,
        &mut hasher,
        &mut event_count,
        None,
        |_, _| {},
    )?;
    let recovered = Recovered {
        last_seq: engine.last_seq(),
        event_count,
        event_hasher: hasher,
        from_snapshot,
        replayed,
        torn_tail,
        skipped_snapshots: skipped,
    };
    Ok((journal, recovered, engine))
}
