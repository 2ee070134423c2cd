//! Every document a message names exists: the fixes and errors in the
//! sources of every crate that point at `docs/FILE.md`, `docs/FILE.md#anchor`,
//! `README.md#anchor` or a README section by its title (`README, "Title"`)
//! name a file of the repository and a heading it has.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// GitHub's anchor of a heading: lowercase, spaces to `-`, punctuation
/// other than `-` and `_` dropped.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The headings of a Markdown file (outside code fences), as written.
fn headings(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.push(line.trim_start_matches('#').trim().to_string());
        }
    }
    out
}

/// A reference found in a source file: the document, and the anchor or
/// section title it names (if any).
#[derive(Debug)]
struct Reference {
    at: String,
    file: String,
    anchor: Option<String>,
    title: Option<String>,
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.".contains(c)
}

/// The references in `text` (a Rust source, string escapes as written).
fn references(at: &str, text: &str) -> Vec<Reference> {
    let mut out = Vec::new();
    for (i, _) in text
        .match_indices("docs/")
        .chain(text.match_indices("README"))
    {
        let rest = &text[i..];
        let is_readme = rest.starts_with("README");
        let name_len = if is_readme {
            "README".len() + if rest[6..].starts_with(".md") { 3 } else { 0 }
        } else {
            rest.find(|c: char| !(is_path_char(c) || c == '/'))
                .unwrap_or(rest.len())
        };
        let name = &rest[..name_len];
        if !is_readme && !name.ends_with(".md") {
            continue;
        }
        // A README mention that is neither a link nor a section title is prose.
        let after = &rest[name_len..];
        let anchor = after.strip_prefix('#').map(|a| {
            a.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect::<String>()
        });
        let title = after
            .strip_prefix(", \\\"")
            .and_then(|t| t.split_once("\\\""))
            .map(|(t, _)| t.to_string());
        if is_readme && anchor.is_none() && title.is_none() && !name.ends_with(".md") {
            continue;
        }
        out.push(Reference {
            at: at.to_string(),
            file: if is_readme {
                "README.md".into()
            } else {
                name.to_string()
            },
            anchor,
            title,
        });
    }
    out
}

#[test]
fn every_document_a_message_names_exists_with_its_section() {
    let root = root();
    let mut files = Vec::new();
    for krate in ["irsa", "irsa-core", "irsa-aws", "irsa-webhook"] {
        sources(&root.join("crates").join(krate).join("src"), &mut files);
    }
    let mut found = 0;
    let mut broken = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let at = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        for r in references(&at, &text) {
            found += 1;
            let Ok(doc) = std::fs::read_to_string(root.join(&r.file)) else {
                broken.push(format!("{}: {} does not exist", r.at, r.file));
                continue;
            };
            let heads = headings(&doc);
            if let Some(anchor) = &r.anchor {
                if !heads.iter().any(|h| slug(h) == *anchor) {
                    broken.push(format!("{}: {} has no heading #{anchor}", r.at, r.file));
                }
            }
            if let Some(title) = &r.title {
                if !heads.iter().any(|h| h.eq_ignore_ascii_case(title)) {
                    broken.push(format!("{}: {} has no section {title:?}", r.at, r.file));
                }
            }
        }
    }
    assert!(found >= 3, "the scan finds references ({found})");
    assert!(broken.is_empty(), "{broken:#?}");
}

#[test]
fn the_scan_finds_each_kind_of_reference() {
    let text = r#"fix: "see docs/webhook.md#install, docs/aws.md and (see README, \"irsa webhook\") or README.md#install; a README mention""#;
    let refs = references("t", text);
    let got: Vec<(String, Option<String>, Option<String>)> = refs
        .into_iter()
        .map(|r| (r.file, r.anchor, r.title))
        .collect();
    assert_eq!(
        got,
        [
            (
                "docs/webhook.md".to_string(),
                Some("install".to_string()),
                None
            ),
            ("docs/aws.md".to_string(), None, None),
            (
                "README.md".to_string(),
                None,
                Some("irsa webhook".to_string())
            ),
            ("README.md".to_string(), Some("install".to_string()), None),
        ]
    );
    assert_eq!(
        slug("Admission scope: base, opt-in or strict"),
        "admission-scope-base-opt-in-or-strict"
    );
    assert_eq!(slug("`irsa plan`, `irsa apply`"), "irsa-plan-irsa-apply");
}
