//! Access gateways run inside the server: their events go straight into
//! the log, without HTTP. Fail-closed sessions await the append (and its
//! fsync, shared with every other writer) on their own task.

use std::sync::Arc;

use custos_event::ServerFields;
use custos_gateway::sink::{Event, PostBatch, PostError, Sink, StoreNow};

use crate::AppState;

fn fields(log: &str, name: &str) -> ServerFields {
    ServerFields {
        log: log.into(),
        received_at: custos_event::time::format_rfc3339(custos_event::time::now_nanos()),
        submitter: format!("gateway:{name}"),
        via: "gateway".into(),
        address: None,
    }
}

/// A sink that stores a gateway's events in `log` of this server. Must be
/// called inside the server's runtime.
pub fn sink(state: Arc<AppState>, log: String, name: String) -> Sink {
    let handle = tokio::runtime::Handle::current();
    let (st, l, n) = (state.clone(), log.clone(), name.clone());
    let post: PostBatch = Arc::new(move |events: &[Event]| {
        handle.block_on(crate::ingest::ingest_borrowed(&st, &l, fields(&l, &n), events)).map(|_| ()).map_err(|e| {
            if e.status.is_client_error() { PostError::Rejected(e.message) } else { PostError::Retry(e.message) }
        })
    });
    let now: StoreNow = Arc::new(move |events: Vec<Event>| {
        let (st, l, n) = (state.clone(), log.clone(), name.clone());
        Box::pin(async move {
            crate::ingest::ingest_local(&st, &l, fields(&l, &n), events).await.map(|_| ()).map_err(|e| e.message)
        })
    });
    Sink::start_with(post, Some(now))
}

/// Lets people log in to a gateway inside this server with a Custos token
/// as the password (over TLS): the token must be valid and be named after
/// the user. Their role (`reader`, `auditor`, …) is what deny rules see.
pub fn token_check(state: &AppState) -> Option<custos_gateway::TokenCheck> {
    let store = state.auth.tokens.clone()?;
    Some(Arc::new(move |user: &str, token: &str| {
        let id = store.authenticate(token, std::time::SystemTime::now()).map_err(|e| e.to_string())?;
        if id.name != format!("token:{user}") {
            return Err(format!("the token is {}'s, not {user}'s", id.name));
        }
        Ok(vec![id.role.as_str().to_string()])
    }))
}
