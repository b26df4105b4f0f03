//! Loads every fixture under `tests/stacks/`: each `valid/*.yml` must load (deterministically),
//! each `invalid/*.yml` must fail with every error its `# expect: …` lines name. Also checks
//! that the lab stacks under `examples/stacks/` are valid and point editors at the schema.

use std::path::{Path, PathBuf};

use swarm_api::stack::{LoadErrors, LoadedStack, RealFs, load_stack};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    files
}

fn env(name: &str) -> Option<String> {
    (name == "HOME").then(|| "/home/test".to_string())
}

fn load(file: &Path) -> Result<LoadedStack, LoadErrors> {
    load_stack(&[file.to_path_buf()], None, &env, &RealFs)
}

#[test]
fn valid_stacks_load_and_convert_deterministically() {
    let files = yml_files(&root().join("tests/stacks/valid"));
    assert!(files.len() >= 14, "expected at least 14 valid fixtures");
    for file in files {
        let stack =
            load(&file).unwrap_or_else(|e| panic!("{} should be valid:\n{e}", file.display()));
        assert!(!stack.objects.is_empty(), "{}", file.display());
        let again = load(&file).unwrap();
        assert_eq!(
            serde_json::to_string(&stack.objects).unwrap(),
            serde_json::to_string(&again.objects).unwrap(),
            "{} converts differently twice",
            file.display()
        );
        for obj in &stack.objects {
            assert_eq!(
                obj.meta().stack(),
                Some(stack.name.as_str()),
                "{}",
                obj.reference()
            );
        }
    }
}

#[test]
fn invalid_stacks_report_every_expected_error() {
    let files = yml_files(&root().join("tests/stacks/invalid"));
    assert!(files.len() >= 8, "expected at least 8 invalid fixtures");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expects: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: "))
            .collect();
        assert!(
            !expects.is_empty(),
            "{} has no `# expect:` line",
            file.display()
        );
        let err = match load(&file) {
            Ok(_) => panic!("{} should be invalid", file.display()),
            Err(e) => e.to_string(),
        };
        for expect in expects {
            assert!(
                err.contains(expect),
                "{}: expected an error containing {expect:?}, got:\n{err}",
                file.display()
            );
        }
        for line in err.lines() {
            assert!(
                line.starts_with(&file.display().to_string()),
                "error does not name the file: {line}"
            );
        }
    }
}

#[test]
fn warnings_name_key_and_service() {
    let stack = load(&root().join("tests/stacks/valid/unsupported-warnings.yml")).unwrap();
    let w: Vec<String> = stack.warnings.iter().map(|w| w.to_string()).collect();
    for key in ["build", "privileged", "container_name", "expose", "restart"] {
        assert!(
            w.iter()
                .any(|w| w.contains(&format!("services.legacy.{key}"))),
            "no warning for {key}: {w:#?}"
        );
    }
}

#[test]
fn lab_examples_are_valid_and_reference_the_schema() {
    let files = yml_files(&root().join("examples/stacks"));
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for lab in ["atsea", "cats", "drupal", "hello", "voting"] {
        assert!(
            names.iter().any(|n| n == lab),
            "examples/stacks/{lab}.yml is missing"
        );
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.starts_with("# yaml-language-server: $schema=../../schemas/stack.schema.json\n"),
            "{} must start with the schema line",
            file.display()
        );
        let stack = load(&file).unwrap_or_else(|e| panic!("{}:\n{e}", file.display()));
        assert!(
            stack.warnings.is_empty(),
            "{}: {:?}",
            file.display(),
            stack.warnings
        );
    }
}
