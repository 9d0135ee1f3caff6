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
//! are idempotent); a missing live file after archives means step 4 is
//! redone.

use crate::book::UserBook;
use crate::codec::Outbound;
use crate::store::{MessageStore, StoreError};
use brokerx_engine::AccountId;
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
}

/// The token state of day `day` from its open-orders file and its stored
/// messages.
fn rebuild(
    dir: &Path,
    username: &str,
    account: AccountId,
    day: u64,
    store: &MessageStore,
) -> Result<UserBook, StoreError> {
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
    for message in store.messages() {
        if let Ok(message) = Outbound::decode(message) {
            book.replay(&message);
        }
    }
    Ok(book)
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
/// finishing a close that a crash interrupted.
pub fn open_current_day(
    dir: &Path,
    username: &str,
    account: AccountId,
    fsync: bool,
    now_ns: u64,
) -> Result<Day, StoreError> {
    let number = last_closed_day(dir, username)? + 1;
    let live = live_path(dir, username);
    let store = MessageStore::open(&live, fsync)?;
    let book = rebuild(dir, username, account, number, &store)?;
    let mut day = Day {
        number,
        store,
        book,
    };
    if is_end_of_day(day.store.get(day.store.len())) {
        close_day(dir, username, &mut day, fsync, now_ns, false)?;
    } else if day.store.is_empty() {
        day.store.append(&system_event(now_ns, START_OF_DAY))?;
        if fsync {
            sync_dir(dir)?;
        }
    }
    Ok(day)
}

/// Closes `day` (appending 'E' first when `append_end` is set) and turns
/// it into the next day, whose store starts with 'S' stamped
/// `timestamp_ns`. Returns the closed day's store (for the writers still
/// sending it).
pub fn close_day(
    dir: &Path,
    username: &str,
    day: &mut Day,
    fsync: bool,
    timestamp_ns: u64,
    append_end: bool,
) -> Result<MessageStore, StoreError> {
    if append_end {
        day.store.append(&system_event(timestamp_ns, END_OF_DAY))?;
    }
    let next = day.number + 1;
    let carried = open_orders_path(dir, username, next);
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
    rename(&temp, &carried)?;
    rename(
        &live_path(dir, username),
        &archive_path(dir, username, day.number),
    )?;
    sync_dir(dir)?;
    let mut store = MessageStore::open(&live_path(dir, username), fsync)?;
    store.append(&system_event(timestamp_ns, START_OF_DAY))?;
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
        let day = open_current_day(&dir, "AL", AccountId(1), false, 5).unwrap();
        assert_eq!((day.number, day.store.len()), (11, 1));
        // A close interrupted after 'E': finished at the next open.
        let mut day = day;
        day.store.append(&system_event(6, END_OF_DAY)).unwrap();
        drop(day);
        let day = open_current_day(&dir, "AL", AccountId(1), false, 7).unwrap();
        assert_eq!((day.number, day.store.len()), (12, 1));
        assert!(archive_path(&dir, "AL", 11).exists());
        assert!(open_orders_path(&dir, "AL", 12).exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
