//! Multi-object transactions (`POST /v1/transactions`): several writes, each with its own
//! precondition, committed all or none.

use serde::{Deserialize, Serialize};
use swarm_api::{Kind, Resource};

/// One write of a transaction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum Operation {
    /// Create-if-absent.
    Create { object: serde_json::Value },
    /// Replace; conditional on the object's `metadata.resourceVersion` when set.
    Update { object: serde_json::Value },
    /// Replace the status only; conditional like `Update`.
    UpdateStatus { object: serde_json::Value },
    /// Delete; conditional on `resource_version` when given.
    Delete {
        kind: Kind,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        resource_version: Option<String>,
    },
}

impl Operation {
    pub fn create<T: Resource>(obj: &T) -> Result<Self, serde_json::Error> {
        Ok(Operation::Create {
            object: with_kind(obj)?,
        })
    }

    pub fn update<T: Resource>(obj: &T) -> Result<Self, serde_json::Error> {
        Ok(Operation::Update {
            object: with_kind(obj)?,
        })
    }

    pub fn update_status<T: Resource>(obj: &T) -> Result<Self, serde_json::Error> {
        Ok(Operation::UpdateStatus {
            object: with_kind(obj)?,
        })
    }

    /// Deletes `T` named `name`, only if it is still at `resource_version` (when given).
    pub fn delete<T: Resource>(name: impl Into<String>, resource_version: Option<String>) -> Self {
        Operation::Delete {
            kind: T::KIND,
            name: name.into(),
            resource_version,
        }
    }
}

/// Serializes a typed object, making sure `kind` and `apiVersion` are set (the server routes
/// each operation by them).
pub(crate) fn with_kind<T: Resource>(obj: &T) -> Result<serde_json::Value, serde_json::Error> {
    let mut v = serde_json::to_value(obj)?;
    if let Some(map) = v.as_object_mut() {
        map.insert("kind".into(), T::KIND.name().into());
        map.insert("apiVersion".into(), swarm_api::API_VERSION.into());
    }
    Ok(v)
}

/// What a committed transaction returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransactionResponse {
    /// The store revision of the commit.
    pub resource_version: String,
    /// One entry per operation, in order (the written object, or what the server reports).
    #[serde(default)]
    pub results: Vec<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_api::{Task, TaskSpec};

    #[test]
    fn serializes_as_the_contract_says() {
        let t = Task::new("web.1.1", TaskSpec::default());
        let ops = vec![
            Operation::create(&t).unwrap(),
            Operation::delete::<Task>("web.1.0", Some("41".into())),
        ];
        let v = serde_json::to_value(&ops).unwrap();
        assert_eq!(v[0]["op"], "create");
        assert_eq!(v[0]["object"]["kind"], "Task");
        assert_eq!(v[0]["object"]["metadata"]["name"], "web.1.1");
        assert_eq!(
            v[1],
            serde_json::json!({"op":"delete","kind":"Task","name":"web.1.0","resourceVersion":"41"})
        );
        let back: Vec<Operation> = serde_json::from_value(v).unwrap();
        assert_eq!(back, ops);
        let s = serde_json::to_value(Operation::update_status(&t).unwrap()).unwrap();
        assert_eq!(s["op"], "updateStatus");
    }
}
