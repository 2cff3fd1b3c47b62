//! A small blocking HTTP client for the commands that talk to a server.

use std::time::Duration;

use anyhow::{Context, bail};

/// Percent-encodes a query parameter's value.
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Largest answer read into memory.
const MAX_RESPONSE_BYTES: u64 = 256 << 20;

/// An agent that returns 4xx/5xx answers instead of failing on them.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// An agent for answers streamed for as long as they last (exports): no
/// bound on the whole exchange, but on the wait for each part of it.
pub fn streaming_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// GET whose 200 answer is copied to `out` as it arrives; any other
/// answer is an error naming the server's message.
pub fn get_to(agent: &ureq::Agent, url: &str, out: &mut impl std::io::Write) -> anyhow::Result<u64> {
    let mut resp = auth(agent.get(url)).call().with_context(|| format!("requesting {url}"))?;
    let status = resp.status().as_u16();
    if status != 200 {
        let body = resp.body_mut().with_config().limit(1 << 20).read_to_vec().unwrap_or_default();
        return Err(answer_error(status, &body));
    }
    let mut body = resp.body_mut().as_reader();
    std::io::copy(&mut body, out).with_context(|| format!("reading {url} (the answer stopped part way)"))
}

fn read(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>, url: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    let mut resp = resp.with_context(|| format!("requesting {url}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BYTES)
        .read_to_vec()
        .with_context(|| format!("reading {url}"))?;
    Ok((status, body))
}

/// The bearer token to send, from `--token` or `CUSTOS_TOKEN`.
static TOKEN: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

/// Sets the bearer token for every request of this process.
pub fn set_token(token: Option<String>) {
    let _ = TOKEN.set(token);
}

/// The bearer token set for this process, if any.
pub fn token() -> Option<String> {
    TOKEN.get().cloned().flatten()
}

fn auth<B>(req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
    match TOKEN.get().and_then(Option::as_deref) {
        Some(t) => req.header("Authorization", format!("Bearer {t}")),
        None => req,
    }
}

/// GET, returning the status and body.
pub fn get(agent: &ureq::Agent, url: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    read(auth(agent.get(url)).call(), url)
}

/// The error of an answer other than 200: `HTTP 400: …` with the
/// server's `error` message, or the body's text if it has none.
fn answer_error(status: u16, body: &[u8]) -> anyhow::Error {
    let msg = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    anyhow::anyhow!("HTTP {status}: {msg}")
}

/// GET whose answer must be 200 and JSON.
pub fn get_json(agent: &ureq::Agent, url: &str) -> anyhow::Result<serde_json::Value> {
    let (status, body) = get(agent, url)?;
    if status != 200 {
        return Err(answer_error(status, &body));
    }
    serde_json::from_slice(&body).with_context(|| format!("HTTP {status}: not JSON"))
}

/// GET that must answer 200.
pub fn get_ok(agent: &ureq::Agent, url: &str) -> anyhow::Result<Vec<u8>> {
    let (status, body) = get(agent, url)?;
    if status != 200 {
        bail!("GET {url}: HTTP {status}: {}", String::from_utf8_lossy(&body).trim());
    }
    Ok(body)
}

/// POST a body with a content type, returning the status and body.
pub fn post(agent: &ureq::Agent, url: &str, content_type: &str, body: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    read(auth(agent.post(url)).header("Content-Type", content_type).send(body), url)
}
