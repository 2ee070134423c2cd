//! Go's `path.Clean`, for the token mount path.

use std::borrow::Cow;

/// Whether `path.Clean` would return `path` unchanged: not empty, no
/// empty, `.` or `..` segment (but a leading `/`), no trailing `/`.
fn is_clean(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    let body = path.strip_prefix('/').unwrap_or(path);
    !body.is_empty()
        && body
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// Lexically cleans a unix path like Go's `path.Clean`; a path that is
/// already clean is returned as it is, without a copy.
pub fn clean_path(path: &str) -> Cow<'_, str> {
    if is_clean(path) {
        return Cow::Borrowed(path);
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    Cow::Owned(match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path("/var//run/./x/../token"), "/var/run/token");
        assert_eq!(clean_path("/a/b/"), "/a/b");
        assert_eq!(clean_path("//a"), "/a");
        assert_eq!(clean_path("a/../.."), "..");
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("."), ".");
        assert_eq!(clean_path("/.."), "/");
        assert_eq!(clean_path("/a/.b/c"), "/a/.b/c");
        for clean in ["/", "/a", "/var/run/secrets/x", "a/b", "..a/b.."] {
            assert!(
                matches!(clean_path(clean), Cow::Borrowed(p) if p == clean),
                "{clean} is clean"
            );
        }
    }
}
