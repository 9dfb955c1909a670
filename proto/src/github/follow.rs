//! Where the token may go: the same-origin policy for `Link: rel="next"` pages and redirects.
//!
//! Every request carries `Authorization`, so following a page link or a `Location` to another
//! host, port or scheme (an `http://` downgrade included) would hand the token to someone else.
//! The policy is pure, so its whole behaviour is the table in the tests below.

use super::link;
use crate::url::Url;

/// Redirects followed for one request before giving up on it.
pub(super) const MAX_REDIRECTS: u8 = 5;

/// `reference` (a `Link` target or a `Location`) as an absolute URL on the API's `origin`,
/// resolved against `current`, the URL of the request that returned it; or why it may not be
/// requested. Reasons name URLs redacted, never with their query secrets.
pub(super) fn same_origin_target(
    origin: &Url,
    current: &str,
    reference: &str,
) -> Result<String, String> {
    let base = Url::parse(current).unwrap_or_else(|_| origin.clone());
    let Some(absolute) = link::resolve(&base, reference) else {
        return Err(format!(
            "{} is not an absolute URL",
            crate::redact::url(reference)
        ));
    };
    match Url::parse(&absolute) {
        Ok(url) if url.scheme == origin.scheme && url.same_origin(origin) => Ok(absolute),
        Ok(url) => Err(format!(
            "{}://{} is not the API's origin {}://{}",
            url.scheme,
            url.host_header(),
            origin.scheme,
            origin.host_header()
        )),
        Err(error) => Err(format!("{}: {error}", crate::redact::url(&absolute))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_table() {
        let origin = Url::parse("https://api.github.com").unwrap();
        let page1 = "https://api.github.com/notifications?per_page=50";
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            // GitHub's own links and redirects.
            (
                page1,
                "https://api.github.com/notifications?page=2",
                Ok("https://api.github.com/notifications?page=2"),
            ),
            (
                page1,
                "/notifications?page=3",
                Ok("https://api.github.com/notifications?page=3"),
            ),
            (
                page1,
                "//api.github.com/notifications?page=4",
                Ok("https://api.github.com/notifications?page=4"),
            ),
            (
                page1,
                "https://api.github.com:443/x",
                Ok("https://api.github.com:443/x"),
            ),
            // A current URL that does not parse falls back to the origin as the base.
            ("not a url", "/x", Ok("https://api.github.com/x")),
            // Off the origin: another host, a downgrade, another port, a look-alike.
            (
                page1,
                "https://evil.example/steal",
                Err("https://evil.example is not the API's origin https://api.github.com"),
            ),
            (
                page1,
                "http://api.github.com/notifications",
                Err("http://api.github.com is not the API's origin https://api.github.com"),
            ),
            (
                page1,
                "https://api.github.com:8443/x",
                Err("https://api.github.com:8443 is not the API's origin https://api.github.com"),
            ),
            (
                page1,
                "//api.github.com.evil.example/x",
                Err(
                    "https://api.github.com.evil.example is not the API's origin https://api.github.com",
                ),
            ),
            (
                page1,
                "wss://api.github.com/x",
                Err("wss://api.github.com is not the API's origin https://api.github.com"),
            ),
            // Relative forms GitHub never sends, and URLs that do not parse.
            (page1, "page=2", Err("page=2 is not an absolute URL")),
            (page1, "", Err(" is not an absolute URL")),
        ];
        for (current, reference, expected) in cases {
            let got = same_origin_target(&origin, current, reference);
            let expected = expected.map(str::to_owned).map_err(str::to_owned);
            assert_eq!(got, expected, "{reference:?} from {current:?}");
        }
    }

    #[test]
    fn refusals_redact_the_query() {
        let origin = Url::parse("https://api.github.com").unwrap();
        let refusal = same_origin_target(
            &origin,
            "https://api.github.com/",
            "next?access_token=s3cr3t",
        )
        .unwrap_err();
        assert!(!refusal.contains("s3cr3t"), "{refusal}");
    }
}
