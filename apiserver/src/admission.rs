//! Admission: the rules about *changes* that validation of a single object cannot express,
//! because they compare the stored object with the one being written.
//!
//! * A Secret's or Config's data is immutable (Swarm: "only updates to Labels are allowed");
//!   a new version is a new object with a new name.
//! * A Task's observed state only moves forward (`TaskState` is ordered): an agent that
//!   reports `running` after `failed` was already recorded is refused with 409, so a late or
//!   duplicated status report can never resurrect a task.
//! * Once deletion has started (`deletionTimestamp` set) no finalizer may be added, as in
//!   Kubernetes; otherwise a controller could keep an object alive forever.
//!
//! Every endpoint that writes (single object, transaction, stack apply) goes through
//! `admit_update`, so the rules cannot be bypassed by batching.

use swarm_api::{AnyObject, StatusCause};

use crate::errors::{ApiError, ApiResult};

/// Checks the change from `old` (stored) to `new` (about to be stored).
pub fn admit_update(old: &AnyObject, new: &AnyObject) -> ApiResult<()> {
    let kind = new.kind();
    let name = new.name();
    match (old, new) {
        (AnyObject::Secret(o), AnyObject::Secret(n)) if o.spec != n.spec => {
            return Err(immutable_data(kind, name, o.spec.data != n.spec.data));
        }
        (AnyObject::Config(o), AnyObject::Config(n)) if o.spec != n.spec => {
            return Err(immutable_data(kind, name, o.spec.data != n.spec.data));
        }
        (AnyObject::Task(o), AnyObject::Task(n)) if n.status.state < o.status.state => {
            return Err(ApiError::conflict(
                kind,
                name,
                &format!(
                    "task state may not go backwards: status.state from {} to {}",
                    o.status.state, n.status.state
                ),
            ));
        }
        _ => {}
    }
    let (om, nm) = (old.meta(), new.meta());
    if om.deletion_timestamp.is_some()
        && let Some(added) = nm.finalizers.iter().find(|f| !om.finalizers.contains(f))
    {
        return Err(ApiError::invalid(
            kind,
            name,
            vec![StatusCause::new(
                "FieldValueForbidden",
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added while the object is being deleted: {added:?}"
                ),
            )],
        ));
    }
    Ok(())
}

fn immutable_data(kind: swarm_api::Kind, name: &str, data: bool) -> ApiError {
    let field = if data { "spec.data" } else { "spec" };
    ApiError::invalid(
        kind,
        name,
        vec![StatusCause::new(
            "FieldValueForbidden",
            field,
            "only updates to Labels are allowed",
        )],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{DataSpec, Secret, StatusReason, Task, TaskSpec, TaskState};

    #[test]
    fn secret_data_is_immutable_but_labels_are_not() {
        let old = Secret::new(
            "pw",
            DataSpec {
                data: "YQ==".into(),
                template_driver: None,
            },
        );
        let mut relabelled = old.clone();
        relabelled.metadata.labels.insert("a".into(), "b".into());
        assert!(
            admit_update(
                &AnyObject::Secret(old.clone()),
                &AnyObject::Secret(relabelled)
            )
            .is_ok()
        );
        let mut changed = old.clone();
        changed.spec.data = "Yg==".into();
        let e = admit_update(&AnyObject::Secret(old), &AnyObject::Secret(changed)).unwrap_err();
        assert_eq!(e.reason(), StatusReason::Invalid);
        assert_eq!(
            e.status().causes()[0].message,
            "only updates to Labels are allowed"
        );
        assert_eq!(e.status().causes()[0].field, "spec.data");
    }

    #[test]
    fn task_state_never_goes_back() {
        let mut old = Task::new(
            "t",
            TaskSpec {
                service: "s".into(),
                ..Default::default()
            },
        );
        old.status.state = TaskState::Running;
        let mut new = old.clone();
        new.status.state = TaskState::Pending;
        let e = admit_update(
            &AnyObject::Task(Box::new(old.clone())),
            &AnyObject::Task(Box::new(new)),
        )
        .unwrap_err();
        assert_eq!(e.reason(), StatusReason::Conflict);
        assert!(
            e.status().message.contains("from running to pending"),
            "{}",
            e.status().message
        );
        let mut fwd = old.clone();
        fwd.status.state = TaskState::Failed;
        assert!(
            admit_update(
                &AnyObject::Task(Box::new(old)),
                &AnyObject::Task(Box::new(fwd))
            )
            .is_ok()
        );
    }

    #[test]
    fn no_new_finalizers_while_deleting() {
        let mut old = Secret::new("pw", DataSpec::default());
        old.metadata.deletion_timestamp = Some(swarm_api::Timestamp::now());
        old.metadata.finalizers = vec!["a".into()];
        let mut new = old.clone();
        new.metadata.finalizers.push("b".into());
        assert!(admit_update(&AnyObject::Secret(old.clone()), &AnyObject::Secret(new)).is_err());
        let mut removed = old.clone();
        removed.metadata.finalizers.clear();
        assert!(admit_update(&AnyObject::Secret(old), &AnyObject::Secret(removed)).is_ok());
    }
}
