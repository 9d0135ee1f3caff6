//! Order storage and price ladders.
//!
//! Orders live in one preallocated slab of 56-byte nodes, addressed by
//! slot. A resting order sits on two intrusive doubly linked lists: the
//! FIFO queue of its price level, and its account's list (for mass cancel
//! and the kill switch). Freed slots are chained into a LIFO free list, and
//! each reuse bumps the slot's generation so [`OrderId`]s stay unique.
//!
//! A [`Ladder`] is one side of one symbol's book: a dense array of price
//! levels indexed by `(price - base) / tick`, covering the symbol's price
//! band, plus a [`LevelBits`] index of the non-empty levels and the cached
//! best level. Adding at the best or at an existing level is O(1); when the
//! best level empties, the next one is found through the bitmap.

use crate::bitset::LevelBits;
use crate::OrderId;

/// Asks the CPU to start loading the cache line that holds `value`, so a
/// later access to it does not wait on memory. Only a hint: it reads
/// nothing the program can observe and never changes a result.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch never faults and has no architectural effect;
        // the address comes from a live reference anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

/// Like [`prefetch`], for a line about to be written (`prefetchw` where
/// the CPU has it: the line arrives owned, so the store needs no second
/// request), at a raw address, which need not be valid. Only a hint.
#[inline(always)]
fn prefetch_write_at(at: *const u8) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        // SAFETY: a prefetch never faults, whatever the address, and has
        // no architectural effect.
        unsafe { _mm_prefetch::<_MM_HINT_ET0>(at.cast::<i8>()) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

/// Asks Linux to back the whole 2 MiB pages inside the slab's allocation
/// (its capacity, not just its length) with transparent huge pages. Random
/// lookups in a large slab then miss the TLB far less often; this is most
/// of the cost of a lookup at a million resting orders. Only a hint:
/// contents and results are unchanged, and an error (no THP) is ignored.
fn advise_huge_pages(nodes: &Vec<OrderNode>) {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let ptr = nodes.as_ptr() as usize;
        let bytes = nodes.capacity() * std::mem::size_of::<OrderNode>();
        let start = ptr.next_multiple_of(HUGE_PAGE);
        let end = (ptr + bytes) / HUGE_PAGE * HUGE_PAGE;
        if end > start {
            // SAFETY: madvise(MADV_HUGEPAGE) over whole pages inside an
            // allocation we own changes only how the kernel backs them,
            // never their contents. The result is ignored: without
            // transparent huge pages it is a no-op.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    #[cfg(not(all(target_os = "linux", not(miri))))]
    let _ = nodes;
}

/// "No slot": the end of a list.
pub const NIL: u32 = u32::MAX;

/// Node flags.
pub const FLAG_LIVE: u8 = 1;
pub const FLAG_IN_LEVEL: u8 = 2;
pub const FLAG_IN_ACCOUNT: u8 = 4;

/// One order. `price` is the limit price, or for a market order the
/// protection price its funds were reserved at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct OrderNode {
    pub price: u64,
    pub leaves: u64,
    pub filled: u64,
    pub account: u32,
    pub symbol: u32,
    pub prev: u32,
    pub next: u32,
    pub account_prev: u32,
    pub account_next: u32,
    pub generation: u32,
    pub side: u8,
    pub tif: u8,
    pub self_trade: u8,
    pub flags: u8,
}

const _: () = assert!(std::mem::size_of::<OrderNode>() == 56);

impl OrderNode {
    /// A slot with no order in it.
    pub(crate) const FREE: OrderNode = OrderNode {
        price: 0,
        leaves: 0,
        filled: 0,
        account: 0,
        symbol: 0,
        prev: NIL,
        next: NIL,
        account_prev: NIL,
        account_next: NIL,
        generation: 0,
        side: 0,
        tif: 0,
        self_trade: 0,
        flags: 0,
    };

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The slab of order nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderSlab {
    pub nodes: Vec<OrderNode>,
    free_head: u32,
    live: u32,
    max_orders: u32,
}

impl OrderSlab {
    pub fn new(capacity: u32, max_orders: u32) -> OrderSlab {
        assert!(max_orders < NIL && capacity <= max_orders);
        let nodes = Vec::with_capacity(capacity as usize);
        advise_huge_pages(&nodes);
        OrderSlab {
            nodes,
            free_head: NIL,
            live: 0,
            max_orders,
        }
    }

    pub fn live(&self) -> u32 {
        self.live
    }

    pub(crate) fn parts(&self) -> (&[OrderNode], u32, u32, u32) {
        (&self.nodes, self.free_head, self.live, self.max_orders)
    }

    /// Rebuilds a slab from a snapshot, checking the free list is a
    /// well-formed chain of free slots and the live count adds up.
    pub(crate) fn restore(
        nodes: Vec<OrderNode>,
        free_head: u32,
        live: u32,
        max_orders: u32,
    ) -> Result<OrderSlab, String> {
        if max_orders == NIL || nodes.len() > max_orders as usize {
            return Err("slab larger than its limit".into());
        }
        let mut free = 0usize;
        let mut cursor = free_head;
        while cursor != NIL {
            let node = nodes
                .get(cursor as usize)
                .ok_or("free list leaves the slab")?;
            if node.flags != 0 || free >= nodes.len() {
                return Err("free list holds a live slot or a cycle".into());
            }
            free += 1;
            cursor = node.next;
        }
        let counted = nodes.iter().filter(|n| n.has(FLAG_LIVE)).count();
        if counted != live as usize || counted + free != nodes.len() {
            return Err("live count does not match the slab".into());
        }
        advise_huge_pages(&nodes);
        Ok(OrderSlab {
            nodes,
            free_head,
            live,
            max_orders,
        })
    }

    pub fn is_full(&self) -> bool {
        self.free_head == NIL && self.nodes.len() as u32 >= self.max_orders
    }

    /// Takes a slot, stamps a fresh generation and returns the order id.
    #[inline]
    pub fn alloc(&mut self, node: OrderNode) -> (u32, OrderId) {
        let slot = if self.free_head != NIL {
            let slot = self.free_head;
            self.free_head = self.nodes[slot as usize].next;
            // The next order takes the new head: have it in cache by then.
            if self.is_large() {
                self.prefetch_link(self.free_head, false);
            }
            slot
        } else {
            assert!(!self.is_full(), "caller checks capacity");
            if self.nodes.len() == self.nodes.capacity() {
                // The same doubling `push` would do, then the hint for
                // the new allocation.
                self.nodes.reserve(self.nodes.len().max(1));
                advise_huge_pages(&self.nodes);
            }
            self.nodes.push(OrderNode::FREE);
            self.nodes.len() as u32 - 1
        };
        let generation = self.nodes[slot as usize].generation.wrapping_add(1).max(1);
        let stored = &mut self.nodes[slot as usize];
        assert!(!stored.has(FLAG_LIVE));
        *stored = OrderNode {
            generation,
            flags: FLAG_LIVE,
            prev: NIL,
            next: NIL,
            account_prev: NIL,
            account_next: NIL,
            ..node
        };
        self.live += 1;
        (slot, OrderId::new(slot, generation))
    }

    #[inline]
    pub fn free(&mut self, slot: u32) {
        let node = &mut self.nodes[slot as usize];
        assert!(node.flags == FLAG_LIVE, "free a live order off all lists");
        let generation = node.generation;
        *node = OrderNode {
            generation,
            next: self.free_head,
            ..OrderNode::FREE
        };
        self.free_head = slot;
        self.live -= 1;
    }

    /// The slot of a live order with this id.
    #[inline]
    pub fn find(&self, id: OrderId) -> Option<u32> {
        let node = self.nodes.get(id.slot() as usize)?;
        // Six slots in eight straddle two cache lines. The check below
        // loads the line with the flags; ask for the line with the price
        // now, so that the two misses overlap instead of following each
        // other when the caller goes on to read the whole order.
        prefetch(&node.price);
        (node.has(FLAG_LIVE) && node.generation == id.generation()).then_some(id.slot())
    }

    /// Whether the slab has outgrown the caches close to the core, so
    /// that prefetching the nodes an operation will write pays for its
    /// instructions. Below this (about 3.5 MiB of nodes) they are mostly
    /// in cache already and the engine skips the prefetches.
    #[inline(always)]
    pub(crate) fn is_large(&self) -> bool {
        self.nodes.len() >= 1 << 16
    }

    /// Starts loading the four neighbours that unlinking `slot` from its
    /// level and its account list will write, so that their misses
    /// overlap each other and the work before the unlink.
    #[inline(always)]
    pub(crate) fn prefetch_neighbours(&self, slot: u32) {
        let node = &self.nodes[slot as usize];
        self.prefetch_field(node.prev, std::mem::offset_of!(OrderNode, next));
        self.prefetch_field(node.next, std::mem::offset_of!(OrderNode, prev));
        self.prefetch_field(
            node.account_prev,
            std::mem::offset_of!(OrderNode, account_next),
        );
        self.prefetch_field(
            node.account_next,
            std::mem::offset_of!(OrderNode, account_prev),
        );
    }

    /// The same for the two neighbours in its level alone.
    #[inline(always)]
    pub(crate) fn prefetch_level_neighbours(&self, slot: u32) {
        let node = &self.nodes[slot as usize];
        self.prefetch_field(node.prev, std::mem::offset_of!(OrderNode, next));
        self.prefetch_field(node.next, std::mem::offset_of!(OrderNode, prev));
    }

    /// Starts loading, for writing, the line of the node in `slot` that
    /// holds its level link (`account` false) or its account link
    /// (`account` true). `NIL` is ignored.
    #[inline(always)]
    pub(crate) fn prefetch_link(&self, slot: u32, account: bool) {
        let field = if account {
            std::mem::offset_of!(OrderNode, account_next)
        } else {
            std::mem::offset_of!(OrderNode, next)
        };
        self.prefetch_field(slot, field);
    }

    /// Prefetches (for writing) byte `field` of the node in `slot`, unless
    /// `slot` is `NIL`. No bounds check: the address is only a hint, and a
    /// prefetch of any address is harmless; every slot on a list is in
    /// the slab anyway.
    #[inline(always)]
    fn prefetch_field(&self, slot: u32, field: usize) {
        if slot != NIL {
            let at = self
                .nodes
                .as_ptr()
                .cast::<u8>()
                .wrapping_add(slot as usize * std::mem::size_of::<OrderNode>() + field);
            prefetch_write_at(at);
        }
    }

    pub fn id(&self, slot: u32) -> OrderId {
        OrderId::new(slot, self.nodes[slot as usize].generation)
    }

    /// Free slots in list order (for the canonical state encoding).
    pub fn free_slots(&self) -> impl Iterator<Item = u32> + '_ {
        let mut slot = self.free_head;
        std::iter::from_fn(move || {
            (slot != NIL).then(|| {
                let current = slot;
                slot = self.nodes[current as usize].next;
                current
            })
        })
    }

    pub fn bytes_reserved(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<OrderNode>()
    }
}

/// Aggregate of one price level and its FIFO queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub head: u32,
    pub tail: u32,
    pub orders: u32,
    pub qty: u64,
}

impl Level {
    const EMPTY: Level = Level {
        head: NIL,
        tail: NIL,
        orders: 0,
        qty: 0,
    };
}

/// Which end of the ladder is best.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Best {
    Highest,
    Lowest,
}

/// One side of a book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ladder {
    pub levels: Vec<Level>,
    bits: LevelBits,
    best: Option<u32>,
    direction: Best,
}

impl Ladder {
    pub fn new(len: usize, direction: Best) -> Ladder {
        Ladder {
            levels: vec![Level::EMPTY; len],
            bits: LevelBits::new(len),
            best: None,
            direction,
        }
    }

    pub fn best(&self) -> Option<u32> {
        self.best
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.best.is_none()
    }

    /// The next non-empty level after `index`, going from best to worst.
    pub fn next_worse(&self, index: u32) -> Option<u32> {
        let found = match self.direction {
            Best::Highest => (index as usize)
                .checked_sub(1)
                .and_then(|from| self.bits.prev_at_or_before(from)),
            Best::Lowest => self.bits.next_at_or_after(index as usize + 1),
        };
        found.map(|i| i as u32)
    }

    fn is_better(&self, a: u32, b: u32) -> bool {
        match self.direction {
            Best::Highest => a > b,
            Best::Lowest => a < b,
        }
    }

    /// Appends `slot` at the back of the level's queue.
    #[inline]
    pub fn push_back(&mut self, nodes: &mut [OrderNode], index: u32, slot: u32) {
        let level = &mut self.levels[index as usize];
        let node = &mut nodes[slot as usize];
        assert!(node.has(FLAG_LIVE) && !node.has(FLAG_IN_LEVEL));
        node.flags |= FLAG_IN_LEVEL;
        node.prev = level.tail;
        node.next = NIL;
        let leaves = node.leaves;
        if level.tail == NIL {
            level.head = slot;
        } else {
            nodes[level.tail as usize].next = slot;
        }
        level.tail = slot;
        level.orders += 1;
        level.qty += leaves;
        if level.orders == 1 {
            self.bits.insert(index as usize);
            if self.best.is_none_or(|best| self.is_better(index, best)) {
                self.best = Some(index);
            }
        }
    }

    /// Removes `slot` from its level. The level's quantity drops by the
    /// node's current leaves.
    #[inline]
    pub fn unlink(&mut self, nodes: &mut [OrderNode], index: u32, slot: u32) {
        let node = nodes[slot as usize];
        assert!(node.has(FLAG_IN_LEVEL));
        let level = &mut self.levels[index as usize];
        if node.prev == NIL {
            level.head = node.next;
        } else {
            nodes[node.prev as usize].next = node.next;
        }
        if node.next == NIL {
            level.tail = node.prev;
        } else {
            nodes[node.next as usize].prev = node.prev;
        }
        level.orders -= 1;
        level.qty -= node.leaves;
        let stored = &mut nodes[slot as usize];
        stored.flags &= !FLAG_IN_LEVEL;
        stored.prev = NIL;
        stored.next = NIL;
        if level.orders == 0 {
            assert!(level.qty == 0 && level.head == NIL && level.tail == NIL);
            self.bits.remove(index as usize);
            if self.best == Some(index) {
                self.best = self.next_worse(index);
            }
        }
    }

    /// The level side of unlinking an order whose neighbours in the
    /// queue are `prev` and `next` and whose open quantity is `leaves`:
    /// head or tail, counts, bitmap and best. The caller writes the
    /// neighbours' links itself (see `Engine::cancel_resting`).
    #[inline]
    pub(crate) fn remove_from_level(&mut self, index: u32, prev: u32, next: u32, leaves: u64) {
        let level = &mut self.levels[index as usize];
        if prev == NIL {
            level.head = next;
        }
        if next == NIL {
            level.tail = prev;
        }
        level.orders -= 1;
        level.qty -= leaves;
        if level.orders == 0 {
            assert!(level.qty == 0 && level.head == NIL && level.tail == NIL);
            self.bits.remove(index as usize);
            if self.best == Some(index) {
                self.best = self.next_worse(index);
            }
        }
    }

    /// Puts a decoded level back, with its bitmap bit and best price.
    pub(crate) fn restore_level(&mut self, index: u32, level: Level) {
        self.levels[index as usize] = level;
        self.bits.insert(index as usize);
        if self.best.is_none_or(|best| self.is_better(index, best)) {
            self.best = Some(index);
        }
    }

    /// Non-empty levels from best to worst.
    pub fn iter_best_first(&self) -> impl Iterator<Item = u32> + '_ {
        let mut cursor = self.best;
        std::iter::from_fn(move || {
            let current = cursor?;
            cursor = self.next_worse(current);
            Some(current)
        })
    }

    /// Rebuilds this ladder over a new range: level `i` moves to `i + shift`
    /// (`shift` may be negative). Used when the price band moves.
    pub fn rebase(&self, len: usize, shift: i64) -> Ladder {
        let mut moved = Ladder::new(len, self.direction);
        for index in self.iter_best_first() {
            let target = (index as i64 + shift) as usize;
            moved.levels[target] = self.levels[index as usize];
            moved.bits.insert(target);
        }
        moved.best = self.best.map(|b| (b as i64 + shift) as u32);
        moved
    }

    pub fn check_bits(&self) -> Result<(), String> {
        self.bits.check_invariants()?;
        for (index, level) in self.levels.iter().enumerate() {
            if self.bits.contains(index) != (level.orders > 0) {
                return Err(format!("level {index}: bitmap disagrees with count"));
            }
        }
        let computed = match self.direction {
            Best::Highest => self.bits.prev_at_or_before(usize::MAX),
            Best::Lowest => self.bits.next_at_or_after(0),
        };
        if computed.map(|i| i as u32) != self.best {
            return Err(format!("cached best {:?} != {computed:?}", self.best));
        }
        Ok(())
    }

    pub fn bytes_reserved(&self) -> usize {
        self.levels.capacity() * std::mem::size_of::<Level>() + self.bits.len() / 8
    }
}

/// Head and tail of one account's list of resting orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountOrders {
    pub head: u32,
    pub tail: u32,
}

impl AccountOrders {
    pub const EMPTY: AccountOrders = AccountOrders {
        head: NIL,
        tail: NIL,
    };

    #[inline]
    pub fn push_back(&mut self, nodes: &mut [OrderNode], slot: u32) {
        let node = &mut nodes[slot as usize];
        assert!(!node.has(FLAG_IN_ACCOUNT));
        node.flags |= FLAG_IN_ACCOUNT;
        node.account_prev = self.tail;
        node.account_next = NIL;
        if self.tail == NIL {
            self.head = slot;
        } else {
            nodes[self.tail as usize].account_next = slot;
        }
        self.tail = slot;
    }

    #[inline]
    pub fn unlink(&mut self, nodes: &mut [OrderNode], slot: u32) {
        let node = nodes[slot as usize];
        assert!(node.has(FLAG_IN_ACCOUNT));
        if node.account_prev == NIL {
            self.head = node.account_next;
        } else {
            nodes[node.account_prev as usize].account_next = node.account_next;
        }
        if node.account_next == NIL {
            self.tail = node.account_prev;
        } else {
            nodes[node.account_next as usize].account_prev = node.account_prev;
        }
        let stored = &mut nodes[slot as usize];
        stored.flags &= !FLAG_IN_ACCOUNT;
        stored.account_prev = NIL;
        stored.account_next = NIL;
    }
}
