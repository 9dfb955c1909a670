//! Where the next page is: the `rel="next"` target of an RFC 8288 `Link` header, and turning a
//! `Link` or `Location` reference into an absolute URL.
//!
//! GitHub's best practices say to follow `Link` as given rather than build page URLs, so the
//! target is returned verbatim. The parser is strict about structure (a `<…>` target, then
//! `;`-separated parameters) but tolerant of what GitHub never sends (extra parameters,
//! unquoted values, several relation types in one `rel`).

use crate::url::Url;

/// The target of the first link whose `rel` includes `rel` (ASCII case-insensitive), from one
/// or more `Link` header values. A value that stops parsing part-way yields the links read
/// before the fault.
pub(crate) fn find_rel<'a>(
    values: impl IntoIterator<Item = &'a str>,
    rel: &str,
) -> Option<&'a str> {
    values.into_iter().find_map(|value| {
        Links { rest: value }.find_map(|(target, rels)| {
            rels.split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case(rel))
                .then_some(target)
        })
    })
}

/// Iterates `(target, rel)` pairs of one header value; `rel` is empty when absent.
struct Links<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Links<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest.trim_start_matches([' ', '\t', ',']);
        let s = s.strip_prefix('<')?;
        let close = s.find('>')?;
        let target = s.get(..close)?.trim();
        let mut s = s.get(close + 1..)?;
        let mut rel = "";
        loop {
            s = s.trim_start_matches([' ', '\t']);
            if s.is_empty() || s.starts_with(',') {
                break;
            }
            s = s.strip_prefix(';')?.trim_start_matches([' ', '\t']);
            let name_end = s.find(['=', ';', ',', ' ', '\t']).unwrap_or(s.len());
            let name = s.get(..name_end)?;
            s = s.get(name_end..)?.trim_start_matches([' ', '\t']);
            let value = match s.strip_prefix('=') {
                Some(after) => {
                    let (value, after) = param_value(after.trim_start_matches([' ', '\t']))?;
                    s = after;
                    value
                }
                None => "",
            };
            if name.eq_ignore_ascii_case("rel") && rel.is_empty() {
                rel = value;
            }
        }
        self.rest = s;
        Some((target, rel))
    }
}

/// A token or a quoted string, and what follows it. Quoted values are returned without their
/// quotes; backslash escapes are skipped over but not undone (relation types never need them).
fn param_value(s: &str) -> Option<(&str, &str)> {
    if let Some(quoted) = s.strip_prefix('"') {
        let mut escaped = false;
        for (i, c) in quoted.char_indices() {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => return Some((quoted.get(..i)?, quoted.get(i + 1..)?)),
                _ => {}
            }
        }
        None
    } else {
        let end = s.find([';', ',', ' ', '\t']).unwrap_or(s.len());
        Some((s.get(..end)?, s.get(end..)?))
    }
}

/// An absolute URL for `reference` as found in a `Link` target or a `Location` header, relative
/// to the URL of the request that returned it. Absolute URLs come back unchanged; network-path
/// (`//host/…`) and absolute-path (`/…`) references are resolved; other relative forms (which
/// GitHub never sends) are refused with `None`.
pub(crate) fn resolve(base: &Url, reference: &str) -> Option<String> {
    let reference = reference.trim();
    if reference.contains("://") {
        Some(reference.to_owned())
    } else if reference.starts_with("//") {
        Some(format!("{}:{reference}", base.scheme))
    } else if reference.starts_with('/') {
        Some(format!(
            "{}://{}{reference}",
            base.scheme,
            base.host_header()
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_table() {
        let cases: &[(&str, Option<&str>)] = &[
            // GitHub's shape.
            (
                r#"<https://api.github.com/notifications?page=2>; rel="next", <https://api.github.com/notifications?page=5>; rel="last""#,
                Some("https://api.github.com/notifications?page=2"),
            ),
            // next not first.
            (
                r#"<https://a/?page=1>; rel="prev", <https://a/?page=3>; rel="next""#,
                Some("https://a/?page=3"),
            ),
            // No next: last page.
            (
                r#"<https://a/?page=1>; rel="first", <https://a/?page=2>; rel="prev""#,
                None,
            ),
            // Unquoted token, other case, no spaces.
            (r#"<https://a/?page=2>;REL=Next"#, Some("https://a/?page=2")),
            // Several relation types in one rel.
            (
                r#"<https://a/?p=2>; rel="last next""#,
                Some("https://a/?p=2"),
            ),
            // Extra parameters, before and after rel, one with a comma and semicolon inside quotes.
            (
                r#"<https://a/?p=2>; title="a, b; c"; rel="next"; type="application/json""#,
                Some("https://a/?p=2"),
            ),
            // Commas inside the target.
            (
                r#"<https://a/?ids=1,2&page=2>; rel="next""#,
                Some("https://a/?ids=1,2&page=2"),
            ),
            // A parameter without a value.
            (
                r#"<https://a/2>; crossorigin; rel=next"#,
                Some("https://a/2"),
            ),
            // Only the first rel counts.
            (r#"<https://a/2>; rel="prev"; rel="next""#, None),
            // rel containing "next" as a substring is not next.
            (r#"<https://a/2>; rel="nextish""#, None),
            // Garbage.
            ("", None),
            ("next", None),
            (r#"https://a/2; rel="next""#, None),
            (r#"<https://a/2; rel="next""#, None),
            // An unterminated quote stops parsing; earlier links still count.
            (
                r#"<https://a/1>; rel="next", <https://a/2>; rel="la"#,
                Some("https://a/1"),
            ),
            (
                r#"<https://a/1>; rel="prev", <https://a/2>; rel="next"#,
                None,
            ),
            // Junk between links stops parsing.
            (
                r#"<https://a/1>; rel="prev" junk, <https://a/2>; rel="next""#,
                None,
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(find_rel([*value], "next"), *expected, "{value}");
        }
    }

    #[test]
    fn next_link_across_header_values() {
        let values = [
            r#"<https://a/1>; rel="prev""#,
            r#"<https://a/3>; rel="next""#,
        ];
        assert_eq!(find_rel(values, "next"), Some("https://a/3"));
        assert_eq!(find_rel(values, "prev"), Some("https://a/1"));
        assert_eq!(find_rel(Vec::<&str>::new(), "next"), None);
    }

    #[test]
    fn resolve_table() {
        let base = Url::parse("https://api.github.com:8443/notifications?page=1").unwrap();
        let cases: &[(&str, Option<&str>)] = &[
            ("https://evil.example/x", Some("https://evil.example/x")),
            (
                "  https://api.github.com/x ",
                Some("https://api.github.com/x"),
            ),
            ("//other.example/x", Some("https://other.example/x")),
            (
                "/notifications?page=2",
                Some("https://api.github.com:8443/notifications?page=2"),
            ),
            ("notifications?page=2", None),
            ("?page=2", None),
            ("", None),
        ];
        for (reference, expected) in cases {
            assert_eq!(
                resolve(&base, reference).as_deref(),
                *expected,
                "{reference}"
            );
        }
    }
}
