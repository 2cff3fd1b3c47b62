//! The JSON error answer: `{"error": "...", "problems": [...]}`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One problem in a rejected batch: which event (array element or NDJSON
/// line, from 1 for lines and 0 for elements), which field, what is wrong.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// NDJSON line number (from 1), when the body was NDJSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// Array index (from 0), when the body was a JSON array or object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The field at fault, as a dotted path.
    pub field: String,
    /// What is wrong.
    pub error: String,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A sentence naming the problem.
    pub message: String,
    /// Per-event problems, for rejected batches.
    pub problems: Vec<Problem>,
    /// Seconds after which a retry may succeed.
    pub retry_after_secs: Option<u32>,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), problems: Vec::new(), retry_after_secs: None }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    /// Adds a problem naming a position in a parameter.
    pub fn with_problem(mut self, position: usize, field: &str, error: &str) -> ApiError {
        self.problems.push(Problem { line: None, index: Some(position), field: field.into(), error: error.into() });
        self
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u32) -> ApiError {
        ApiError { retry_after_secs: Some(retry_after_secs), ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message) }
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    problems: &'a [Problem],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&Body { error: &self.message, problems: &self.problems }).unwrap_or_default();
        let mut r = (self.status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(s) = self.retry_after_secs {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

impl From<custos_log::ReadError> for ApiError {
    fn from(e: custos_log::ReadError) -> ApiError {
        match e {
            custos_log::ReadError::OutOfRange(m) => ApiError::bad_request(m),
            custos_log::ReadError::Io(e) => {
                tracing::error!(error = %e, "log read failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("reading the log failed: {e}"))
            }
        }
    }
}

impl From<custos_log::AppendError> for ApiError {
    fn from(e: custos_log::AppendError) -> ApiError {
        use custos_log::AppendError as A;
        match e {
            A::EntryTooLarge { .. } => ApiError::bad_request(e.to_string()),
            A::Io(_) => ApiError::unavailable(format!("storage is full or failing, nothing was stored: {e}"), 5),
            A::Busy => ApiError::unavailable(format!("{e}: the server cannot keep up, retry later"), 1),
            A::Failed(_) | A::Closed => {
                ApiError::unavailable(format!("log is not accepting writes, nothing was stored: {e}"), 30)
            }
        }
    }
}

/// The query string of a request, deserialised like axum's `Query`, but
/// refused with the JSON error answer, naming the parameter at fault:
/// `{"error":"bad query parameter: limit: invalid digit found in string"}`.
pub struct Params<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Params<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(e) => {
                let text = e.body_text();
                let why = text.strip_prefix("Failed to deserialize query string: ").unwrap_or(&text);
                Err(ApiError::bad_request(format!("bad query parameter: {why}")))
            }
        }
    }
}
