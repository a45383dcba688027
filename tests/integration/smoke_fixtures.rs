//! Proves the harness itself works: the registry runs, every fixture is pushed and
//! served, blobs match their digests. Needs no skiff binary.

use crate::images::{self, MT_INDEX, MT_MANIFEST};
use crate::registry::{self, digest};
use crate::require;
use crate::util::TestEnv;

#[test]
fn fixtures_are_served_by_the_registry() {
    let fx = require!(images::try_fixtures());
    for image in fx.all() {
        let reference = if image.tag.is_empty() {
            image.manifest_digest.as_str()
        } else {
            image.tag.as_str()
        };
        let r = registry::get_manifest(&image.repo, reference).expect("GET manifest");
        assert_eq!(r.status, 200, "{}: {r:?}", image.reference);
        assert_eq!(
            digest(&r.body),
            image.manifest_digest,
            "{}",
            image.reference
        );
        let m: serde_json::Value = serde_json::from_slice(&r.body).expect("manifest JSON");
        let want = if m["mediaType"] == MT_INDEX {
            MT_INDEX
        } else {
            MT_MANIFEST
        };
        assert_eq!(r.content_type.as_deref(), Some(want), "{}", image.reference);
        if want == MT_INDEX {
            assert_eq!(m["manifests"].as_array().map(Vec::len), Some(2));
            continue;
        }
        assert_eq!(m["layers"].as_array().map(Vec::len), Some(image.layers));
        let config = registry::get(
            &format!("{}/blobs/{}", image.repo, image.config_digest),
            None,
        )
        .expect("GET config");
        assert_eq!(config.status, 200);
        assert_eq!(digest(&config.body), image.config_digest);
        let c: serde_json::Value = serde_json::from_slice(&config.body).expect("config JSON");
        assert_eq!(
            c["rootfs"]["diff_ids"].as_array().map(Vec::len),
            Some(image.layers)
        );
        for layer in m["layers"].as_array().expect("layers") {
            let d = layer["digest"].as_str().expect("layer digest");
            assert!(
                registry::blob_exists(&image.repo, d).expect("HEAD blob"),
                "{d}"
            );
        }
    }
    assert_eq!(fx.many_layers.layers, 60);
    assert_eq!(fx.busybox.id, fx.short_name.id);
    assert_ne!(fx.multiarch_amd64.id, fx.multiarch_arm64.id);
}

#[test]
fn busybox_layer_is_deterministic_and_diff_ids_match() {
    let fx = require!(images::try_fixtures());
    let r = registry::get_manifest(&fx.layered.repo, "latest").expect("GET manifest");
    let m: serde_json::Value = serde_json::from_slice(&r.body).expect("manifest JSON");
    let c = registry::get(
        &format!("{}/blobs/{}", fx.layered.repo, fx.layered.config_digest),
        None,
    )
    .expect("GET config");
    let c: serde_json::Value = serde_json::from_slice(&c.body).expect("config JSON");
    for (layer, diff_id) in m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .zip(c["rootfs"]["diff_ids"].as_array().expect("diff_ids"))
    {
        let blob = registry::get(
            &format!(
                "{}/blobs/{}",
                fx.layered.repo,
                layer["digest"].as_str().expect("digest")
            ),
            None,
        )
        .expect("GET blob");
        let tar = match layer["mediaType"].as_str().expect("mediaType") {
            images::MT_GZIP => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&blob.body[..]),
                    &mut out,
                )
                .expect("gunzip");
                out
            }
            images::MT_ZSTD => zstd::decode_all(&blob.body[..]).expect("unzstd"),
            _ => blob.body.clone(),
        };
        assert_eq!(diff_id.as_str(), Some(digest(&tar).as_str()));
    }
    // The same inputs give the same busybox image: digests are stable across runs.
    let [a, b] = [images::layered_layers(), images::layered_layers()];
    assert_eq!(a[0].bytes, b[0].bytes);
}

#[test]
fn rootless_commands_run_as_the_test_user_with_a_clean_env() {
    let env = require!(TestEnv::try_rootless());
    let uid = env.user.as_ref().expect("rootless user").uid;
    let script = "id -u; pwd; stat -c %a \"$XDG_RUNTIME_DIR\"; env | sort";
    let out = env.host_cmd("sh", &["-c", script]).output();
    out.success();
    let text = out.stdout_str();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(uid.to_string().as_str()),
        "{}",
        out.describe()
    );
    assert_eq!(lines.next(), env.work.to_str(), "{}", out.describe());
    assert_eq!(lines.next(), Some("700"), "{}", out.describe());
    let conf = format!(
        "CONTAINERS_REGISTRIES_CONF={}",
        env.registries_conf.display()
    );
    for want in [conf.as_str(), "XDG_RUNTIME_DIR=", "XDG_DATA_HOME=", "HOME="] {
        assert!(text.contains(want), "{want} missing\n{}", out.describe());
    }
    assert!(
        !text.contains("CARGO"),
        "env leaked into the command\n{}",
        out.describe()
    );
    // The registries.conf the env wrote names the test registry.
    let conf = std::fs::read_to_string(&env.registries_conf).expect("registries.conf");
    assert!(conf.contains(&format!("location = \"{}\"", env.registry())));
}

#[test]
fn a_hung_command_times_out_and_a_leaked_pipe_is_reported() {
    let env = require!(TestEnv::try_rootless());
    let started = std::time::Instant::now();
    let err = env
        .host_cmd("sleep", &["30"])
        .timeout(std::time::Duration::from_secs(1))
        .try_output()
        .expect_err("sleep 30 must time out");
    assert!(err.starts_with("TIMEOUT"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    // A background child keeping stdout open is an fd leak, as `id=$(skiff run -d)`
    // would hang on it.
    let err = env
        .host_cmd("sh", &["-c", "sleep 15 & echo started"])
        .try_output()
        .expect_err("leaked stdout must be reported");
    assert!(
        err.contains("leaked fd") && err.contains("started"),
        "{err}"
    );
    env.host_cmd("sh", &["-c", "exit 3"])
        .output()
        .assert_code(3);
}
