//! Running work on its own interval, under a timeout, until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// Calls `f` now and then every `interval` until `shutdown` is cancelled. A run that is still
/// going when its `timeout` ends is dropped and `on_timeout` is called. A run that takes longer
/// than the interval delays the next one (no burst of catch-up runs).
pub async fn every<F, Fut>(
    interval: Duration,
    timeout: Duration,
    shutdown: CancellationToken,
    mut f: F,
    mut on_timeout: impl FnMut(),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(timeout, f()) => {
                if r.is_err() {
                    on_timeout();
                }
            }
        }
    }
}

/// Calls `f` now, then again `next()` after each run started, or as soon as `wake` is notified
/// (a stream that carried the data was lost: polling must take over at once), until `shutdown`.
/// `next` is asked after every run, so the pace can follow what the run saw. Timeouts as in
/// [`every`].
pub async fn paced<F, Fut>(
    timeout: Duration,
    shutdown: CancellationToken,
    wake: std::sync::Arc<tokio::sync::Notify>,
    mut f: F,
    mut next: impl FnMut() -> Duration,
    mut on_timeout: impl FnMut(),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let start = tokio::time::Instant::now();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = tokio::time::timeout(timeout, f()) => {
                if r.is_err() {
                    on_timeout();
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(start + next()) => {}
            _ = wake.notified() => {}
        }
    }
}

/// An exporter's poll loop: [`paced`], where a cycle cut by `timeout` is logged and recorded
/// as a failed run of `collector` (the one whose values the cycle keeps fresh).
pub async fn poll_cycles<F, Fut>(
    status: crate::metrics::CollectorStatus,
    collector: &'static str,
    timeout: Duration,
    shutdown: CancellationToken,
    wake: std::sync::Arc<tokio::sync::Notify>,
    f: F,
    next: impl FnMut() -> Duration,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    paced(timeout, shutdown, wake, f, next, move || {
        tracing::warn!(?timeout, "poll cycle timed out");
        status.record(collector, timeout, Err("poll cycle timed out".into()));
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn runs_on_interval_and_times_out() {
        let runs = Arc::new(AtomicU32::new(0));
        let timeouts = Arc::new(AtomicU32::new(0));
        let token = CancellationToken::new();
        let (r, t, tok) = (runs.clone(), timeouts.clone(), token.clone());
        let task = tokio::spawn(async move {
            every(
                Duration::from_secs(1),
                Duration::from_millis(500),
                tok,
                move || {
                    let n = r.fetch_add(1, Ordering::SeqCst);
                    async move {
                        // Every third run hangs past the timeout.
                        if n % 3 == 2 {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                        }
                    }
                },
                move || {
                    t.fetch_add(1, Ordering::SeqCst);
                },
            )
            .await
        });
        // Runs at 0..=5 s; the runs at 2 s and 5 s hang and time out at 2.5 s and 5.5 s.
        tokio::time::sleep(Duration::from_millis(5_700)).await;
        token.cancel();
        task.await.expect("task");
        assert_eq!(runs.load(Ordering::SeqCst), 6);
        assert_eq!(timeouts.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn paced_follows_next_and_wakes_early() {
        let runs = Arc::new(AtomicU32::new(0));
        let token = CancellationToken::new();
        let wake = Arc::new(tokio::sync::Notify::new());
        let (r, r2, tok, w) = (runs.clone(), runs.clone(), token.clone(), wake.clone());
        let task = tokio::spawn(async move {
            paced(
                Duration::from_secs(1),
                tok,
                w,
                move || {
                    r.fetch_add(1, Ordering::SeqCst);
                    async {}
                },
                // 1 s after the first run, 10 s after the others.
                move || {
                    if r2.load(Ordering::SeqCst) <= 1 {
                        Duration::from_secs(1)
                    } else {
                        Duration::from_secs(10)
                    }
                },
                || {},
            )
            .await
        });
        // Runs at 0 s and 1 s, then sleeps until 11 s.
        tokio::time::sleep(Duration::from_millis(5_000)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        // A wake runs it at once.
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
        token.cancel();
        task.await.expect("task");
    }
}
