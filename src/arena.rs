//! A fork-aware global allocator that keeps workers small.
//!
//! A forked worker shares every page of the supervisor until it writes one.
//! glibc's malloc writes all over the inherited heap (chunk headers, bins,
//! recycled chunks), so each worker used to end up with private copies of
//! pages it had no business changing. Right after fork a worker calls
//! [`activate`]; from then on its allocations come from a fresh region of
//! its own, carved in power-of-two size classes, and blocks the supervisor
//! allocated before the fork are never written: freeing one is a no-op (it
//! stays shared), growing one copies it into the region.
//!
//! The supervisor activates a region of its own too, once its start-up is
//! done: from then on it no longer writes to the heap pages its workers
//! share with it (every page a parent writes after a fork stays behind as a
//! private copy in each child that still maps it). A worker, after
//! activating its own region and copying what it needs out of the
//! supervisor's, unmaps the supervisor's region ([`ForkArena::release`]).
//!
//! Both processes are single-threaded; a spin flag still makes the region
//! safe if a thread ever appears.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

/// Address space reserved per worker (not memory: pages are only backed
/// once written).
const RESERVE: usize = 1 << 30;
/// Smallest block.
const MIN_CLASS_SHIFT: u32 = 4;
/// Blocks up to 1 MiB come from size classes; larger ones are page runs.
const MAX_CLASS_SHIFT: u32 = 20;
const CLASSES: usize = (MAX_CLASS_SHIFT - MIN_CLASS_SHIFT + 1) as usize;
const PAGE: usize = 4096;
/// Alignment of every block (what any request with a smaller alignment gets).
const MIN_ALIGN: usize = 16;
/// Freed page runs remembered for reuse.
const LARGE_SLOTS: usize = 64;

/// The allocator's state over one reserved region.
pub struct Arena {
    base: usize,
    end: usize,
    /// Next never-used byte for blocks up to a page, in the region's first
    /// half: small objects stay packed together on as few pages as possible.
    small: usize,
    /// Next never-used byte for larger blocks, in the second half.
    big: usize,
    /// Heads of the free lists, one per size class.
    free: [usize; CLASSES],
    /// Freed page runs (address, length), zero length for an empty slot.
    large: [(usize, usize); LARGE_SLOTS],
}

fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(1 << MIN_CLASS_SHIFT);
    let shift = usize::BITS - (size - 1).leading_zeros();
    (shift <= MAX_CLASS_SHIFT).then(|| (shift - MIN_CLASS_SHIFT) as usize)
}

fn class_size(class: usize) -> usize {
    1 << (class as u32 + MIN_CLASS_SHIFT)
}

fn align_up(value: usize, align: usize) -> usize {
    (value + align - 1) & !(align - 1)
}

impl Arena {
    /// An arena over `[base, base + len)`, which the caller has mapped
    /// readable, writable and zero-filled.
    pub const fn over(base: usize, len: usize) -> Arena {
        Arena {
            base,
            end: base + len,
            small: base,
            big: base + len / 2,
            free: [0; CLASSES],
            large: [(0, 0); LARGE_SLOTS],
        }
    }

    pub fn owns(&self, ptr: *mut u8) -> bool {
        (self.base..self.end).contains(&(ptr as usize))
    }

    fn carve(&mut self, size: usize, align: usize) -> Option<usize> {
        let small = size <= PAGE;
        let (cursor, limit) =
            if small { (self.small, self.base + (self.end - self.base) / 2) } else { (self.big, self.end) };
        let start = align_up(cursor, align);
        let next = start.checked_add(size)?;
        if next > limit {
            return None;
        }
        if small {
            self.small = next;
        } else {
            self.big = next;
        }
        Some(start)
    }

    /// A block for `layout`, and whether it is fresh (still zero).
    pub fn alloc(&mut self, layout: Layout) -> Option<(*mut u8, bool)> {
        match class_of(layout) {
            Some(class) => {
                let size = class_size(class);
                // Free blocks are only known to be 16-aligned: a request for
                // more gets a fresh block.
                let head = self.free[class];
                if head != 0 && layout.align() <= MIN_ALIGN {
                    // SAFETY: a free block of this class holds the address of
                    // the next one in its first word (written by `free`).
                    self.free[class] = unsafe { ptr::read(head as *const usize) };
                    return Some((head as *mut u8, false));
                }
                // Small blocks are packed at 16 bytes so that a worker's many
                // small objects share few pages; large ones start on a page.
                let align = if size > PAGE { PAGE.max(layout.align()) } else { layout.align().max(MIN_ALIGN) };
                self.carve(size, align).map(|p| (p as *mut u8, true))
            }
            None => {
                let len = align_up(layout.size(), PAGE);
                if let Some(slot) = self.large.iter_mut().find(|(_, l)| *l == len) {
                    let addr = slot.0;
                    *slot = (0, 0);
                    return Some((addr as *mut u8, true));
                }
                self.carve(len, PAGE.max(layout.align())).map(|p| (p as *mut u8, true))
            }
        }
    }

    /// Give back a block this arena handed out with the same layout.
    pub fn free(&mut self, block: *mut u8, layout: Layout) {
        match class_of(layout) {
            Some(class) => {
                // SAFETY: the block belongs to this arena, is at least 16
                // bytes and 8-aligned, and is no longer used by its owner.
                unsafe { ptr::write(block as *mut usize, self.free[class]) };
                self.free[class] = block as usize;
            }
            None => {
                let len = align_up(layout.size(), PAGE);
                // Return the memory; the run is zero again when reused.
                // SAFETY: the run [block, block + len) lies inside the region.
                unsafe { libc::madvise(block.cast(), len, libc::MADV_DONTNEED) };
                if let Some(slot) = self.large.iter_mut().find(|(_, l)| *l == 0) {
                    *slot = (block as usize, len);
                }
            }
        }
    }

    /// Whether a block of `old` layout can hold `new_size` bytes in place.
    pub fn fits(old: Layout, new_size: usize) -> bool {
        match (class_of(old), Layout::from_size_align(new_size, old.align()).ok().map(class_of)) {
            (Some(a), Some(Some(b))) => a == b,
            (None, Some(None)) => align_up(old.size(), PAGE) == align_up(new_size, PAGE),
            _ => false,
        }
    }
}

/// Whether this process allocates from its own region.
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The global allocator: the system allocator until [`activate`].
pub struct ForkArena {
    state: UnsafeCell<Arena>,
    lock: AtomicBool,
}

// SAFETY: all access to `state` happens under the `lock` spin flag.
unsafe impl Sync for ForkArena {}

impl ForkArena {
    pub const fn new() -> Self {
        ForkArena { state: UnsafeCell::new(Arena::over(0, 0)), lock: AtomicBool::new(false) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Arena) -> R) -> R {
        while self.lock.compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed).is_err() {
            std::hint::spin_loop();
        }
        // SAFETY: the spin flag gives exclusive access until released below.
        let result = f(unsafe { &mut *self.state.get() });
        self.lock.store(false, Ordering::Release);
        result
    }

    /// Switch this process to a fresh region of its own. Returns the region
    /// used until now (to be released once nothing in it is needed), or None
    /// (and nothing changes) when no region can be reserved.
    pub fn activate(&self) -> Option<(usize, usize)> {
        // SAFETY: an anonymous private mapping with no address hint; the
        // result is checked before use.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                RESERVE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let previous = self.with(|a| std::mem::replace(a, Arena::over(base as usize, RESERVE)));
        ACTIVE.store(true, Ordering::Release);
        Some((previous.base, previous.end - previous.base))
    }

    /// Unmap a region returned by [`ForkArena::activate`]. The caller
    /// guarantees nothing in it is used any more.
    pub fn release(&self, (base, len): (usize, usize)) {
        if len > 0 {
            // SAFETY: the range is a region this allocator mapped and no
            // longer hands out; the caller guarantees no live reference
            // points into it.
            unsafe { libc::munmap(base as *mut libc::c_void, len) };
        }
    }
}

impl Default for ForkArena {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: every block handed out is valid for its layout (size classes and
// page runs are at least as large and as aligned as requested) and is not
// handed out again until freed; blocks of the system allocator are only
// ever released to it while the arena is inactive.
unsafe impl GlobalAlloc for ForkArena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !ACTIVE.load(Ordering::Acquire) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc(layout) };
        }
        self.with(|a| a.alloc(layout)).map_or(ptr::null_mut(), |(p, _)| p)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !ACTIVE.load(Ordering::Acquire) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.alloc_zeroed(layout) };
        }
        match self.with(|a| a.alloc(layout)) {
            // Fresh memory from the region is still zero: leave its pages
            // untouched.
            Some((p, true)) => p,
            Some((p, false)) => {
                // SAFETY: the block is valid for layout.size() bytes.
                unsafe { ptr::write_bytes(p, 0, layout.size()) };
                p
            }
            None => ptr::null_mut(),
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if !ACTIVE.load(Ordering::Acquire) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.dealloc(block, layout) };
        }
        self.with(|a| {
            if a.owns(block) {
                a.free(block, layout);
            }
            // A block from before the fork stays where it is: freeing it
            // would write to (and so copy) a page shared with the supervisor.
        })
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ACTIVE.load(Ordering::Acquire) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { System.realloc(block, layout, new_size) };
        }
        let owned = self.with(|a| a.owns(block));
        if owned && Arena::fits(layout, new_size) {
            return block;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else { return ptr::null_mut() };
        // SAFETY: new_layout has a non-zero size (new_size > 0 per the
        // GlobalAlloc contract) and a valid alignment.
        let fresh = unsafe { self.alloc(new_layout) };
        if !fresh.is_null() {
            // SAFETY: both blocks are valid for the copied length and distinct.
            unsafe { ptr::copy_nonoverlapping(block, fresh, layout.size().min(new_size)) };
            // SAFETY: the old block came from this allocator with `layout`.
            unsafe { self.dealloc(block, layout) };
        }
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A page-aligned, zero-filled region for a test arena.
    struct Region(*mut libc::c_void, usize);

    impl Drop for Region {
        fn drop(&mut self) {
            // SAFETY: unmapping the mapping created in `region`.
            unsafe { libc::munmap(self.0, self.1) };
        }
    }

    fn region(len: usize) -> (Arena, Region) {
        // SAFETY: a fresh anonymous mapping; checked below.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        (Arena::over(base as usize, len), Region(base, len))
    }

    #[test]
    fn classes_round_up_to_powers_of_two() {
        assert_eq!(class_of(Layout::from_size_align(1, 1).expect("layout")), Some(0));
        assert_eq!(class_of(Layout::from_size_align(17, 8).expect("layout")), Some(1));
        assert_eq!(class_of(Layout::from_size_align(4096, 8).expect("layout")).map(class_size), Some(4096));
        assert_eq!(class_of(Layout::from_size_align(8, 64).expect("layout")).map(class_size), Some(64));
        assert_eq!(class_of(Layout::from_size_align((1 << 20) + 1, 8).expect("layout")), None);
    }

    #[test]
    fn blocks_are_aligned_disjoint_and_reused() {
        let (mut a, _backing) = region(1 << 16);
        let l = Layout::from_size_align(100, 8).expect("layout");
        let (p1, fresh1) = a.alloc(l).expect("p1");
        let (p2, _) = a.alloc(l).expect("p2");
        assert!(fresh1);
        assert_eq!(p1 as usize % 16, 0);
        // A stricter alignment gets a block of its own, aligned as asked.
        let strict = Layout::from_size_align(100, 128).expect("layout");
        let (p4, _) = a.alloc(strict).expect("p4");
        assert_eq!(p4 as usize % 128, 0);
        assert!(p2 as usize >= p1 as usize + 128 || p1 as usize >= p2 as usize + 128);
        a.free(p1, l);
        let (p3, fresh3) = a.alloc(l).expect("p3");
        assert_eq!((p3, fresh3), (p1, false));
        a.free(p3, l);
        let (p5, _) = a.alloc(strict).expect("p5");
        assert_ne!(p5, p1, "a 16-aligned free block must not serve a 128-aligned request");
        assert!(a.owns(p3) && !a.owns(std::ptr::null_mut()));
    }

    #[test]
    fn exhaustion_is_none_not_a_crash() {
        let (mut a, _backing) = region(8192);
        let l = Layout::from_size_align(2048, 8).expect("layout");
        assert!(a.alloc(l).is_some());
        assert!(a.alloc(l).is_some());
        assert!(a.alloc(l).is_none());
    }

    #[test]
    fn in_place_growth_within_a_class() {
        let l = Layout::from_size_align(40, 8).expect("layout");
        assert!(Arena::fits(l, 64));
        assert!(!Arena::fits(l, 65));
    }
}
