//! Signs a checkpoint of every log that grew, on an interval or when asked.

use std::sync::Arc;

use crate::state::AppState;

/// Signs every grown log once. Blocking: run it on a blocking thread.
pub fn sign_all(state: &AppState) {
    for (name, log) in state.store.list() {
        match log.sign_checkpoint() {
            Ok(Some(cp)) => tracing::debug!(log = name, size = cp.checkpoint.size, "signed checkpoint"),
            Ok(None) => {}
            Err(e) => tracing::error!(log = name, error = %e, "signing checkpoint failed"),
        }
    }
    for (_, ext) in state.exts() {
        if let Some(cp) = ext.log.checkpoint() {
            ext.checkpoint_size.send_if_modified(|s| {
                let grew = *s < cp.checkpoint.size;
                *s = cp.checkpoint.size.max(*s);
                grew
            });
        }
    }
}

/// Runs until aborted.
pub async fn run(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(state.config.checkpoint_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = state.checkpoint_now.notified() => {}
        }
        let s = state.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || sign_all(&s)).await {
            tracing::error!(error = %e, "checkpointer task failed");
        }
    }
}
