//! Seeded random order flow through the real engine: after every command
//! L1/L2 must equal the engine's ladders, and the book rebuilt from our
//! ITCH bytes by the independent `itchy` decoder must equal the engine's
//! book order by order. Also: the same input gives the same bytes.

mod support;

use brokerx_marketdata::feed::{CommandBatcher, FeedDeriver};
use brokerx_marketdata::file::FrameReader;
use support::{directory, DecodedBook, Rig, Rng};

/// Runs `commands` random commands, checking after every one. Returns the
/// rig for further checks.
fn random_run(seed: u64, commands: usize) -> Rig {
    let mut rig = Rig::new();
    // 37 s between commands: the run crosses UTC midnight, so the ITCH
    // timestamp (time since midnight) wraps.
    rig.step_ns = 37_000_000_000;
    rig.check();
    let mut rng = Rng::new(seed);
    for _ in 0..commands {
        let command = rig.random_command(&mut rng);
        rig.run(command);
        rig.check();
    }
    rig
}

#[test]
fn market_data_and_decoded_feed_track_the_engine_book() {
    for seed in [1, 2, 3, 0xB0B] {
        let rig = random_run(seed, 1_500);
        // The run must have exercised the interesting paths.
        let tags: Vec<u8> = FrameReader::new(&rig.bytes)
            .map(|f| f.unwrap()[0])
            .collect();
        for tag in *b"SRHAEXDU" {
            assert!(
                tags.contains(&tag),
                "seed {seed}: no '{}' message",
                tag as char
            );
        }
        assert!(rig.decoded.system_events.contains(&'E'));
        assert_eq!(rig.decoded.system_events[0], 'O');
    }
}

#[test]
fn decoding_the_whole_file_at_checkpoints_rebuilds_the_book() {
    // Independent of the per-command decode: decode one prefix of the
    // file at a time from scratch.
    let mut rig = Rig::new();
    let mut rng = Rng::new(77);
    for round in 0..5 {
        for _ in 0..400 {
            let command = rig.random_command(&mut rng);
            rig.run(command);
        }
        let mut fresh = DecodedBook::default();
        fresh.apply_bytes(&rig.bytes);
        assert_eq!(fresh.messages, rig.decoded.messages, "round {round}");
        std::mem::swap(&mut rig.decoded, &mut fresh);
        rig.check_feed();
    }
}

#[test]
fn the_same_input_gives_the_same_bytes() {
    let first = random_run(9, 800);
    let second = random_run(9, 800);
    assert_eq!(first.bytes, second.bytes);
    assert!(!first.bytes.is_empty());

    // Re-deriving from the recorded (seq, timestamp, events) log, as a
    // journal replay would hand them over, gives the same bytes again.
    let mut replay = FeedDeriver::new(directory());
    let mut bytes = Vec::new();
    for (command, events) in &first.log {
        replay
            .on_command_framed(command.seq, command.timestamp_ns, events, &mut bytes)
            .unwrap();
    }
    assert_eq!(bytes, first.bytes);

    // And from a flat per-event stream (a broadcast consumer's view),
    // regrouped by sequence number.
    let mut batcher = CommandBatcher::new();
    let mut regrouped = FeedDeriver::new(directory());
    let mut bytes = Vec::new();
    let mut feed = |batch: brokerx_marketdata::feed::CommandBatch, bytes: &mut Vec<u8>| {
        regrouped
            .on_command_framed(batch.seq, batch.timestamp_ns, &batch.events, bytes)
            .unwrap()
    };
    for (command, events) in &first.log {
        for event in events {
            if let Some(batch) = batcher.push(command.seq, command.timestamp_ns, *event) {
                feed(batch, &mut bytes);
            }
        }
    }
    if let Some(batch) = batcher.flush() {
        feed(batch, &mut bytes);
    }
    assert_eq!(bytes, first.bytes);

    let different = random_run(10, 800);
    assert_ne!(different.bytes, first.bytes, "the test can fail");
}

#[test]
fn the_random_flow_builds_a_real_book_and_hits_every_path() {
    let mut rig = Rig::new();
    let mut rng = Rng::new(5);
    let mut most_resting = 0;
    let mut replaces_that_trade = 0;
    for _ in 0..1_500 {
        let command = rig.random_command(&mut rng);
        let events = rig.run(command);
        most_resting = most_resting.max(rig.engine.resting_orders());
        let replaced = events.iter().any(|e| {
            matches!(
                e,
                brokerx_engine::Event::OrderReplaced {
                    priority_kept: false,
                    ..
                }
            )
        });
        if replaced
            && events
                .iter()
                .any(|e| matches!(e, brokerx_engine::Event::Trade { .. }))
        {
            replaces_that_trade += 1;
        }
    }
    rig.check();
    let trades = rig
        .log
        .iter()
        .flat_map(|(_, events)| events)
        .filter(|e| matches!(e, brokerx_engine::Event::Trade { .. }))
        .count();
    assert!(most_resting >= 20, "book too thin: {most_resting}");
    assert!(trades >= 100, "too few trades: {trades}");
    assert!(
        replaces_that_trade >= 5,
        "replace-and-trade path: {replaces_that_trade}"
    );
}

#[test]
fn market_data_read_from_an_engine_equals_market_data_kept_from_its_events() {
    for seed in [4, 5] {
        let mut rig = Rig::new();
        let mut rng = Rng::new(seed);
        for step in 0..1_200 {
            let command = rig.random_command(&mut rng);
            rig.run(command);
            if step % 100 == 99 {
                let mut read = brokerx_marketdata::MarketData::from_engine(&rig.engine);
                read.keep_last_trades(&rig.md);
                assert_eq!(read, rig.md, "seed {seed} step {step}");
            }
        }
        let read = brokerx_marketdata::MarketData::from_engine(&rig.engine);
        assert!(read
            .symbols()
            .iter()
            .any(|s| read.level_count(*s, brokerx_engine::Side::Buy) > 0));
    }
}
