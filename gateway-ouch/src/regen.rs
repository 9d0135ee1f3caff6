//! Regeneration of outputs the journal has and a user's store lacks.
//!
//! A store is written after the engine has made a command durable and
//! published its outputs, so a crash can leave the journal ahead of the
//! store. Each store's last mark says how far it reflects the engine (all
//! outputs of commands before S, and the first n of command S); the
//! journal from there on is replayed through a scratch engine, and the
//! outputs the user's engine session would have received are rebuilt
//! exactly as the pipeline routes them: all events of the user's own
//! commands (flagged `own`, the last one `last`) and the events naming
//! its account. Own commands are recognised by matching the store's
//! unanswered intents, oldest first, with the journal's commands of the
//! account (same tag, same command once the tag is set aside); their tags
//! are translated to the rebuilt book's token indices.

use crate::book::{command_tag, retag_event, with_tag};
use crate::day::PendingIntent;
use crate::store::Mark;
use brokerx_engine::pipeline::{accounts_of, load_snapshot, replay_journal, Output};
use brokerx_engine::state::StableHasher;
use brokerx_engine::{AccountId, Command, Engine, EngineConfig, Event};
use std::collections::VecDeque;
use std::path::Path;

/// What to rebuild for one user.
pub struct Window {
    pub account: AccountId,
    /// The store's last mark.
    pub mark: Mark,
    /// The last command whose outputs the live session will not receive.
    pub until: u64,
    pub pending: VecDeque<PendingIntent>,
    /// The last answered intent: (tag then, tag in the rebuilt book).
    pub resumed: Option<(u64, Option<u64>)>,
}

/// The outcome for one user.
#[derive(Default)]
pub struct Rebuilt {
    /// Outputs to store before any live one, in order.
    pub outputs: Vec<Output>,
    /// Rebuilt-book tags of intents the journal never got: release them.
    pub unsequenced: Vec<u64>,
    /// Journal commands of ours that the rebuilt book could not map.
    pub orphans: u64,
    /// Store indices of the intents the journal has (answered by
    /// `outputs`), in order.
    pub sequenced: Vec<usize>,
}

/// Everything regenerated at start.
pub struct Regenerated {
    pub users: Vec<Rebuilt>,
    /// `DayEnded` (sequence number, timestamp) from `from` up to
    /// `watch_until`.
    pub ends: Vec<(u64, u64)>,
    pub replayed: u64,
}

fn command_account(command: &Command) -> Option<AccountId> {
    match *command {
        Command::NewOrder { account, .. }
        | Command::Cancel { account, .. }
        | Command::Replace { account, .. }
        | Command::MassCancelAccount { account, .. } => Some(account),
        _ => None,
    }
}

/// Replays the journal in `data_dir` from sequence `from` (using the
/// newest snapshot if it is older, else a scratch engine from sequence
/// 1) up to the largest `until` (and `watch_until`).
pub fn regenerate(
    data_dir: &Path,
    engine_config: EngineConfig,
    mut windows: Vec<Window>,
    from: u64,
    watch_until: u64,
) -> Result<Regenerated, String> {
    let until = windows
        .iter()
        .map(|w| w.until)
        .max()
        .unwrap_or(0)
        .max(watch_until);
    let mut users: Vec<Rebuilt> = windows.iter().map(|_| Rebuilt::default()).collect();
    let mut ends = Vec::new();
    let mut replayed = 0;
    if until >= from.max(1) {
        let mut engine = match load_snapshot(data_dir).map_err(|e| e.to_string())? {
            Some((header, engine, _)) if header.seq < from => engine,
            _ => Engine::new(engine_config),
        };
        let mut hasher = StableHasher::default();
        let mut event_count = 0;
        replayed = replay_journal(
            data_dir,
            &mut engine,
            &mut hasher,
            &mut event_count,
            Some(until),
            |command, events| {
                let seq = command.seq;
                if seq < from {
                    return;
                }
                for event in events {
                    if let Event::DayEnded { .. } = event {
                        if seq <= watch_until {
                            ends.push((seq, command.timestamp_ns));
                        }
                    }
                }
                for (window, user) in windows.iter_mut().zip(users.iter_mut()) {
                    step(window, user, command, events);
                }
            },
        )
        .map_err(|e| format!("journal replay: {e}"))?;
        if engine.last_seq() < until {
            return Err(format!(
                "the journal ends at {} but the pipeline published {until}",
                engine.last_seq()
            ));
        }
    }
    for (window, user) in windows.iter_mut().zip(users.iter_mut()) {
        for pending in window.pending.drain(..) {
            if let Some(command) = pending.command {
                user.unsequenced.push(command_tag(&command));
            }
        }
    }
    Ok(Regenerated {
        users,
        ends,
        replayed,
    })
}

/// The outputs of one journaled command for one user.
fn step(
    window: &mut Window,
    user: &mut Rebuilt,
    command: &brokerx_engine::SequencedCommand,
    events: &[Event],
) {
    let seq = command.seq;
    if seq < window.mark.seq || seq > window.until {
        return;
    }
    let ours = command_account(&command.command) == Some(window.account);
    let tag = command_tag(&command.command);
    let mut own = false;
    let mut retag = None;
    if seq == window.mark.seq {
        if let Some((old, new)) = window.resumed {
            if ours && tag == old {
                own = true;
                // Untranslatable: tag 0 matches no token (the output is dropped).
                retag = Some((old, new.unwrap_or(0)));
            }
        }
    } else if let Some(front) = window.pending.front().copied() {
        if ours && tag == front.old_tag {
            window.pending.pop_front();
            user.sequenced.push(front.index);
            match front.command {
                Some(mine) if with_tag(&mine, 0) == with_tag(&command.command, 0) => {
                    own = true;
                    retag = Some((tag, command_tag(&mine)));
                }
                _ => user.orphans += 1,
            }
        }
    }
    let skip = if seq == window.mark.seq {
        window.mark.outputs
    } else {
        0
    };
    let mut routed = 0u64;
    for (index, event) in events.iter().enumerate() {
        if !own && !accounts_of(event).contains(&Some(window.account)) {
            continue;
        }
        routed += 1;
        if routed <= skip {
            continue;
        }
        let event = match retag {
            Some((old, new)) if own => retag_event(event, old, new),
            _ => *event,
        };
        user.outputs.push(Output {
            seq,
            timestamp_ns: command.timestamp_ns,
            event,
            own,
            last: own && index + 1 == events.len(),
        });
    }
}
