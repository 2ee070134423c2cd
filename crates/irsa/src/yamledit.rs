//! Edits the `bindings:` list of `irsa.yaml` in place, keeping every
//! comment, blank line and the order of everything else: only the lines of
//! the one binding added, replaced or removed change. The result is parsed
//! back and compared with the intended config before it is accepted, so an
//! edit can fail but never silently change anything else.

use anyhow::{bail, Context, Result};
use irsa_core::config::{Binding, KeyConfig};
use irsa_core::IrsaConfig;

/// The `bindings:` block: where it starts and ends (line indexes), and its items.
struct Block {
    /// Index of the `bindings:` line.
    key_line: usize,
    /// Indentation of the items' `- `.
    indent: usize,
    /// Line ranges `[start, end)` of each item.
    items: Vec<(usize, usize)>,
    /// One past the last line belonging to the block.
    end: usize,
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim_start();
    t.is_empty() || t.starts_with('#')
}

fn find_block(lines: &[&str], key: &str) -> Option<Block> {
    let label = format!("{key}:");
    let key_line = lines
        .iter()
        .position(|l| l.starts_with(&label) && indent_of(l) == 0)?;
    let mut items = Vec::new();
    let mut indent = None;
    let mut end = key_line + 1;
    let mut i = key_line + 1;
    while i < lines.len() {
        let line = lines[i];
        if is_blank_or_comment(line) {
            i += 1;
            continue;
        }
        let ind = indent_of(line);
        let starts_item = line.trim_start().starts_with("- ") || line.trim() == "-";
        match indent {
            None if starts_item => indent = Some(ind),
            None => break,
            Some(_) => {}
        }
        let item_indent = indent.unwrap_or(0);
        if starts_item && ind == item_indent {
            if let Some(last) = items.last_mut() {
                let (_, e): &mut (usize, usize) = last;
                *e = end;
            }
            items.push((i, i + 1));
        } else if ind <= item_indent {
            break;
        }
        i += 1;
        end = i;
    }
    if let Some(last) = items.last_mut() {
        last.1 = end;
    }
    Some(Block {
        key_line,
        indent: indent.unwrap_or(0),
        items,
        end,
    })
}

/// The binding an item's lines describe.
fn parse_item(lines: &[&str], indent: usize) -> Result<Binding> {
    let text: String = lines
        .iter()
        .map(|l| format!("{}\n", l.get(indent..).unwrap_or("").trim_end()))
        .collect();
    let list: Vec<Binding> =
        serde_yaml::from_str(&text).context("a binding in irsa.yaml cannot be read")?;
    list.into_iter()
        .next()
        .context("a binding in irsa.yaml is empty")
}

/// Whether `s` is a plain scalar YAML 1.1 readers take for a date
/// (`YYYY-M-D`), such as an IAM policy's `Version: 2012-10-17`.
fn looks_like_date(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && parts[0].len() == 4
        && parts[1].len() <= 2
        && parts[2].len() <= 2
}

/// Quotes the values serde_yaml (YAML 1.2) leaves plain that YAML 1.1
/// readers (PyYAML, many tools) would read as dates rather than strings.
fn quote_dates(line: &str) -> String {
    let (head, value) = match line.rsplit_once(": ") {
        Some((h, v)) => (format!("{h}: "), v),
        None => match line.trim_start().strip_prefix("- ") {
            Some(v) => (line[..line.len() - v.len()].to_string(), v),
            None => return line.to_string(),
        },
    };
    if looks_like_date(value) {
        format!("{head}'{value}'")
    } else {
        line.to_string()
    }
}

/// Renders one binding as a list item at `indent`.
fn render_item(binding: &Binding, indent: usize) -> Result<Vec<String>> {
    let yaml = serde_yaml::to_string(&vec![binding]).context("rendering the binding")?;
    let pad = " ".repeat(indent);
    Ok(yaml
        .lines()
        .map(|l| format!("{pad}{}", quote_dates(l)))
        .collect())
}

fn same(b: &Binding, namespace: &str, service_account: &str) -> bool {
    b.namespace == namespace && b.service_account == service_account
}

fn join(lines: Vec<String>, trailing_newline: bool) -> String {
    let mut out = lines.join("\n");
    if trailing_newline {
        out.push('\n');
    }
    out
}

/// Accepts `text` only if it parses to exactly `expected`.
fn checked(text: String, expected: &IrsaConfig) -> Result<String> {
    let parsed = IrsaConfig::from_yaml(&text).context("the edited irsa.yaml does not parse")?;
    if &parsed != expected {
        bail!("irsa.yaml is laid out in a way irsa cannot edit without changing other entries; edit the bindings list by hand");
    }
    Ok(text)
}

/// Adds `binding`, or replaces the binding for the same namespace and
/// service account. Returns the new text and whether it replaced one.
pub fn upsert_binding(text: &str, binding: &Binding) -> Result<(String, bool)> {
    let mut expected = IrsaConfig::from_yaml(text)?;
    let replaced = match expected
        .bindings
        .iter_mut()
        .find(|b| same(b, &binding.namespace, &binding.service_account))
    {
        Some(b) => {
            *b = binding.clone();
            true
        }
        None => {
            expected.bindings.push(binding.clone());
            false
        }
    };
    expected.validate()?;
    let lines: Vec<&str> = text.lines().collect();
    let trailing = text.ends_with('\n') || text.is_empty();
    let mut out: Vec<String> = Vec::with_capacity(lines.len() + 8);
    match find_block(&lines, "bindings") {
        None => {
            out.extend(lines.iter().map(|l| l.to_string()));
            out.push("bindings:".into());
            out.extend(render_item(binding, 0)?);
        }
        Some(block) if block.items.is_empty() => {
            // `bindings: []`, `bindings:` or `bindings: ~` with no items.
            let rest = lines[block.key_line]["bindings:".len()..].trim();
            if !matches!(rest, "" | "[]" | "~" | "null") && !rest.starts_with('#') {
                bail!("irsa.yaml writes bindings inline ({rest}); list them one per line to let irsa edit them");
            }
            out.extend(lines[..block.key_line].iter().map(|l| l.to_string()));
            out.push("bindings:".into());
            out.extend(render_item(binding, 0)?);
            out.extend(lines[block.key_line + 1..].iter().map(|l| l.to_string()));
        }
        Some(block) => {
            let mut target = None;
            for (i, (s, e)) in block.items.iter().enumerate() {
                let b = parse_item(&lines[*s..*e], block.indent)?;
                if same(&b, &binding.namespace, &binding.service_account) {
                    target = Some(i);
                }
            }
            match target {
                Some(i) => {
                    let (s, e) = block.items[i];
                    // Keep comment lines that trail the item (they belong to what follows).
                    let mut body_end = e;
                    while body_end > s + 1 && is_blank_or_comment(lines[body_end - 1]) {
                        body_end -= 1;
                    }
                    out.extend(lines[..s].iter().map(|l| l.to_string()));
                    out.extend(render_item(binding, block.indent)?);
                    out.extend(lines[body_end..].iter().map(|l| l.to_string()));
                }
                None => {
                    // Append after the last item's own lines (not after trailing comments).
                    let mut at = block.end;
                    while at > block.key_line + 1 && is_blank_or_comment(lines[at - 1]) {
                        at -= 1;
                    }
                    out.extend(lines[..at].iter().map(|l| l.to_string()));
                    out.extend(render_item(binding, block.indent)?);
                    out.extend(lines[at..].iter().map(|l| l.to_string()));
                }
            }
        }
    }
    Ok((checked(join(out, trailing), &expected)?, replaced))
}

/// Replaces the whole `keys:` list with `keys`, keeping everything else.
pub fn replace_keys(text: &str, keys: &[KeyConfig]) -> Result<String> {
    let mut expected = IrsaConfig::from_yaml(text)?;
    expected.keys = keys.to_vec();
    expected.validate()?;
    let lines: Vec<&str> = text.lines().collect();
    let trailing = text.ends_with('\n');
    let block = find_block(&lines, "keys").context("irsa.yaml has no keys list")?;
    let rendered = serde_yaml::to_string(&keys).context("rendering keys")?;
    let pad = " ".repeat(block.indent);
    let mut out: Vec<String> = lines[..block.key_line]
        .iter()
        .map(|l| l.to_string())
        .collect();
    out.push("keys:".into());
    out.extend(rendered.lines().map(|l| format!("{pad}{l}")));
    let mut end = block.end;
    if block.items.is_empty() {
        end = block.key_line + 1;
    }
    out.extend(lines[end..].iter().map(|l| l.to_string()));
    checked(join(out, trailing), &expected)
}

/// Removes the binding for `namespace`/`service_account`.
pub fn remove_binding(text: &str, namespace: &str, service_account: &str) -> Result<String> {
    let mut expected = IrsaConfig::from_yaml(text)?;
    let before = expected.bindings.len();
    expected
        .bindings
        .retain(|b| !same(b, namespace, service_account));
    if expected.bindings.len() == before {
        bail!("irsa.yaml has no binding for {namespace}/{service_account}; `irsa bind` lists what is bound when you run `irsa plan`");
    }
    let lines: Vec<&str> = text.lines().collect();
    let trailing = text.ends_with('\n');
    let block = find_block(&lines, "bindings").context("irsa.yaml has no bindings list")?;
    let mut out: Vec<String> = Vec::new();
    let mut removed = false;
    let mut cursor = 0;
    for (s, e) in &block.items {
        let b = parse_item(&lines[*s..*e], block.indent)?;
        if same(&b, namespace, service_account) {
            let mut body_end = *e;
            while body_end > s + 1 && is_blank_or_comment(lines[body_end - 1]) {
                body_end -= 1;
            }
            out.extend(lines[cursor..*s].iter().map(|l| l.to_string()));
            cursor = body_end;
            removed = true;
        }
    }
    out.extend(lines[cursor..].iter().map(|l| l.to_string()));
    if !removed {
        bail!("cannot find the binding {namespace}/{service_account} in irsa.yaml's text; remove it by hand");
    }
    if expected.bindings.is_empty() {
        // Leave a valid, explicit empty list.
        if let Some(line) = out.iter_mut().find(|l| l.starts_with("bindings:")) {
            *line = "bindings: []".into();
        }
    }
    checked(join(out, trailing), &expected)
}

/// Sets `issuer.url` (absent while a CloudFront distribution's name was
/// unknown) to `url`, right under `issuer:`, keeping everything else
/// (`apply`, in the online build, records it).
#[cfg(feature = "online")]
pub fn set_issuer_url(text: &str, url: &irsa_core::IssuerUrl) -> Result<String> {
    let mut expected = IrsaConfig::from_yaml(text)?;
    expected.issuer.url = Some(url.clone());
    expected.validate()?;
    let lines: Vec<&str> = text.lines().collect();
    let trailing = text.ends_with('\n');
    let at = lines
        .iter()
        .position(|l| l.trim_end() == "issuer:")
        .context(
        "irsa.yaml has no block `issuer:` line irsa can edit; add `url: URL` under issuer by hand",
    )?;
    let indent = lines[at + 1..]
        .iter()
        .find(|l| !is_blank_or_comment(l))
        .map(|l| indent_of(l))
        .filter(|i| *i > 0)
        .context("the issuer section of irsa.yaml is empty")?;
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    out.insert(at + 1, format!("{}url: {url}", " ".repeat(indent)));
    checked(join(out, trailing), &expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "# team config\napiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: prod # our cluster\nissuer:\n  url: https://b.s3.eu-west-1.amazonaws.com/prod\nkeys:\n- {publicKey: k.pub, algorithm: RS256, state: active}\n";

    fn binding(ns: &str, sa: &str, policy: &str) -> Binding {
        Binding {
            namespace: ns.into(),
            service_account: sa.into(),
            policy_arns: vec![format!("arn:aws:iam::aws:policy/{policy}")],
            ..Binding::default()
        }
    }

    #[test]
    fn policy_versions_are_quoted_for_yaml_1_1_readers() {
        let mut b = binding("app", "web", "ReadOnlyAccess");
        b.inline_policies.insert(
            "own".into(),
            serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Sid": "2012-10-17x"}]}),
        );
        let (text, _) = upsert_binding(BASE, &b).expect("added");
        assert!(text.contains("Version: '2012-10-17'"), "{text}");
        assert!(!text.contains("Version: 2012-10-17\n"), "{text}");
        // Still the same string to a YAML 1.2 reader.
        let config = IrsaConfig::from_yaml(&text).expect("valid");
        assert_eq!(
            config.bindings[0].inline_policies["own"]["Version"],
            "2012-10-17"
        );
        assert_eq!(quote_dates("- 2024-1-2"), "- '2024-1-2'");
        assert_eq!(quote_dates("  Sid: 2012-10-17x"), "  Sid: 2012-10-17x");
        assert_eq!(
            quote_dates("  Version: '2012-10-17'"),
            "  Version: '2012-10-17'"
        );
    }

    #[test]
    fn adds_replaces_and_removes_keeping_comments() {
        let text = format!(
            "{BASE}bindings:\n  # the web app\n  - namespace: web\n    serviceAccount: site # public\n    policyArns: [arn:aws:iam::aws:policy/A]\n\n  # batch jobs\n  - {{namespace: batch, serviceAccount: 'job-*'}}\n# trailing comment\n"
        );
        let (added, replaced) =
            upsert_binding(&text, &binding("app", "s3-echoer", "B")).expect("add");
        assert!(!replaced);
        assert!(added.starts_with(&text[..text.len() - "# trailing comment\n".len()]));
        assert!(added.ends_with("# trailing comment\n"), "{added}");
        assert!(added.contains("# the web app") && added.contains("# public"));
        let cfg = IrsaConfig::from_yaml(&added).expect("valid");
        assert_eq!(cfg.bindings.len(), 3);
        assert_eq!(cfg.bindings[2].service_account, "s3-echoer");

        let (updated, replaced) =
            upsert_binding(&added, &binding("web", "site", "C")).expect("replace");
        assert!(replaced);
        let cfg = IrsaConfig::from_yaml(&updated).expect("valid");
        assert_eq!(
            cfg.bindings[0].policy_arns,
            ["arn:aws:iam::aws:policy/C"],
            "replaced in place, order kept"
        );
        assert!(
            updated.contains("# the web app") && updated.contains("# batch jobs"),
            "{updated}"
        );

        let removed = remove_binding(&updated, "batch", "job-*").expect("remove");
        assert!(removed.contains("# batch jobs") && removed.contains("# trailing comment"));
        let cfg = IrsaConfig::from_yaml(&removed).expect("valid");
        assert_eq!(cfg.bindings.len(), 2);
        assert!(remove_binding(&removed, "batch", "job-*").is_err());
    }

    #[test]
    fn replaces_the_keys_list_only() {
        let text = format!("{BASE}bindings:\n# keep me\n- {{namespace: a, serviceAccount: b}}\n");
        let mut cfg = IrsaConfig::from_yaml(&text).expect("valid");
        let mut next = cfg.keys[0].clone();
        next.public_key = "n.pub".into();
        next.state = irsa_core::config::KeyState::Next;
        cfg.keys.push(next);
        let out = replace_keys(&text, &cfg.keys).expect("replace");
        assert_eq!(IrsaConfig::from_yaml(&out).expect("valid"), cfg);
        assert!(out.contains("# keep me") && out.contains("cluster: prod # our cluster"));
    }

    #[test]
    fn empty_and_missing_lists() {
        for text in [
            format!("{BASE}bindings: []\n"),
            BASE.to_string(),
            format!("{BASE}bindings:\n# none yet\n"),
        ] {
            let (out, _) = upsert_binding(&text, &binding("a", "b", "X")).expect("add");
            let cfg = IrsaConfig::from_yaml(&out).expect("valid");
            assert_eq!(cfg.bindings.len(), 1, "{out}");
            assert!(out.starts_with("# team config\n"));
            let back = remove_binding(&out, "a", "b").expect("remove");
            assert!(IrsaConfig::from_yaml(&back)
                .expect("valid")
                .bindings
                .is_empty());
        }
    }

    #[test]
    fn refuses_invalid_bindings_and_inline_lists() {
        let err = upsert_binding(BASE, &binding("Bad_NS", "b", "X")).expect_err("invalid");
        assert!(err.to_string().contains("namespace"), "{err}");
        let inline = format!("{BASE}bindings: [{{namespace: a, serviceAccount: b}}]\n");
        assert!(upsert_binding(&inline, &binding("c", "d", "X")).is_err());
    }

    #[test]
    #[cfg(feature = "online")]
    fn the_recorded_issuer_url_goes_under_issuer_and_comments_stay() {
        let text = "# my cluster\napiVersion: irsa.dev/v1alpha1\nkind: IrsaConfig\ncluster: demo\nissuer:\n  # private bucket behind CloudFront\n  s3: {bucket: b-oidc, region: eu-west-1, prefix: demo}\n  cloudfront: {}\nkeys:\n- {publicKey: k.pub, algorithm: RS256, state: active}\n";
        let url = irsa_core::IssuerUrl::parse("https://d111abcdef8.cloudfront.net").expect("url");
        let out = set_issuer_url(text, &url).expect("edited");
        assert_eq!(
            out,
            text.replace(
                "issuer:\n",
                "issuer:\n  url: https://d111abcdef8.cloudfront.net\n"
            )
        );
        let parsed = IrsaConfig::from_yaml(&out).expect("valid");
        assert_eq!(parsed.issuer.url(), Ok(&url));
        let flow = text.replace("issuer:\n  # private bucket behind CloudFront\n  s3: {bucket: b-oidc, region: eu-west-1, prefix: demo}\n  cloudfront: {}\n", "issuer: {s3: {bucket: b-oidc, region: eu-west-1, prefix: demo}, cloudfront: {}}\n");
        let err = set_issuer_url(&flow, &url)
            .expect_err("flow style")
            .to_string();
        assert!(err.contains("by hand"), "{err}");
    }
}
