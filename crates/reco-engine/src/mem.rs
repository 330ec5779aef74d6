//! What the memory bounds count: heap bytes as the allocator hands them out.
//!
//! Every bounded part (user records, profiles, open windows, the weight table, the event tail)
//! estimates its bytes with these helpers, so that an estimate is what the process holds: an
//! allocation at mimalloc's size class ([`alloc_size`]), a hash table at hashbrown's power of
//! two of buckets with its control bytes ([`table_bytes`]), a B-tree by its nodes
//! ([`btree_bytes`]). What they leave out is the allocator's own slack (pages it keeps after a
//! free, its metadata): a fixed cost, measured in BENCHMARKS.md.

/// The bytes mimalloc (v3, what `reco serve` links) hands out for a request of `n` bytes
/// aligned to `align`: one word, or an even number of words up to 8, then four size classes
/// per power of two (at most 20 % over). Rust asks for every allocation with its alignment, and
/// when the size class's current page has no free block mimalloc over-allocates by
/// `align - 1` unless the class is a power of two up to 4 KiB, so that is counted too. Past
/// 1 MiB a request takes whole 64 KiB slices of an arena; mimalloc may call more of the
/// slices' tail usable (up to 2 MiB for the largest), but nothing writes past the request, so
/// that tail is never resident. glibc's classes (8 bytes of header, 16-byte steps) are no
/// larger, so the estimate holds for the system allocator too.
pub const fn alloc_size(n: usize, align: usize) -> usize {
    let class = size_class(n);
    if align <= 1 || n == 0 || (class <= 4096 && class.is_power_of_two()) { class } else { size_class(n + align - 1) }
}

const fn size_class(n: usize) -> usize {
    const WORD: usize = size_of::<usize>();
    if n == 0 {
        return 0;
    }
    if n > 1 << 20 {
        return n.div_ceil(64 << 10) * (64 << 10);
    }
    let words = n.div_ceil(WORD);
    if words <= 1 {
        return WORD;
    }
    if words <= 8 {
        return words.next_multiple_of(2) * WORD;
    }
    let b = (usize::BITS - 1 - (words - 1).leading_zeros()) as usize;
    let step = 1usize << (b - 2);
    (((words - 1) | (step - 1)) + 1) * WORD
}

/// The heap bytes of a `Vec<T>` (or `VecDeque<T>`, `Box<[T]>`) of `capacity` items.
pub const fn vec_bytes<T>(capacity: usize) -> usize {
    alloc_size(capacity * size_of::<T>(), align_of::<T>())
}

/// The heap bytes of a `String` of `capacity` bytes.
pub const fn string_bytes(capacity: usize) -> usize {
    alloc_size(capacity, 1)
}

/// The allocation of an `Arc<T>` (two counts, then the value).
pub const fn arc_bytes<T>() -> usize {
    let align = if align_of::<T>() > align_of::<usize>() { align_of::<T>() } else { align_of::<usize>() };
    alloc_size(2 * size_of::<usize>() + size_of::<T>(), align)
}

/// The allocation of an `Arc<str>` of `len` bytes.
pub const fn arc_str_bytes(len: usize) -> usize {
    alloc_size(2 * size_of::<usize>() + len, align_of::<usize>())
}

/// The buckets of a std / hashbrown table whose `capacity()` is `capacity`: a power of two,
/// 7/8 of them usable (all but one below 8).
pub const fn buckets(capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else if capacity < 8 {
        (capacity + 1).next_power_of_two()
    } else {
        (capacity / 7 * 8).next_power_of_two()
    }
}

/// Control bytes past the buckets (one SSE2 group), and the table's alignment.
const GROUP: usize = 16;

/// The heap bytes of a std / hashbrown hash table of `(K, V)` entries whose `capacity()` is
/// `capacity`: per bucket its entry and one control byte, plus one group of control bytes, in
/// one 16-aligned allocation. A table with tombstones reports less capacity than its buckets
/// hold; the bounded tables either rehash before they fill (the weight table) or hold more
/// than half their buckets whenever tombstones could matter (hashbrown rehashes in place once
/// they take the room, while at most half the buckets are full).
pub const fn table_bytes<E>(capacity: usize) -> usize {
    let buckets = buckets(capacity);
    if buckets == 0 {
        return 0;
    }
    let ctrl = (buckets * size_of::<E>()).div_ceil(GROUP) * GROUP;
    alloc_size(ctrl + buckets + GROUP, GROUP)
}

/// A `BTreeMap`'s nodes with 8-byte keys and values (std: 11 entries per node): a leaf is
/// 192 bytes, an internal node 288. Every node but the root holds at least 5 entries, so
/// `len` entries take at most `len / 5` leaves and one internal node per 5 leaves; a map
/// emptied by removals keeps its root leaf, so even an empty one is counted a leaf.
pub const fn btree_bytes(len: usize) -> usize {
    const LEAF: usize = alloc_size(192, 8);
    const INTERNAL: usize = alloc_size(288, 8);
    if len <= 11 {
        return LEAF;
    }
    let leaves = len.div_ceil(5);
    leaves * LEAF + leaves.div_ceil(5) * INTERNAL
}

#[cfg(test)]
pub(crate) mod counting {
    //! A global allocator for this crate's unit tests that counts, per thread, the bytes
    //! mimalloc really hands out (its usable size), so that tests can hold an estimate against
    //! what an allocation took.

    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::Cell;

    use libmimalloc_sys as mi;

    pub struct Counting;

    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    /// What an allocation can make resident: its usable size, or past 1 MiB the pages of the
    /// request (see [`super::alloc_size`]).
    fn resident(ptr: *mut u8, requested: usize) -> isize {
        let usable = unsafe { mi::mi_usable_size(ptr.cast()) };
        (if usable > 1 << 20 { requested.div_ceil(4096) * 4096 } else { usable }) as isize
    }

    fn add(bytes: isize) {
        // `try_with`: the thread's counters may be gone while it exits.
        let _ = LIVE.try_with(|live| {
            let now = live.get() + bytes;
            live.set(now);
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
        });
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { mi::mi_malloc_aligned(layout.size(), layout.align()) }.cast::<u8>();
            if !p.is_null() {
                add(resident(p, layout.size()));
            }
            p
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-resident(ptr, layout.size()));
            unsafe { mi::mi_free(ptr.cast()) }
        }

        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let before = resident(ptr, layout.size());
            let p = unsafe { mi::mi_realloc_aligned(ptr.cast(), new_size, layout.align()) }.cast::<u8>();
            if !p.is_null() {
                add(resident(p, new_size) - before);
            }
            p
        }
    }

    /// Runs `f` and answers what it returned, the bytes it left allocated on this thread (less
    /// what it freed) and the most it held at once beyond what was allocated before.
    pub fn measure<R>(f: impl FnOnce() -> R) -> (R, isize, usize) {
        let start = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(start));
        let out = f();
        let (live, peak) = (LIVE.with(Cell::get), PEAK.with(Cell::get));
        (out, live - start, (peak - start).max(0) as usize)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::counting::measure;
    use super::*;

    #[test]
    fn alloc_size_is_what_mimalloc_hands_out() {
        for n in (1..5_000).chain((5_000..3_000_000).step_by(9_973)).chain([1 << 20, (1 << 20) + 1, 52 << 20]) {
            let (held, bytes, _) = measure(|| Vec::<u8>::with_capacity(n));
            let (bytes, estimate) = (bytes as usize, alloc_size(n, 1));
            assert!(estimate >= bytes, "{n} bytes: estimated {estimate}, allocated {bytes}");
            assert!(estimate < n + n / 4 + 16, "{n} bytes: estimated {estimate}");
            drop(held);
            // Aligned: the over-allocation path is taken when the class's page has no free block.
            let (held, bytes, _) = measure(|| Vec::<u64>::with_capacity(n.div_ceil(8)));
            let estimate = vec_bytes::<u64>(n.div_ceil(8));
            assert!(estimate >= bytes as usize, "{n} bytes of u64: estimated {estimate}, allocated {bytes}");
            drop(held);
        }
    }

    #[test]
    fn table_bytes_covers_the_tables_allocation() {
        for n in (0..3_000).chain((3_000..200_000).step_by(4_999)) {
            let (set, bytes, _) = measure(|| {
                let mut set: HashSet<u64> = HashSet::new();
                set.extend(0..n as u64);
                set
            });
            let (estimate, bytes) = (table_bytes::<u64>(set.capacity()), bytes as usize);
            assert!(estimate >= bytes, "{n} entries: estimated {estimate}, allocated {bytes}");
            assert!(estimate <= bytes + bytes / 4 + 64, "{n} entries: estimated {estimate}, allocated {bytes}");
        }
    }

    #[test]
    fn btree_bytes_covers_a_tree_filled_at_the_back_and_emptied_from_the_front() {
        let mut tree = std::collections::BTreeMap::<u64, u64>::new();
        let mut held = 0;
        for k in 0..30_000u64 {
            let ((), delta, _) = measure(|| {
                tree.insert(k, k);
                if k % 3 == 0 {
                    tree.pop_first();
                }
            });
            held += delta;
            assert!(
                btree_bytes(tree.len()) as isize >= held,
                "{} entries: estimated {}, held {held}",
                tree.len(),
                btree_bytes(tree.len())
            );
        }
    }
}
