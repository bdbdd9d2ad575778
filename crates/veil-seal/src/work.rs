//! A small scoped worker pool for sealing and unsealing, and progress reporting.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::Error;

/// What a long operation is doing, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Hashing plaintext files for the OMS manifest.
    Hash,
    /// Encrypting chunks.
    Encrypt,
    /// Decrypting and checking chunks.
    Decrypt,
}

/// Receives progress; called from worker threads.
pub trait Progress: Sync {
    /// A phase starts; `total` bytes will be reported.
    fn begin(&self, phase: Phase, total: u64) {
        let _ = (phase, total);
    }
    /// `bytes` more bytes of `phase` are done.
    fn advance(&self, phase: Phase, bytes: u64);
    /// A phase is over.
    fn end(&self, phase: Phase) {
        let _ = phase;
    }
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn advance(&self, _: Phase, _: u64) {}
}

/// The number of worker threads for a request of `threads` (0: one per available core).
pub fn thread_count(threads: usize) -> usize {
    if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads }
}

/// Runs `jobs` in order on `threads` scoped threads, each with its own state from `init`.
/// Stops handing out jobs after the first error and returns it.
pub fn run<J, S>(
    jobs: Vec<J>,
    threads: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, J) -> Result<(), Error> + Sync,
) -> Result<(), Error>
where
    J: Send,
{
    let workers = thread_count(threads).clamp(1, jobs.len().max(1));
    let queue = Mutex::new(jobs.into_iter());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let worker = || {
        let mut state = init();
        loop {
            if failed.load(Ordering::Relaxed) {
                return;
            }
            // A poisoned queue means another worker panicked; stop quietly, the join reports it.
            let Some(job) = queue.lock().ok().and_then(|mut q| q.next()) else { return };
            if let Err(e) = work(&mut state, job) {
                failed.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = first_error.lock() {
                    slot.get_or_insert(e);
                }
                return;
            }
        }
    };
    let panicked = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(worker)).collect();
        handles.into_iter().map(|h| h.join().is_err()).fold(false, |a, b| a | b)
    });
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    if panicked {
        return Err(Error::Io { path: "<worker>".into(), source: std::io::Error::other("a worker thread panicked") });
    }
    Ok(())
}
