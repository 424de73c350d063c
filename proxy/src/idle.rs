//! Background work that must never take CPU from requests: a snapshot download and install
//! (receiving, writing, checksumming and validating a file as large as the snapshot) and the later
//! fsync run on a thread of their own at
//! `SCHED_IDLE`, so on a proxy pinned to one core the request thread always runs first. A
//! `spawn_blocking` thread would share the core equally with the request thread for the whole
//! install, and would keep the policy for whatever the pool runs on it next (an unprivileged
//! thread cannot switch back).

use tokio::sync::oneshot;

/// Runs `f` on a new thread at idle priority and waits for its result. If the policy cannot be
/// set, `f` runs anyway at the normal one. `None` when the thread could not start or panicked.
pub async fn run<T, F>(name: &str, f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            lower_priority();
            let _ = tx.send(f());
        });
    match spawned {
        Ok(_) => rx.await.ok(),
        Err(error) => {
            tracing::warn!(%error, "cannot start a background thread");
            None
        }
    }
}

#[cfg(unix)]
fn lower_priority() {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    let set = set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        idle,
    );
    if let Err(error) = set {
        tracing::debug!(?error, "SCHED_IDLE refused");
    }
}

#[cfg(not(unix))]
fn lower_priority() {}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, thread_schedule_policy,
    };

    #[tokio::test]
    async fn runs_the_work_at_idle_priority_and_returns_its_result() {
        let policy = super::run("idle-test", thread_schedule_policy).await;
        assert_eq!(
            policy.map(|p| p.ok()),
            Some(Some(ThreadSchedulePolicy::Normal(
                NormalThreadSchedulePolicy::Idle
            )))
        );
        // The caller's thread keeps its own policy.
        assert_ne!(
            thread_schedule_policy().ok(),
            Some(ThreadSchedulePolicy::Normal(
                NormalThreadSchedulePolicy::Idle
            ))
        );
    }
}
