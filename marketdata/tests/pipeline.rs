//! The feed as a real consumer sees it: a broadcast session of the live
//! pipeline (`connect(&[], true)`), its per-event outputs regrouped by
//! `seq`, must derive the same bytes as a replay of the journal through
//! `replay_journal`'s `on_step`, and those bytes, decoded by `itchy`, must
//! rebuild the engine's book.

mod support;

use brokerx_engine::pipeline::{replay_journal, Pipeline, PipelineConfig, WaitStrategy};
use brokerx_engine::state::StableHasher;
use brokerx_engine::{Engine, EngineConfig, Side};
use brokerx_marketdata::feed::{CommandBatcher, FeedDeriver, SymbolDirectory};
use std::time::Duration;
use support::{directory, DecodedBook, Rig, Rng, OTHER, SYM};

#[test]
fn live_broadcast_feed_equals_journal_replay_feed_and_the_book() {
    let dir = std::env::temp_dir().join(format!("brokerx-marketdata-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = PipelineConfig::new(dir.clone());
    config.segment_bytes = 1 << 20;
    config.durable = false;
    config.wait = WaitStrategy::Park {
        spins: 100,
        timeout: Duration::from_millis(5),
    };
    let pipeline = Pipeline::start(config, EngineConfig::default()).unwrap();
    let (_feed_session, feed) = pipeline.connect(&[], true);
    let (submitter, replies) = pipeline.connect(&[], false);

    // A local rig chooses the commands (it needs the book to pick orders
    // to cancel or replace) and sees them in the same order as the
    // pipeline's engine, one at a time.
    let mut rig = Rig::new();
    let mut commands: Vec<_> = rig.log.iter().map(|(c, _)| c.command).collect();
    let mut rng = Rng::new(2024);
    for _ in 0..600 {
        let command = rig.random_command(&mut rng);
        rig.run(command);
        commands.push(command);
    }
    for command in &commands {
        while submitter.submit(*command).is_err() {
            std::thread::yield_now();
        }
        while !replies
            .receiver
            .recv_timeout(Duration::from_secs(20))
            .expect("engine answers")
            .last
        {}
    }

    let mut live = FeedDeriver::new(directory());
    let mut live_bytes = Vec::new();
    let mut batcher = CommandBatcher::new();
    let mut batches = 0;
    // Sequence numbers start at 1 in a fresh data directory. Wait (long)
    // for the last command's first event, then drain its remaining ones.
    let last_seq = commands.len() as u64;
    let mut seen_last = false;
    loop {
        let wait = if seen_last { 200 } else { 20_000 };
        let Ok(output) = feed.receiver.recv_timeout(Duration::from_millis(wait)) else {
            break;
        };
        seen_last |= output.seq == last_seq;
        if let Some(batch) = batcher.push(output.seq, output.timestamp_ns, output.event) {
            live.on_command_framed(
                batch.seq,
                batch.timestamp_ns,
                &batch.events,
                &mut live_bytes,
            )
            .unwrap();
            batches += 1;
        }
    }
    if let Some(batch) = batcher.flush() {
        live.on_command_framed(
            batch.seq,
            batch.timestamp_ns,
            &batch.events,
            &mut live_bytes,
        )
        .unwrap();
        batches += 1;
    }
    assert_eq!(feed.cut_reason(), None);
    assert_eq!(batches, commands.len(), "every command produces events");
    pipeline.shutdown().unwrap().unwrap();
    drop(pipeline);

    let mut engine = Engine::new(EngineConfig::default());
    let mut hasher = StableHasher::default();
    let mut event_count = 0;
    let mut replayed = FeedDeriver::new(directory());
    let mut replay_bytes = Vec::new();
    let mut failure = None;
    replay_journal(
        &dir,
        &mut engine,
        &mut hasher,
        &mut event_count,
        None,
        |command, events| {
            if let Err(error) = replayed.on_command_framed(
                command.seq,
                command.timestamp_ns,
                events,
                &mut replay_bytes,
            ) {
                failure.get_or_insert(error);
            }
        },
    )
    .unwrap();
    assert_eq!(failure, None);
    assert_eq!(
        live_bytes, replay_bytes,
        "live and replayed feeds are identical"
    );

    let mut decoded = DecodedBook::default();
    decoded.apply_bytes(&live_bytes);
    for symbol in [SYM, OTHER] {
        let locate = SymbolDirectory::locate(symbol).unwrap();
        for side in [Side::Buy, Side::Sell] {
            let book: Vec<(u64, u64)> = engine
                .orders_in_priority(symbol, side)
                .map(|(_, node)| (node.price, node.leaves))
                .collect();
            assert_eq!(decoded.side(locate, side), book, "{symbol:?} {side:?}");
            assert_eq!(book, rig.engine_side(symbol, side));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
