//! Property test of the worker allocator: random allocations, frees and
//! fills never overlap and never lose their contents.

use pgagroal::arena::Arena;
use proptest::prelude::*;
use std::alloc::Layout;

#[derive(Debug, Clone)]
enum Op {
    Alloc { size: usize, align_shift: u32 },
    Free { index: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..20_000, 0u32..7).prop_map(|(size, align_shift)| Op::Alloc { size, align_shift }),
        2 => any::<usize>().prop_map(|index| Op::Free { index }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn blocks_never_overlap(ops in proptest::collection::vec(op(), 1..200)) {
        let len = 16 << 20;
        let backing = vec![0u128; len / 16];
        let mut arena = Arena::over(backing.as_ptr() as usize, len);
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Alloc { size, align_shift } => {
                    let layout = Layout::from_size_align(size, 1 << align_shift).expect("layout");
                    let (p, _) = arena.alloc(layout).expect("room");
                    prop_assert_eq!(p as usize % layout.align(), 0);
                    let tag = (n % 251) as u8;
                    // SAFETY: the block is valid for layout.size() bytes.
                    unsafe { std::ptr::write_bytes(p, tag, size) };
                    live.push((p, layout, tag));
                }
                Op::Free { index } if !live.is_empty() => {
                    let (p, layout, _) = live.swap_remove(index % live.len());
                    arena.free(p, layout);
                }
                Op::Free { .. } => {}
            }
            for &(p, layout, tag) in &live {
                // SAFETY: live blocks stay valid until freed.
                let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
                prop_assert!(bytes.iter().all(|&b| b == tag), "a block was overwritten");
            }
        }
        drop(backing);
    }
}
