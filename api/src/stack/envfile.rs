//! `env_file:` parsing as docker/cli's `opts.ParseEnvFile`: one `KEY=VALUE` per line, values
//! taken literally (no quotes removed, no interpolation), `#` comment lines and blank lines
//! skipped, a line with only `KEY` takes the value from the environment (skipped if unset).
//! `export KEY=VALUE` is **not** supported (docker rejects it: the name contains a space).

/// Why an env file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileError {
    #[error("line {line}: variable name {name:?} contains whitespace{hint}")]
    Whitespace {
        line: usize,
        name: String,
        hint: &'static str,
    },
    #[error("line {line}: a line must start with a variable name (KEY=VALUE)")]
    NoName { line: usize },
    #[error("the file is not valid UTF-8")]
    NotUtf8,
}

/// The variables of an env file, in file order (a later duplicate wins when collected).
pub fn parse_env_file(
    bytes: &[u8],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, EnvFileError> {
    let text = std::str::from_utf8(bytes).map_err(|_| EnvFileError::NotUtf8)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (name, value) = match l.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (l.trim_end(), None),
        };
        if name.is_empty() {
            return Err(EnvFileError::NoName { line });
        }
        if name.contains(char::is_whitespace) {
            let hint = if name.starts_with("export ") {
                " (`export` is not supported in env files; remove it)"
            } else {
                ""
            };
            return Err(EnvFileError::Whitespace {
                line,
                name: name.to_string(),
                hint,
            });
        }
        match value {
            Some(v) => out.push((name.to_string(), v.to_string())),
            None => {
                if let Some(v) = env(name) {
                    out.push((name.to_string(), v));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(n: &str) -> Option<String> {
        (n == "HOME").then(|| "/root".to_string())
    }

    #[test]
    fn lines_comments_and_lookups() {
        let vars = parse_env_file(
            b"# comment\n\nA=1\n  B = x \nC=\"quoted\"\nHOME\nUNSET\nD=a=b\n",
            &env,
        );
        // "B " has a trailing space in its name: docker refuses that too.
        assert!(matches!(
            vars,
            Err(EnvFileError::Whitespace { line: 4, .. })
        ));
        let vars = parse_env_file(b"A=1\nC=\"quoted\"\nHOME\nUNSET\nD=a=b\nE=\n", &env).unwrap();
        assert_eq!(
            vars,
            [
                ("A".to_string(), "1".to_string()),
                ("C".to_string(), "\"quoted\"".to_string()),
                ("HOME".to_string(), "/root".to_string()),
                ("D".to_string(), "a=b".to_string()),
                ("E".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn export_is_refused_with_a_hint() {
        let e = parse_env_file(b"export A=1\n", &env).unwrap_err();
        assert!(e.to_string().contains("`export` is not supported"), "{e}");
    }

    #[test]
    fn bad_input() {
        assert_eq!(
            parse_env_file(b"=1\n", &env).unwrap_err(),
            EnvFileError::NoName { line: 1 }
        );
        assert_eq!(
            parse_env_file(&[0xff, 0xfe], &env).unwrap_err(),
            EnvFileError::NotUtf8
        );
    }
}
