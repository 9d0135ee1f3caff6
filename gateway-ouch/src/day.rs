//! Trading days on disk. Each user's messages of the current day D live in
//! `<user>.msgs`; a closed day is renamed to `<user>.day-<D>.msgs`. The
//! orders still open when day D closed (GTC orders) are written, as
//! Accepted messages, to `<user>.day-<D+1>.open` before the rename, so the
//! next day's token state can be rebuilt without reading older days.
//!
//! Closing day D (driven by the engine's `DayEnded`, never the clock):
//! 1. append System Event 'E' to `<user>.msgs` (the commit point);
//! 2. write `<user>.day-<D+1>.open` (temp file, sync, rename);
//! 3. rename `<user>.msgs` to `<user>.day-<D>.msgs`, sync the directory;
//! 4. create `<user>.msgs` with System Event 'S', sync the directory.
//!
//! [`open_current_day`] finds D from the files and finishes an interrupted
//! close: a live file whose last message is 'E' is closed again (steps 2-4
//! are idempotent); a live file without messages after archives means
//! step 4 is redone.
//!
//! Every day's store starts with a day-start record (the engine sequence
//! number E of the `DayEnded` that opened it, or for a first day the
//! engine position when it was created), then 'S', then the intents of
//! commands sent before the close but not yet answered (their answers
//! belong to the new day), then a mark (E, all outputs, 0 answered).

use crate::book::{Directory, Step, UserBook};
use crate::codec::{Inbound, Outbound};
use crate::store::{Intent, Mark, MessageStore, StoreError};
use brokerx_engine::{AccountId, Command};
use brokerx_soupbin::SESSION_BYTES;
use std::fs::File;
use std::path::{Path, PathBuf};

/// System Event codes.
pub const START_OF_DAY: u8 = b'S';
pub const END_OF_DAY: u8 = b'E';

pub fn live_path(dir: &Path, username: &str) -> PathBuf {
    dir.join(format!("{username}.msgs"))
}

pub fn archive_path(dir: &Path, username: &str, day: u64) -> PathBuf {
    dir.join(format!("{username}.day-{day}.msgs"))
}

pub fn open_orders_path(dir: &Path, username: &str, day: u64) -> PathBuf {
    dir.join(format!("{username}.day-{day}.open"))
}

/// The SoupBinTCP session name of a day: the prefix, then the day number
/// zero-padded to fill the 10 bytes ("BRKX000001"). Days past what the
/// digits can hold keep their low digits.
pub fn session_name(prefix: &str, day: u64) -> [u8; SESSION_BYTES] {
    let digits = SESSION_BYTES.saturating_sub(prefix.len()).max(1);
    let number = format!("{day:0digits$}");
    let number = &number[number.len() - digits..];
    brokerx_soupbin::alpha(format!("{prefix}{number}").as_bytes())
}

/// Highest `N` of the `<user>.day-N.msgs` archives (0 if none).
pub fn last_closed_day(dir: &Path, username: &str) -> Result<u64, StoreError> {
    let io = |error| StoreError::Io {
        path: dir.to_path_buf(),
        error,
    };
    let prefix = format!("{username}.day-");
    let mut last = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        let Some(name) = name.to_str() else { continue };
        let day = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".msgs"))
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(day) = day {
            last = last.max(day);
        }
    }
    Ok(last)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|error| StoreError::Io {
            path: dir.to_path_buf(),
            error,
        })
}

fn system_event(timestamp_ns: u64, event_code: u8) -> Vec<u8> {
    Outbound::SystemEvent {
        timestamp_ns,
        event_code,
    }
    .to_bytes()
}

/// One user's current day: its number, store and token state.
pub struct Day {
    pub number: u64,
    pub store: MessageStore,
    pub book: UserBook,
    /// At open: intents of the file not answered yet (oldest first), run
    /// again through the rebuilt book so their tokens are claimed.
    pub pending: Vec<PendingIntent>,
    /// At open: the last answered intent, whose command may have outputs
    /// not stored yet (its tag then, its tag in the rebuilt book).
    pub resumed: Resumed,
}

/// The last answered intent: its tag then, its tag in the rebuilt book.
pub type Resumed = Option<(u64, Option<u64>)>;

/// An intent whose answer is not in the store.
#[derive(Clone, Copy, Debug)]
pub struct PendingIntent {
    /// Its index in the store's intents.
    pub index: usize,
    /// The tag the command was sent with (in the journal).
    pub old_tag: u64,
    /// The command as the rebuilt book makes it (its tag is the one the
    /// rebuilt book knows), if the book still takes the message.
    pub command: Option<Command>,
}

fn mark_of(store: &MessageStore) -> Mark {
    store.mark().unwrap_or(Mark {
        seq: 0,
        outputs: u64::MAX,
        answered: store.intents().len() as u64,
    })
}

/// The token state of day `day` from its open-orders file, its stored
/// messages and its intents (answered ones are covered by the messages;
/// the others are taken again, at their place among the messages).
fn rebuild(
    dir: &Path,
    username: &str,
    account: AccountId,
    day: u64,
    store: &MessageStore,
    directory: &Directory,
) -> Result<(UserBook, Vec<PendingIntent>, Resumed), StoreError> {
    let mut book = UserBook::new(account);
    let carried = open_orders_path(dir, username, day);
    if carried.exists() {
        let carried = MessageStore::open(&carried, false)?;
        for message in carried.messages() {
            if let Ok(message) = Outbound::decode(message) {
                book.replay(&message);
            }
        }
    }
    let answered = usize::try_from(mark_of(store).answered).unwrap_or(usize::MAX);
    let intents = store.intents();
    let mut pending = Vec::new();
    let mut next_intent = 0;
    let mut take = |book: &mut UserBook, intent: &Intent, index: usize| {
        if index < answered {
            return;
        }
        let command = match Inbound::decode(&intent.message) {
            Ok(message) => match book.on_inbound(&message, directory) {
                Step::Submit { command, .. } => Some(command),
                _ => None,
            },
            Err(_) => None,
        };
        pending.push(PendingIntent {
            index,
            old_tag: intent.tag,
            command,
        });
    };
    for (position, message) in store.messages().enumerate() {
        while let Some(intent) = intents.get(next_intent) {
            if intent.after_messages > position as u64 {
                break;
            }
            take(&mut book, intent, next_intent);
            next_intent += 1;
        }
        if let Ok(message) = Outbound::decode(message) {
            book.replay(&message);
        }
    }
    while let Some(intent) = intents.get(next_intent) {
        take(&mut book, intent, next_intent);
        next_intent += 1;
    }
    let resumed = answered
        .checked_sub(1)
        .and_then(|i| intents.get(i))
        .map(|intent| {
            let new_tag = Inbound::decode(&intent.message)
                .ok()
                .and_then(|m| book.retag(intent.tag, &crate::book::tagged_token(&m)));
            (intent.tag, new_tag)
        });
    Ok((book, pending, resumed))
}

/// Writes the start of a day's store: day-start record, 'S', the carried
/// intents, and the mark.
fn start_store(
    store: &mut MessageStore,
    opened_at: u64,
    timestamp_ns: u64,
    carried: &[Intent],
) -> Result<(), StoreError> {
    let mark = Mark {
        seq: opened_at,
        outputs: u64::MAX,
        answered: 0,
    };
    store.append_day_start(opened_at)?;
    store.append_marked(&[&system_event(timestamp_ns, START_OF_DAY)], Some(mark))?;
    for intent in carried {
        store.append_intent(intent.tag, &intent.message)?;
    }
    store.append_marked(&[], Some(mark))?;
    Ok(())
}

fn is_end_of_day(message: Option<&[u8]>) -> bool {
    matches!(
        message.map(Outbound::decode),
        Some(Ok(Outbound::SystemEvent {
            event_code: END_OF_DAY,
            ..
        }))
    )
}

/// Opens the user's current day, creating day 1 (or the day after the
/// last archive) with a start-of-day message stamped `now_ns`, and
/// finishing a close that a crash interrupted. `engine_seq`: the engine
/// position from which this gateway run sees outputs live (a new first
/// day starts there).
pub fn open_current_day(
    dir: &Path,
    username: &str,
    account: AccountId,
    fsync: bool,
    now_ns: u64,
    directory: &Directory,
    engine_seq: u64,
) -> Result<Day, StoreError> {
    let last_closed = last_closed_day(dir, username)?;
    let number = last_closed + 1;
    let live = live_path(dir, username);
    let mut store = MessageStore::open(&live, fsync)?;
    if store.is_empty() {
        // New, or a crash interrupted step 4 of a close: (re)write the
        // start of the day.
        drop(store);
        let _ = std::fs::remove_file(&live);
        store = MessageStore::open(&live, fsync)?;
        if last_closed == 0 {
            start_store(&mut store, engine_seq, now_ns, &[])?;
        } else {
            let archive = MessageStore::open(&archive_path(dir, username, last_closed), false)?;
            let mark = mark_of(&archive);
            let timestamp_ns = match archive.get(archive.len()).map(Outbound::decode) {
                Some(Ok(Outbound::SystemEvent { timestamp_ns, .. })) => timestamp_ns,
                _ => now_ns,
            };
            let answered = usize::try_from(mark.answered).unwrap_or(usize::MAX);
            let carried = archive.intents().get(answered..).unwrap_or(&[]);
            start_store(&mut store, mark.seq, timestamp_ns, carried)?;
        }
        sync_dir(dir)?;
    }
    let (book, pending, resumed) = rebuild(dir, username, account, number, &store, directory)?;
    let mut day = Day {
        number,
        store,
        book,
        pending,
        resumed,
    };
    if is_end_of_day(day.store.get(day.store.len())) {
        let mark = mark_of(&day.store);
        close_day(
            dir,
            username,
            &mut day,
            fsync,
            now_ns,
            None,
            mark.seq,
            mark.answered,
        )?;
        return open_current_day(dir, username, account, fsync, now_ns, directory, engine_seq);
    }
    Ok(day)
}

/// Closes `day` at the engine's `DayEnded` of command `end_seq` (appending
/// 'E' first, with the closing mark, when `end` holds the mark's
/// `answered`) and turns it into the next day, whose store starts with 'S'
/// stamped `timestamp_ns` and the intents still unanswered (the first
/// `answered` of the closed day's intents are answered). Returns the
/// closed day's store (for the writers still sending it).
#[allow(clippy::too_many_arguments)]
pub fn close_day(
    dir: &Path,
    username: &str,
    day: &mut Day,
    fsync: bool,
    timestamp_ns: u64,
    end: Option<()>,
    end_seq: u64,
    answered: u64,
) -> Result<MessageStore, StoreError> {
    if end.is_some() {
        day.store.append_marked(
            &[&system_event(timestamp_ns, END_OF_DAY)],
            Some(Mark {
                seq: end_seq,
                outputs: u64::MAX,
                answered,
            }),
        )?;
    }
    let answered = usize::try_from(answered).unwrap_or(usize::MAX);
    let carried: Vec<Intent> = day.store.intents().get(answered..).unwrap_or(&[]).to_vec();
    let next = day.number + 1;
    let carried_path = open_orders_path(dir, username, next);
    let temp = dir.join(format!("{username}.day-{next}.open.tmp"));
    let _ = std::fs::remove_file(&temp);
    {
        let mut file = MessageStore::open(&temp, false)?;
        let orders: Vec<Vec<u8>> = day
            .book
            .open_orders()
            .iter()
            .map(Outbound::to_bytes)
            .collect();
        let slices: Vec<&[u8]> = orders.iter().map(Vec::as_slice).collect();
        if !slices.is_empty() {
            file.append_all(&slices)?;
        }
        file.sync()?;
    }
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|error| StoreError::Io {
            path: from.to_path_buf(),
            error,
        })
    };
    rename(&temp, &carried_path)?;
    rename(
        &live_path(dir, username),
        &archive_path(dir, username, day.number),
    )?;
    sync_dir(dir)?;
    let mut store = MessageStore::open(&live_path(dir, username), fsync)?;
    start_store(&mut store, end_seq, timestamp_ns, &carried)?;
    sync_dir(dir)?;
    day.book.start_next_day();
    day.number = next;
    Ok(std::mem::replace(&mut day.store, store))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_names_carry_the_day() {
        assert_eq!(&session_name("BRKX", 1), b"BRKX000001");
        assert_eq!(&session_name("BRKX", 123_456), b"BRKX123456");
        assert_eq!(&session_name("BRKX", 1_234_567), b"BRKX234567");
        assert_eq!(&session_name("", 7), b"0000000007");
    }

    #[test]
    fn days_are_found_from_the_files() {
        let dir = std::env::temp_dir().join(format!("brokerx-ouch-day-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(last_closed_day(&dir, "AL").unwrap(), 0);
        for name in [
            "AL.day-2.msgs",
            "AL.day-10.msgs",
            "AL.day-11.open",
            "ALX.day-40.msgs",
            "AL.day-x.msgs",
        ] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        assert_eq!(last_closed_day(&dir, "AL").unwrap(), 10);
        let directory = Directory::default();
        let day = open_current_day(&dir, "AL", AccountId(1), false, 5, &directory, 3).unwrap();
        assert_eq!((day.number, day.store.len()), (11, 1));
        assert_eq!(day.store.day_start(), Some(0));
        // A close interrupted after 'E': finished at the next open.
        let mut day = day;
        day.store
            .append_marked(
                &[&system_event(6, END_OF_DAY)],
                Some(Mark {
                    seq: 9,
                    outputs: u64::MAX,
                    answered: 0,
                }),
            )
            .unwrap();
        drop(day);
        let day = open_current_day(&dir, "AL", AccountId(1), false, 7, &directory, 3).unwrap();
        assert_eq!((day.number, day.store.len()), (12, 1));
        assert_eq!(day.store.day_start(), Some(9));
        assert!(archive_path(&dir, "AL", 11).exists());
        assert!(open_orders_path(&dir, "AL", 12).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
