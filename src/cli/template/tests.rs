use serde_json::json;

use super::*;

fn run(src: &str, data: &Value) -> Result<String, TemplateError> {
    Template::parse("t", src)?.execute(data)
}

fn ok(src: &str, data: &Value) -> String {
    run(src, data).unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn data() -> Value {
    json!({
        "ID": "abc123",
        "Names": ["web", "db"],
        "State": {"Status": "running", "Pid": 42, "Running": true},
        "Labels": {"app": "shop", "tier": "front"},
        "Empty": [],
        "Count": 3,
        "Mounts": [{"Source": "/a", "Destination": "/x"}, {"Source": "/b", "Destination": "/y"}],
        "Name": "Hello World",
        "Nothing": null,
    })
}

#[test]
fn fields_and_nesting() {
    let d = data();
    assert_eq!(ok("{{.ID}}", &d), "abc123");
    assert_eq!(ok("{{.State.Status}} {{.State.Pid}}", &d), "running 42");
    assert_eq!(ok("{{ .State.Running }}", &d), "true");
    assert_eq!(ok("{{.Names}}", &d), "[web db]");
    assert_eq!(ok("{{.Labels}}", &d), "map[app:shop tier:front]");
    assert_eq!(
        ok("{{.Labels.app}}|{{.Labels.none}}", &d),
        "shop|<no value>"
    );
    assert_eq!(ok("{{.}}", &json!("x")), "x");
    assert_eq!(ok("plain text", &d), "plain text");
    // Case-insensitive fallback lets `{{.Host.Arch}}` reach info's lowercase JSON.
    assert_eq!(
        ok("{{.host.Arch}}", &json!({"host": {"arch": "amd64"}})),
        "amd64"
    );
}

#[test]
fn unknown_field_is_an_error_naming_it() {
    let e = run("x {{.Foo}}", &data()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "template: t:1:5: executing \"t\" at <.Foo>: can't evaluate field Foo"
    );
    let e = run("{{.State.Nope}}", &data()).unwrap_err().to_string();
    assert!(e.contains("can't evaluate field Nope"), "{e}");
    let e = run("{{.ID.Sub}}", &data()).unwrap_err().to_string();
    assert!(e.contains("can't evaluate field Sub in type string"), "{e}");
    let e = run("{{range .Mounts}}{{.Bogus}}{{end}}", &data())
        .unwrap_err()
        .to_string();
    assert!(e.contains("field Bogus"), "{e}");
}

#[test]
fn json_function() {
    let d = data();
    assert_eq!(ok("{{json .Names}}", &d), r#"["web","db"]"#);
    assert_eq!(
        ok("{{json .State}}", &d),
        r#"{"Pid":42,"Running":true,"Status":"running"}"#
    );
    let all: Value = serde_json::from_str(&ok("{{json .}}", &d)).unwrap();
    assert_eq!(all, d);
    assert_eq!(ok("{{.Names | json}}", &d), r#"["web","db"]"#);
}

#[test]
fn range_if_with_else() {
    let d = data();
    assert_eq!(ok("{{range .Names}}<{{.}}>{{end}}", &d), "<web><db>");
    assert_eq!(
        ok("{{range $i, $n := .Names}}{{$i}}={{$n}} {{end}}", &d),
        "0=web 1=db "
    );
    assert_eq!(
        ok("{{range $k, $v := .Labels}}{{$k}}:{{$v}},{{end}}", &d),
        "app:shop,tier:front,"
    );
    assert_eq!(ok("{{range .Empty}}x{{else}}none{{end}}", &d), "none");
    assert_eq!(
        ok("{{range .Mounts}}{{.Source}}->{{.Destination}};{{end}}", &d),
        "/a->/x;/b->/y;"
    );
    assert_eq!(ok("{{range .Mounts}}{{$.ID}}{{end}}", &d), "abc123abc123");
    assert_eq!(ok("{{if .State.Running}}up{{else}}down{{end}}", &d), "up");
    assert_eq!(
        ok("{{if .Empty}}a{{else if .Count}}b{{else}}c{{end}}", &d),
        "b"
    );
    assert_eq!(ok("{{if not .Empty}}empty{{end}}", &d), "empty");
    assert_eq!(ok("{{with .State}}{{.Status}}{{end}}", &d), "running");
    assert_eq!(ok("{{with .Nothing}}x{{else}}nil{{end}}", &d), "nil");
    assert_eq!(
        ok(
            "{{if and .Count .ID}}y{{end}}{{if or .Empty .Nothing}}n{{end}}",
            &d
        ),
        "y"
    );
    assert_eq!(
        ok(
            "{{range .Names}}{{if eq . \"db\"}}{{break}}{{end}}{{.}}{{end}}",
            &d
        ),
        "web"
    );
    assert_eq!(
        ok(
            "{{range .Names}}{{if eq . \"web\"}}{{continue}}{{end}}{{.}}{{end}}",
            &d
        ),
        "db"
    );
    assert_eq!(ok("{{$x := .ID}}{{$x}}{{$x = \"y\"}}{{$x}}", &d), "abc123y");
}

#[test]
fn functions() {
    let d = data();
    assert_eq!(ok("{{index .Names 1}}", &d), "db");
    assert_eq!(ok("{{index .Labels \"tier\"}}", &d), "front");
    // A missing key of a string map is Go's zero value, "", not <no value>.
    assert_eq!(ok("{{index .Labels \"nope\"}}", &d), "");
    assert_eq!(ok("{{(index .Mounts 1).Source}}", &d), "/b");
    assert_eq!(ok("{{join .Names \",\"}}", &d), "web,db");
    assert_eq!(
        ok("{{upper .ID}} {{lower .Name}} {{title \"a b\"}}", &d),
        "ABC123 hello world A B"
    );
    assert_eq!(ok("{{.ID | upper}}", &d), "ABC123");
    assert_eq!(
        ok("{{printf \"%-5s|%3d|%q|%v\" .ID .Count .ID .Names}}", &d),
        "abc123|  3|\"abc123\"|[web db]"
    );
    assert_eq!(
        ok("{{printf \"%05d %x %.2f %%\" 42 255 1.5}}", &d),
        "00042 ff 1.50 %"
    );
    assert_eq!(ok("{{printf \"%s\"}}", &d), "%!s(MISSING)");
    assert_eq!(
        ok("{{len .Names}} {{len .Labels}} {{len .ID}}", &d),
        "2 2 6"
    );
    assert_eq!(
        ok("{{truncate .ID 3}} {{split \"a:b\" \":\"}}", &d),
        "abc [a b]"
    );
    assert_eq!(ok("{{pad .ID 1 2}}|", &d), " abc123  |");
    assert_eq!(
        ok(
            "{{if lt .Count 5}}small{{end}} {{if ge .State.Pid 42}}big{{end}}",
            &d
        ),
        "small big"
    );
    assert_eq!(ok("{{print 1 2 \"a\" \"b\"}}", &d), "1 2ab");
    assert!(run("{{index .Names 5}}", &d)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    assert!(run("{{lt .ID 1}}", &d)
        .unwrap_err()
        .to_string()
        .contains("incompatible"));
    let e = run("{{bogus .ID}}", &d).unwrap_err().to_string();
    assert_eq!(e, "template: t:1: function \"bogus\" not defined");
    // Unknown functions are found even in a branch that never runs.
    assert!(run("{{if false}}{{nope}}{{end}}", &d).is_err());
}

#[test]
fn trimming_comments_and_literals() {
    let d = data();
    assert_eq!(ok("a  {{- .ID -}}  b", &d), "aabc123b");
    assert_eq!(ok("a\n{{- /* note */ -}}\nb", &d), "ab");
    assert_eq!(ok("{{/* c */}}x", &d), "x");
    assert_eq!(ok("{{-3}}", &d), "-3");
    assert_eq!(ok("{{\"a}}b\"}}", &d), "a}}b");
    assert_eq!(ok("{{`raw\\n`}}", &d), "raw\\n");
    assert_eq!(ok("{{\"tab\\there\"}}", &d), "tab\there");
    assert_eq!(
        ok("{{true}} {{1.5}} {{0x10}} {{'a'}}", &d),
        "true 1.5 16 97"
    );
}

#[test]
fn parse_errors_are_clear() {
    let d = data();
    for (src, want) in [
        ("{{.ID", "unclosed action"),
        ("{{if .ID}}x", "unexpected EOF"),
        ("{{end}}", "unexpected {{end}}"),
        ("{{else}}", "unexpected {{else}}"),
        ("{{}}", "missing value"),
        ("{{.ID | }}", "missing command"),
        ("{{(.ID}}", "unclosed left paren"),
        ("{{\"abc}}", "unclosed action"),
        ("{{.ID ^}}", "bad character"),
        ("{{define \"x\"}}{{end}}", "not supported"),
        ("{{$x.Y := 1}}", "bad variable"),
        ("{{3abc}}", "bad number"),
        ("{{/* open }}", "unclosed comment"),
    ] {
        let e = run(src, &d).unwrap_err().to_string();
        assert!(e.starts_with("template: t:"), "{src}: {e}");
        assert!(e.contains(want), "{src}: {e} (want {want})");
    }
    let e = run("{{.ID 1}}", &d).unwrap_err().to_string();
    assert!(e.contains("can't give argument to non-function"), "{e}");
    let e = run("{{$nope}}", &d).unwrap_err().to_string();
    assert!(e.contains("undefined variable"), "{e}");
}

#[test]
fn format_table_header_and_alignment() {
    let items = vec![
        json!({"ID": "0123456789ab", "Names": "web", "Status": "Up 2 seconds"}),
        json!({"ID": "ba9876543210", "Names": "a-much-longer-name", "Status": "Created"}),
    ];
    let names = |f: &str| match f {
        "ID" => "CONTAINER ID".to_string(),
        other => header_name(other),
    };
    let f = Format::parse("ps", Some("table {{.ID}}\\t{{.Names}}\\t{{.Status}}")).unwrap();
    let out = f.render(&items, &names).unwrap();
    assert_eq!(
        out,
        "CONTAINER ID  NAMES               STATUS\n\
         0123456789ab  web                 Up 2 seconds\n\
         ba9876543210  a-much-longer-name  Created\n"
    );
    let f = Format::parse("ps", Some("{{.Names}}")).unwrap();
    assert_eq!(
        f.render(&items, &names).unwrap(),
        "web\na-much-longer-name\n"
    );
    assert!(matches!(
        Format::parse("ps", Some("json")).unwrap(),
        Format::Json
    ));
    assert!(matches!(
        Format::parse("ps", Some("table")).unwrap(),
        Format::Default
    ));
    assert!(matches!(
        Format::parse("ps", None).unwrap(),
        Format::Default
    ));
    let f = Format::parse("ps", Some("{{.ID}}\\n")).unwrap();
    assert_eq!(f.render(&items[..1], &names).unwrap(), "0123456789ab\n");
    assert_eq!(header_name("CreatedAt"), "CREATED AT");
    assert_eq!(header_name("ImageID"), "IMAGE ID");
    assert_eq!(header_name("ID"), "ID");
    assert_eq!(header_name("HTTPServer"), "HTTP SERVER");
    assert_eq!(align("a\tb\n"), "a           b\n");
}

/// A tiny deterministic generator: the parser and executor must return, never panic,
/// on arbitrary input built from template-ish fragments and random bytes.
#[test]
fn never_panics_on_garbage() {
    let frags = [
        "{{",
        "}}",
        "{{-",
        "-}}",
        " ",
        ".",
        ".ID",
        ".Names",
        "$",
        "$x",
        ":=",
        "=",
        "|",
        "(",
        ")",
        "\"",
        "`",
        "'",
        "\\",
        "if",
        "else",
        "end",
        "range",
        "with",
        "json",
        "index",
        "printf",
        "\"%-99999s\"",
        "1",
        "-",
        "/*",
        "*/",
        "\n",
        "\t",
        "é",
        "💥",
        "0x",
        "1e",
        ",",
        "break",
        "nil",
        "true",
        ".State.Status",
        "len",
        "join",
    ];
    let d = data();
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..20000 {
        let n = (next() % 12) as usize;
        let mut s = String::new();
        for _ in 0..n {
            let r = next();
            if r % 9 == 0 {
                s.push(char::from_u32((r >> 8) as u32 % 0x800).unwrap_or('?'));
            } else {
                s.push_str(frags[(r >> 4) as usize % frags.len()]);
            }
        }
        let _ = run(&s, &d);
        let _ =
            Format::parse("t", Some(&s)).map(|f| f.render(std::slice::from_ref(&d), &header_name));
    }
    // Deep nesting is refused, not a stack overflow.
    let deep = "{{if .ID}}".repeat(10000);
    assert!(run(&deep, &d).is_err());
    let parens = format!("{{{{{}.ID{}}}}}", "(".repeat(10000), ")".repeat(10000));
    assert!(run(&parens, &d).is_err());
}
