//! `swarm validate`, `swarm convert` and `swarm schema`, run as the built binary.

use std::path::Path;
use std::process::{Command, Output};

fn swarm(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(args)
        .current_dir(dir)
        .env_remove("TAG")
        .output()
        .expect("run swarm")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_valid_file_prints_warnings_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("voting.yml"),
        "services:\n  web:\n    image: nginx\n    privileged: true\n",
    )
    .unwrap();
    let out = swarm(&["validate", "-f", "voting.yml"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("valid: stack \"voting\""));
    assert!(
        text(&out.stderr).contains("warning: voting.yml:4:5: services.web.privileged"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_invalid_file_prints_every_error_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stack.yml"),
        "services:\n  web:\n    image: nginx\n    deploy:\n      replicas: three\n  db:\n    mem_limit: 1g\n",
    )
    .unwrap();
    let out = swarm(&["validate", "-f", "stack.yml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("error: stack.yml:5:17: services.web.deploy.replicas: expected an integer, found \"three\""),
        "{err}"
    );
    assert!(err.contains("services.db.mem_limit"), "{err}");
    assert!(
        err.contains("services.db: every service needs an `image:`"),
        "{err}"
    );
    assert!(err.contains("invalid: 3 errors"), "{err}");
}

#[test]
fn convert_yaml_stream_and_json_with_stack_override() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.yml"),
        "services:\n  web:\n    image: nginx:${TAG:-1}\n    ports: ['8080:80']\n",
    )
    .unwrap();
    let out = swarm(&["convert", "-f", "app.yml"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let yaml = text(&out.stdout);
    assert_eq!(yaml.matches("---\n").count(), 2, "{yaml}");
    assert!(yaml.contains("name: app_default"), "{yaml}");
    assert!(yaml.contains("image: nginx:1"), "{yaml}");

    let out = swarm(
        &["convert", "-f", "app.yml", "--stack", "prod", "-o", "json"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod_default", "prod_web"]);
    assert_eq!(v[1]["spec"]["endpoint"]["ports"][0]["publishedPort"], 8080);
}

#[test]
fn convert_merges_several_files_in_order() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yml"),
        "services:\n  web:\n    image: nginx:1\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yml"),
        "services:\n  web:\n    image: nginx:2\n",
    )
    .unwrap();
    let out = swarm(
        &["convert", "-f", "a.yml", "--file", "b.yml", "-o", "json"],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[1]["metadata"]["name"], "a_web");
    assert_eq!(
        v[1]["spec"]["taskTemplate"]["container"]["image"],
        "nginx:2"
    );
}

#[test]
fn schema_writes_every_schema() {
    let dir = tempfile::tempdir().unwrap();
    let out = swarm(&["schema", "--out", "out"], dir.path());
    assert!(out.status.success(), "{}", text(&out.stderr));
    for name in [
        "stack", "service", "network", "secret", "config", "node", "task", "lease", "gitsync",
    ] {
        let p = dir.path().join("out").join(format!("{name}.schema.json"));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert!(v.is_object(), "{name}");
    }
}
