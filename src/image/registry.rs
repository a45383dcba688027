//! A thin layer over oci-client: one endpoint (host + repository), its credentials, and
//! errors sorted into "not there" (try the next candidate) and everything else.

use oci_client::client::{ClientConfig, ClientProtocol, SizedStream};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;

use crate::config::auth::Credentials;

pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Why a registry request failed.
#[derive(Debug)]
pub enum FetchError {
    /// The repository, tag or blob does not exist there.
    NotFound(String),
    /// Anything else: network, auth, server errors.
    Other(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::NotFound(s) | FetchError::Other(s) => f.write_str(s),
        }
    }
}

fn classify(e: OciDistributionError) -> FetchError {
    match &e {
        OciDistributionError::ImageManifestNotFoundError(_) => FetchError::NotFound(e.to_string()),
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|x| {
                matches!(
                    x.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                )
            }) =>
        {
            FetchError::NotFound("manifest unknown".into())
        }
        OciDistributionError::ServerError { code: 404, .. } => {
            FetchError::NotFound("not found (HTTP 404)".into())
        }
        OciDistributionError::UnauthorizedError { url } => FetchError::Other(format!(
            "authentication required for {url}: log in with `skiff login` or check auth.json"
        )),
        OciDistributionError::RequestError(r) => {
            let mut msg = r.to_string();
            let mut src = std::error::Error::source(r);
            while let Some(s) = src {
                msg = format!("{msg}: {s}");
                src = s.source();
            }
            FetchError::Other(msg)
        }
        _ => FetchError::Other(e.to_string()),
    }
}

/// One repository on one registry host.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    host: String,
    repository: String,
}

impl Registry {
    pub fn new(
        host: &str,
        repository: &str,
        insecure: bool,
        creds: Option<Credentials>,
    ) -> Registry {
        // reqwest is built without a default TLS provider; ring builds faster than aws-lc.
        // Installing twice is harmless (the second attempt just reports it is set).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let protocol = if insecure {
            ClientProtocol::HttpsExcept(vec![host.to_string()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            ..Default::default()
        };
        let auth = match creds {
            Some(c) => RegistryAuth::Basic(c.username, c.password),
            None => RegistryAuth::Anonymous,
        };
        Registry {
            client: Client::new(config),
            auth,
            host: host.to_string(),
            repository: repository.to_string(),
        }
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn reference(&self, tag_or_digest: &str) -> oci_client::Reference {
        if tag_or_digest.starts_with("sha256:") {
            oci_client::Reference::with_digest(
                self.host.clone(),
                self.repository.clone(),
                tag_or_digest.to_string(),
            )
        } else {
            oci_client::Reference::with_tag(
                self.host.clone(),
                self.repository.clone(),
                tag_or_digest.to_string(),
            )
        }
    }

    /// Fetches a manifest or index: its bytes and digest.
    pub async fn manifest(
        &self,
        tag_or_digest: &str,
    ) -> Result<(bytes::Bytes, String), FetchError> {
        let r = self.reference(tag_or_digest);
        tracing::debug!(reference = %r, "GET manifest");
        self.client
            .pull_manifest_raw(&r, &self.auth, MANIFEST_TYPES)
            .await
            .map_err(classify)
    }

    /// Streams a blob; the caller verifies the digest.
    pub async fn blob_stream(&self, anchor: &str, digest: &str) -> Result<SizedStream, FetchError> {
        let r = self.reference(anchor);
        tracing::debug!(%digest, "GET blob");
        self.client
            .pull_blob_stream(&r, digest)
            .await
            .map_err(classify)
    }

    /// Fetches a small blob (a config) into memory, checked against its digest.
    pub async fn blob_bytes(&self, anchor: &str, digest: &str) -> Result<Vec<u8>, FetchError> {
        use futures_util::StreamExt;
        let mut s = self.blob_stream(anchor, digest).await?;
        let mut out = Vec::new();
        while let Some(chunk) = s.stream.next().await {
            let c = chunk.map_err(|e| FetchError::Other(cut_short(digest, &e.to_string())))?;
            if out.len() + c.len() > 64 << 20 {
                return Err(FetchError::Other(format!(
                    "blob {digest} is larger than 64 MiB"
                )));
            }
            out.extend_from_slice(&c);
        }
        use sha2::Digest as _;
        let actual = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&out)));
        if digest.starts_with("sha256:") && actual != digest {
            return Err(FetchError::Other(format!(
                "blob {digest}: the registry sent {} bytes with digest {actual}: the \
                 connection ended early or the blob is corrupt: try again",
                out.len()
            )));
        }
        Ok(out)
    }
}

/// A body that broke off mid-stream, said so and named.
pub fn cut_short(digest: &str, error: &str) -> String {
    format!("reading blob {digest}: {error}: the registry closed the connection early: try again")
}
