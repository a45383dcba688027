use super::*;
use std::os::unix::fs::PermissionsExt;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, text).unwrap();
    path
}

fn creds(user: &str, pass: &str) -> Credentials {
    Credentials {
        username: user.into(),
        password: pass.into(),
    }
}

#[test]
fn most_specific_key_wins_within_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "auth.json",
        &format!(
            r#"{{"auths": {{
                "quay.io": {{"auth": "{}"}},
                "quay.io/ns": {{"auth": "{}"}},
                "quay.io/ns/repo": {{"auth": "{}"}}
            }}}}"#,
            b64("host:h"),
            b64("ns:n"),
            b64("repo:r:with:colons")
        ),
    );
    let files = [f];
    let get = |host: &str, repo: &str| lookup_in(&files, host, repo).unwrap();
    assert_eq!(
        get("quay.io", "ns/repo"),
        Some(creds("repo", "r:with:colons"))
    );
    assert_eq!(get("quay.io", "ns/other"), Some(creds("ns", "n")));
    assert_eq!(get("quay.io", "nsx/repo"), Some(creds("host", "h")));
    assert_eq!(get("quay.io", "other"), Some(creds("host", "h")));
    assert_eq!(get("quay.io:443", "ns/repo"), None);
    assert_eq!(get("ghcr.io", "ns/repo"), None);
}

#[test]
fn earlier_files_win_and_missing_files_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let first = write(
        dir.path(),
        "a.json",
        &format!(r#"{{"auths":{{"r.io":{{"auth":"{}"}}}}}}"#, b64("a:1")),
    );
    let second = write(
        dir.path(),
        "b.json",
        &format!(
            r#"{{"auths":{{"r.io/x":{{"auth":"{}"}},"s.io":{{"auth":"{}"}}}}}}"#,
            b64("b:2"),
            b64("b:3")
        ),
    );
    let empty = write(dir.path(), "empty.json", "  \n");
    let files = [dir.path().join("missing.json"), empty, first, second];
    // The first file with any match wins, even if a later file is more specific.
    assert_eq!(
        lookup_in(&files, "r.io", "x").unwrap(),
        Some(creds("a", "1"))
    );
    assert_eq!(
        lookup_in(&files, "s.io", "x").unwrap(),
        Some(creds("b", "3"))
    );
    assert_eq!(lookup_in(&files, "t.io", "x").unwrap(), None);
}

#[test]
fn url_keys_and_docker_hub_names_are_normalized() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "config.json",
        &format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "http://localhost:5000/v2/": {{"auth": "{}"}},
                "docker.io/me": {{"auth": "{}"}},
                "noauth.io": {{}}
            }}}}"#,
            b64("hub:pw"),
            b64("local:pw"),
            b64("me:pw")
        ),
    );
    let files = [f];
    assert_eq!(
        lookup_in(&files, "docker.io", "library/busybox").unwrap(),
        Some(creds("hub", "pw"))
    );
    assert_eq!(
        lookup_in(&files, "registry-1.docker.io", "me/app").unwrap(),
        Some(creds("me", "pw"))
    );
    assert_eq!(
        lookup_in(&files, "localhost:5000", "x").unwrap(),
        Some(creds("local", "pw"))
    );
    assert_eq!(lookup_in(&files, "noauth.io", "x").unwrap(), None);
}

#[test]
fn legacy_dockercfg_is_a_bare_map() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        ".dockercfg",
        &format!(
            r#"{{"https://old.io/v1/": {{"auth": "{}", "email": "x@y"}}}}"#,
            b64("old:pw")
        ),
    );
    assert_eq!(
        lookup_in(&[f], "old.io", "a/b").unwrap(),
        Some(creds("old", "pw"))
    );
}

#[test]
fn helpers_are_skipped_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let helper = write(
        dir.path(),
        "helper.json",
        &format!(
            r#"{{"credHelpers": {{"gcr.io": "gcloud"}}, "credsStore": "desktop", "auths": {{"gcr.io": {{"auth": "{}"}}, "x.io": {{"auth": "{}"}}}}}}"#,
            b64("no:no"),
            b64("x:1")
        ),
    );
    let fallback = write(
        dir.path(),
        "b.json",
        &format!(r#"{{"auths":{{"gcr.io":{{"auth":"{}"}}}}}}"#, b64("yes:1")),
    );
    let files = [helper, fallback];
    assert_eq!(
        lookup_in(&files, "gcr.io", "p/i").unwrap(),
        Some(creds("yes", "1"))
    );
    assert_eq!(
        lookup_in(&files, "x.io", "p/i").unwrap(),
        Some(creds("x", "1"))
    );
}

#[test]
fn malformed_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        "{not json",
        "[1, 2]",
        r#"{"auths": []}"#,
        r#"{"auths": {"r.io": {"auth": "!!!not base64"}}}"#,
        &format!(
            r#"{{"auths": {{"r.io": {{"auth": "{}"}}}}}}"#,
            b64("nocolon")
        ),
    ];
    for text in cases {
        let f = write(dir.path(), "bad.json", text);
        let err = lookup_in(std::slice::from_ref(&f), "r.io", "x")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("invalid auth file {}", f.display())),
            "{text}: {err}"
        );
    }
    // Base64 without padding is accepted.
    let f = write(
        dir.path(),
        "nopad.json",
        r#"{"auths": {"r.io": {"auth": "dTpw"}}}"#,
    );
    assert_eq!(lookup_in(&[f], "r.io", "x").unwrap(), Some(creds("u", "p")));
    let f = write(
        dir.path(),
        "nopad2.json",
        r#"{"auths": {"r.io": {"auth": "dTpwYQ"}}}"#,
    );
    assert_eq!(
        lookup_in(&[f], "r.io", "x").unwrap(),
        Some(creds("u", "pa"))
    );
}

#[test]
fn file_order_follows_podman() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    };
    let files = auth_files_from(
        env(&[
            ("HOME", "/h"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("REGISTRY_AUTH_FILE", "/a.json"),
        ]),
        1000,
    );
    let want: Vec<PathBuf> = [
        "/a.json",
        "/run/user/1000/containers/auth.json",
        "/h/.config/containers/auth.json",
        "/h/.docker/config.json",
        "/h/.dockercfg",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(files, want);
    let files = auth_files_from(
        env(&[
            ("HOME", "/h"),
            ("XDG_CONFIG_HOME", "/c"),
            ("DOCKER_CONFIG", "/d"),
        ]),
        1000,
    );
    let want: Vec<PathBuf> = [
        "/run/containers/1000/auth.json",
        "/c/containers/auth.json",
        "/d/config.json",
        "/h/.dockercfg",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(files, want);
}

#[test]
fn store_and_remove_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/sub/auth.json");
    store(&path, "localhost:5000", &creds("u", "p:w")).unwrap();
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    let files = [path.clone()];
    assert_eq!(
        lookup_in(&files, "localhost:5000", "x").unwrap(),
        Some(creds("u", "p:w"))
    );

    // Replacing keeps other entries and unrelated settings; a URL spelling is replaced too.
    fs::write(
        &path,
        format!(r#"{{"auths":{{"https://quay.io/v1/":{{"auth":"{}"}},"localhost:5000":{{"auth":"{}"}}}},"credHelpers":{{"a.io":"x"}}}}"#, b64("old:1"), b64("u:p")),
    )
    .unwrap();
    store(&path, "https://quay.io", &creds("new", "2")).unwrap();
    let doc: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    let keys: Vec<&String> = doc["auths"].as_object().unwrap().keys().collect();
    assert_eq!(keys, vec!["localhost:5000", "quay.io"]);
    assert_eq!(doc["credHelpers"]["a.io"], "x");
    assert_eq!(
        lookup_in(&files, "quay.io", "x").unwrap(),
        Some(creds("new", "2"))
    );

    assert!(remove(&path, "quay.io").unwrap());
    assert!(!remove(&path, "quay.io").unwrap());
    assert_eq!(lookup_in(&files, "quay.io", "x").unwrap(), None);
    assert_eq!(
        lookup_in(&files, "localhost:5000", "x").unwrap(),
        Some(creds("u", "p"))
    );
    remove_all(&path).unwrap();
    assert_eq!(lookup_in(&files, "localhost:5000", "x").unwrap(), None);
    assert!(!remove(&dir.path().join("absent.json"), "x.io").unwrap());
    remove_all(&dir.path().join("absent.json")).unwrap();

    // No stray temp files.
    let names: Vec<_> = fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![OsString::from("auth.json")]);
}

#[test]
fn store_refuses_to_clobber_a_malformed_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "auth.json", "{broken");
    let err = store(&path, "r.io", &creds("u", "p")).unwrap_err();
    assert!(matches!(err, AuthError::Invalid { .. }), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "{broken");
}

#[test]
fn debug_output_hides_the_password() {
    let s = format!("{:?}", creds("alice", "hunter2"));
    assert!(s.contains("alice") && !s.contains("hunter2"), "{s}");
}
