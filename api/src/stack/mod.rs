//! The stack loader: Compose v3 files (as `docker stack deploy` reads them) or manifests of
//! `swarm/v1` objects → objects ready to apply.
//!
//! Pipeline for Compose files, per docker/cli: parse each file to a position-aware tree
//! (anchors and `<<:` merge keys resolved) → check `version` → interpolate values from the
//! environment → drop `x-` keys, refuse forbidden keys → merge the files in order → decode
//! each section entry into the typed model and convert it, collecting every error.

mod compose;
mod convert;
mod de;
mod envfile;
mod error;
mod interpolate;
mod manifest;
mod merge;
mod schema;
mod source;
mod units;
mod yaml;

use std::path::{Path, PathBuf};

pub use compose::{
    ComposeFile, DEPRECATED_SERVICE_KEYS, FORBIDDEN_SERVICE_KEYS, UNSUPPORTED_SERVICE_KEYS,
};
pub use envfile::{EnvFileError, parse_env_file};
pub use error::{LoadError, LoadErrors, Location, Warning};
pub use interpolate::{InterpolateError, interpolate};
pub use schema::{all_schemas, kind_schema};
pub use source::{MemFs, RealFs, SourceFs};
pub use units::{parse_bytes, parse_cpus, parse_file_mode, shell_split};

use crate::AnyObject;
use error::{FileTable, Issue, Pos};
use yaml::{Node, Value};

/// A loaded stack: its name, its objects in apply order, and what was ignored.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedStack {
    pub name: String,
    /// Networks, secrets, configs, services; each sorted by name.
    pub objects: Vec<AnyObject>,
    pub warnings: Vec<Warning>,
}

/// The stack name `docker stack deploy` users expect from a file name: `voting.yml` → `voting`.
pub fn default_stack_name(file: &Path) -> String {
    file.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "stack".to_string())
}

/// The version a Compose file declares, normalized as docker/cli does (missing or `3` → 3.13).
fn normalized_version(doc: &Node) -> Option<String> {
    match doc.get("version").and_then(Node::as_str) {
        None | Some("" | "3") => Some("3.13".to_string()),
        Some(v) => Some(v.to_string()),
    }
}

/// Loads a stack from one or more files (merged in order).
///
/// `stack_name` defaults to the first file's name without extension. `env` supplies
/// interpolation variables (docker reads only the process environment, never `.env`).
pub fn load_stack(
    files: &[PathBuf],
    stack_name: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    fs: &dyn SourceFs,
) -> Result<LoadedStack, LoadErrors> {
    let table = FileTable {
        names: files.iter().map(|f| f.display().to_string()).collect(),
    };
    let mut errors: Vec<Issue> = Vec::new();
    let fail = |errors: Vec<Issue>, warnings: Vec<Issue>| LoadErrors {
        errors: errors.into_iter().map(|i| table.error(i)).collect(),
        warnings: warnings.into_iter().map(|i| table.warning(i)).collect(),
    };
    let Some(first) = files.first() else {
        return Err(LoadErrors {
            errors: vec![LoadError {
                location: Location::default(),
                message: "no stack file given; pass one or more with -f FILE".to_string(),
            }],
            warnings: Vec::new(),
        });
    };
    let name = stack_name
        .map(str::to_string)
        .unwrap_or_else(|| default_stack_name(first));
    if let Some(problem) = crate::validation::name_problem(&name) {
        errors.push(Issue::new(
            Pos::default(),
            "",
            format!("invalid stack name: {problem}; choose another with --stack NAME"),
        ));
        return Err(fail(errors, Vec::new()));
    }

    // Read and parse every file.
    let mut docs_per_file: Vec<Vec<Node>> = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let pos = Pos {
            file: i as u32,
            line: 0,
            col: 0,
        };
        let text = match fs.read(path) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(_) => {
                    errors.push(Issue::new(pos, "", "the file is not valid UTF-8"));
                    continue;
                }
            },
            Err(e) => {
                errors.push(Issue::new(pos, "", format!("cannot read the file: {e}")));
                continue;
            }
        };
        match yaml::parse_documents(&text, i as u32) {
            Ok(docs) => docs_per_file.push(docs),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(fail(errors, Vec::new()));
    }

    if docs_per_file
        .first()
        .and_then(|d| d.first())
        .is_some_and(manifest::is_manifest)
    {
        let mut objects = Vec::new();
        for docs in &docs_per_file {
            manifest::decode(docs, &name, &mut objects, &mut errors);
        }
        if !errors.is_empty() {
            return Err(fail(errors, Vec::new()));
        }
        objects.sort_by(|a, b| a.kind().cmp(&b.kind()).then_with(|| a.name().cmp(b.name())));
        return Ok(LoadedStack {
            name,
            objects,
            warnings: Vec::new(),
        });
    }

    // Compose: one document per file.
    let mut trees: Vec<Node> = Vec::new();
    let mut version: Option<(String, usize)> = None;
    for (i, docs) in docs_per_file.into_iter().enumerate() {
        let pos = Pos {
            file: i as u32,
            line: 1,
            col: 1,
        };
        let mut docs: Vec<Node> = docs.into_iter().filter(|d| !d.is_null()).collect();
        let mut doc = match docs.len() {
            0 => {
                errors.push(Issue::new(
                    pos,
                    "",
                    "the file is empty; a stack file needs `services:`",
                ));
                continue;
            }
            1 => docs.remove(0),
            n => {
                errors.push(Issue::new(
                    pos,
                    "",
                    format!("a Compose file holds one YAML document, found {n}; split it or use a manifest of swarm/v1 objects"),
                ));
                continue;
            }
        };
        if doc.as_map().is_none() {
            errors.push(Issue::new(
                doc.pos,
                "",
                format!(
                    "expected a mapping with `services:`, found {}",
                    doc.describe()
                ),
            ));
            continue;
        }
        let v = normalized_version(&doc);
        if let Some(v) = &v {
            let vpos = doc.get("version").map(|n| n.pos).unwrap_or(pos);
            if !(v == "3" || v.starts_with("3.")) {
                errors.push(Issue::new(
                    vpos,
                    "version",
                    format!(
                        "unsupported Compose file version {v:?}: stacks need version 3 (3.0 to 3.x)"
                    ),
                ));
            }
            match &version {
                None => version = Some((v.clone(), i)),
                Some((first_v, first_i)) if first_v != v => errors.push(Issue::new(
                    vpos,
                    "version",
                    format!(
                        "version mismatched between two composefiles: {first_v} ({}) and {v}; use the same `version:` in every file",
                        table.names.get(*first_i).cloned().unwrap_or_default()
                    ),
                )),
                Some(_) => {}
            }
        }
        interpolate::interpolate_tree(&mut doc, "", env, &mut errors);
        check_and_strip(&mut doc, &mut errors);
        trees.push(doc);
    }
    // Errors so far do not stop conversion: every problem of every service is reported.
    let mut trees = trees.into_iter();
    let Some(mut root) = trees.next() else {
        return Err(fail(errors, Vec::new()));
    };
    for t in trees {
        merge::merge_files(&mut root, t);
    }

    let working_dir = first.parent().map(Path::to_path_buf).unwrap_or_default();
    let working_dir = std::path::absolute(&working_dir).unwrap_or(working_dir);
    let cx = convert::Context {
        stack: &name,
        working_dir,
        env,
        fs,
    };
    let out = convert::convert(&root, &cx);
    if !out.errors.is_empty() || !errors.is_empty() {
        let mut errs = errors;
        errs.extend(out.errors);
        errs.sort_by(|a, b| (a.pos, &a.path).cmp(&(b.pos, &b.path)));
        errs.dedup();
        return Err(fail(errs, out.warnings));
    }
    let mut warnings: Vec<Warning> = out.warnings.into_iter().map(|w| table.warning(w)).collect();
    warnings.sort();
    Ok(LoadedStack {
        name,
        objects: out.objects,
        warnings,
    })
}

/// Refuses unknown top-level keys and forbidden service keys; removes `x-` keys at the
/// levels docker allows them (top, services, networks, volumes, secrets, configs).
fn check_and_strip(doc: &mut Node, errors: &mut Vec<Issue>) {
    let Value::Map(entries) = &mut doc.value else {
        return;
    };
    entries.retain(|(k, _)| {
        if k.text.starts_with("x-") {
            return false;
        }
        if compose::TOP_LEVEL_KEYS.contains(&k.text.as_str()) {
            return true;
        }
            let hint = if k.text == "name" {
                "; a top-level `name:` is compose-spec only: pass the stack name with --stack NAME"
            } else {
                "; stack files allow version, services, networks, volumes, secrets, configs and x-* keys"
            };
        errors.push(Issue::new(k.pos, &k.text, format!("unknown top-level key {:?}{hint}", k.text)));
        false
    });
    for (k, v) in entries.iter_mut() {
        if k.text == "version" {
            continue;
        }
        let section = k.text.clone();
        if let Value::Map(items) = &mut v.value {
            for (name, item) in items.iter_mut() {
                if let Value::Map(fields) = &mut item.value {
                    fields.retain(|(f, _)| !f.text.starts_with("x-"));
                    if section == "services" {
                        fields.retain(|(f, _)| {
                            if compose::FORBIDDEN_SERVICE_KEYS.contains(&f.text.as_str()) {
                                errors.push(Issue::new(
                                    f.pos,
                                    format!("services.{}.{}", name.text, f.text),
                                    format!(
                                        "{:?} is not supported by docker stack deploy (nor by swarm); {}",
                                        f.text,
                                        forbidden_hint(&f.text)
                                    ),
                                ));
                                false
                            } else {
                                true
                            }
                        });
                    }
                }
            }
        }
    }
}

fn forbidden_hint(key: &str) -> &'static str {
    match key {
        "extends" => "copy the shared settings with YAML anchors and `<<:` instead",
        "volume_driver" => "set `driver:` on the top-level volume instead",
        "volumes_from" => "declare a named volume and mount it in both services",
        "cpu_quota" | "cpu_shares" | "cpuset" => "use deploy.resources.limits.cpus",
        "mem_limit" | "memswap_limit" => "use deploy.resources.limits.memory",
        _ => "remove it",
    }
}

#[cfg(test)]
mod tests;
