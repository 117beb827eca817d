//! Running values of the step that the host recomputes rather than stores (NAdam's
//! `mu_product`, Schedule-Free's weight sum), memoized so any step costs at most
//! [`BLOCK`] updates past the first call's.

use std::sync::Mutex;

/// Steps between the memoized values.
pub(crate) const BLOCK: u64 = 64;

/// The most steps a memoized optimizer counts (2²⁸: a year of ten steps a second), so the memo
/// stays within 2²² values per configuration and the first call within 2²⁸ updates. A
/// checkpoint past it is refused ([`crate::Algorithm::MAX_STEPS`]); a run that steps past it
/// keeps the running value of step 2²⁸.
pub(crate) const MAX_STEPS: u64 = 1 << 28;

/// For each configuration seen (its key): the running value after every `BLOCK`-th step.
pub(crate) type Memo<T> = Mutex<Vec<(Vec<u64>, Vec<T>)>>;

/// The running value after `step` steps of the configuration `key`: `start` after none, then
/// `advance(value, t)` for each step `t` (1-based) in order, exactly as a loop over every step
/// would compute it.
pub(crate) fn running<T: Copy>(
    memo: &Memo<T>,
    key: Vec<u64>,
    start: T,
    step: u64,
    advance: impl Fn(T, u64) -> T,
) -> T {
    let walk = |mut value: T, from: u64, to: u64| {
        for t in from + 1..=to {
            value = advance(value, t);
        }
        value
    };
    let mut memo = memo.lock().unwrap_or_else(|e| e.into_inner());
    let at = match memo.iter().position(|(k, _)| *k == key) {
        Some(i) => i,
        None => {
            memo.push((key, vec![start]));
            memo.len() - 1
        }
    };
    let blocks = &mut memo[at].1;
    let step = step.min(MAX_STEPS);
    let block = (step / BLOCK) as usize;
    while blocks.len() <= block {
        let k = blocks.len() as u64;
        let last = blocks[blocks.len() - 1];
        blocks.push(walk(last, (k - 1) * BLOCK, k * BLOCK));
    }
    walk(blocks[block], block as u64 * BLOCK, step)
}
