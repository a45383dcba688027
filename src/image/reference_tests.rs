use super::*;

const HEX: &str = "ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";

fn full(s: &str) -> String {
    parse_normalized(s).unwrap().to_string()
}

#[test]
fn valid_references_normalize_like_docker() {
    let d = format!("sha256:{HEX}");
    let cases: Vec<(String, String)> = vec![
        ("busybox".into(), "docker.io/library/busybox:latest".into()),
        (
            "test_com".into(),
            "docker.io/library/test_com:latest".into(),
        ),
        (
            "test.com:tag".into(),
            "docker.io/library/test.com:tag".into(),
        ),
        (
            "test.com:5000".into(),
            "docker.io/library/test.com:5000".into(),
        ),
        (
            "foo_bar.com:8080".into(),
            "docker.io/library/foo_bar.com:8080".into(),
        ),
        (
            "foo/foo_bar.com:8080".into(),
            "docker.io/foo/foo_bar.com:8080".into(),
        ),
        ("test.com/repo:tag".into(), "test.com/repo:tag".into()),
        ("test:5000/repo".into(), "test:5000/repo:latest".into()),
        ("test:5000/repo:tag".into(), "test:5000/repo:tag".into()),
        (format!("test:5000/repo@{d}"), format!("test:5000/repo@{d}")),
        (
            format!("test:5000/repo:tag@{d}"),
            format!("test:5000/repo:tag@{d}"),
        ),
        (
            format!("busybox@{d}"),
            format!("docker.io/library/busybox@{d}"),
        ),
        (
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag".into(),
            "sub-dom1.foo.com/bar/baz/quux:some-long-tag".into(),
        ),
        (
            "b.gcr.io/test.example.com/my-app:test.example.com".into(),
            "b.gcr.io/test.example.com/my-app:test.example.com".into(),
        ),
        (
            "xn--n3h.com/myimage:xn--n3h.com".into(),
            "xn--n3h.com/myimage:xn--n3h.com".into(),
        ),
        ("192.168.1.1/repo".into(), "192.168.1.1/repo:latest".into()),
        ("127.0.0.1:5000/x".into(), "127.0.0.1:5000/x:latest".into()),
        ("localhost/foo".into(), "localhost/foo:latest".into()),
        (
            "localhost:5000/foo/bar:v1".into(),
            "localhost:5000/foo/bar:v1".into(),
        ),
        (
            "[2001:db8::1]/repo".into(),
            "[2001:db8::1]/repo:latest".into(),
        ),
        (
            "[2001:db8:1:2:3:4:5:6]/repo:tag".into(),
            "[2001:db8:1:2:3:4:5:6]/repo:tag".into(),
        ),
        ("[::1]:5000/x".into(), "[::1]:5000/x:latest".into()),
        (
            "docker.io/ubuntu".into(),
            "docker.io/library/ubuntu:latest".into(),
        ),
        (
            "index.docker.io/ubuntu".into(),
            "docker.io/library/ubuntu:latest".into(),
        ),
        (
            "docker.io/user/app".into(),
            "docker.io/user/app:latest".into(),
        ),
        ("a/a/a/a/a".into(), "docker.io/a/a/a/a/a:latest".into()),
        (
            "a__b-----c.d_e".into(),
            "docker.io/library/a__b-----c.d_e:latest".into(),
        ),
        (
            "lowercase:Uppercase".into(),
            "docker.io/library/lowercase:Uppercase".into(),
        ),
        ("Example.COM/repo".into(), "Example.COM/repo:latest".into()),
        (
            format!("repo:{}", "a".repeat(128)),
            format!("docker.io/library/repo:{}", "a".repeat(128)),
        ),
        ("repo:_x".into(), "docker.io/library/repo:_x".into()),
    ];
    for (input, want) in cases {
        assert_eq!(full(&input), want, "input {input}");
    }
}

#[test]
fn invalid_references_are_rejected_with_the_right_reason() {
    use ReferenceError as E;
    let kind = |e: &ReferenceError| std::mem::discriminant(e);
    let d = format!("sha256:{HEX}");
    let inv = E::InvalidFormat {
        input: String::new(),
        reason: "",
    };
    let tag = E::InvalidTag {
        input: String::new(),
        tag: String::new(),
    };
    let dig = E::InvalidDigest {
        input: String::new(),
        digest: String::new(),
        reason: "",
    };
    let reg = E::InvalidRegistry {
        input: String::new(),
        registry: String::new(),
    };
    let up = E::Uppercase {
        input: String::new(),
    };
    let long = E::NameTooLong {
        input: String::new(),
    };
    let cases: Vec<(String, ReferenceError)> = vec![
        (String::new(), E::Empty),
        (":justtag".into(), inv.clone()),
        (format!("@{d}"), inv.clone()),
        ("a/".into(), inv.clone()),
        ("a//b".into(), inv.clone()),
        ("/a".into(), inv.clone()),
        ("aa/asdf$$^/aa".into(), inv.clone()),
        ("a___b".into(), inv.clone()),
        ("a..b".into(), inv.clone()),
        ("a.-b".into(), inv.clone()),
        ("-a".into(), inv.clone()),
        ("a-".into(), inv.clone()),
        ("[2001:db8::1]".into(), inv.clone()),
        ("[2001:db8::1]:5000".into(), inv.clone()),
        ("example.com/".into(), inv.clone()),
        ("repo:".into(), tag.clone()),
        ("repo:-tag".into(), tag.clone()),
        ("repo:.tag".into(), tag.clone()),
        ("repo:t$g".into(), tag.clone()),
        (format!("repo:{}", "a".repeat(129)), tag.clone()),
        (
            "repo@sha256:ffffffffffffffffffffffffffffffffff".into(),
            dig.clone(),
        ),
        (format!("repo@md5:{HEX}"), dig.clone()),
        (format!("repo@sha256:{}", HEX.to_uppercase()), dig.clone()),
        ("repo@sha256".into(), dig.clone()),
        (format!("repo@1sha:{HEX}"), dig.clone()),
        (format!("repo@sha256:{HEX}@sha256:{HEX}"), dig.clone()),
        ("[fe80::1%eth0]:5000/repo".into(), reg.clone()),
        ("[2001:db8:1:2:3:4:5:g]/repo".into(), reg.clone()),
        ("example.com:/foo".into(), reg.clone()),
        ("example.com:abc/foo".into(), reg.clone()),
        ("-example.com/foo".into(), reg.clone()),
        ("example-.com/foo".into(), reg.clone()),
        ("foo_bar.com/x".into(), reg.clone()),
        ("Uppercase:tag".into(), up.clone()),
        ("Foo/Bar".into(), up.clone()),
        ("test:5000/Uppercase/lowercase:tag".into(), up.clone()),
        (format!("a/{}", "b".repeat(254)), long.clone()),
        ("b".repeat(248), long.clone()),
        (
            HEX.into(),
            E::HexName {
                input: String::new(),
            },
        ),
    ];
    for (input, want) in cases {
        let got = parse_normalized(&input).expect_err(&input);
        assert_eq!(kind(&got), kind(&want), "input {input:?}: got {got}");
    }
}

#[test]
fn name_length_limit_counts_the_normalized_name() {
    // docker.io/library/ + 237 = 255
    assert!(parse_normalized(&"b".repeat(237)).is_ok());
    assert!(parse_normalized(&"b".repeat(238)).is_err());
    assert!(parse_normalized(&format!("x.io/{}", "b".repeat(250))).is_ok());
}

#[test]
fn error_messages_name_the_input() {
    let e = parse_normalized("Foo/Bar").unwrap_err().to_string();
    assert_eq!(
        e,
        "invalid reference format \"Foo/Bar\": repository name must be lowercase"
    );
    let e = parse_normalized("x:-y").unwrap_err().to_string();
    assert!(
        e.starts_with("invalid reference format \"x:-y\": invalid tag \"-y\""),
        "{e}"
    );
    for e in [
        parse_normalized(""),
        parse_normalized("a@b"),
        parse_normalized("a.b:/c"),
    ] {
        let msg = e.unwrap_err().to_string();
        assert!(!msg.ends_with('.'), "{msg}");
        assert!(msg.starts_with("invalid reference format"), "{msg}");
    }
}

#[test]
fn short_names_are_kept_as_typed() {
    let short = |s: &str| match parse_short(s).unwrap() {
        ShortOrFull::Short(n) => n,
        ShortOrFull::Full(r) => panic!("{s} parsed as qualified {r}"),
    };
    let n = short("busybox");
    assert_eq!((n.repository.as_str(), n.tag.as_deref()), ("busybox", None));
    let n = short("mytools/bb:1");
    assert_eq!(
        (n.repository.as_str(), n.tag.as_deref()),
        ("mytools/bb", Some("1"))
    );
    assert_eq!(n.to_string(), "mytools/bb:1");
    let n = short("localhost:5000");
    assert_eq!(
        (n.repository.as_str(), n.tag.as_deref()),
        ("localhost", Some("5000"))
    );
    let n = short(&format!("alpine:3@sha256:{HEX}"));
    assert_eq!(n.digest.as_deref(), Some(format!("sha256:{HEX}").as_str()));

    assert_eq!(
        short("busybox").qualify("docker.io").unwrap().to_string(),
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        short("busybox:1").qualify("quay.io").unwrap().to_string(),
        "quay.io/busybox:1"
    );
    assert_eq!(
        short("a/b").qualify("index.docker.io").unwrap().to_string(),
        "docker.io/a/b:latest"
    );
    assert!(short(&"b".repeat(250)).qualify("docker.io").is_err());
}

#[test]
fn qualified_names_are_detected_like_podman() {
    for s in [
        "localhost/x",
        "a.b/c",
        "a:1/c",
        "[::1]/c",
        "docker.io/busybox",
    ] {
        assert!(
            matches!(parse_short(s).unwrap(), ShortOrFull::Full(_)),
            "{s}"
        );
    }
    assert_eq!(
        parse_short("docker.io/busybox").unwrap(),
        ShortOrFull::Full(parse_normalized("docker.io/library/busybox:latest").unwrap())
    );
    assert!(matches!(
        parse_short("Foo/bar"),
        Err(ReferenceError::Uppercase { .. })
    ));
    assert!(matches!(
        parse_short(HEX),
        Err(ReferenceError::HexName { .. })
    ));
}

#[test]
fn helpers() {
    let r = parse_normalized(&format!("quay.io/a/b:1@sha256:{HEX}")).unwrap();
    assert_eq!(r.name(), "quay.io/a/b");
    assert_eq!(r.reference_for_registry(), format!("sha256:{HEX}"));
    let r = parse_normalized("quay.io/a/b").unwrap();
    assert_eq!(r.reference_for_registry(), "latest");
    assert_eq!(
        r.with_registry("localhost:5000").to_string(),
        "localhost:5000/a/b:latest"
    );
    assert_eq!(parse_normalized_named("busybox").unwrap().tag, None);

    assert!(is_image_id_prefix("abc"));
    assert!(is_image_id_prefix(HEX));
    assert!(!is_image_id_prefix("ab"));
    assert!(!is_image_id_prefix("ABC"));
    assert!(!is_image_id_prefix(&format!("{HEX}0")));
    assert_eq!(image_id_prefix("sha256:abcd"), Some("abcd"));
    assert_eq!(image_id_prefix("abcd"), Some("abcd"));
    assert_eq!(image_id_prefix("sha256:xyz"), None);
    assert!(validate_digest(&format!("sha512:{}", "0".repeat(128))).is_ok());
    assert!(validate_digest(&format!("sha512:{HEX}")).is_err());
}
