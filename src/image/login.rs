//! `login`: checks credentials against the registry before they are saved, the way
//! podman does: `GET /v2/` tells whether and how the registry authenticates (HTTP
//! basic, or a bearer token from the realm it names), and the credentials must pass
//! that check.

use std::time::Duration;

use reqwest::StatusCode;

use super::ImageError;
use crate::config::auth::Credentials;

/// Whether the registry accepted the credentials, or needs none.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    NoAuthNeeded,
}

fn err(host: &str, detail: impl Into<String>) -> ImageError {
    ImageError::Transfer {
        what: format!("logging into {host:?}"),
        detail: detail.into(),
    }
}

/// The host the registry API lives on (docker.io's is registry-1.docker.io).
fn api_host(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        h => h,
    }
}

/// Verifies `creds` against `host` (`host[:port]`); plain HTTP when `insecure`.
pub fn verify(host: &str, creds: &Credentials, insecure: bool) -> Result<Verdict, ImageError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| err(host, format!("tokio runtime: {e}")))?;
    rt.block_on(verify_async(host, creds, insecure))
}

fn describe(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    msg
}

async fn verify_async(
    host: &str,
    creds: &Credentials,
    insecure: bool,
) -> Result<Verdict, ImageError> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| err(host, describe(&e)))?;
    let scheme = if insecure { "http" } else { "https" };
    let base = format!("{scheme}://{}/v2/", api_host(host));
    tracing::debug!(url = %base, "GET (login probe)");
    let res = client
        .get(&base)
        .send()
        .await
        .map_err(|e| err(host, describe(&e)))?;
    match res.status() {
        s if s.is_success() => return Ok(Verdict::NoAuthNeeded),
        StatusCode::UNAUTHORIZED => {}
        s => return Err(err(host, format!("GET {base}: unexpected status {s}"))),
    }
    let challenge = res
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let (scheme_name, params) = parse_challenge(&challenge);
    let invalid = || err(host, "invalid username/password");
    if scheme_name.eq_ignore_ascii_case("bearer") {
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| {
                err(
                    host,
                    format!("bearer challenge without a realm: {challenge}"),
                )
            })?;
        let mut query: Vec<(&str, &str)> = vec![("account", &creds.username)];
        if let Some((_, s)) = params.iter().find(|(k, _)| k == "service") {
            query.push(("service", s));
        }
        tracing::debug!(%realm, "GET token (login)");
        let tok = client
            .get(&realm)
            .query(&query)
            .basic_auth(&creds.username, Some(&creds.password))
            .send()
            .await
            .map_err(|e| err(host, describe(&e)))?;
        match tok.status() {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(invalid()),
            s => return Err(err(host, format!("token request to {realm}: status {s}"))),
        }
        let body: serde_json::Value = tok.json().await.map_err(|e| {
            err(
                host,
                format!("token response from {realm}: {}", describe(&e)),
            )
        })?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| err(host, format!("token response from {realm} has no token")))?;
        let check = client
            .get(&base)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| err(host, describe(&e)))?;
        return match check.status() {
            s if s.is_success() => Ok(Verdict::Accepted),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(invalid()),
            s => Err(err(host, format!("GET {base}: unexpected status {s}"))),
        };
    }
    let check = client
        .get(&base)
        .basic_auth(&creds.username, Some(&creds.password))
        .send()
        .await
        .map_err(|e| err(host, describe(&e)))?;
    match check.status() {
        s if s.is_success() => Ok(Verdict::Accepted),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(invalid()),
        s => Err(err(host, format!("GET {base}: unexpected status {s}"))),
    }
}

/// `Bearer realm="x",service="y"` → ("Bearer", [(realm, x), (service, y)]).
fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let h = h.trim();
    let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(i) => (&after[..i], &after[i..]),
                None => (after, ""),
            }
        };
        params.push((k, v.to_string()));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    (scheme.to_string(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        );
        assert_eq!(s, "Bearer");
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[1], ("service".into(), "registry.example".into()));
        assert_eq!(p[2].1, "repository:a/b:pull");
        let (s, p) = parse_challenge(r#"Basic realm="skiff-test""#);
        assert_eq!(s, "Basic");
        assert_eq!(p, vec![("realm".into(), "skiff-test".into())]);
    }
}
