//! One page of a list response: `{"kind":"ServiceList","metadata":{"resourceVersion","continue"},"items":[…]}`.

use serde::{Deserialize, Serialize};

/// The items of a list and the store revision they were read at.
#[derive(Clone, Debug, PartialEq)]
pub struct ObjectList<O> {
    pub items: Vec<O>,
    /// The revision of the snapshot; watch from here to see every later change.
    pub resource_version: String,
    /// Set when more pages follow; pass it back as `ListParams::continue_token`.
    pub continue_token: Option<String>,
}

impl<O> ObjectList<O> {
    /// Whether the list is complete (no further page).
    pub fn is_last_page(&self) -> bool {
        self.continue_token.is_none()
    }
}

/// The wire form of a list, as the apiserver sends it.
#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireList<O> {
    #[serde(default)]
    pub metadata: WireListMeta,
    #[serde(default = "Vec::new")]
    pub items: Vec<O>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireListMeta {
    #[serde(default)]
    pub resource_version: String,
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

impl<O> From<WireList<O>> for ObjectList<O> {
    fn from(w: WireList<O>) -> Self {
        ObjectList {
            items: w.items,
            resource_version: w.metadata.resource_version,
            continue_token: w.metadata.continue_token.filter(|c| !c.is_empty()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_continue_means_last_page() {
        let w: WireList<serde_json::Value> = serde_json::from_str(
            r#"{"apiVersion":"swarm/v1","kind":"ServiceList","metadata":{"resourceVersion":"7","continue":""},"items":[{"a":1}]}"#,
        )
        .unwrap();
        let l = ObjectList::from(w);
        assert_eq!(l.resource_version, "7");
        assert!(l.is_last_page());
        assert_eq!(l.items.len(), 1);
    }
}
