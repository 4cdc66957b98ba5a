//! The registry's HTTP API as the CLI calls it. A problem+json answer
//! becomes one error whose message is the problem's detail, with each
//! field's reason on its own line, so the person at the terminal reads what
//! the server meant.

use anyhow::{anyhow, Context};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use accord_domain::{MemberId, ServiceId, SubsystemId};

/// A client for one registry, with an optional bearer token.
pub struct RegistryClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Encodes a query string from (name, value) pairs, skipping absent values.
pub fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref().map(|v| {
                format!(
                    "{k}={}",
                    percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC)
                )
            })
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

impl RegistryClient {
    pub fn new(base: &str, token: Option<String>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .context("building the HTTP client")?;
        Ok(RegistryClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        needs_token: bool,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        } else if needs_token {
            return Err(anyhow!(
                "this command changes the registry and needs a token: pass --token, \
                 or set ACCORD_TOKEN or ACCORD_TOKEN_FILE (registry init writes admin.token)"
            ));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "cannot reach the registry at {}: is it running? \
                     (start one with `accord demo` or `accord registry serve`)",
                    self.base
                )
            } else {
                anyhow!("{method} {url} failed: {e}")
            }
        })?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(problem_error(response).await)
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(Method::GET, path, None, false).await?;
        response
            .json()
            .await
            .with_context(|| format!("reading the answer to GET {path}"))
    }

    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let response = self.send(Method::GET, path, None, false).await?;
        Ok(response.text().await?)
    }

    pub async fn write<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> anyhow::Result<T> {
        let body = body.map(serde_json::to_value).transpose()?;
        let response = self.send(method.clone(), path, body.as_ref(), true).await?;
        response
            .json()
            .await
            .with_context(|| format!("reading the answer to {method} {path}"))
    }

    /// A POST that needs no token (e.g. asking for a decision).
    pub async fn write_public<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_value(body)?;
        let response = self.send(method.clone(), path, Some(&body), false).await?;
        response
            .json()
            .await
            .with_context(|| format!("reading the answer to {method} {path}"))
    }

    pub fn member_path(id: &MemberId) -> String {
        format!("/api/v1/members/{}", id.to_encoded())
    }

    pub fn subsystem_services_path(id: &SubsystemId) -> String {
        format!(
            "/api/v1/members/{}/subsystems/{}/services",
            id.member().to_encoded(),
            percent_encoding::utf8_percent_encode(id.code(), percent_encoding::NON_ALPHANUMERIC)
        )
    }

    pub fn service_path(id: &ServiceId) -> String {
        format!("/api/v1/services/{}", id.to_encoded())
    }
}

/// Turns an error answer into a message: the problem's detail and field
/// reasons, or the status and body if the answer is not problem+json.
async fn problem_error(response: reqwest::Response) -> anyhow::Error {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(problem) if problem.get("detail").is_some() => {
            let detail = problem["detail"].as_str().unwrap_or_default();
            let mut message = format!("{detail} ({})", describe(status));
            if let Some(errors) = problem.get("errors").and_then(|e| e.as_array()) {
                if errors.len() > 1 {
                    for e in errors {
                        message.push_str(&format!(
                            "\n  {}: {}",
                            e["field"].as_str().unwrap_or("?"),
                            e["reason"].as_str().unwrap_or("?")
                        ));
                    }
                }
            }
            anyhow!(message)
        }
        _ => anyhow!(
            "the registry answered {}: {}",
            describe(status),
            text.trim()
        ),
    }
}

fn describe(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
    .trim()
    .to_owned()
}
