//! Errors and warnings of the stack loader. Every one names the file, the line and column
//! (1-based) and the path inside the document (`services.web.deploy.replicas`), and all of a
//! file's errors are collected, not only the first.

use std::fmt;

/// A position in a source file; `file` indexes the loader's file table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub file: u32,
    /// 1-based; 0 when unknown.
    pub line: u32,
    /// 1-based; 0 when unknown.
    pub col: u32,
}

/// Where a problem is: file name, position and document path.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Location {
    pub file: String,
    pub line: u32,
    pub col: u32,
    /// Dotted path (`services.web.ports[0]`); empty for the whole document.
    pub path: String,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        Ok(())
    }
}

/// One thing wrong with a stack file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, thiserror::Error)]
#[error("{location}: {message}")]
pub struct LoadError {
    pub location: Location,
    pub message: String,
}

/// Something the loader ignored or changed; the stack is still valid.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Warning {
    pub location: Location,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every error found in the stack files (never empty when returned as an error).
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
pub struct LoadErrors {
    pub errors: Vec<LoadError>,
    /// Warnings found before loading failed, so callers can still show them.
    pub warnings: Vec<Warning>,
}

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// A problem found before file names are known: a position plus a path and a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Issue {
    pub pos: Pos,
    pub path: String,
    pub message: String,
}

impl Issue {
    pub fn new(pos: Pos, path: impl Into<String>, message: impl Into<String>) -> Self {
        Issue {
            pos,
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Maps file indexes in [`Pos`] to display names and turns issues into errors and warnings.
#[derive(Clone, Debug, Default)]
pub(crate) struct FileTable {
    pub names: Vec<String>,
}

impl FileTable {
    pub fn location(&self, pos: Pos, path: &str) -> Location {
        Location {
            file: self
                .names
                .get(pos.file as usize)
                .cloned()
                .unwrap_or_else(|| "<unknown>".to_string()),
            line: pos.line,
            col: pos.col,
            path: path.to_string(),
        }
    }

    pub fn error(&self, issue: Issue) -> LoadError {
        LoadError {
            location: self.location(issue.pos, &issue.path),
            message: issue.message,
        }
    }

    pub fn warning(&self, issue: Issue) -> Warning {
        Warning {
            location: self.location(issue.pos, &issue.path),
            message: issue.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_display_names_file_line_column_and_path() {
        let files = FileTable {
            names: vec!["stack.yml".into()],
        };
        let e = files.error(Issue::new(
            Pos {
                file: 0,
                line: 12,
                col: 16,
            },
            "services.web.deploy.replicas",
            "expected an integer, found \"three\"",
        ));
        assert_eq!(
            e.to_string(),
            "stack.yml:12:16: services.web.deploy.replicas: expected an integer, found \"three\""
        );
    }

    #[test]
    fn unknown_position_and_empty_path_are_left_out() {
        let loc = Location {
            file: "a.yml".into(),
            ..Default::default()
        };
        assert_eq!(loc.to_string(), "a.yml");
    }
}
