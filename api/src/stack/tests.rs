//! Tests of the whole loader (`load_stack`) on in-memory files.

use std::path::PathBuf;

use super::*;
use crate::objects::*;

fn env(name: &str) -> Option<String> {
    match name {
        "TAG" => Some("1.2".to_string()),
        "REPLICAS" => Some("3".to_string()),
        "FROM_ENV" => Some("from-env".to_string()),
        "HOME" => Some("/home/u".to_string()),
        _ => None,
    }
}

fn load_files(files: &[(&str, &str)], extra: &[(&str, &str)]) -> Result<LoadedStack, LoadErrors> {
    let mut fs = MemFs::new();
    for (p, c) in files.iter().chain(extra) {
        fs.insert(*p, *c);
    }
    let paths: Vec<PathBuf> = files.iter().map(|(p, _)| PathBuf::from(p)).collect();
    load_stack(&paths, None, &env, &fs)
}

fn load(yaml: &str) -> Result<LoadedStack, LoadErrors> {
    load_files(&[("/s/app.yml", yaml)], &[])
}

fn service<'a>(stack: &'a LoadedStack, name: &str) -> &'a Service {
    stack
        .objects
        .iter()
        .find_map(|o| match o {
            AnyObject::Service(s) if s.metadata.name == name => Some(&**s),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no service {name} in {:?}", stack.objects))
}

fn errors(yaml: &str) -> Vec<String> {
    load(yaml)
        .unwrap_err()
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

#[test]
fn minimal_stack_gets_names_labels_default_network_and_alias() {
    let s = load("services:\n  web:\n    image: nginx\n").unwrap();
    assert_eq!(s.name, "app");
    let names: Vec<_> = s.objects.iter().map(AnyObject::reference).collect();
    assert_eq!(names, ["network/app_default", "service/app_web"]);
    let web = service(&s, "app_web");
    assert_eq!(web.metadata.labels["swarm.stack"], "app");
    assert_eq!(
        web.spec.task_template.container.labels["swarm.stack"],
        "app"
    );
    assert_eq!(
        web.spec.task_template.networks,
        [NetworkAttachmentConfig {
            target: "app_default".into(),
            aliases: vec!["web".into()],
            driver_opts: Default::default()
        }]
    );
    assert_eq!(web.spec.replicas(), Some(1));
    assert_eq!(web.spec.update_config, UpdateConfig::default());
    assert_eq!(s.objects[0].meta().labels["swarm.stack"], "app");
}

#[test]
fn error_names_file_line_column_and_path() {
    let e = errors("services:\n  web:\n    image: nginx\n    deploy:\n      replicas: three\n");
    assert_eq!(
        e,
        ["/s/app.yml:5:17: services.web.deploy.replicas: expected an integer, found \"three\""]
    );
}

#[test]
fn every_error_is_reported_not_only_the_first() {
    let e = errors(
        "services:\n  a:\n    image: x\n    deploy: {replicas: three}\n  b:\n    imagee: y\n  c:\n    image: z\n    ports: ['99999:80']\n  d:\n    image: w\n    mem_limit: 1g\n    extends: a\n",
    );
    let all = e.join("\n");
    assert!(all.contains("services.a.deploy.replicas"), "{all}");
    assert!(
        all.contains("services.b.imagee: unknown key \"imagee\"; did you mean \"image\"?"),
        "{all}"
    );
    assert!(all.contains("services.c.ports[0]"), "{all}");
    assert!(all.contains("services.d.mem_limit"), "{all}");
    assert!(all.contains("services.d.extends"), "{all}");
}

#[test]
fn every_error_under_one_key_is_reported() {
    let e = errors(
        "services:\n  a:\n    image: x\n    deploy:\n      replicas: three\n      update_config:\n        parallelism: many\n        delay: soon\n      restart_policy: {max_attempts: lots}\n",
    );
    let all = e.join("\n");
    for path in [
        "5:17: services.a.deploy.replicas",
        "7:22: services.a.deploy.update_config.parallelism",
        "8:16: services.a.deploy.update_config.delay",
        "services.a.deploy.restart_policy.max_attempts",
    ] {
        assert!(all.contains(path), "{path} missing from:\n{all}");
    }
    assert_eq!(e.len(), 4, "{all}");
}

#[test]
fn interpolation_applies_to_values_not_keys() {
    let s = load(
        "services:\n  web:\n    image: nginx:${TAG}\n    environment:\n      $TAG: $$HOME\n    deploy:\n      replicas: ${REPLICAS}\n      labels: {x: '${UNSET:-dflt}'}\n",
    )
    .unwrap();
    let web = service(&s, "app_web");
    assert_eq!(web.spec.task_template.container.image, "nginx:1.2");
    assert_eq!(web.spec.task_template.container.env["$TAG"], "$HOME");
    assert_eq!(web.spec.replicas(), Some(3));
    assert_eq!(web.metadata.labels["x"], "dflt");
}

#[test]
fn required_variables_fail_with_position() {
    let e = errors("services:\n  web:\n    image: ${IMAGE:?set IMAGE to the image to run}\n");
    assert_eq!(
        e,
        [
            "/s/app.yml:3:12: services.web.image: required variable IMAGE is missing a value: set IMAGE to the image to run"
        ]
    );
}

#[test]
fn anchors_merge_keys_and_extension_fields() {
    let s = load(
        "version: '3.8'\nx-defaults: &defaults\n  image: nginx\n  deploy:\n    replicas: 2\nservices:\n  a:\n    <<: *defaults\n    x-note: ignored\n  b:\n    <<: *defaults\n    image: httpd\n",
    )
    .unwrap();
    assert_eq!(service(&s, "app_a").spec.replicas(), Some(2));
    assert_eq!(
        service(&s, "app_b").spec.task_template.container.image,
        "httpd"
    );
}

#[test]
fn files_merge_in_order_and_versions_must_match() {
    let base = "version: '3.8'\nservices:\n  web:\n    image: nginx:1\n    environment: [A=1]\n    ports: ['80:80']\n";
    let over = "version: '3.8'\nservices:\n  web:\n    image: nginx:2\n    environment: {B: '2'}\n    ports: ['443:443']\n";
    let s = load_files(&[("/s/base.yml", base), ("/s/prod.yml", over)], &[]).unwrap();
    assert_eq!(s.name, "base");
    let web = service(&s, "base_web");
    assert_eq!(web.spec.task_template.container.image, "nginx:2");
    assert_eq!(web.spec.task_template.container.env.len(), 2);
    assert_eq!(web.spec.endpoint.ports.len(), 2);

    let e = load_files(
        &[
            ("/s/base.yml", base),
            ("/s/prod.yml", "version: '3.9'\nservices: {}\n"),
        ],
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("version mismatched"), "{e}");
    assert!(
        e.to_string().starts_with("/s/prod.yml:1:10: version"),
        "{e}"
    );
}

#[test]
fn env_file_then_environment_and_bare_keys_from_env() {
    let s = load_files(
        &[(
            "/s/app.yml",
            "services:\n  web:\n    image: x\n    env_file: [web.env, ./more.env]\n    environment:\n      - B=from-environment\n      - FROM_ENV\n      - NOT_SET\n",
        )],
        &[
            ("/s/web.env", "# c\nA=1\nB=from-file\n"),
            ("/s/more.env", "C=3\n"),
        ],
    )
    .unwrap();
    let env = &service(&s, "app_web").spec.task_template.container.env;
    assert_eq!(env["A"], "1");
    assert_eq!(env["B"], "from-environment");
    assert_eq!(env["C"], "3");
    assert_eq!(env["FROM_ENV"], "from-env");
    assert!(!env.contains_key("NOT_SET"));
}

#[test]
fn env_file_problems_are_errors_at_the_entry() {
    let e = load_files(
        &[(
            "/s/app.yml",
            "services:\n  web:\n    image: x\n    env_file: [missing.env, bad.env]\n",
        )],
        &[("/s/bad.env", "export A=1\n")],
    )
    .unwrap_err();
    let all = e.to_string();
    assert!(
        all.contains("services.web.env_file[0]: cannot read env file /s/missing.env"),
        "{all}"
    );
    assert!(
        all.contains("services.web.env_file[1]: env file /s/bad.env: line 1"),
        "{all}"
    );
    assert!(all.contains("`export` is not supported"), "{all}");
}

#[test]
fn warnings_for_unsupported_and_deprecated_keys_and_restart_fallback() {
    let s = load(
        "services:\n  web:\n    image: x\n    build: .\n    privileged: true\n    container_name: web\n    expose: ['80']\n    restart: on-failure:3\n",
    )
    .unwrap();
    let w: Vec<String> = s.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(w.len(), 5, "{w:?}");
    assert!(
        w.iter()
            .any(|w| w
                == "/s/app.yml:4:5: services.web.build: ignoring unsupported option \"build\""),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|w| w.contains("ignoring deprecated option \"container_name\""))
    );
    let rp = &service(&s, "app_web").spec.task_template.restart_policy;
    assert_eq!(rp.condition, RestartCondition::OnFailure);
    assert_eq!(rp.max_attempts, 3);

    for (restart, cond) in [
        ("always", RestartCondition::Any),
        ("unless-stopped", RestartCondition::Any),
        ("'no'", RestartCondition::None),
    ] {
        let s = load(&format!(
            "services:\n  w:\n    image: x\n    restart: {restart}\n"
        ))
        .unwrap();
        assert_eq!(
            service(&s, "app_w")
                .spec
                .task_template
                .restart_policy
                .condition,
            cond
        );
    }
    // deploy.restart_policy wins over restart:
    let s = load("services:\n  w:\n    image: x\n    restart: always\n    deploy:\n      restart_policy: {condition: none}\n").unwrap();
    assert_eq!(
        service(&s, "app_w")
            .spec
            .task_template
            .restart_policy
            .condition,
        RestartCondition::None
    );
}

#[test]
fn explicit_names_and_external_objects() {
    let s = load_files(
        &[(
            "/s/app.yml",
            "services:\n  web:\n    image: x\n    networks: [front, ext, old]\n    secrets: [pw, {source: ext_s, target: /run/secrets/token, mode: 0400}]\n    configs: [conf]\nnetworks:\n  front: {name: shared-front}\n  ext: {external: true}\n  old:\n    external: {name: legacy}\nsecrets:\n  pw: {file: ./pw.txt}\n  ext_s: {external: true, name: real}\nconfigs:\n  conf: {file: conf.txt, name: conf-v2}\n",
        )],
        &[("/s/pw.txt", "hunter2"), ("/s/conf.txt", "k=v")],
    )
    .unwrap();
    let names: Vec<_> = s.objects.iter().map(AnyObject::reference).collect();
    assert_eq!(
        names,
        [
            "network/shared-front",
            "secret/app_pw",
            "config/conf-v2",
            "service/app_web"
        ]
    );
    let c = &service(&s, "app_web").spec.task_template.container;
    assert_eq!(c.secrets[0].source, "app_pw");
    assert_eq!(c.secrets[0].target, "pw");
    assert_eq!(c.secrets[0].mode, 0o444);
    assert_eq!(c.secrets[1].source, "real");
    assert_eq!(c.secrets[1].target, "token");
    assert_eq!(c.secrets[1].mode, 0o400);
    assert_eq!(c.configs[0].target, "/conf");
    let targets: Vec<_> = service(&s, "app_web")
        .spec
        .task_template
        .networks
        .iter()
        .map(|n| n.target.as_str())
        .collect();
    assert_eq!(targets, ["ext", "legacy", "shared-front"]);
    match &s.objects[1] {
        AnyObject::Secret(sec) => assert_eq!(sec.spec.data, "aHVudGVyMg=="),
        other => panic!("{other:?}"),
    }
}

#[test]
fn undeclared_references_are_errors() {
    let e = errors("services:\n  web:\n    image: x\n    networks: [nope]\n    secrets: [s]\n    volumes: ['data:/d']\n").join("\n");
    assert!(e.contains("network \"nope\" is not declared"), "{e}");
    assert!(e.contains("secret \"s\" is not declared"), "{e}");
    assert!(e.contains("volume \"data\" is not declared"), "{e}");
}

#[test]
fn ports_short_and_long() {
    let s = load(
        "services:\n  web:\n    image: x\n    ports:\n      - '127.0.0.1:8080:80/udp'\n      - 8000-8001:90-91\n      - '3000'\n      - target: 22\n        published: 2222\n        mode: host\n",
    )
    .unwrap();
    let ports = &service(&s, "app_web").spec.endpoint.ports;
    let got: Vec<_> = ports
        .iter()
        .map(|p| (p.target_port, p.published_port, p.protocol, p.publish_mode))
        .collect();
    assert_eq!(
        got,
        [
            (3000, None, PortProtocol::Tcp, PublishMode::Ingress),
            (22, Some(2222), PortProtocol::Tcp, PublishMode::Host),
            (90, Some(8000), PortProtocol::Tcp, PublishMode::Ingress),
            (91, Some(8001), PortProtocol::Tcp, PublishMode::Ingress),
            (80, Some(8080), PortProtocol::Udp, PublishMode::Ingress),
        ]
    );
    assert!(
        s.warnings
            .iter()
            .any(|w| w.message.contains("ignoring IP-address \"127.0.0.1\""))
    );
}

#[test]
fn deploy_in_full() {
    let s = load(
        "services:\n  web:\n    image: x\n    deploy:\n      mode: replicated\n      replicas: 0\n      endpoint_mode: dnsrr\n      labels: [a=b]\n      placement:\n        constraints: [node.role==manager]\n        preferences: [{spread: node.labels.zone}]\n        max_replicas_per_node: 2\n      resources:\n        limits: {cpus: '0.5', memory: 512M, pids: 100}\n        reservations:\n          cpus: 0.25\n          memory: 1g\n          generic_resources: [{discrete_resource_spec: {kind: gpu, value: 1}}]\n      restart_policy: {condition: on-failure, delay: 10s, max_attempts: 3, window: 1m30s}\n      update_config: {delay: 10s, monitor: 0s, order: start-first, failure_action: rollback, max_failure_ratio: 0.2}\n      rollback_config: {parallelism: 0}\n",
    )
    .unwrap();
    let w = service(&s, "app_web");
    assert_eq!(w.spec.replicas(), Some(0));
    assert_eq!(w.spec.endpoint.mode, EndpointMode::Dnsrr);
    assert_eq!(w.metadata.labels["a"], "b");
    let t = &w.spec.task_template;
    assert_eq!(t.placement.constraints, ["node.role==manager"]);
    assert_eq!(t.placement.preferences[0].spread, "node.labels.zone");
    assert_eq!(t.placement.max_replicas_per_node, 2);
    assert_eq!(t.resources.limits.nano_cpus, 500_000_000);
    assert_eq!(t.resources.limits.memory_bytes, 512 << 20);
    assert_eq!(t.resources.limits.pids, 100);
    assert_eq!(t.resources.reservations.nano_cpus, 250_000_000);
    assert_eq!(t.resources.reservations.memory_bytes, 1 << 30);
    assert_eq!(t.resources.reservations.generic_resources[0].kind, "gpu");
    assert_eq!(t.restart_policy.condition, RestartCondition::OnFailure);
    assert_eq!(t.restart_policy.delay, crate::Duration::from_secs(10));
    assert_eq!(t.restart_policy.window, crate::Duration::from_secs(90));
    let u = &w.spec.update_config;
    assert_eq!(u.parallelism, 1);
    assert_eq!(u.monitor, crate::Duration::from_secs(5));
    assert_eq!(u.order, UpdateOrder::StartFirst);
    assert_eq!(u.failure_action, FailureAction::Rollback);
    assert_eq!(u.max_failure_ratio, 0.2);
    assert_eq!(w.spec.rollback_config.parallelism, 0);
}

#[test]
fn modes_and_replicas_with_global_is_an_error() {
    for (mode, expect) in [
        ("global", ServiceMode::Global {}),
        ("global-job", ServiceMode::GlobalJob {}),
        (
            "replicated-job",
            ServiceMode::ReplicatedJob {
                max_concurrent: 1,
                total_completions: 1,
            },
        ),
    ] {
        let s = load(&format!(
            "services:\n  w:\n    image: x\n    deploy: {{mode: {mode}}}\n"
        ))
        .unwrap();
        assert_eq!(service(&s, "app_w").spec.mode, expect);
    }
    let e = errors(
        "services:\n  w:\n    image: x\n    deploy:\n      mode: global\n      replicas: 2\n",
    );
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("/s/app.yml:6:17: services.w.deploy.replicas: `replicas` cannot be used with a global mode"), "{e:?}");
    let e = errors("services:\n  w:\n    image: x\n    deploy: {mode: replicatedd}\n");
    assert!(e[0].contains("expected one of \"replicated\", \"global\", \"replicated-job\", \"global-job\", found \"replicatedd\""), "{e:?}");
}

#[test]
fn healthcheck_forms() {
    let s = load("services:\n  a:\n    image: x\n    healthcheck:\n      test: curl -f http://localhost/ || exit 1\n      interval: 30s\n      timeout: 5s\n      retries: 3\n      start_period: 1m\n      start_interval: 2s\n  b:\n    image: x\n    healthcheck: {test: [CMD, true]}\n  c:\n    image: x\n    healthcheck: {disable: yes}\n").unwrap();
    let a = service(&s, "app_a")
        .spec
        .task_template
        .container
        .healthcheck
        .clone()
        .unwrap();
    assert_eq!(a.test, ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]);
    assert_eq!(a.interval, Some(crate::Duration::from_secs(30)));
    assert_eq!(a.start_period, Some(crate::Duration::from_secs(60)));
    assert_eq!(a.retries, Some(3));
    let b = service(&s, "app_b")
        .spec
        .task_template
        .container
        .healthcheck
        .clone()
        .unwrap();
    assert_eq!(b.test, ["CMD", "true"]);
    let c = service(&s, "app_c")
        .spec
        .task_template
        .container
        .healthcheck
        .clone()
        .unwrap();
    assert_eq!(c.test, ["NONE"]);
    let e =
        errors("services:\n  a:\n    image: x\n    healthcheck: {disable: true, test: [CMD, x]}\n");
    assert!(e[0].contains("cannot be combined"), "{e:?}");
}

#[test]
fn volumes_short_and_long() {
    let s = load(
        "services:\n  db:\n    image: pg\n    volumes:\n      - data:/var/lib/pg\n      - ./conf:/etc/conf:ro\n      - ~/x:/x\n      - /abs:/abs:rprivate\n      - /anon\n      - type: tmpfs\n        target: /tmp\n        tmpfs: {size: 64m}\n      - type: volume\n        source: ext\n        target: /ext\n        volume: {nocopy: true}\n      - type: bind\n        source: ../up\n        target: /up\n        read_only: true\n        bind: {propagation: rshared}\nvolumes:\n  data:\n    driver: local\n    driver_opts: {type: nfs}\n    labels: {k: v}\n  ext: {external: true}\n",
    )
    .unwrap();
    let m = &service(&s, "app_db").spec.task_template.container.mounts;
    assert_eq!(m.len(), 8);
    assert_eq!(
        (m[0].type_, m[0].source.as_str(), m[0].target.as_str()),
        (MountType::Volume, "app_data", "/var/lib/pg")
    );
    let vo = m[0].volume_options.as_ref().unwrap();
    assert_eq!(vo.labels["k"], "v");
    assert_eq!(vo.labels["swarm.stack"], "app");
    assert_eq!(vo.driver_config.as_ref().unwrap().options["type"], "nfs");
    assert_eq!(
        (m[1].type_, m[1].source.as_str(), m[1].read_only),
        (MountType::Bind, "/s/conf", true)
    );
    assert_eq!(m[2].source, "/home/u/x");
    assert_eq!(
        m[3].bind_options.as_ref().unwrap().propagation.as_deref(),
        Some("rprivate")
    );
    assert_eq!((m[4].type_, m[4].source.as_str()), (MountType::Volume, ""));
    assert_eq!(
        m[5].tmpfs_options.as_ref().unwrap().size_bytes,
        Some(64 << 20)
    );
    assert_eq!(m[6].source, "ext");
    assert!(m[6].volume_options.as_ref().unwrap().no_copy);
    assert_eq!(m[7].source, "/up");
    assert!(m[7].read_only);
}

#[test]
fn commands_environment_and_labels() {
    let s = load(
        "services:\n  w:\n    image: x\n    entrypoint: /bin/sh -c\n    command: [\"echo hi\"]\n    environment: {N: 1.10, B: true, E: '', U:}\n    labels: [a=1, b]\n    extra_hosts: ['db:10.0.0.2']\n    stop_grace_period: 1m30s\n    user: '1000'\n",
    )
    .unwrap();
    let c = &service(&s, "app_w").spec.task_template.container;
    assert_eq!(c.command, ["/bin/sh", "-c"]);
    assert_eq!(c.args, ["echo hi"]);
    assert_eq!(c.env["N"], "1.10");
    assert_eq!(c.env["B"], "true");
    assert_eq!(c.env["E"], "");
    assert!(!c.env.contains_key("U"));
    assert_eq!(c.labels["a"], "1");
    assert_eq!(c.labels["b"], "");
    assert_eq!(c.hosts, ["10.0.0.2 db"]);
    assert_eq!(c.stop_grace_period, crate::Duration::from_secs(90));
}

#[test]
fn yaml11_booleans_and_quoted_strings() {
    let s = load("services:\n  w:\n    image: x\n    tty: yes\n    read_only: off\n    environment: {FLAG: no, Q: 'yes'}\nnetworks:\n  n: {attachable: on}\n").unwrap();
    let c = &service(&s, "app_w").spec.task_template.container;
    assert!(c.tty);
    assert!(!c.read_only);
    assert_eq!(c.env["FLAG"], "no");
    assert_eq!(c.env["Q"], "yes");
}

#[test]
fn image_is_required_and_top_level_name_is_refused() {
    let e = errors("name: x\nservices:\n  w: {}\n");
    assert_eq!(e.len(), 2, "{e:?}");
    assert!(e[0].contains("unknown top-level key \"name\""), "{e:?}");
    let e = errors("services:\n  w:\n    command: x\n");
    assert!(
        e[0].contains("services.w: every service needs an `image:`"),
        "{e:?}"
    );
}

#[test]
fn forbidden_keys_are_errors_with_hints() {
    let e = errors("services:\n  w:\n    image: x\n    cpu_shares: 5\n");
    assert_eq!(
        e,
        [
            "/s/app.yml:4:5: services.w.cpu_shares: \"cpu_shares\" is not supported by docker stack deploy (nor by swarm); use deploy.resources.limits.cpus"
        ]
    );
}

#[test]
fn syntax_errors_and_empty_files() {
    let e = errors("services:\n  w: [\n");
    assert!(e[0].starts_with("/s/app.yml:"), "{e:?}");
    assert!(e[0].contains("invalid YAML"), "{e:?}");
    let e = errors("");
    assert!(e[0].contains("empty"), "{e:?}");
    let e = errors("- a\n");
    assert!(e[0].contains("expected a mapping"), "{e:?}");
}

#[test]
fn manifests_are_loaded_too() {
    let s = load("apiVersion: swarm/v1\nkind: Service\nmetadata: {name: web}\nspec:\n  taskTemplate: {container: {image: nginx}}\n---\napiVersion: swarm/v1\nkind: Network\nmetadata: {name: net}\n").unwrap();
    let names: Vec<_> = s.objects.iter().map(AnyObject::reference).collect();
    assert_eq!(names, ["network/net", "service/web"]);
    assert_eq!(s.objects[1].meta().stack(), Some("app"));
}

#[test]
fn stack_name_override_and_validation() {
    let fs = MemFs::new().with("/s/a.yml", "services: {w: {image: x}}\n");
    let s = load_stack(&[PathBuf::from("/s/a.yml")], Some("prod"), &env, &fs).unwrap();
    assert_eq!(s.objects[1].name(), "prod_w");
    let e = load_stack(&[PathBuf::from("/s/a.yml")], Some("bad name"), &env, &fs).unwrap_err();
    assert!(e.to_string().contains("invalid stack name"), "{e}");
    let e = load_stack(&[], None, &env, &fs).unwrap_err();
    assert!(e.to_string().contains("no stack file given"));
}

#[test]
fn validation_of_objects_is_reported_at_the_service() {
    let e = errors(
        "services:\n  w:\n    image: x\n    deploy:\n      placement:\n        constraints: [node.role=manager]\n",
    );
    assert!(
        e[0].contains("services.w: Service \"app_w\": spec.taskTemplate.placement.constraints[0]"),
        "{e:?}"
    );
}

#[test]
fn output_is_deterministic_json() {
    let yaml = "services:\n  b: {image: x, environment: {Z: '1', A: '2'}, networks: [n2, n1]}\n  a: {image: y}\nnetworks: {n1: {}, n2: {}}\n";
    let one = serde_json::to_string(&load(yaml).unwrap().objects).unwrap();
    let two = serde_json::to_string(&load(yaml).unwrap().objects).unwrap();
    assert_eq!(one, two);
}
