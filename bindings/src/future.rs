//! Blocking core work awaited from Kotlin coroutines, Swift tasks and Python asyncio.
//!
//! The core's sync engine and transport block (reqwest blocking), and the phone library
//! carries no async runtime. [`spawn_blocking`] runs one call on a thread of its own and
//! hands back a [`BlockingCall`], a runtime-agnostic future: the thread stores the result
//! and wakes the waker the foreign executor gave the last poll (uniffi's `RustFuture`,
//! which calls the language's continuation). Nothing here depends on who polls.
//!
//! Cancellation: uniffi drops the Rust future when the awaiting coroutine or task is
//! cancelled (Kotlin and Python free it in a `finally`). Dropping a [`BlockingCall`] that
//! has not delivered its result sets the call's [`CancelFlag`], so the engine stops at
//! its next round trip and the thread ends; its result is then dropped unread. The
//! awaiting side gets the language's own cancellation (`CancellationException`,
//! `asyncio.CancelledError`), not an `ApiError`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use gridsync_core::sync::CancelFlag;

use crate::error::{guard, ApiError};

/// What the worker thread and the awaiting future share.
struct Slot<T> {
    /// The call's result, once the thread has it.
    result: Option<Result<T, ApiError>>,
    /// The waker of the last poll that found no result.
    waker: Option<Waker>,
    /// The future was dropped: keep no waker, nobody reads the result.
    abandoned: bool,
}

/// A blocking call running on its own thread, awaited as a future.
///
/// Resolves to the call's result (a panic on the thread is `ApiError::Internal`, see
/// [`guard`]). Dropped before it resolved, it cancels the call through its flag.
pub(crate) struct BlockingCall<T> {
    slot: Arc<Mutex<Slot<T>>>,
    cancel: CancelFlag,
    done: bool,
}

/// Runs `work` on a new thread named `name` and returns the future of its result.
///
/// `cancel` is the flag `work` watches; it is set when the future is dropped before the
/// result arrived. A thread that cannot be started resolves to `ApiError::Internal`.
pub(crate) fn spawn_blocking<T, F>(name: &str, cancel: CancelFlag, work: F) -> BlockingCall<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
{
    let slot = Arc::new(Mutex::new(Slot {
        result: None,
        waker: None,
        abandoned: false,
    }));
    let shared = Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name(format!("gridsync-{name}"))
        .spawn(move || {
            let result = guard(work);
            let waker = {
                let mut slot = lock(&shared);
                if slot.abandoned {
                    return;
                }
                slot.result = Some(result);
                slot.waker.take()
            };
            // Woken outside the lock: the executor may poll right away, on this thread.
            if let Some(w) = waker {
                w.wake();
            }
        });
    if let Err(e) = spawned {
        lock(&slot).result = Some(Err(ApiError::Internal {
            detail: format!("could not start a thread for {name}: {e}"),
        }));
    }
    BlockingCall {
        slot,
        cancel,
        done: false,
    }
}

/// Locks the slot; a panic while it was held (none is possible: no code that can panic
/// runs under the lock) would not make its data wrong, so a poisoned lock is taken as is.
fn lock<T>(slot: &Mutex<Slot<T>>) -> std::sync::MutexGuard<'_, Slot<T>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> Future for BlockingCall<T> {
    type Output = Result<T, ApiError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut slot = lock(&this.slot);
        if let Some(result) = slot.result.take() {
            this.done = true;
            return Poll::Ready(result);
        }
        if this.done {
            // Polled again after it resolved: a contract breach of the caller.
            return Poll::Ready(Err(ApiError::Internal {
                detail: "a finished call was polled again".into(),
            }));
        }
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for BlockingCall<T> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // The awaiting side gave up (its coroutine or task was cancelled): stop the work
        // at its next round trip and let go of the executor's waker now.
        self.cancel.cancel();
        let mut slot = lock(&self.slot);
        slot.abandoned = true;
        slot.waker = None;
        slot.result = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::task::Wake;
    use std::time::Duration;

    /// A waker that counts its wakes and reports each on a channel.
    struct Counting {
        wakes: AtomicUsize,
        tx: Mutex<mpsc::Sender<()>>,
    }

    impl Wake for Counting {
        fn wake(self: Arc<Self>) {
            self.wakes.fetch_add(1, Ordering::SeqCst);
            let _ = lock_tx(&self.tx).send(());
        }
    }

    fn lock_tx(m: &Mutex<mpsc::Sender<()>>) -> std::sync::MutexGuard<'_, mpsc::Sender<()>> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn counting() -> (Arc<Counting>, mpsc::Receiver<()>) {
        let (tx, rx) = mpsc::channel();
        let w = Arc::new(Counting {
            wakes: AtomicUsize::new(0),
            tx: Mutex::new(tx),
        });
        (w, rx)
    }

    fn poll_once<T>(f: &mut BlockingCall<T>, waker: &Waker) -> Poll<Result<T, ApiError>> {
        Pin::new(f).poll(&mut Context::from_waker(waker))
    }

    #[test]
    fn resolves_after_the_thread_wakes_the_last_waker() {
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let mut call = spawn_blocking("test", CancelFlag::new(), move || {
            gate_rx.recv().ok();
            Ok(42)
        });
        let (counter, woke) = counting();
        let waker = Waker::from(Arc::clone(&counter));
        assert!(poll_once(&mut call, &waker).is_pending());
        gate_tx.send(()).unwrap();
        woke.recv_timeout(Duration::from_secs(10)).expect("woken");
        assert_eq!(counter.wakes.load(Ordering::SeqCst), 1);
        assert_eq!(poll_once(&mut call, &waker), Poll::Ready(Ok(42)));
    }

    #[test]
    fn dropping_the_future_sets_the_flag_and_the_work_sees_it() {
        let flag = CancelFlag::new();
        let seen = Arc::new(AtomicUsize::new(0));
        let (done_tx, done_rx) = mpsc::channel::<bool>();
        let (watch, counter) = (flag.clone(), Arc::clone(&seen));
        let mut call = spawn_blocking("test", flag.clone(), move || {
            // A sync's round trips: stop at the first check after the flag is set.
            for _ in 0..1000 {
                counter.fetch_add(1, Ordering::SeqCst);
                if watch.is_cancelled() {
                    done_tx.send(true).ok();
                    return Err(ApiError::Cancelled);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            done_tx.send(false).ok();
            Ok(())
        });
        let (counter_waker, _woke) = counting();
        let waker = Waker::from(Arc::clone(&counter_waker));
        assert!(poll_once(&mut call, &waker).is_pending());
        drop(call);
        assert!(flag.is_cancelled());
        assert_eq!(
            done_rx.recv_timeout(Duration::from_secs(10)),
            Ok(true),
            "the work stopped because of the flag"
        );
        assert!(seen.load(Ordering::SeqCst) < 1000);
        // The executor's waker was let go when the future was dropped and never woken.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(counter_waker.wakes.load(Ordering::SeqCst), 0);
        assert_eq!(Arc::strong_count(&counter_waker), 2, "ours and `waker`");
    }

    #[test]
    fn a_finished_future_does_not_cancel_on_drop() {
        let flag = CancelFlag::new();
        let mut call = spawn_blocking("test", flag.clone(), || Ok("done"));
        let (counter, _woke) = counting();
        let waker = Waker::from(counter);
        let result = loop {
            match poll_once(&mut call, &waker) {
                Poll::Ready(r) => break r,
                Poll::Pending => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        assert_eq!(result, Ok("done"));
        drop(call);
        assert!(!flag.is_cancelled());
    }

    #[test]
    fn a_panic_on_the_thread_is_internal() {
        let mut call = spawn_blocking("test", CancelFlag::new(), || -> Result<(), ApiError> {
            panic!("worker bug {}", 7)
        });
        let (counter, woke) = counting();
        let waker = Waker::from(counter);
        let mut polled = poll_once(&mut call, &waker);
        if polled.is_pending() {
            woke.recv_timeout(Duration::from_secs(10)).expect("woken");
            polled = poll_once(&mut call, &waker);
        }
        match polled {
            Poll::Ready(Err(ApiError::Internal { detail })) => {
                assert!(detail.contains("worker bug 7"), "{detail}")
            }
            other => panic!("expected Internal, got {other:?}"),
        }
    }
}
