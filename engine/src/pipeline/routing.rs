//! Output routing: each event goes to the session whose command caused it,
//! to sessions subscribed to an account it names, and to broadcast
//! consumers. Every consumer has a bounded queue; one that is full is cut
//! off with a reason instead of stalling the engine.

use crate::Event;
use brokerx_risk::AccountId;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// One event as a consumer sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Output {
    /// Sequence number of the command that caused the event.
    pub seq: u64,
    pub timestamp_ns: u64,
    pub event: Event,
    /// The receiving session sent that command.
    pub own: bool,
    /// The last event of that command this session receives: the
    /// command's last on the sender's copy (which gets them all), the last
    /// one routed to it on any other session's. A consumer that has seen
    /// it has all of the command's outputs it will get.
    pub last: bool,
}

/// A consumer that runs on the engine thread itself: no queue and no
/// thread hand-off. `output` is called for each output as it is routed
/// (it must only record it), `flush` once after every published batch
/// (for every inline consumer, whether it got outputs or not). Both run on
/// the engine thread after the batch's fsync, so they must never block on
/// anything slow (a socket that may be full, a lock held across I/O).
pub trait InlineConsumer: Send + Sync {
    fn output(&self, output: &Output);
    fn flush(&self);
}

/// The engine side of a registration.
pub struct Subscription {
    id: SessionId,
    sender: Sender<Output>,
    inline: Option<Arc<dyn InlineConsumer>>,
    accounts: Vec<AccountId>,
    everything: bool,
    cut_reason: Arc<Mutex<Option<String>>>,
    registered: Arc<AtomicU64>,
}

/// The consumer side: outputs arrive on `receiver`. When the engine cuts a
/// slow consumer off, the channel disconnects and `cut_reason` says why.
pub struct SessionHandle {
    pub id: SessionId,
    pub receiver: Receiver<Output>,
    cut_reason: Arc<Mutex<Option<String>>>,
    /// 0 until the engine thread has registered the session, then the
    /// last sequence number published before it, plus one.
    registered: Arc<AtomicU64>,
}

impl SessionHandle {
    pub fn cut_reason(&self) -> Option<String> {
        self.cut_reason.lock().expect("not poisoned").clone()
    }

    /// Once the engine thread has registered the session: the sequence
    /// number P of the last command whose outputs were published before
    /// the registration. The session receives outputs of exactly the
    /// commands after P, so a consumer that must see every command can
    /// read commands up to P from the journal. `None` if the engine has
    /// not registered it within `timeout` (e.g. it has stopped).
    pub fn registered_after(&self, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.registered.load(Ordering::Acquire);
            if value > 0 {
                return Some(value - 1);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

pub(crate) fn subscription(
    id: SessionId,
    accounts: &[AccountId],
    everything: bool,
    capacity: usize,
    inline: Option<Arc<dyn InlineConsumer>>,
) -> (Subscription, SessionHandle) {
    let capacity = if inline.is_some() { 0 } else { capacity };
    let (sender, receiver) = crossbeam_channel::bounded(capacity);
    let cut_reason = Arc::new(Mutex::new(None));
    let registered = Arc::new(AtomicU64::new(0));
    let subscription = Subscription {
        id,
        sender,
        inline,
        accounts: accounts.to_vec(),
        everything,
        cut_reason: cut_reason.clone(),
        registered: registered.clone(),
    };
    let handle = SessionHandle {
        id,
        receiver,
        cut_reason,
        registered,
    };
    (subscription, handle)
}

/// The accounts an event concerns (at most two): a session subscribed to
/// one of them receives the event whoever caused it.
pub fn accounts_of(event: &Event) -> [Option<AccountId>; 2] {
    match *event {
        Event::Trade {
            maker_account,
            taker_account,
            ..
        } => [Some(maker_account), Some(taker_account)],
        Event::Rejected { account, .. }
        | Event::AccountCreated { account, .. }
        | Event::LimitsSet { account, .. }
        | Event::CashMoved { account, .. }
        | Event::SharesMoved { account, .. }
        | Event::OrderAccepted { account, .. }
        | Event::OrderReplaced { account, .. }
        | Event::OrderCancelled { account, .. }
        | Event::OrderExpired { account, .. }
        | Event::AccountSuspended { account, .. }
        | Event::AccountReinstated { account } => [Some(account), None],
        Event::MassCancelled { account, .. } => [account, None],
        Event::SymbolAdded { .. }
        | Event::ReferencePriceSet { .. }
        | Event::TradingStatus { .. }
        | Event::BookLevel { .. }
        | Event::DayEnded { .. } => [None, None],
    }
}

#[derive(Default)]
pub(crate) struct Router {
    sessions: BTreeMap<SessionId, Subscription>,
    by_account: BTreeMap<AccountId, Vec<SessionId>>,
    everything: Vec<SessionId>,
    cut_off: u64,
    targets: Vec<SessionId>,
    /// While a command is published: each non-sender target's latest
    /// output, sent when its next one comes or, flagged `last`, at the
    /// command's end.
    pending: Vec<(SessionId, Output)>,
    inline: Vec<Arc<dyn InlineConsumer>>,
}

impl Router {
    /// `published`: the last sequence number whose outputs have all been
    /// published (the session gets those of later commands only).
    pub(crate) fn register(&mut self, subscription: Subscription, published: u64) {
        let id = subscription.id;
        // A session subscribed again replaces its old subscription.
        self.unregister(id);
        subscription
            .registered
            .store(published + 1, Ordering::Release);
        for account in &subscription.accounts {
            self.by_account.entry(*account).or_default().push(id);
        }
        if subscription.everything {
            self.everything.push(id);
        }
        self.sessions.insert(id, subscription);
        self.collect_inline();
    }

    fn collect_inline(&mut self) {
        self.inline = self
            .sessions
            .values()
            .filter_map(|s| s.inline.clone())
            .collect();
    }

    /// After a published batch: every inline consumer's `flush`.
    pub(crate) fn flush_inline(&self) {
        for consumer in &self.inline {
            consumer.flush();
        }
    }

    pub(crate) fn unregister(&mut self, id: SessionId) {
        if let Some(subscription) = self.sessions.remove(&id) {
            for account in &subscription.accounts {
                if let Some(list) = self.by_account.get_mut(account) {
                    list.retain(|s| *s != id);
                }
            }
            self.everything.retain(|s| *s != id);
            if subscription.inline.is_some() {
                self.collect_inline();
            }
        }
    }

    pub(crate) fn cut_off(&self) -> u64 {
        self.cut_off
    }

    /// Delivers the events of one command.
    pub(crate) fn publish(
        &mut self,
        origin: crate::pipeline::SessionId,
        seq: u64,
        timestamp_ns: u64,
        events: &[Event],
    ) {
        for (index, event) in events.iter().enumerate() {
            let mut output = Output {
                seq,
                timestamp_ns,
                event: *event,
                own: true,
                last: index + 1 == events.len(),
            };
            self.send(origin, output);
            output.own = false;
            output.last = false;
            self.targets.clear();
            for account in accounts_of(event).into_iter().flatten() {
                if let Some(list) = self.by_account.get(&account) {
                    self.targets.extend(list.iter().copied());
                }
            }
            self.targets.extend(self.everything.iter().copied());
            self.targets.sort_unstable();
            self.targets.dedup();
            let mut targets = std::mem::take(&mut self.targets);
            for target in targets.drain(..).filter(|t| *t != origin) {
                match self.pending.iter().position(|(t, _)| *t == target) {
                    Some(at) => {
                        let previous = std::mem::replace(&mut self.pending[at].1, output);
                        self.send(target, previous);
                    }
                    None => self.pending.push((target, output)),
                }
            }
            self.targets = targets;
        }
        let mut pending = std::mem::take(&mut self.pending);
        for (target, mut output) in pending.drain(..) {
            output.last = true;
            self.send(target, output);
        }
        self.pending = pending;
    }

    fn send(&mut self, target: SessionId, output: Output) {
        let Some(subscription) = self.sessions.get(&target) else {
            return;
        };
        if let Some(consumer) = &subscription.inline {
            consumer.output(&output);
            return;
        }
        match subscription.sender.try_send(output) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let reason = format!(
                    "consumer too slow: {} outputs queued and unread at seq {}",
                    subscription.sender.len(),
                    output.seq
                );
                *subscription.cut_reason.lock().expect("not poisoned") = Some(reason);
                self.cut_off += 1;
                self.unregister(target);
            }
            Err(TrySendError::Disconnected(_)) => self.unregister(target),
        }
    }
}
