//! The `gguf_llama` fuzz entry point and libFuzzer's panic hook (fuzz finding of
//! 2026-12-04): libFuzzer's hook aborts on every panic, caught or not, so a panic that
//! candle's GGUF parser raises and `fuzz_gguf` catches must never reach the hook.
//! Alone in its own test binary: the panic hook is global to the process.

use std::panic::{self, PanicHookInfo};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

type Hook = Box<dyn Fn(&PanicHookInfo<'_>) + Sync + Send + 'static>;

/// Puts the previous hook back however the test ends.
struct Restore(Option<Hook>);
impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            panic::set_hook(h);
        }
    }
}

#[test]
fn candles_caught_panic_never_reaches_the_panic_hook() {
    // A GGUF whose `general.alignment` is 0: candle 0.11.1 divides by it.
    let mut f = b"GGUF".to_vec();
    f.extend(3u32.to_le_bytes());
    f.extend(0u64.to_le_bytes());
    f.extend(1u64.to_le_bytes());
    let key = b"general.alignment";
    f.extend((key.len() as u64).to_le_bytes());
    f.extend(key);
    f.extend(4u32.to_le_bytes());
    f.extend(0u32.to_le_bytes());

    let reached = Arc::new(AtomicBool::new(false));
    let r = reached.clone();
    let previous: Arc<Hook> = Arc::new(panic::take_hook());
    let p = previous.clone();
    panic::set_hook(Box::new(move |info| {
        r.store(true, Ordering::SeqCst);
        p(info);
    }));
    let _restore = Restore(Some(Box::new(move |info| previous(info))));
    veil_models::llama::fuzz_gguf(&f);
    assert!(!reached.load(Ordering::SeqCst), "candle's caught panic reached the panic hook");
}
