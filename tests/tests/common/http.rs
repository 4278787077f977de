//! Talking to a test server over HTTP the way a client does (reqwest), and reading its answers:
//! `server.embed(json!({..}))`, then [`ok`] for the body of a 200 or [`error`] for an
//! OpenAI-shaped error.

use std::sync::OnceLock;

use reqwest::blocking::{Client, Response};
use serde_json::Value;

use super::server::Server;

/// The HTTP client the harness shares (one connection pool for the whole run).
pub fn client() -> &'static Client {
    static CLIENT: OnceLock<Client> = OnceLock::new();
    CLIENT.get_or_init(Client::new)
}

impl Server {
    /// `POST /v1/embeddings` with `body`.
    pub fn embed(&self, body: Value) -> Response {
        self.post("/v1/embeddings", &body)
    }

    /// `POST path` with the JSON `body`.
    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.post_raw(path, body.to_string())
    }

    /// `POST path` with `body` as it is, as JSON.
    pub fn post_raw(&self, path: &str, body: String) -> Response {
        client()
            .post(format!("{}{path}", self.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap()
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Response {
        client().get(format!("{}{path}", self.url)).send().unwrap()
    }

    /// `POST /admin/reload`, with `key` as the bearer token when given: the status and the
    /// answer.
    pub fn reload(&self, key: Option<&str>) -> (u16, Value) {
        let mut request = client().post(format!("{}/admin/reload", self.url));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().unwrap();
        (response.status().as_u16(), response.json().unwrap())
    }

    /// The server's `GET /v1/models` answer.
    pub fn models(&self) -> Value {
        ok(self.get("/v1/models"))
    }

    /// The sum of the samples of metric `name` whose labels include every pair of `labels`
    /// (0 when there is none), from `GET /metrics`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.get("/metrics").text().unwrap();
        let scrape =
            prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    }
}

/// The JSON body of a 200.
///
/// # Panics
///
/// For any other status (with the body).
pub fn ok(response: Response) -> Value {
    let status = response.status();
    let body = response.text().unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// The `error` object of an answer with `status` in OpenAI's shape (a message, a type, a code,
/// and a `param` key).
///
/// # Panics
///
/// For another status, or an error of another shape.
pub fn error(response: Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().unwrap();
    let error = body["error"].clone();
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        error["type"].is_string() && error["code"].is_string(),
        "{body}"
    );
    assert!(error.get("param").is_some(), "{body}");
    error
}

/// The value of response header `name`.
///
/// # Panics
///
/// When the response has no such header, or it is not text.
pub fn header(response: &Response, name: &str) -> String {
    response.headers()[name].to_str().unwrap().to_string()
}

/// The vectors of an OpenAI-style embeddings response body, in order.
///
/// # Panics
///
/// When the body has no `data` array of float vectors.
pub fn embeddings_of(body: &Value) -> Vec<Vec<f32>> {
    body["data"]
        .as_array()
        .expect("a `data` array")
        .iter()
        .map(|d| serde_json::from_value(d["embedding"].clone()).unwrap())
        .collect()
}
