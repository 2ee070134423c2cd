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

/// A Rust source's module path as a test names it: `crates/C/src/a/b.rs`
/// is `a::b` (`mod.rs`, `lib.rs` and `main.rs` name their folder), and
/// `crates/C/tests/t.rs` (or `tests/t/mod.rs`) is the test binary `t`.
fn module_path(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root().join("crates")).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .skip(2)
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.last_mut() {
        *last = last.trim_end_matches(".rs").to_string();
    }
    if parts
        .last()
        .is_some_and(|l| matches!(l.as_str(), "mod" | "lib" | "main"))
    {
        parts.pop();
    }
    parts
}

/// The test functions of a source (a `fn` under `#[test]` or
/// `#[tokio::test]`, proptest's included) and every other `fn` name.
fn functions(text: &str) -> (Vec<String>, Vec<String>) {
    let (mut tests, mut other) = (Vec::new(), Vec::new());
    let mut attributed = false;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#[test]") || t.starts_with("#[tokio::test") {
            attributed = true;
            continue;
        }
        let Some(at) = t.find("fn ") else {
            if !t.starts_with("#[") && !t.is_empty() && !t.starts_with("//") {
                attributed = false;
            }
            continue;
        };
        let name: String = t[at + 3..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            if attributed { &mut tests } else { &mut other }.push(name);
        }
        attributed = false;
    }
    (tests, other)
}

/// The `a::b::c` spans in backticks of a Markdown text: lowercase Rust
/// paths, the way the docs name tests (`binary::test`,
/// `module::tests::test`, or a module whose tests back a claim).
fn rust_paths(markdown: &str) -> Vec<String> {
    markdown
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| {
            s.contains("::")
                && s.split("::").all(|seg| {
                    !seg.is_empty()
                        && seg
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                })
        })
        .map(String::from)
        .collect()
}

/// Every test the docs name exists where they say: a test function of that
/// module or test binary, or a module with tests. A path that names a crate
/// item instead (`irsa_core::…`, a function of a module) is not a test
/// reference and is left alone; a path that names nothing fails.
#[test]
fn every_test_the_docs_name_exists() {
    let mut files = Vec::new();
    sources(&root().join("crates"), &mut files);
    // (module path, test names, other fn names, whether it has tests)
    let index: Vec<(Vec<String>, Vec<String>, Vec<String>)> = files
        .iter()
        .map(|f| {
            let (tests, other) = functions(&std::fs::read_to_string(f).unwrap());
            (module_path(f), tests, other)
        })
        .collect();
    let resolves = |path: &str| -> bool {
        let segs: Vec<&str> = path.split("::").collect();
        let (name, prefix) = segs.split_last().unwrap();
        index.iter().any(|(module, tests, other)| {
            let under = prefix.len() >= module.len()
                && module.iter().zip(prefix.iter()).all(|(m, p)| m == p);
            // A test or a crate item of this module (or an inner module).
            let item =
                under && (tests.iter().any(|t| t == name) || other.iter().any(|t| t == name));
            // The module itself (or its inner `tests`), holding tests.
            let here = !tests.is_empty()
                && (segs == module.iter().map(String::as_str).collect::<Vec<_>>()
                    || (segs.last() == Some(&"tests")
                        && segs[..segs.len() - 1]
                            == module.iter().map(String::as_str).collect::<Vec<_>>()[..]));
            item || here
        })
    };
    let crates = [
        "irsa",
        "irsa_core",
        "irsa_webhook",
        "irsa_agent",
        "irsa_aws",
        "clippy",
        "std",
    ];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    docs.extend(["README.md", "ARCHITECTURE.md", "CONTRIBUTING.md"].map(|f| root().join(f)));
    let mut checked = 0;
    let mut missing = Vec::new();
    for doc in docs
        .iter()
        .filter(|d| d.extension().is_some_and(|e| e == "md"))
    {
        for path in rust_paths(&std::fs::read_to_string(doc).unwrap()) {
            if crates.contains(&path.split("::").next().unwrap()) {
                continue;
            }
            checked += 1;
            if !resolves(&path) {
                missing.push(format!(
                    "{}: `{path}`",
                    doc.file_name().unwrap().to_string_lossy()
                ));
            }
        }
    }
    assert!(
        checked > 50,
        "the scan found only {checked} test references"
    );
    assert!(
        missing.is_empty(),
        "tests the docs name that do not exist:\n{}",
        missing.join("\n")
    );
}

/// The scan itself: a misspelt test and a wrong module are caught, a test,
/// an inner `tests` module and a crate item are found.
#[test]
fn the_test_scan_tells_a_missing_test_from_a_present_one() {
    let (tests, other) = functions("#[test]\nfn works() {}\n#[tokio::test(flavor = \"x\")]\n#[ignore = \"y\"]\nasync fn also() {}\nfn helper() {}\n");
    assert_eq!(tests, ["works", "also"]);
    assert_eq!(other, ["helper"]);
    assert_eq!(
        rust_paths("see `a::b_c` and `Type::new` and `x` and `irsa_core::y`"),
        ["a::b_c", "irsa_core::y"]
    );
    assert_eq!(
        module_path(&root().join("crates/irsa-core/src/plan/bucket.rs")),
        ["plan", "bucket"]
    );
    assert_eq!(
        module_path(&root().join("crates/irsa/tests/agent.rs")),
        ["agent"]
    );
}
