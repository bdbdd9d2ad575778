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
/// Stops handing out jobs after the first error. Returns the error of the earliest failing
/// job in `jobs` order, whichever thread saw its error first: jobs are handed out in order
/// and a taken job always finishes, so every job before the reported one ran and passed.
/// The answer does not depend on scheduling.
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
    let queue = Mutex::new(jobs.into_iter().enumerate());
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<(usize, Error)>> = Mutex::new(None);
    let worker = || {
        let mut state = init();
        loop {
            if failed.load(Ordering::Relaxed) {
                return;
            }
            // A poisoned queue means another worker panicked; stop quietly, the join reports it.
            let Some((seq, job)) = queue.lock().ok().and_then(|mut q| q.next()) else { return };
            if let Err(e) = work(&mut state, job) {
                failed.store(true, Ordering::Relaxed);
                if let Ok(mut slot) = first_error.lock()
                    && slot.as_ref().is_none_or(|(earliest, _)| seq < *earliest)
                {
                    *slot = Some((seq, e));
                }
                return;
            }
        }
    };
    let panicked = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers).map(|_| s.spawn(worker)).collect();
        handles.into_iter().map(|h| h.join().is_err()).fold(false, |a, b| a | b)
    });
    if let Some((_, e)) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    if panicked {
        return Err(Error::Io { path: "<worker>".into(), source: std::io::Error::other("a worker thread panicked") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(n: usize) -> Error {
        Error::Header(format!("job {n}"))
    }

    #[test]
    fn the_earliest_failing_job_is_reported_whichever_fails_first() {
        // Job 0 fails late, job 1 fails at once: the answer is job 0's on every run.
        for _ in 0..20 {
            let r = run(
                vec![0usize, 1, 2, 3],
                2,
                || (),
                |(), n| match n {
                    0 => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        Err(err(0))
                    }
                    1 => Err(err(1)),
                    _ => Ok(()),
                },
            );
            assert!(matches!(&r, Err(Error::Header(m)) if m == "job 0"), "{r:?}");
        }
        // A later failure alone is reported as itself; no failure is Ok.
        let r = run(vec![0usize, 1, 2, 3], 2, || (), |(), n| if n == 2 { Err(err(2)) } else { Ok(()) });
        assert!(matches!(&r, Err(Error::Header(m)) if m == "job 2"), "{r:?}");
        assert!(run(vec![0usize, 1, 2, 3], 2, || (), |(), _| Ok(())).is_ok());
    }
}
