//! Bytes a thread holds, so a run can bound what one event's programs allocate.
//!
//! VRL stops a program between expressions when asked (that is how the time limit works), but
//! it cannot say how much memory a program holds, and memory outruns time: a program of a few
//! dozen `.message = .message + .message` lines asks for terabytes within microseconds.
//! [`CountingAllocator`] wraps the process's allocator and keeps, per thread, the bytes
//! allocated minus the bytes freed; a run reads that between expressions and stops the program
//! once its event has grown the thread past [`crate::Limits::max_memory_bytes`].
//!
//! A binary that runs pipelines installs it as its global allocator (`meniscus` does, around
//! mimalloc). Without it the count stays at zero and only the time limit applies.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;

thread_local! {
    // No destructor and a constant start: reading it never allocates, so the allocator may.
    static HELD: Cell<i64> = const { Cell::new(0) };
}

/// A global allocator that counts, per thread, the bytes held through it.
#[derive(Debug, Default)]
pub struct CountingAllocator<A>(pub A);

/// Bytes this thread allocated minus bytes it freed, since it started. It may go down, or
/// below zero, when the thread frees what others allocated; a run looks only at its growth.
pub fn held_by_this_thread() -> i64 {
    HELD.try_with(Cell::get).unwrap_or(0)
}

fn add(delta: i64) {
    // A thread being torn down may have lost its counter; what it frees then goes uncounted.
    let _ = HELD.try_with(|held| held.set(held.get().wrapping_add(delta)));
}

fn size(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

// SAFETY: every call is forwarded unchanged to the wrapped allocator, which upholds
// `GlobalAlloc`'s contract; the counting around it touches only a thread-local integer.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract for `layout`.
        let ptr = unsafe { self.0.alloc(layout) };
        if !ptr.is_null() {
            add(size(layout.size()));
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { self.0.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add(size(layout.size()));
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block this allocator gave, with its layout.
        unsafe { self.0.dealloc(ptr, layout) };
        add(-size(layout.size()));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract for `ptr`, `layout` and `new_size`.
        let new = unsafe { self.0.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            add(size(new_size) - size(layout.size()));
        }
        new
    }
}
