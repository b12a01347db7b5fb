//! Label lists and prompt templates: the text side of zero-shot classification.
//!
//! A labels file has one label per line; blank lines and duplicates are errors (a
//! silently dropped or doubled class would skew every score). A templates file has
//! one template per line, each containing `{}` where the label goes.

use std::path::Path;

/// The built-in `photo` template set: `a photo of a {}.`
pub const PHOTO_TEMPLATES: &str = include_str!("../../models/templates/photo.txt");
/// The built-in `imagenet80` set: OpenAI's 80 ImageNet prompt templates.
pub const IMAGENET80_TEMPLATES: &str = include_str!("../../models/templates/imagenet80.txt");

/// A labels or templates file that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PromptError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line of the file is unusable.
    #[error("{path}:{line}: {problem}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
    /// The file has no entries.
    #[error("{path}: {what}")]
    Empty {
        /// The file.
        path: String,
        /// What was expected.
        what: &'static str,
    },
}

/// Reads a labels file: one label per line, trimmed.
pub fn read_labels(path: &Path) -> Result<Vec<String>, PromptError> {
    let text = read(path)?;
    parse_labels(&text, &path.display().to_string())
}

/// Parses labels text; `name` is used in error messages.
pub fn parse_labels(text: &str, name: &str) -> Result<Vec<String>, PromptError> {
    let mut labels: Vec<String> = Vec::new();
    for (i, line) in content_lines(text).enumerate() {
        let label = line.trim();
        let err = |problem: String| PromptError::Line {
            path: name.to_string(),
            line: i + 1,
            problem,
        };
        if label.is_empty() {
            return Err(err("blank line (every line must be a label)".into()));
        }
        if let Some(first) = labels.iter().position(|l| l == label) {
            return Err(err(format!(
                "duplicate label {label:?} (first on line {})",
                first + 1
            )));
        }
        labels.push(label.to_string());
    }
    if labels.is_empty() {
        return Err(PromptError::Empty {
            path: name.to_string(),
            what: "no labels",
        });
    }
    Ok(labels)
}

/// Resolves `--templates`: a built-in set name (`photo`, `imagenet80`) or a file.
pub fn load_templates(spec: &str) -> Result<Vec<String>, PromptError> {
    match spec {
        "photo" => parse_templates(PHOTO_TEMPLATES, "photo"),
        "imagenet80" => parse_templates(IMAGENET80_TEMPLATES, "imagenet80"),
        file => {
            let path = Path::new(file);
            parse_templates(&read(path)?, &path.display().to_string())
        }
    }
}

/// Parses templates text; `name` is used in error messages.
pub fn parse_templates(text: &str, name: &str) -> Result<Vec<String>, PromptError> {
    let mut templates: Vec<String> = Vec::new();
    for (i, line) in content_lines(text).enumerate() {
        let template = line.trim();
        let err = |problem: String| PromptError::Line {
            path: name.to_string(),
            line: i + 1,
            problem,
        };
        if template.is_empty() {
            return Err(err("blank line (every line must be a template)".into()));
        }
        match template.matches("{}").count() {
            1 => {}
            0 => {
                return Err(err(format!(
                    "template {template:?} has no {{}} for the label"
                )))
            }
            n => {
                return Err(err(format!(
                    "template {template:?} has {n} {{}}, expected one"
                )))
            }
        }
        if templates.iter().any(|t| t == template) {
            return Err(err(format!("duplicate template {template:?}")));
        }
        templates.push(template.to_string());
    }
    if templates.is_empty() {
        return Err(PromptError::Empty {
            path: name.to_string(),
            what: "no templates",
        });
    }
    Ok(templates)
}

/// The prompt for `label` through `template`.
pub fn fill(template: &str, label: &str) -> String {
    template.replacen("{}", label, 1)
}

fn read(path: &Path) -> Result<String, PromptError> {
    std::fs::read_to_string(path).map_err(|source| PromptError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Lines of `text`, where one trailing newline does not make a final empty line.
fn content_lines(text: &str) -> impl Iterator<Item = &str> {
    text.strip_suffix('\n')
        .unwrap_or(text)
        .split('\n')
        .filter(move |_| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_refuse_blank_and_duplicate_lines() {
        assert_eq!(parse_labels("cat\ndog\n", "l").unwrap(), vec!["cat", "dog"]);
        assert_eq!(
            parse_labels(" cat \r\ndog", "l").unwrap(),
            vec!["cat", "dog"]
        );
        let blank = parse_labels("cat\n\ndog\n", "l.txt")
            .unwrap_err()
            .to_string();
        assert_eq!(blank, "l.txt:2: blank line (every line must be a label)");
        let dup = parse_labels("cat\ndog\ncat\n", "l.txt")
            .unwrap_err()
            .to_string();
        assert!(dup.starts_with("l.txt:3: duplicate label \"cat\""), "{dup}");
        assert!(parse_labels("", "l")
            .unwrap_err()
            .to_string()
            .contains("no labels"));
    }

    #[test]
    fn templates_need_exactly_one_placeholder() {
        let err = parse_templates("a photo of a {}.\na photo\n", "t.txt").unwrap_err();
        assert!(err
            .to_string()
            .starts_with("t.txt:2: template \"a photo\" has no {}"));
        assert!(parse_templates("{} and {}", "t").is_err());
        assert_eq!(
            fill("a photo of a {}.", "red circle"),
            "a photo of a red circle."
        );
    }

    #[test]
    fn builtin_sets_are_valid() {
        assert_eq!(load_templates("photo").unwrap(), vec!["a photo of a {}."]);
        assert_eq!(load_templates("imagenet80").unwrap().len(), 80);
        let missing = load_templates("/no/such/templates.txt")
            .unwrap_err()
            .to_string();
        assert!(missing.starts_with("/no/such/templates.txt:"), "{missing}");
    }
}
