//! Places for work that holds much memory or CPU (searches, exports, reads
//! of many entries): at most so many at once, taken in the order asked.
//! An answer can keep its place until its body is sent, so that slow
//! clients cannot pile up built answers either.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// At most `at_once` places, for the work named `what`.
pub struct Gate {
    permits: Arc<Semaphore>,
    at_once: usize,
    /// Names the work and its limit in answers, such as `"search turns
    /// (searches_at_once)"`.
    what: &'static str,
}

impl Gate {
    /// `at_once` places (at least one).
    pub fn new(at_once: usize, what: &'static str) -> Gate {
        let at_once = at_once.max(1);
        Gate { permits: Arc::new(Semaphore::new(at_once)), at_once, what }
    }

    /// Waits for a place, up to `wait`; 503 with `Retry-After: 1` if none
    /// came free.
    pub async fn enter(&self, wait: Duration) -> Result<OwnedSemaphorePermit, ApiError> {
        match tokio::time::timeout(wait, self.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::unavailable(
                format!(
                    "all {} {} are taken and none came free within {} s; try again",
                    self.at_once,
                    self.what,
                    wait.as_secs()
                ),
                1,
            )),
        }
    }

    /// A place now, or 503 with `Retry-After: retry_after_secs`.
    pub fn try_enter(&self, retry_after_secs: u32) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            ApiError::unavailable(
                format!("all {} {} are taken; try again later", self.at_once, self.what),
                retry_after_secs,
            )
        })
    }

    /// Places taken now.
    pub fn in_use(&self) -> usize {
        self.at_once - self.permits.available_permits()
    }
}

/// `response`, whose body keeps `place` until it has been sent or the
/// client went away.
pub fn hold(response: Response, place: OwnedSemaphorePermit) -> Response {
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, Body::new(Held { inner: body, _place: place }))
}

struct Held {
    inner: Body,
    _place: OwnedSemaphorePermit,
}

impl http_body::Body for Held {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// A held answer keeps its place until its body is read whole (or
    /// dropped); past the wait, the next one gets 503.
    #[tokio::test]
    async fn an_answer_keeps_its_place_until_sent() {
        let gate = Gate::new(1, "big reads (MAX_BIG_READS_AT_ONCE)");
        let place = gate.enter(Duration::from_millis(10)).await.unwrap();
        let resp = hold(Response::new(Body::from("x".repeat(100))), place);
        assert_eq!(gate.in_use(), 1);
        let refused = gate.enter(Duration::from_millis(30)).await.unwrap_err();
        assert_eq!((refused.status.as_u16(), refused.retry_after_secs), (503, Some(1)));
        assert!(refused.message.contains("all 1 big reads (MAX_BIG_READS_AT_ONCE) are taken"), "{}", refused.message);
        assert!(gate.try_enter(5).is_err());
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 100);
        assert_eq!(gate.in_use(), 0);
        let resp = hold(Response::new(Body::from("y")), gate.try_enter(5).unwrap());
        drop(resp);
        assert_eq!(gate.in_use(), 0);
    }
}
