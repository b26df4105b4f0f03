//! `Client`: typed calls on the REST API (`/v1/<plural>[/<name>][/status]`), stack apply,
//! transactions and watches.
//!
//! Every call has a typed form, generic over `swarm_api::Resource` (`get::<Service>("web")`),
//! and an untyped form over a `Kind` and `serde_json::Value` (`get_any(Kind::Service, "web")`)
//! for tools that handle every kind alike, such as the CLI.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use swarm_api::{AnyObject, Kind, Resource, Status};

use crate::apply::ApplyResponse;
use crate::list::{ObjectList, WireList};
use crate::logs::{LogOptions, LogStream, decode_records};
use crate::params::ListParams;
use crate::transaction::{Operation, TransactionResponse, with_kind};
use crate::watch::{WatchStream, decode_stream};
use crate::{ClientConfig, ClientError};

/// How long a non-watch request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Page size of `list_all`, as client-go and kube-rs use.
const PAGE_SIZE: u32 = 500;

/// A connection to one apiserver. Cheap to clone (the connection pool is shared, and so is
/// a [`Client::reload`] of its credentials).
#[derive(Clone, Debug)]
pub struct Client {
    http: Arc<RwLock<reqwest::Client>>,
    base: String,
}

impl Client {
    /// A client for `base_url` (`http://127.0.0.1:2377`), without client certificates.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Self::with_builder(base_url, reqwest::Client::builder())
    }

    /// A client for the current context of a credentials file, with its CA and client
    /// certificate when it names them.
    pub fn from_config(config: &ClientConfig) -> Result<Self, ClientError> {
        let (server, builder) = Self::builder_for(config)?;
        Self::with_builder(&server, builder)
    }

    /// Switches this client and its clones to the credentials `config` names now (e.g. a
    /// renewed certificate); requests already sent finish with the old ones.
    pub fn reload(&self, config: &ClientConfig) -> Result<(), ClientError> {
        let (_, builder) = Self::builder_for(config)?;
        let fresh = Self::http(builder)?;
        match self.http.write() {
            Ok(mut h) => *h = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    /// The server URL and the HTTP client builder (CA, client certificate) of `config`'s
    /// current context.
    fn builder_for(config: &ClientConfig) -> Result<(String, reqwest::ClientBuilder), ClientError> {
        let ctx = config.current().ok_or_else(|| {
            ClientError::Config(format!(
                "current context {:?} is not among the contexts",
                config.current_context
            ))
        })?;
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = &ctx.certificate_authority {
            let pem = read(ca)?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                ClientError::Config(format!("{} is not a PEM certificate: {e}", ca.display()))
            })?;
            // Only the cluster CA: a credentials file pins its cluster.
            builder = builder.tls_certs_only([cert]);
        }
        match (&ctx.client_certificate, &ctx.client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert)?;
                pem.push(b'\n');
                pem.extend(read(key)?);
                let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                    ClientError::Config(format!(
                        "{} and {} are not a PEM certificate and key: {e}",
                        cert.display(),
                        key.display()
                    ))
                })?;
                builder = builder.identity(id);
            }
            (None, None) => {}
            _ => {
                return Err(ClientError::Config(
                    "clientCertificate and clientKey must be given together".into(),
                ));
            }
        }
        Ok((ctx.server.clone(), builder))
    }

    fn http(builder: reqwest::ClientBuilder) -> Result<reqwest::Client, ClientError> {
        builder
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| ClientError::Config(format!("cannot set up HTTP: {e}")))
    }

    fn with_builder(base_url: &str, builder: reqwest::ClientBuilder) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| ClientError::Config(format!("invalid server URL {base_url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ClientError::Config(format!(
                "invalid server URL {base_url:?}: the scheme must be http or https"
            )));
        }
        Ok(Client {
            http: Arc::new(RwLock::new(Self::http(builder)?)),
            base,
        })
    }

    /// The apiserver's base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn collection(kind: Kind) -> String {
        format!("/v1/{}", kind.plural())
    }

    fn item(kind: Kind, name: &str) -> String {
        format!("/v1/{}/{}", kind.plural(), encode_segment(name))
    }

    // ---- typed ---------------------------------------------------------------------------

    pub async fn get<T: Resource>(&self, name: &str) -> Result<T, ClientError> {
        self.get_as(T::KIND, name).await
    }

    /// One page of objects.
    pub async fn list<T: Resource>(
        &self,
        params: &ListParams,
    ) -> Result<ObjectList<T>, ClientError> {
        self.list_as(T::KIND, params).await
    }

    /// Every object, following `continue` tokens page by page; the list's version is the first
    /// page's (all pages are one snapshot).
    pub async fn list_all<T: Resource>(
        &self,
        params: &ListParams,
    ) -> Result<ObjectList<T>, ClientError> {
        self.list_all_as(T::KIND, params).await
    }

    pub async fn create<T: Resource>(&self, obj: &T) -> Result<T, ClientError> {
        let body = with_kind(obj).map_err(encode_error)?;
        self.send_json(Method::POST, &Self::collection(T::KIND), &body)
            .await
    }

    /// Replaces the object; fails with `is_conflict()` when its `resourceVersion` is stale.
    pub async fn replace<T: Resource>(&self, obj: &T) -> Result<T, ClientError> {
        let body = with_kind(obj).map_err(encode_error)?;
        self.send_json(Method::PUT, &Self::item(T::KIND, obj.name()), &body)
            .await
    }

    /// Replaces the status only (`PUT …/status`), conditional like `replace`.
    pub async fn replace_status<T: Resource>(&self, obj: &T) -> Result<T, ClientError> {
        let body = with_kind(obj).map_err(encode_error)?;
        let path = format!("{}/status", Self::item(T::KIND, obj.name()));
        self.send_json(Method::PUT, &path, &body).await
    }

    /// Deletes the object, only if it is still at `resource_version` when one is given.
    pub async fn delete<T: Resource>(
        &self,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<(), ClientError> {
        self.delete_any(T::KIND, name, resource_version).await
    }

    /// Watches objects of `T` matching `params`' selectors, from `resource_version` (only changes
    /// after it) or, without one, from the current state (every object as `ADDED` first).
    ///
    /// A refused watch (410 for a compacted version, 400 for a bad selector) is an `Err` here;
    /// later failures arrive as items of the stream.
    pub async fn watch<T: Resource>(
        &self,
        params: &ListParams,
        resource_version: Option<&str>,
    ) -> Result<WatchStream<T>, ClientError> {
        self.watch_as(T::KIND, params, resource_version).await
    }

    // ---- untyped -------------------------------------------------------------------------

    pub async fn get_any(&self, kind: Kind, name: &str) -> Result<serde_json::Value, ClientError> {
        self.get_as(kind, name).await
    }

    pub async fn list_any(
        &self,
        kind: Kind,
        params: &ListParams,
    ) -> Result<ObjectList<serde_json::Value>, ClientError> {
        self.list_as(kind, params).await
    }

    pub async fn list_all_any(
        &self,
        kind: Kind,
        params: &ListParams,
    ) -> Result<ObjectList<serde_json::Value>, ClientError> {
        self.list_all_as(kind, params).await
    }

    /// Creates an object of any kind (its `kind` field picks the collection).
    pub async fn create_any(&self, obj: &AnyObject) -> Result<serde_json::Value, ClientError> {
        self.send_json(Method::POST, &Self::collection(obj.kind()), &obj.to_value())
            .await
    }

    pub async fn replace_any(&self, obj: &AnyObject) -> Result<serde_json::Value, ClientError> {
        self.send_json(
            Method::PUT,
            &Self::item(obj.kind(), obj.name()),
            &obj.to_value(),
        )
        .await
    }

    pub async fn delete_any(
        &self,
        kind: Kind,
        name: &str,
        resource_version: Option<&str>,
    ) -> Result<(), ClientError> {
        let mut req = self.request(Method::DELETE, &Self::item(kind, name));
        if let Some(rv) = resource_version {
            req = req.query(&[("resourceVersion", rv)]);
        }
        let what = format!("DELETE {}", Self::item(kind, name));
        self.send(req, &what).await.map(drop)
    }

    pub async fn watch_any(
        &self,
        kind: Kind,
        params: &ListParams,
        resource_version: Option<&str>,
    ) -> Result<WatchStream<serde_json::Value>, ClientError> {
        self.watch_as(kind, params, resource_version).await
    }

    // ---- stacks and transactions -------------------------------------------------------

    /// Applies a stack's objects in one transaction: creates what is new, updates what
    /// changed, and with `prune` deletes the stack's objects that are no longer listed.
    /// A refused apply (422) names every cause and writes nothing.
    pub async fn apply_stack(
        &self,
        stack: &str,
        objects: &[AnyObject],
        dry_run: bool,
        prune: bool,
    ) -> Result<ApplyResponse, ClientError> {
        let path = format!("/v1/stacks/{}/apply", encode_segment(stack));
        let mut req = self.request(Method::POST, &path);
        let mut query = Vec::new();
        if dry_run {
            query.push(("dryRun", "true"));
        }
        if prune {
            query.push(("prune", "true"));
        }
        if !query.is_empty() {
            req = req.query(&query);
        }
        let body = serde_json::json!({ "objects": objects });
        let resp = self.send(req.json(&body), &format!("POST {path}")).await?;
        decode(resp, &path).await
    }

    /// Commits every operation or none; a failed precondition is a 409 naming `operations[i]`.
    pub async fn transaction(
        &self,
        operations: &[Operation],
    ) -> Result<TransactionResponse, ClientError> {
        let body = serde_json::json!({ "operations": operations });
        self.send_json(Method::POST, "/v1/transactions", &body)
            .await
    }

    // ---- join tokens ---------------------------------------------------------------------

    /// The current worker and manager join tokens (admins and managers only).
    pub async fn join_tokens(&self) -> Result<JoinTokens, ClientError> {
        let path = "/v1/join-tokens";
        let resp = self
            .send(
                self.request(Method::GET, path).timeout(REQUEST_TIMEOUT),
                &format!("GET {path}"),
            )
            .await?;
        decode(resp, path).await
    }

    /// Replaces the join token of `role` (`worker` or `manager`) and returns the new one;
    /// the old one stops working at once.
    pub async fn rotate_join_token(&self, role: &str) -> Result<String, ClientError> {
        #[derive(serde::Deserialize)]
        struct Rotated {
            token: String,
        }
        let path = format!("/v1/join-tokens/{}/rotate", encode_segment(role));
        let rotated: Rotated = self
            .send_json(Method::POST, &path, &serde_json::json!({}))
            .await?;
        Ok(rotated.token)
    }

    /// Has the cluster CA sign `csr_pem` for `identity` (`controller:<name>`; admins only).
    /// Returns (certificate PEM, CA certificate PEM).
    pub async fn issue_certificate(
        &self,
        identity: &str,
        csr_pem: &str,
    ) -> Result<(String, String), ClientError> {
        #[derive(serde::Deserialize)]
        struct Issued {
            certificate: String,
            ca: String,
        }
        let body = serde_json::json!({ "identity": identity, "csr": csr_pem });
        let issued: Issued = self
            .send_json(Method::POST, "/v1/certificates", &body)
            .await?;
        Ok((issued.certificate, issued.ca))
    }

    // ---- logs ----------------------------------------------------------------------------

    /// Streams the container logs of a service (`Kind::Service`) or of one task (`Kind::Task`)
    /// as records, until the server ends the stream (not following) or it is dropped. An
    /// unknown name is an `Err` (404) before any record.
    pub async fn logs(
        &self,
        kind: Kind,
        name: &str,
        opts: &LogOptions,
    ) -> Result<LogStream, ClientError> {
        let path = format!("{}/logs", Self::item(kind, name));
        let req = self.request(Method::GET, &path).query(&opts.query());
        let resp = self.send(req, &format!("GET {path}")).await?;
        let url = self.base.clone();
        Ok(decode_records(
            resp.bytes_stream(),
            move |e: reqwest::Error| ClientError::transport(&url, &e),
        ))
    }

    // ---- plumbing ------------------------------------------------------------------------

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let http = match self.http.read() {
            Ok(h) => h.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        http.request(method, self.url(path))
    }

    async fn get_as<O: DeserializeOwned>(&self, kind: Kind, name: &str) -> Result<O, ClientError> {
        let path = Self::item(kind, name);
        let resp = self
            .send(
                self.request(Method::GET, &path).timeout(REQUEST_TIMEOUT),
                &format!("GET {path}"),
            )
            .await?;
        decode(resp, &path).await
    }

    async fn list_as<O: DeserializeOwned>(
        &self,
        kind: Kind,
        params: &ListParams,
    ) -> Result<ObjectList<O>, ClientError> {
        let path = Self::collection(kind);
        let req = self
            .request(Method::GET, &path)
            .query(&params.list_query())
            .timeout(REQUEST_TIMEOUT);
        let resp = self.send(req, &format!("GET {path}")).await?;
        let wire: WireList<O> = decode(resp, &path).await?;
        Ok(wire.into())
    }

    async fn list_all_as<O: DeserializeOwned>(
        &self,
        kind: Kind,
        params: &ListParams,
    ) -> Result<ObjectList<O>, ClientError> {
        let mut page_params = params.clone();
        if page_params.limit.is_none() {
            page_params.limit = Some(PAGE_SIZE);
        }
        let mut first: Option<ObjectList<O>> = None;
        loop {
            let page: ObjectList<O> = self.list_as(kind, &page_params).await?;
            let next = page.continue_token.clone();
            match first.as_mut() {
                None => first = Some(page),
                Some(all) => all.items.extend(page.items),
            }
            match next {
                Some(token) => page_params.continue_token = Some(token),
                None => break,
            }
        }
        let mut all = first.unwrap_or(ObjectList {
            items: Vec::new(),
            resource_version: String::new(),
            continue_token: None,
        });
        all.continue_token = None;
        Ok(all)
    }

    async fn watch_as<O: DeserializeOwned + Send + 'static>(
        &self,
        kind: Kind,
        params: &ListParams,
        resource_version: Option<&str>,
    ) -> Result<WatchStream<O>, ClientError> {
        let path = Self::collection(kind);
        let mut query = params.watch_query();
        query.push(("watch", "true".to_string()));
        if let Some(rv) = resource_version {
            query.push(("resourceVersion", rv.to_string()));
        }
        let req = self.request(Method::GET, &path).query(&query);
        let resp = self.send(req, &format!("GET {path}?watch=true")).await?;
        let url = self.base.clone();
        Ok(decode_stream(
            resp.bytes_stream(),
            move |e: reqwest::Error| ClientError::transport(&url, &e),
        ))
    }

    async fn send_json<O: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<O, ClientError> {
        let what = format!("{method} {path}");
        let req = self
            .request(method, path)
            .json(body)
            .timeout(REQUEST_TIMEOUT);
        let resp = self.send(req, &what).await?;
        decode(resp, path).await
    }

    /// Sends a request; a non-2xx answer becomes `Api(Status)` (or `UnexpectedStatus` when its
    /// body is not a `Status`).
    async fn send(&self, req: RequestBuilder, what: &str) -> Result<Response, ClientError> {
        let resp = req
            .send()
            .await
            .map_err(|e| ClientError::transport(&self.base, &e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let code = resp.status().as_u16();
        let body = resp
            .bytes()
            .await
            .map_err(|e| ClientError::transport(&self.base, &e))?;
        match serde_json::from_slice::<Status>(&body) {
            Ok(status) => Err(ClientError::Api(Box::new(status))),
            Err(_) => {
                let (method, url) = what.split_once(' ').unwrap_or((what, ""));
                Err(ClientError::UnexpectedStatus {
                    method: method.to_string(),
                    url: self.url(url),
                    code,
                    body: String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
                })
            }
        }
    }
}

/// Reads a 2xx body as JSON of the expected shape.
async fn decode<O: DeserializeOwned>(resp: Response, what: &str) -> Result<O, ClientError> {
    let url = resp.url().to_string();
    let body = resp
        .bytes()
        .await
        .map_err(|e| ClientError::transport(&url, &e))?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Decode {
        what: what.to_string(),
        message: e.to_string(),
    })
}

fn encode_error(e: serde_json::Error) -> ClientError {
    ClientError::Decode {
        what: "the request body".into(),
        message: e.to_string(),
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path)
        .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", path.display())))
}

/// Percent-encodes a name for one URL path segment (names are usually plain already).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_the_api() {
        assert_eq!(
            Client::item(Kind::Service, "voting_vote"),
            "/v1/services/voting_vote"
        );
        assert_eq!(Client::item(Kind::Task, "web.1.2"), "/v1/tasks/web.1.2");
        assert_eq!(Client::item(Kind::Secret, "a/b c"), "/v1/secrets/a%2Fb%20c");
        assert_eq!(Client::collection(Kind::GitSync), "/v1/gitsyncs");
    }

    #[test]
    fn bad_urls_are_refused_up_front() {
        assert!(matches!(
            Client::new("127.0.0.1:2377"),
            Err(ClientError::Config(_))
        ));
        assert!(matches!(
            Client::new("ftp://x"),
            Err(ClientError::Config(_))
        ));
        let c = Client::new("http://127.0.0.1:2377/").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:2377");
    }

    #[test]
    fn half_a_client_identity_is_refused() {
        let mut cfg = ClientConfig::single("https://127.0.0.1:2377");
        cfg.contexts[0].client_certificate = Some("/nonexistent.pem".into());
        let err = Client::from_config(&cfg).unwrap_err();
        assert!(err.to_string().contains("together"), "{err}");
    }

    /// A port nobody listens on: bind, note the port, close.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn unreachable_server_is_a_transport_error_that_says_what_to_do() {
        let url = format!("http://127.0.0.1:{}", closed_port());
        let c = Client::new(&url).unwrap();
        let err = c.get::<swarm_api::Service>("web").await.unwrap_err();
        assert!(err.is_transport(), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("cannot reach the apiserver at {url}: ")),
            "{msg}"
        );
        assert!(msg.contains("refused"), "{msg}");
        assert!(msg.contains("is 'swarm server' running?"), "{msg}");
    }
}

/// The cluster's join tokens, as `GET /v1/join-tokens` answers.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
}
