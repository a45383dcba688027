//! `--label` and `--annotation`: metadata the user attaches to a container. Labels are
//! for people and tools (`inspect`, filters); annotations also reach the OCI spec, where
//! runtimes and hooks read them.

use std::collections::BTreeMap;

use oci_spec::image::ImageConfiguration;

use super::RuntimeError;

/// Parses `KEY[=VALUE]` labels (a bare key means an empty value, as in podman) over the
/// image's labels: the user's win.
pub fn labels(
    image: &ImageConfiguration,
    user: &[String],
) -> Result<BTreeMap<String, String>, RuntimeError> {
    let mut out: BTreeMap<String, String> = image
        .config()
        .as_ref()
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    for l in user {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        check_key("--label", l, k)?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Parses `KEY=VALUE` annotations; podman requires the `=`.
pub fn annotations(user: &[String]) -> Result<BTreeMap<String, String>, RuntimeError> {
    let mut out = BTreeMap::new();
    for a in user {
        let (k, v) = a.split_once('=').ok_or_else(|| RuntimeError::BadFlag {
            flag: "--annotation",
            detail: format!("invalid annotation {a:?}: use KEY=VALUE"),
        })?;
        check_key("--annotation", a, k)?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn check_key(flag: &'static str, whole: &str, key: &str) -> Result<(), RuntimeError> {
    if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        let what = flag.trim_start_matches('-');
        return Err(RuntimeError::BadFlag {
            flag,
            detail: format!(
                "invalid {what} {whole:?}: use KEY=VALUE with a non-empty key and no spaces in it"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_labels_override_image_labels() {
        let img: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Labels":{"a":"img","b":"img"}},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let m = labels(&img, &["b=user".into(), "c".into(), "d=x=y".into()]).unwrap();
        assert_eq!(m["a"], "img");
        assert_eq!(m["b"], "user");
        assert_eq!(m["c"], "");
        assert_eq!(m["d"], "x=y");
        assert!(labels(&img, &["=v".into()]).is_err());
        assert!(labels(&img, &["a b=v".into()]).is_err());
        assert!(annotations(&["k".into()]).is_err());
        assert!(annotations(&["=v".into()]).is_err());
        assert_eq!(annotations(&["k=v".into()]).unwrap()["k"], "v");
    }
}
