//! Compresses every log's full entries segments into its bundles file
//! (`Log::compact`), on its own thread at the lowest CPU priority, like
//! the indexer: acknowledging events comes first.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use custos_log::CompactError;

use crate::state::AppState;

/// How often the compactor looks for full segments. A segment holds 16,384
/// entries, so at 20,000 events/s about one fills per second.
pub const COMPACT_INTERVAL: Duration = Duration::from_secs(1);

/// Runs until `stop` is set.
pub fn spawn(state: Arc<AppState>, stop: Arc<AtomicBool>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("custos-compactor".into()).spawn(move || {
        // SAFETY: setpriority on the calling thread (who = 0 is this thread
        // under Linux's per-thread nice values); no memory is touched.
        unsafe {
            libc::setpriority(libc::PRIO_PROCESS, 0, 19);
        }
        // A log whose compaction stopped is reported once, not every tick.
        let mut stopped: HashSet<String> = HashSet::new();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(COMPACT_INTERVAL);
            for (name, log) in state.store.list() {
                match log.compact() {
                    Ok(r) if r.segments > 0 => tracing::debug!(
                        log = name,
                        bundles = r.bundles,
                        bytes_in = r.bytes_in,
                        bytes_out = r.bytes_out,
                        "compacted"
                    ),
                    Ok(_) => {}
                    Err(CompactError::Failed(e)) => {
                        if stopped.insert(name.clone()) {
                            tracing::error!(log = name, error = e, "compaction stopped until restart");
                        }
                    }
                    Err(e) => tracing::warn!(log = name, error = %e, "compaction failed; retrying later"),
                }
            }
        }
    })
}
