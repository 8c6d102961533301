//! The global allocator of the gateway and of the reference proxy:
//! mimalloc, called the way its fast path expects.
//!
//! `mimalloc::MiMalloc` passes every allocation to `mi_malloc_aligned`,
//! whose fast path serves only blocks of at most 1 KiB that happen to be
//! aligned already; anything larger (Pingora's buffers, a body, a header
//! map's table) takes its generic path, which over-allocates and aligns by
//! hand: about 280 instructions a call, 17 calls a request in the gateway
//! (callgrind's profile from `load-tests/instructions.sh`; 4.8 k fewer
//! instructions a request with this allocator). Every mimalloc block is
//! aligned to the word size, so an allocation that needs no more than that
//! goes to `mi_malloc` directly; larger alignments still go to the aligned
//! calls.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

/// The alignment every mimalloc block has: its size classes are whole
/// words, and its pages start word-aligned.
const WORD: usize = std::mem::size_of::<usize>();

pub struct Allocator;

// SAFETY: each method forwards to the mimalloc call of the same contract;
// the unaligned calls are used only where the layout's alignment is at most
// the word alignment every mimalloc block has.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            mi_malloc(layout.size()).cast()
        } else {
            mi_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= WORD {
            mi_zalloc(layout.size()).cast()
        } else {
            mi_zalloc_aligned(layout.size(), layout.align()).cast()
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        mi_free(ptr.cast::<c_void>());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= WORD {
            mi_realloc(ptr.cast::<c_void>(), new_size).cast()
        } else {
            mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size class up to 64 KiB, at each alignment, comes back aligned
    /// and usable, through allocation, zeroed allocation and growth.
    #[test]
    fn blocks_have_the_alignment_asked_for() {
        let a = Allocator;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            let mut size = 1;
            while size <= 64 * 1024 {
                for size in [size, size + 1, size * 3 / 2] {
                    let layout = Layout::from_size_align(size, align).unwrap();
                    // SAFETY: a non-zero size; each block is freed once,
                    // with the layout it was allocated (or grown) with.
                    unsafe {
                        let p = a.alloc(layout);
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "size {size} align {align}");
                        p.write_bytes(0xa5, size);
                        let grown = a.realloc(p, layout, size * 2 + 24);
                        assert_eq!(grown as usize % align, 0, "grown {size} align {align}");
                        assert_eq!(*grown.add(size - 1), 0xa5);
                        a.dealloc(
                            grown,
                            Layout::from_size_align(size * 2 + 24, align).unwrap(),
                        );
                        let z = a.alloc_zeroed(layout);
                        assert_eq!(z as usize % align, 0, "zeroed {size} align {align}");
                        assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                        a.dealloc(z, layout);
                    }
                }
                size *= 2;
            }
        }
    }
}
