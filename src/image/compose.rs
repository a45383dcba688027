//! Images made locally (`commit`, `import`): a parent image's layers (if any) plus one
//! new layer, with a config derived from the parent's (diff_ids, history, created,
//! `--change` instructions) and an OCI manifest, stored exactly like a pulled image so
//! `push` and `save` can send it.

use serde_json::{json, Value};

use super::reference::{self, ShortOrFull};
use super::ImageError;
use crate::storage::images::{ImageRecord, LayerRef};
use crate::storage::layer_build::{install_layer, NewLayer};
use crate::storage::Store;
use crate::userns::IdMapping;

const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Everything that goes into a new image besides its parent's layers.
pub struct NewImage<'a> {
    pub parent: Option<&'a ImageRecord>,
    pub layer: NewLayer,
    /// Fully qualified name to give it, or none (a dangling image).
    pub name: Option<String>,
    /// Dockerfile-style instructions (`CMD ["sh"]`, `ENV=A=b`, `WORKDIR /x`).
    pub changes: &'a [String],
    pub comment: Option<String>,
    pub author: Option<String>,
    pub created_by: String,
    pub mapping: Option<&'a IdMapping>,
}

fn invalid(what: &str, detail: impl Into<String>) -> ImageError {
    ImageError::Invalid {
        image: what.to_string(),
        detail: detail.into(),
    }
}

/// The name podman gives an image the user names locally: unqualified names land
/// under `localhost/`, and a missing tag is `latest`.
pub fn local_name(input: &str) -> Result<String, ImageError> {
    let r = match reference::parse_short(input)? {
        ShortOrFull::Full(r) => r,
        ShortOrFull::Short(s) => s.qualify("localhost")?,
    };
    Ok(r.to_string())
}

/// Splits `CMD=x`, `CMD x` or `CMD ["x"]` into the instruction and its value.
pub fn split_change(change: &str) -> Result<(String, String), ImageError> {
    let c = change.trim();
    let key_len = c.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
    let (key, rest) = c.split_at(key_len);
    let value = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix(' '))
        .filter(|_| !key.is_empty())
        .ok_or_else(|| {
            invalid(
                "--change",
                format!("{change:?} is not an instruction: use e.g. CMD=/bin/sh or 'ENV A=b'"),
            )
        })?;
    Ok((key.to_ascii_uppercase(), value.trim().to_string()))
}

/// A JSON array of strings, or the shell form `/bin/sh -c VALUE`.
fn command_form(v: &str) -> Value {
    match serde_json::from_str::<Vec<String>>(v) {
        Ok(a) => json!(a),
        Err(_) => json!(["/bin/sh", "-c", v]),
    }
}

/// Applies the `--change` instructions to an image config's `config` object.
pub fn apply_changes(cfg: &mut Value, changes: &[String]) -> Result<(), ImageError> {
    if !cfg.is_object() {
        *cfg = json!({});
    }
    for ch in changes {
        let (key, val) = split_change(ch)?;
        match key.as_str() {
            "CMD" => cfg["Cmd"] = command_form(&val),
            "ENTRYPOINT" => cfg["Entrypoint"] = command_form(&val),
            "WORKDIR" => cfg["WorkingDir"] = json!(val),
            "USER" => cfg["User"] = json!(val),
            "STOPSIGNAL" => cfg["StopSignal"] = json!(val),
            "ENV" => {
                let (k, v) = val
                    .split_once('=')
                    .or_else(|| val.split_once(' '))
                    .ok_or_else(|| invalid("--change", format!("{ch:?}: ENV needs NAME=VALUE")))?;
                let mut env: Vec<String> = cfg["Env"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|e| e.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                env.retain(|e| e.split('=').next() != Some(k));
                env.push(format!("{k}={}", v.trim()));
                cfg["Env"] = json!(env);
            }
            "LABEL" => {
                let (k, v) = val
                    .split_once('=')
                    .ok_or_else(|| invalid("--change", format!("{ch:?}: LABEL needs KEY=VALUE")))?;
                if !cfg["Labels"].is_object() {
                    cfg["Labels"] = json!({});
                }
                cfg["Labels"][k.trim()] = json!(v.trim().trim_matches('"'));
            }
            "EXPOSE" => {
                if !cfg["ExposedPorts"].is_object() {
                    cfg["ExposedPorts"] = json!({});
                }
                for p in val.split_whitespace() {
                    let p = if p.contains('/') {
                        p.to_string()
                    } else {
                        format!("{p}/tcp")
                    };
                    cfg["ExposedPorts"][p] = json!({});
                }
            }
            "VOLUME" => {
                if !cfg["Volumes"].is_object() {
                    cfg["Volumes"] = json!({});
                }
                let vols = serde_json::from_str::<Vec<String>>(&val)
                    .unwrap_or_else(|_| val.split_whitespace().map(String::from).collect());
                for v in vols {
                    cfg["Volumes"][v] = json!({});
                }
            }
            other => {
                return Err(invalid(
                    "--change",
                    format!(
                        "{ch:?}: {other} is not supported: use CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR"
                    ),
                ))
            }
        }
    }
    Ok(())
}

/// The OCI media type for a layer blob of any origin (the bytes are the same).
fn oci_layer_type(mt: &str) -> String {
    match mt {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.v1.tar+gzip".into()
        }
        "application/vnd.docker.image.rootfs.diff.tar" => {
            "application/vnd.oci.image.layer.v1.tar".into()
        }
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".into()
        }
        other => other.to_string(),
    }
}

/// A fresh config for an image with no parent (`import`).
fn base_config() -> Value {
    let (os, arch, variant) = super::host_platform();
    let mut c = json!({
        "architecture": arch,
        "os": os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    });
    if let Some(v) = variant {
        c["variant"] = json!(v);
    }
    c
}

/// Unpacks the new layer, writes config and manifest, and records the image.
pub fn create_image(store: &mut Store, n: NewImage<'_>) -> Result<ImageRecord, ImageError> {
    let mut config: Value = match n.parent {
        Some(p) => serde_json::from_slice(&store.read_blob(&p.config_digest())?)
            .map_err(|e| invalid(&p.id, format!("cannot parse image config: {e}")))?,
        None => base_config(),
    };
    if !config.is_object() {
        return Err(invalid(
            "config",
            "the parent's config is not a JSON object",
        ));
    }
    apply_changes(&mut config["config"], n.changes)?;
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    config["created"] = json!(now);
    if let Some(a) = &n.author {
        config["author"] = json!(a);
    }
    if !config["rootfs"]["diff_ids"].is_array() {
        config["rootfs"] = json!({"type": "layers", "diff_ids": []});
    }
    if let Some(d) = config["rootfs"]["diff_ids"].as_array_mut() {
        d.push(json!(n.layer.diff_id));
    }
    let mut hist = json!({"created": now, "created_by": n.created_by});
    if let Some(a) = &n.author {
        hist["author"] = json!(a);
    }
    if let Some(c) = &n.comment {
        hist["comment"] = json!(c);
    }
    match config["history"].as_array_mut() {
        Some(h) => h.push(hist),
        None => config["history"] = json!([hist]),
    }

    let mapping_key = super::pull::mapping_key(n.mapping);
    install_layer(
        store,
        &n.layer.digest,
        &n.layer.diff_id,
        &n.layer.media_type,
        &mapping_key,
        n.mapping,
    )?;

    let mut layers: Vec<LayerRef> = n.parent.map(|p| p.layers.clone()).unwrap_or_default();
    for l in &mut layers {
        l.media_type = oci_layer_type(&l.media_type);
    }
    layers.push(LayerRef {
        digest: n.layer.digest.clone(),
        diff_id: n.layer.diff_id.clone(),
        media_type: n.layer.media_type.clone(),
        size: n.layer.size as i64,
    });
    let config_bytes = serde_json::to_vec(&config).map_err(|e| invalid("config", e.to_string()))?;
    let config_digest = crate::storage::blobs::sha256_digest(&config_bytes);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": layers.iter().map(|l| json!({
            "mediaType": l.media_type, "digest": l.digest, "size": l.size,
        })).collect::<Vec<_>>(),
    });
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| invalid("manifest", e.to_string()))?;
    let manifest_digest = crate::storage::blobs::sha256_digest(&manifest_bytes);
    store.put_blob(&config_digest, &config_bytes)?;
    store.put_blob(&manifest_digest, &manifest_bytes)?;
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let img = ImageRecord {
        id: config_digest.trim_start_matches("sha256:").to_string(),
        manifest_digest,
        manifest_media_type: MT_MANIFEST.to_string(),
        created: Some(now),
        pulled: crate::storage::now(),
        size: store.layers_size(&diff_ids, &mapping_key)?,
        layers,
        os: config["os"].as_str().unwrap_or("linux").to_string(),
        arch: config["architecture"]
            .as_str()
            .unwrap_or("amd64")
            .to_string(),
        names: Vec::new(),
    };
    store.put_image(&img, n.name.as_deref())?;
    Ok(store.image_by_id(&img.id)?.unwrap_or(img))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes() {
        let mut c = json!({"Env": ["PATH=/bin", "A=1"]});
        apply_changes(
            &mut c,
            &[
                "CMD=/bin/sh".into(),
                r#"ENTRYPOINT ["/x", "y"]"#.into(),
                "ENV=A=2".into(),
                "WORKDIR /data".into(),
                "EXPOSE 80".into(),
                "LABEL a=b".into(),
            ],
        )
        .unwrap();
        assert_eq!(c["Cmd"], json!(["/bin/sh", "-c", "/bin/sh"]));
        assert_eq!(c["Entrypoint"], json!(["/x", "y"]));
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=2"]));
        assert_eq!(c["WorkingDir"], json!("/data"));
        assert!(c["ExposedPorts"]["80/tcp"].is_object());
        assert_eq!(c["Labels"]["a"], json!("b"));
        assert!(apply_changes(&mut c, &["FROM x".into()]).is_err());
        assert!(apply_changes(&mut c, &["=x".into()]).is_err());
    }
}
