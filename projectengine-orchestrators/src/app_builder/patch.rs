//! The fixer's answer: whole-file patches, and how a reply becomes them (or
//! a clear reason why not, which the fixer is shown once).

use std::collections::BTreeSet;

use serde::Deserialize;

use super::plan::{check_path, json_in};

/// The form the fixer is asked to answer in.
pub(crate) const FORM: &str =
    r#"{"patches": [{"path": "...", "content": "the whole new content"}]}"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Patches {
    patches: Vec<Patch>,
}

/// One file's new content.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Patch {
    /// The file's path (a valid artifact name).
    pub(crate) path: String,
    /// Its whole new content.
    pub(crate) content: String,
}

/// Parses and checks a fixer's reply: at least one patch, at most
/// `max_files`, each path valid and patched once, each content at most
/// `max_file_bytes`.
pub(crate) fn parse(
    reply: &str,
    max_files: usize,
    max_file_bytes: usize,
) -> Result<Vec<Patch>, String> {
    let mut de = serde_json::Deserializer::from_str(json_in(reply));
    let patches: Patches = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| format!("the answer is not valid JSON of the form given: {e}"))?;
    let patches = patches.patches;
    if patches.is_empty() {
        return Err("patches must list at least one file".into());
    }
    if patches.len() > max_files {
        return Err(format!(
            "patches lists {} files, at most {max_files} allowed",
            patches.len()
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, p) in patches.iter().enumerate() {
        check_path(&p.path).map_err(|e| format!("patches[{i}].path: {e}"))?;
        if !seen.insert(p.path.as_str()) {
            return Err(format!("patches[{i}].path: {:?} is patched twice", p.path));
        }
        if p.content.len() > max_file_bytes {
            return Err(format!(
                "patches[{i}].content: {} bytes, at most {max_file_bytes} allowed",
                p.content.len()
            ));
        }
    }
    Ok(patches)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenced_patches_are_read() {
        let reply = "The fix:\n```json\n{\"patches\": [{\"path\": \"index.html\", \"content\": \"<h1>x</h1>\"}]}\n```";
        let patches = parse(reply, 10, 100).unwrap();
        assert_eq!(patches.len(), 1);
        assert_eq!(patches[0].path, "index.html");
        assert_eq!(patches[0].content, "<h1>x</h1>");
    }

    #[test]
    fn bad_patches_are_refused_saying_why() {
        let cases = [
            ("I changed index.html for you.", "not valid JSON"),
            (r#"{"patches": []}"#, "at least one file"),
            (r#"{"patches": [{"path": "a"}]}"#, "content"),
            (
                r#"{"patches": [{"path": "../up", "content": ""}]}"#,
                "patches[0].path",
            ),
            (
                r#"{"patches": [{"path": "a", "content": ""}, {"path": "a", "content": ""}]}"#,
                "patched twice",
            ),
            (
                r#"{"patches": [{"path": "a", "content": "0123456789ABCDEF"}]}"#,
                "patches[0].content: 16 bytes, at most 10",
            ),
            (
                r#"{"patches": [{"path": "a", "content": "", "mode": 7}]}"#,
                "mode",
            ),
        ];
        for (reply, expected) in cases {
            let err = parse(reply, 2, 10).unwrap_err();
            assert!(err.contains(expected), "{reply}: {err}");
        }
        let many = r#"{"patches": [{"path": "a", "content": ""}, {"path": "b", "content": ""}, {"path": "c", "content": ""}]}"#;
        assert!(parse(many, 2, 10).unwrap_err().contains("at most 2"));
    }
}
