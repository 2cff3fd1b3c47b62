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

/// The TLS settings of every HTTP client of the CLI, set once at start by
/// [`init_tls`].
static TLS: std::sync::OnceLock<ureq::tls::TlsConfig> = std::sync::OnceLock::new();

/// The PEM items of the file an environment variable names, if it is set.
fn pem_items(var: &str) -> anyhow::Result<Option<Vec<ureq::tls::PemItem<'static>>>> {
    let Some(path) = std::env::var_os(var) else { return Ok(None) };
    let path = std::path::PathBuf::from(path);
    let pem = std::fs::read(&path).with_context(|| format!("reading {var} {}", path.display()))?;
    let items = ureq::tls::parse_pem(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing {var} {}", path.display()))?;
    Ok(Some(items))
}

/// Reads, once at start, the TLS settings of the CLI's HTTP clients
/// (search, export, the standalone gateway, …) from the environment:
/// - `CUSTOS_CA_FILE`, a PEM bundle of CA certificates: the server's
///   certificate is checked against those instead of the bundled Mozilla
///   roots, for a server with a private CA (or `--tls-self-signed`);
/// - `CUSTOS_CLIENT_CERT` and `CUSTOS_CLIENT_KEY` (PEM): a client
///   certificate to show a server that asks for one (`--tls-client-ca`),
///   which maps it to an identity with `--cert-identity`.
pub fn init_tls() -> anyhow::Result<()> {
    use ureq::tls::PemItem;
    let certs = |items: Vec<PemItem<'static>>| -> Vec<_> {
        items.into_iter().filter_map(|i| if let PemItem::Certificate(c) = i { Some(c) } else { None }).collect()
    };
    // Unset, these leave the defaults (the bundled roots, no certificate).
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(items) = pem_items("CUSTOS_CA_FILE")? {
        let roots = certs(items);
        if roots.is_empty() {
            bail!("CUSTOS_CA_FILE holds no PEM certificate");
        }
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&roots));
    }
    match (pem_items("CUSTOS_CLIENT_CERT")?, pem_items("CUSTOS_CLIENT_KEY")?) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            let chain = certs(cert);
            let key = key.into_iter().find_map(|i| if let PemItem::PrivateKey(k) = i { Some(k) } else { None });
            let (false, Some(key)) = (chain.is_empty(), key) else {
                bail!("CUSTOS_CLIENT_CERT must hold a PEM certificate and CUSTOS_CLIENT_KEY a PEM private key");
            };
            tls = tls.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)));
        }
        _ => bail!("CUSTOS_CLIENT_CERT and CUSTOS_CLIENT_KEY go together"),
    }
    let _ = TLS.set(tls.build());
    Ok(())
}

/// An agent's settings, with the TLS settings of [`init_tls`].
pub fn config() -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    let b = ureq::Agent::config_builder();
    match TLS.get() {
        Some(tls) => b.tls_config(tls.clone()),
        None => b,
    }
}

/// An agent that returns 4xx/5xx answers instead of failing on them.
pub fn agent() -> ureq::Agent {
    agent_within(Duration::from_secs(120))
}

/// [`agent`], with each exchange bounded by `limit`.
pub fn agent_within(limit: Duration) -> ureq::Agent {
    config().http_status_as_error(false).timeout_global(Some(limit)).build().into()
}

/// An agent for answers streamed for as long as they last (exports): no
/// bound on the whole exchange, but on the wait for each part of it.
pub fn streaming_agent() -> ureq::Agent {
    config()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .build()
        .into()
}

/// Tries of a GET that the server answers 503 with `Retry-After` (busy:
/// a full write queue, every search turn taken), at most.
const GET_TRIES: u32 = 4;
/// Longest `Retry-After` honoured; longer ones are cut to this.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// GET, tried again while the server answers 503 with `Retry-After`
/// (reads are safe to repeat), up to [`GET_TRIES`] times.
fn call_get(agent: &ureq::Agent, url: &str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    let mut tries = 1;
    loop {
        let resp = auth(agent.get(url)).call()?;
        let wait = (resp.status() == 503)
            .then(|| resp.headers().get("retry-after")?.to_str().ok()?.trim().parse::<u64>().ok())
            .flatten();
        match wait {
            Some(secs) if tries < GET_TRIES => {
                std::thread::sleep(Duration::from_secs(secs).min(MAX_RETRY_WAIT));
                tries += 1;
            }
            _ => return Ok(resp),
        }
    }
}

/// GET whose 200 answer is copied to `out` as it arrives; any other
/// answer is an error naming the server's message.
pub fn get_to(agent: &ureq::Agent, url: &str, out: &mut impl std::io::Write) -> anyhow::Result<u64> {
    let mut resp = call_get(agent, url).with_context(|| format!("requesting {url}"))?;
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

/// GET, returning the status and body (tried again while the server is
/// busy, see [`GET_TRIES`]).
pub fn get(agent: &ureq::Agent, url: &str) -> anyhow::Result<(u16, Vec<u8>)> {
    read(call_get(agent, url), url)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};

    /// A server on a loopback port answering each connection's request
    /// with the next of `answers` (status, Retry-After); counts requests.
    fn serve(answers: Vec<(u16, Option<&'static str>)>) -> (String, std::sync::Arc<std::sync::atomic::AtomicU32>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let n = count.clone();
        std::thread::spawn(move || {
            let mut answers = answers.into_iter();
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                    line.clear();
                }
                n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (status, retry) = answers.next().unwrap_or((200, None));
                let body = format!("{{\"error\":\"busy\",\"status\":{status}}}");
                let retry = retry.map_or(String::new(), |r| format!("Retry-After: {r}\r\n"));
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{retry}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
        });
        (url, count)
    }

    #[test]
    fn gets_are_tried_again_while_the_server_is_busy() {
        let (url, count) = serve(vec![(503, Some("0")), (503, Some("0"))]);
        let v = get_json(&agent(), &url).unwrap();
        assert_eq!(v["status"], 200);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 3);

        // Busy for good: four tries, then the server's answer.
        let (url, count) = serve(vec![(503, Some("0")); 10]);
        let e = get_json(&agent(), &url).unwrap_err().to_string();
        assert_eq!(e, "HTTP 503: busy");
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), GET_TRIES);

        // A 503 without Retry-After, or another error, is not retried.
        for answer in [(503, None), (400, Some("0"))] {
            let (url, count) = serve(vec![answer]);
            assert!(get_json(&agent(), &url).is_err());
            assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
        }
    }
}
