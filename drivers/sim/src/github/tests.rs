//! The GitHub simulator against a plain client.

use super::rest::PARTICIPATING;
use super::*;
use crate::testkit::{HttpClient, json};
use openflume_proto::{HttpRequest, HttpResponse};

async fn start(config: GithubSimConfig) -> GithubSim {
    GithubSim::start(config).await.unwrap()
}

fn get(sim: &GithubSim, url: &str) -> HttpRequest {
    HttpRequest::new("GET", url)
        .header("Authorization", format!("Bearer {}", sim.token()))
        .header("Accept", "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .header("User-Agent", "openflume-test")
}

/// The `rel` targets of a `Link` header.
fn links(response: &HttpResponse) -> Vec<(String, String)> {
    response
        .header("Link")
        .unwrap_or_default()
        .split(", ")
        .filter(|l| !l.is_empty())
        .map(|link| {
            let (url, rel) = link.split_once("; rel=").unwrap();
            (
                rel.trim_matches('"').to_owned(),
                url.trim_matches(['<', '>']).to_owned(),
            )
        })
        .collect()
}

fn remaining(response: &HttpResponse) -> u32 {
    response
        .header("x-ratelimit-remaining")
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn pages_follow_links_then_validators_give_304() {
    smol::block_on(async {
        let sim = start(GithubSimConfig {
            initial_notifications: 120,
            poll_interval: 7,
            ..GithubSimConfig::default()
        })
        .await;
        let first = format!(
            "{}/notifications?all=false&participating=false&per_page=50",
            sim.api_url()
        );
        let mut client = HttpClient::connect(&first).await;

        let page1 = client.send(&get(&sim, &first)).await;
        assert_eq!(page1.status, 200);
        assert_eq!(page1.header("X-Poll-Interval"), Some("7"));
        let items = json(&page1);
        assert_eq!(items.as_array().unwrap().len(), 50);
        let item = &items[0];
        assert!(item["id"].is_string() && item["unread"] == true && item["reason"].is_string());
        assert!(item["last_read_at"].is_null());
        for field in ["title", "type"] {
            assert!(item["subject"][field].is_string(), "{field}");
        }
        assert!(
            item["subject"].get("url").is_some()
                && item["subject"].get("latest_comment_url").is_some()
        );
        assert!(
            item["repository"]["full_name"]
                .as_str()
                .unwrap()
                .contains('/')
        );
        assert!(item["repository"]["owner"]["login"].is_string());
        let id = item["id"].as_str().unwrap();
        assert_eq!(
            item["url"],
            format!("{}/notifications/threads/{id}", sim.api_url())
        );
        assert_eq!(
            item["subscription_url"],
            format!("{}/notifications/threads/{id}/subscription", sim.api_url())
        );
        let times: Vec<_> = items
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["updated_at"].as_str().unwrap().to_owned())
            .collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");

        let rels = links(&page1);
        let next = format!(
            "{}/notifications?all=false&participating=false&per_page=50&page=2",
            sim.api_url()
        );
        let last = next.replace("page=2", "page=3");
        assert_eq!(
            rels,
            vec![
                ("next".to_owned(), next.clone()),
                ("last".to_owned(), last.clone())
            ]
        );
        let page2 = client.send(&get(&sim, &next)).await;
        assert_eq!(json(&page2).as_array().unwrap().len(), 50);
        assert_eq!(
            links(&page2)
                .iter()
                .map(|(rel, _)| rel.as_str())
                .collect::<Vec<_>>(),
            vec!["prev", "next", "last", "first"]
        );
        let page3 = client.send(&get(&sim, &last)).await;
        assert_eq!(json(&page3).as_array().unwrap().len(), 20);
        assert!(links(&page3).iter().all(|(rel, _)| rel != "next"));
        let mut ids: Vec<String> = [&page1, &page2, &page3]
            .iter()
            .flat_map(|p| {
                json(p)
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["id"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 120, "every thread exactly once");

        let modified = page1.header("Last-Modified").unwrap().to_owned();
        let etag = page1.header("ETag").unwrap().to_owned();
        assert!(etag.starts_with("W/\""));
        let conditional = |ims: Option<&str>, inm: Option<&str>| {
            let mut request = get(&sim, &first);
            if let Some(ims) = ims {
                request = request.header("If-Modified-Since", ims);
            }
            if let Some(inm) = inm {
                request = request.header("If-None-Match", inm);
            }
            request
        };
        let before = remaining(&page3);
        for (ims, inm) in [
            (Some(modified.as_str()), Some(etag.as_str())),
            (Some(&modified), None),
            (None, Some(&etag)),
        ] {
            let cached = client.send(&conditional(ims, inm)).await;
            assert_eq!(cached.status, 304, "{ims:?} {inm:?}");
            assert!(cached.body.is_empty());
            assert_eq!(cached.header("ETag"), Some(etag.as_str()));
            assert_eq!(cached.header("Last-Modified"), Some(modified.as_str()));
            assert_eq!(cached.header("X-Poll-Interval"), Some("7"));
            assert_eq!(remaining(&cached), before, "a 304 costs nothing");
        }

        let new_id = sim.add_notification();
        let fresh = client
            .send(&conditional(Some(&modified), Some(&etag)))
            .await;
        assert_eq!(fresh.status, 200);
        assert_eq!(json(&fresh)[0]["id"], new_id.as_str());
        assert_ne!(fresh.header("Last-Modified"), Some(modified.as_str()));
        assert_eq!(remaining(&fresh), before - 1);

        let records = sim.records();
        assert_eq!(
            records.statuses(),
            vec![
                Some(200),
                Some(200),
                Some(200),
                Some(304),
                Some(304),
                Some(304),
                Some(200)
            ]
        );
        let conditional_record = records.requests.iter().nth(3).unwrap();
        assert_eq!(
            conditional_record.if_modified_since.as_deref(),
            Some(modified.as_str())
        );
        assert_eq!(
            conditional_record.if_none_match.as_deref(),
            Some(etag.as_str())
        );
        assert!(!conditional_record.counted && records.requests.iter().next().unwrap().counted);
    });
}

#[test]
fn rate_limit_headers_count_down() {
    smol::block_on(async {
        let sim = start(GithubSimConfig::default()).await;
        let url = format!("{}/notifications", sim.api_url());
        let mut client = HttpClient::connect(&url).await;
        let mut seen = Vec::new();
        for _ in 0..3 {
            let response = client.send(&get(&sim, &url)).await;
            assert_eq!(response.header("x-ratelimit-limit"), Some("5000"));
            assert_eq!(response.header("x-ratelimit-resource"), Some("core"));
            let reset: i64 = response
                .header("x-ratelimit-reset")
                .unwrap()
                .parse()
                .unwrap();
            assert!(reset > Timestamp::now().as_second());
            seen.push((
                remaining(&response),
                response.header("x-ratelimit-used").unwrap().to_owned(),
                reset,
            ));
        }
        assert_eq!(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
            vec![4999, 4998, 4997]
        );
        assert_eq!(
            seen.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
            vec!["1", "2", "3"]
        );
        assert!(seen.iter().all(|s| s.2 == seen[0].2), "one window");

        sim.inject(GithubAction::ExhaustRateLimit);
        let spent = client.send(&get(&sim, &url)).await;
        assert_eq!((spent.status, remaining(&spent)), (403, 0));
        assert!(
            json(&spent)["message"]
                .as_str()
                .unwrap()
                .starts_with("API rate limit exceeded")
        );
    });
}

#[test]
fn errors_look_like_github() {
    smol::block_on(async {
        let sim = start(GithubSimConfig::default()).await;
        let url = format!("{}/notifications", sim.api_url());
        let mut client = HttpClient::connect(&url).await;
        let bad = client
            .send(&HttpRequest::new("GET", &url).header("Authorization", "Bearer ghp_wrong"))
            .await;
        assert_eq!(bad.status, 401);
        assert_eq!(json(&bad)["message"], "Bad credentials");
        assert_eq!(bad.header("x-ratelimit-limit"), Some("60"));
        let anonymous = client.send(&HttpRequest::new("GET", &url)).await;
        assert_eq!(
            (anonymous.status, json(&anonymous)["message"].as_str()),
            (401, Some("Requires authentication"))
        );

        sim.inject(GithubAction::Http {
            fault: HttpFault::Status {
                status: 429,
                retry_after: Some(2),
            },
            times: 1,
        });
        let limited = client.send(&get(&sim, &url)).await;
        assert_eq!(
            (limited.status, limited.header("retry-after")),
            (429, Some("2"))
        );
        assert!(
            json(&limited)["message"]
                .as_str()
                .unwrap()
                .contains("secondary rate limit")
        );

        sim.inject(GithubAction::SecondaryRateLimit {
            retry_after: None,
            times: 1,
        });
        let secondary = client.send(&get(&sim, &url)).await;
        assert_eq!(
            (secondary.status, secondary.header("retry-after")),
            (403, None)
        );
        assert!(
            json(&secondary)["message"]
                .as_str()
                .unwrap()
                .contains("secondary rate limit")
        );

        sim.inject(GithubAction::Http {
            fault: HttpFault::Status {
                status: 502,
                retry_after: None,
            },
            times: 1,
        });
        assert_eq!(client.send(&get(&sim, &url)).await.status, 502);
        let since = format!("{url}?since=yesterday");
        assert_eq!(client.send(&get(&sim, &since)).await.status, 422);
        sim.inject(GithubAction::Http {
            fault: HttpFault::Drop,
            times: 1,
        });
        assert!(client.try_send(&get(&sim, &url)).await.is_none());
        let ok = HttpClient::connect(&url).await.send(&get(&sim, &url)).await;
        assert_eq!(ok.status, 200);
        let statuses = sim.records().statuses();
        assert_eq!(
            statuses,
            vec![
                Some(401),
                Some(401),
                Some(429),
                Some(403),
                Some(502),
                Some(422),
                None,
                Some(200)
            ]
        );
    });
}

#[test]
fn filters_and_touched_threads() {
    smol::block_on(async {
        let sim = start(GithubSimConfig {
            initial_notifications: 30,
            ..GithubSimConfig::default()
        })
        .await;
        let url = format!("{}/notifications", sim.api_url());
        let mut client = HttpClient::connect(&url).await;
        let threads = sim.threads();
        let oldest = threads.last().unwrap().clone();
        assert!(sim.touch(&oldest.id));
        assert!(!sim.touch("404"));
        let page = json(&client.send(&get(&sim, &url)).await);
        assert_eq!(
            page[0]["id"],
            oldest.id.as_str(),
            "the touched thread is the newest"
        );
        assert!(page[0]["updated_at"].as_str().unwrap() > oldest.updated_at.as_str());

        let participating = json(
            &client
                .send(&get(&sim, &format!("{url}?participating=true")))
                .await,
        );
        let reasons: Vec<_> = participating
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["reason"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            !reasons.is_empty() && reasons.iter().all(|r| PARTICIPATING.contains(&r.as_str())),
            "{reasons:?}"
        );
        let newest = sim.threads()[1].updated_at.clone();
        let since = json(
            &client
                .send(&get(&sim, &format!("{url}?since={newest}")))
                .await,
        );
        assert_eq!(
            since.as_array().unwrap().len(),
            1,
            "only the touched thread is newer"
        );
    });
}
