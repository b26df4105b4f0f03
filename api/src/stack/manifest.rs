//! Kubernetes-style manifests: a multi-document YAML stream of `apiVersion: swarm/v1` objects,
//! decoded with `AnyObject::from_value`. Objects keep their names; each gets the stack label.

use super::error::Issue;
use super::yaml::Node;
use crate::AnyObject;
use crate::meta::STACK_LABEL;

/// Whether a document looks like a manifest rather than a Compose file.
pub fn is_manifest(doc: &Node) -> bool {
    doc.get("apiVersion").is_some() || doc.get("kind").is_some()
}

/// Decodes every document; empty documents are skipped. Errors name the document.
pub fn decode(docs: &[Node], stack: &str, objects: &mut Vec<AnyObject>, errors: &mut Vec<Issue>) {
    for (i, doc) in docs.iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let path = format!("document[{i}]");
        if doc.as_map().is_none() {
            errors.push(Issue::new(
                doc.pos,
                path,
                format!(
                    "expected an object (apiVersion, kind, metadata, spec), found {}",
                    doc.describe()
                ),
            ));
            continue;
        }
        match AnyObject::from_value(doc.to_json()) {
            Ok(mut obj) => {
                obj.meta_mut()
                    .labels
                    .entry(STACK_LABEL.to_string())
                    .or_insert_with(|| stack.to_string());
                normalize(&mut obj);
                for cause in crate::validation::validate(&obj) {
                    errors.push(Issue::new(
                        doc.pos,
                        format!("{path}.{}", cause.field),
                        format!("{} {:?}: {}", obj.kind(), obj.name(), cause.message),
                    ));
                }
                objects.push(obj);
            }
            Err(e) => errors.push(Issue::new(doc.pos, path, e.to_string())),
        }
    }
}

fn normalize(obj: &mut AnyObject) {
    match obj {
        AnyObject::Node(o) => o.normalize(),
        AnyObject::Network(o) => o.normalize(),
        AnyObject::Secret(o) => o.normalize(),
        AnyObject::Config(o) => o.normalize(),
        AnyObject::Service(o) => o.normalize(),
        AnyObject::Task(o) => o.normalize(),
        AnyObject::Lease(o) => o.normalize(),
        AnyObject::GitSync(o) => o.normalize(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::yaml::parse_documents;

    #[test]
    fn decodes_objects_and_reports_bad_documents() {
        let docs = parse_documents(
            "apiVersion: swarm/v1\nkind: Network\nmetadata: {name: net}\n---\nkind: Service\nmetadata: {name: web}\nspec: {taskTemplate: {container: {image: nginx}}}\n---\nkind: Pod\nmetadata: {name: x}\n",
            0,
        )
        .unwrap();
        assert!(is_manifest(&docs[0]));
        let (mut objects, mut errors) = (Vec::new(), Vec::new());
        decode(&docs, "s", &mut objects, &mut errors);
        assert_eq!(objects.len(), 2);
        assert_eq!(objects[1].meta().stack(), Some("s"));
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "document[2]");
        assert!(
            errors[0].message.contains("unknown kind"),
            "{:?}",
            errors[0]
        );
    }
}
