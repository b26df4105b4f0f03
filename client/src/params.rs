//! Query parameters of list and watch requests: selectors and pagination.

/// Which objects a list or watch returns, and how many per page.
///
/// Lists use the selectors, `limit` and `continue_token`; watches use the selectors,
/// `bookmarks` and `timeout_seconds`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct ListParams {
    /// `key=value,key!=value,key in (a,b),key,!key`, as in Kubernetes.
    pub label_selector: Option<String>,
    /// The few fields each kind supports, e.g. `spec.service=web` for tasks.
    pub field_selector: Option<String>,
    /// At most this many items per page (the server may return fewer).
    pub limit: Option<u32>,
    /// The `metadata.continue` token of the previous page.
    pub continue_token: Option<String>,
    /// Watch only: ask for `BOOKMARK` events, which let a watcher resume from a recent
    /// version even when nothing it selects changes.
    pub bookmarks: bool,
    /// Watch only: the server ends the stream after this long (the watcher then resumes).
    pub timeout_seconds: Option<u32>,
}

impl ListParams {
    pub fn labels(mut self, selector: impl Into<String>) -> Self {
        self.label_selector = Some(selector.into());
        self
    }

    pub fn fields(mut self, selector: impl Into<String>) -> Self {
        self.field_selector = Some(selector.into());
        self
    }

    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn continue_from(mut self, token: impl Into<String>) -> Self {
        self.continue_token = Some(token.into());
        self
    }

    pub fn bookmarks(mut self, on: bool) -> Self {
        self.bookmarks = on;
        self
    }

    pub fn timeout_seconds(mut self, secs: u32) -> Self {
        self.timeout_seconds = Some(secs);
        self
    }

    /// The query pairs of a list request (empty values left out).
    pub(crate) fn list_query(&self) -> Vec<(&'static str, String)> {
        let mut q = self.selector_query();
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = self.continue_token.as_deref().filter(|c| !c.is_empty()) {
            q.push(("continue", c.to_string()));
        }
        q
    }

    /// The query pairs of a watch request (without `watch` and `resourceVersion`).
    pub(crate) fn watch_query(&self) -> Vec<(&'static str, String)> {
        let mut q = self.selector_query();
        if self.bookmarks {
            q.push(("allowWatchBookmarks", "true".to_string()));
        }
        if let Some(t) = self.timeout_seconds {
            q.push(("timeoutSeconds", t.to_string()));
        }
        q
    }

    fn selector_query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(s) = self.label_selector.as_deref().filter(|s| !s.is_empty()) {
            q.push(("labelSelector", s.to_string()));
        }
        if let Some(s) = self.field_selector.as_deref().filter(|s| !s.is_empty()) {
            q.push(("fieldSelector", s.to_string()));
        }
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_values_are_left_out() {
        let p = ListParams::default()
            .labels("")
            .fields("spec.service=web")
            .limit(10);
        assert_eq!(
            p.list_query(),
            vec![
                ("fieldSelector", "spec.service=web".to_string()),
                ("limit", "10".to_string())
            ]
        );
        let p = p.continue_from("abc");
        assert_eq!(
            p.list_query().last(),
            Some(&("continue", "abc".to_string()))
        );
        assert_eq!(p.watch_query().len(), 1);
        let w = ListParams::default()
            .labels("a=b")
            .bookmarks(true)
            .timeout_seconds(290);
        assert_eq!(
            w.watch_query(),
            vec![
                ("labelSelector", "a=b".to_string()),
                ("allowWatchBookmarks", "true".to_string()),
                ("timeoutSeconds", "290".to_string())
            ]
        );
    }
}
