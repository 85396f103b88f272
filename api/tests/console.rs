//! The console's pages (docs/architecture.md §11) in process: behind the same API keys as
//! the API, each page showing what its API route answers, escaped; the try-it form runs
//! the action through `POST /execute`; workflow graphs from `workflows/*.asl.json`; and
//! `GET /audit?status=` and `GET /workflows[/{name}]`, the API routes the console added.

#[allow(dead_code)]
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use actiondo::store::dynamodb::{DynamoStore, Tables};
use actiondo::{Catalog, Store};
use axum::body::Body;
use common::{Reply, Setup, bearer, get, post_keyed, request};
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

const LEAD: &str = r#"{"email": "ann@acme.com", "name": "Ann Lee", "freeMail": false}"#;

/// The API with the repository's workflow definitions, plus the console.
struct Console {
    setup: Setup,
    app: axum::Router,
    key: String,
}

impl Console {
    async fn new() -> Self {
        Self::with(Setup::with_keys(Catalog::new())).await
    }

    /// The same over `store` (DynamoDB Local, moto).
    async fn over(store: Arc<dyn Store>) -> Self {
        Self::with(Setup::over(store, Catalog::new(), true, |keys| keys)).await
    }

    async fn with(setup: Setup) -> Self {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../workflows");
        let definitions =
            actiondo_api::workflows::definitions_from_dir(&dir).expect("the workflows read");
        let app = actiondo_api::console::with_console(
            setup
                .api
                .clone()
                .with_workflow_definitions(definitions)
                .into_router(),
        );
        let key = setup
            .keys
            .create(vec!["*".to_owned(), "workflow:*".to_owned()], None)
            .await
            .expect("a key")
            .key;
        Self { setup, app, key }
    }

    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("a body").to_bytes().to_vec();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// GET `uri` with the key: the page, after checking it is HTML.
    async fn page(&self, uri: &str) -> (StatusCode, String) {
        let reply = self.send(bearer(get(uri), &self.key)).await;
        assert_eq!(
            reply.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{uri}"
        );
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{uri}");
        // minijinja escapes `/` too (`&#x2f;`): compare with the text a browser reads.
        (reply.status, reply.text().replace("&#x2f;", "/"))
    }

    /// Run `name` with `body` under `key` through the API.
    async fn run(&self, name: &str, body: &str, key: &str) -> Reply {
        self.send(bearer(
            post_keyed(&format!("/actions/{name}"), body, key),
            &self.key,
        ))
        .await
    }
}

#[tokio::test]
async fn pages_need_the_api_key_and_say_how_to_give_it() {
    let c = Console::new().await;
    c.run("score-lead", LEAD, "secret-lead").await;
    for uri in [
        "/console/",
        "/console/actions",
        "/console/actions/score-lead",
        "/console/executions",
        "/console/executions/score-lead/secret-lead",
        "/console/workflows",
        "/console/workflows/user-onboarding",
    ] {
        let reply = c.send(get(uri)).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{uri}");
        let html = reply.text();
        assert!(html.contains(r#"id="key-form""#), "{uri}: {html}");
        assert!(html.contains("sessionStorage"), "{uri}");
        assert!(
            !html.contains("secret-lead"),
            "{uri} shows data without a key"
        );
        // A wrong key: the same form, saying the key was refused.
        let reply = c.send(bearer(get(uri), "ado_0000000000000000_nope")).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(reply.text().contains(r#"id="key-refused""#), "{uri}");
    }
    let reply = c.send(get("/")).await;
    assert!(reply.status.is_redirection(), "{:?}", reply.status);
    assert_eq!(reply.header("location"), Some("/console/"));
}

#[tokio::test]
async fn a_key_out_of_scope_sees_what_the_api_shows_it() {
    let c = Console::new().await;
    c.run("score-lead", LEAD, "lead-1").await;
    let narrow = c
        .setup
        .keys
        .create(vec!["create-user".to_owned()], None)
        .await
        .expect("a key")
        .key;
    let reply = c.send(bearer(get("/console/actions"), &narrow)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.text().contains("create-user"));
    assert!(!reply.text().contains("score-lead"));
    let reply = c
        .send(bearer(
            get("/console/executions/score-lead/lead-1"),
            &narrow,
        ))
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.text().contains("ActionDo.Forbidden"));
    let reply = c.send(bearer(get("/console/workflows"), &narrow)).await;
    assert!(!reply.text().contains("user-onboarding"));
}

#[tokio::test]
async fn executions_are_listed_filtered_and_paged_through_get_audit() {
    let c = Console::new().await;
    assert_eq!(
        c.run("score-lead", LEAD, "lead-a").await.status,
        StatusCode::OK
    );
    assert_eq!(
        c.run("score-lead", LEAD, "lead-a").await.status,
        StatusCode::OK
    );
    let bad = c
        .run(
            "create-user",
            r#"{"email": "nope", "name": "X"}"#,
            "user-bad",
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let (status, html) = c.page("/console/executions").await;
    assert_eq!(status, StatusCode::OK);
    for text in [
        "lead-a",
        "user-bad",
        "s-completed",
        "s-replayed",
        "s-rejected",
    ] {
        assert!(html.contains(text), "{text} in {html}");
    }
    assert!(html.contains("/console/executions/score-lead/lead-a"));

    let (_, html) = c.page("/console/executions?status=rejected").await;
    assert!(html.contains("user-bad"));
    assert!(!html.contains("lead-a"));
    let (_, html) = c.page("/console/executions?type=score-lead&status=").await;
    assert!(html.contains("lead-a") && !html.contains("user-bad"));
    let (_, html) = c.page("/console/executions?since=2999-01-01T00:00").await;
    assert!(html.contains(r#"id="no-rows""#), "{html}");

    // The API's own answer to a bad filter, on the page.
    let (status, html) = c.page("/console/executions?status=done").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains(r#"id="api-error""#) && html.contains("status"));

    // Paging with the API's cursor: 30 executions, 25 a page.
    for i in 0..30 {
        c.run("score-lead", LEAD, &format!("page-{i:02}")).await;
    }
    let (_, first) = c.page("/console/executions?type=score-lead").await;
    assert!(first.contains("page-29") && !first.contains("page-00"));
    let next = first
        .split(r#"id="next-page" href=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a link to the next page")
        .replace("&amp;", "&");
    let (_, second) = c.page(&next).await;
    assert!(second.contains("page-00"), "{second}");
    assert!(!second.contains("page-29"));
}

#[tokio::test]
async fn an_execution_shows_its_record_and_timeline() {
    let c = Console::new().await;
    c.run("score-lead", LEAD, "lead-t").await;
    c.run("score-lead", LEAD, "lead-t").await;
    let (status, html) = c.page("/console/executions/score-lead/lead-t").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"id="record-status">COMPLETED"#), "{html}");
    let completed = html
        .find(r#"class="event s-completed""#)
        .expect("completed");
    let replayed = html.find(r#"class="event s-replayed""#).expect("replayed");
    assert!(completed < replayed, "the timeline runs oldest first");
    assert!(html.contains("replay of COMPLETED"));
    assert!(html.contains("ann@acme.com"), "the input");
    assert!(html.contains("GET /executions/score-lead/lead-t"));

    let (status, html) = c.page("/console/executions/score-lead/never").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(html.contains("ActionDo.NotFound"));

    // Refused before any claim: no record, but the audit says why, at the top.
    let bad = c
        .run(
            "create-user",
            r#"{"email": "nope", "name": "X"}"#,
            "user-bad",
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let (status, html) = c.page("/console/executions/create-user/user-bad").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(r#"id="record-status">NO RECORD"#), "{html}");
    let why = html.split(r#"id="why""#).nth(1).expect("why it failed");
    assert!(why.contains("ActionDo.Validation"), "{why}");
    assert!(html.contains(r#"class="event s-rejected""#));
    assert!(
        html.contains("GET /audit?type=create-user&amp;key=user-bad"),
        "{html}"
    );
}

#[tokio::test]
async fn everything_shown_is_escaped() {
    let c = Console::new().await;
    let key = "<b>x</b>&\"'";
    let body =
        r#"{"email": "ann@acme.com", "name": "<script>alert(1)</script>", "freeMail": false}"#;
    assert_eq!(c.run("score-lead", body, key).await.status, StatusCode::OK);
    let (_, list) = c.page("/console/executions").await;
    let encoded = "%3Cb%3Ex%3C%2Fb%3E%26%22%27";
    let (_, one) = c
        .page(&format!("/console/executions/score-lead/{encoded}"))
        .await;
    for html in [&list, &one] {
        assert!(!html.contains("<b>x</b>"), "{html}");
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"), "{html}");
    }
    assert!(!one.contains("<script>alert"));
    assert!(one.contains("&lt;script&gt;alert(1)"));
}

#[tokio::test]
async fn the_try_it_form_runs_the_action_through_post_execute() {
    let c = Console::new().await;
    let (status, html) = c.page("/console/actions/score-lead").await;
    assert_eq!(status, StatusCode::OK);
    for field in [
        r#"name="p.email""#,
        r#"name="p.name""#,
        r#"name="p.freeMail""#,
    ] {
        assert!(html.contains(field), "{field} in {html}");
    }
    let form = "p.email=ann%40acme.com&p.name=Ann+Lee&p.freeMail=false&idempotencyKey=try-1";
    let submit = |form: &str| {
        bearer(
            request("POST", "/console/actions/score-lead")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Body::from(form.to_owned()))
                .expect("a request"),
            &c.key,
        )
    };
    let reply = c.send(submit(form)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let html = reply.text().replace("&#x2f;", "/");
    assert!(html.contains(r#"id="outcome""#), "{html}");
    assert!(html.contains("&quot;result&quot;") && html.contains("&quot;error&quot;: null"));
    assert!(html.contains("/console/executions/score-lead/try-1"));
    // It ran: the record is there, audited like any caller's run.
    assert!(c.setup.record("score-lead", "try-1").await.is_some());
    // Again: the stored outcome, marked as a replay.
    assert!(c.send(submit(form)).await.text().contains("s-replayed"));
    // Params the action refuses: its error, as {result: null, error}.
    let html = c
        .send(submit("p.email=nope&p.name=&idempotencyKey=try-2"))
        .await
        .text();
    assert!(html.contains("ActionDo.Validation"), "{html}");
    // Params as JSON that are not JSON: said so, nothing run.
    let reply = c.send(submit("paramsJson=%7B&idempotencyKey=try-3")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.text().contains(r#"id="form-error""#));
    assert!(c.setup.record("score-lead", "try-3").await.is_none());
    // A form posted by another site's page: refused, nothing run.
    let mut foreign = submit(&form.replace("try-1", "try-4"));
    foreign.headers_mut().insert(
        "origin",
        "https://elsewhere.example".parse().expect("a value"),
    );
    foreign
        .headers_mut()
        .insert("host", "127.0.0.1:8080".parse().expect("a value"));
    assert_eq!(c.send(foreign).await.status, StatusCode::FORBIDDEN);
    assert!(c.setup.record("score-lead", "try-4").await.is_none());
}

#[tokio::test]
async fn workflows_are_listed_and_drawn() {
    let c = Console::new().await;
    let (status, html) = c.page("/console/workflows").await;
    assert_eq!(status, StatusCode::OK);
    for name in ["user-onboarding", "lead-qualification", "crm-new-lead"] {
        assert!(html.contains(name), "{name}");
    }
    let (status, html) = c.page("/console/workflows/user-onboarding").await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert!(html.contains(r#"<svg id="graph""#));
    for state in [
        "CreateUser",
        "ProvisionResources",
        "ReleaseResources",
        "OnboardingFailed",
    ] {
        assert!(
            html.contains(&format!(r#"data-state="{state}""#)),
            "{state}"
        );
    }
    assert!(html.contains(r#"class="edge catch""#));
    // Asking for an execution without Step Functions here: the API's answer, shown.
    let (status, html) = c
        .page("/console/workflows/user-onboarding?execution=run-1")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains(r#"id="workflow-execution""#));
    assert!(html.contains("/workflows/user-onboarding/executions/run-1"));
    let (status, _) = c.page("/console/workflows/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_input_answers_a_page_never_a_panic() {
    let c = Console::new().await;
    for uri in [
        "/console/actions/nope",
        "/console/actions/%FF%FE",
        "/console/executions/score-lead/%00",
        "/console/executions/%23/x",
        "/console/executions?cursor=garbage",
        "/console/executions?since=yesterday&limit=x",
        "/console/workflows/%3Cscript%3E",
    ] {
        let reply = c.send(bearer(get(uri), &c.key)).await;
        assert!(
            reply.status.is_client_error(),
            "{uri}: {} {}",
            reply.status,
            reply.text()
        );
        // The layout's own script only.
        assert!(reply.text().matches("<script").count() <= 1, "{uri}");
    }
}

#[tokio::test]
async fn the_api_serves_what_the_console_added() {
    let c = Console::new().await;
    c.run("score-lead", LEAD, "lead-s").await;
    c.run("create-user", r#"{"email": "nope", "name": "X"}"#, "user-s")
        .await;
    let reply = c.send(bearer(get("/audit?status=rejected"), &c.key)).await;
    assert_eq!(reply.status, StatusCode::OK);
    let records = reply.json()["records"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!records.is_empty());
    assert!(
        records.iter().all(|r| r["status"] == "rejected"),
        "{records:?}"
    );
    c.send(bearer(get("/audit?status=nope"), &c.key))
        .await
        .error(400, "ActionDo.Validation");

    let reply = c.send(bearer(get("/workflows"), &c.key)).await;
    let list = reply.json();
    assert_eq!(
        list["workflows"].as_array().map(Vec::len),
        Some(3),
        "{list}"
    );
    let reply = c.send(bearer(get("/workflows/crm-new-lead"), &c.key)).await;
    assert_eq!(
        reply.json()["definition"]["StartAt"],
        "CreateOrUpdateContact"
    );
    c.send(get("/workflows"))
        .await
        .error(401, "ActionDo.Unauthorized");
    let actions_only = c
        .setup
        .keys
        .create(vec!["*".to_owned()], None)
        .await
        .expect("a key")
        .key;
    c.send(bearer(get("/workflows/crm-new-lead"), &actions_only))
        .await
        .error(403, "ActionDo.Forbidden");
}

/// The rows of an executions page: (timestamp, action, key, status), in order.
fn rows(html: &str) -> Vec<(String, String, String, String)> {
    html.split(r#"<tr class="row">"#)
        .skip(1)
        .map(|row| {
            let cell = |after: &str, end: &str| {
                row.split(after)
                    .nth(1)
                    .and_then(|r| r.split(end).next())
                    .unwrap_or_default()
                    .to_owned()
            };
            let href = cell(r#"class="execution-link" href="/console/executions/"#, "\"");
            let (action, key) = href.split_once('/').unwrap_or_default();
            (
                cell(r#"<td class="mono nowrap">"#, "<"),
                action.to_owned(),
                key.to_owned(),
                cell(r#"<span class="badge s-"#, "\""),
            )
        })
        .collect()
}

/// Every row of the executions list from `uri` on, following the "older" links.
async fn all_rows(c: &Console, uri: &str) -> (Vec<(String, String, String, String)>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    let mut uri = uri.to_owned();
    loop {
        let (status, html) = c.page(&uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {html}");
        let page = rows(&html);
        assert!(page.len() <= 25, "{uri}");
        all.extend(page);
        pages += 1;
        match html
            .split(r#"id="next-page" href=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        {
            Some(next) => uri = next.replace("&amp;", "&"),
            None => return (all, pages),
        }
        assert!(pages < 20, "the pages never end");
    }
}

/// The executions list, newest first, filtered and paged, on `c`'s store: 3 actions
/// interleaved (32 executions, a replay and a rejection), so that a page of the merged
/// list draws from several actions' pages.
async fn executions_list_on(c: &Console) {
    let lead =
        |i: usize| format!(r#"{{"email": "p{i}@acme.com", "name": "P {i}", "freeMail": false}}"#);
    let mut expected = BTreeSet::new();
    for i in 0..30 {
        let key = format!("k-{i:02}");
        let (action, body) = match i % 3 {
            0 => ("score-lead", lead(i)),
            1 => (
                "create-user",
                format!(r#"{{"email": "u{i}@example.com", "name": "U"}}"#),
            ),
            _ => (
                "validate-lead",
                format!(r#"{{"email": "v{i}@acme.com", "name": "V {i}"}}"#),
            ),
        };
        let reply = c.run(action, &body, &key).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{action} {key}: {}",
            reply.text()
        );
        expected.insert((action.to_owned(), key, "completed".to_owned()));
    }
    // A replay and a rejection.
    assert_eq!(
        c.run("score-lead", &lead(0), "k-00").await.status,
        StatusCode::OK
    );
    expected.insert((
        "score-lead".to_owned(),
        "k-00".to_owned(),
        "replayed".to_owned(),
    ));
    let bad = c
        .run(
            "create-user",
            r#"{"email": "nope", "name": "X"}"#,
            "user-bad",
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    expected.insert((
        "create-user".to_owned(),
        "user-bad".to_owned(),
        "rejected".to_owned(),
    ));

    // No filter: every record once, newest first, over two pages.
    let (all, pages) = all_rows(c, "/console/executions").await;
    assert_eq!(pages, 2, "{all:?}");
    let seen: BTreeSet<(String, String, String)> = all
        .iter()
        .map(|(_, a, k, s)| (a.clone(), k.clone(), s.clone()))
        .collect();
    assert_eq!(seen.len(), all.len(), "no record twice: {all:?}");
    assert_eq!(seen, expected);
    let times: Vec<&String> = all.iter().map(|(t, ..)| t).collect();
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {times:?}"
    );
    assert!(
        all[..3].iter().any(|(_, _, k, _)| k == "user-bad"),
        "the newest first: {all:?}"
    );
    assert!(all[25..].iter().any(|(_, _, k, _)| k == "k-01"), "{all:?}");

    // One action: the API's own pages and cursor.
    let (one, pages) = all_rows(c, "/console/executions?type=create-user").await;
    assert_eq!(pages, 1);
    assert_eq!(one.len(), 11, "{one:?}");
    let (validated, _) = all_rows(c, "/console/executions?type=validate-lead").await;
    assert_eq!(validated.len(), 10, "{validated:?}");
    assert!(one.iter().all(|(_, a, ..)| a == "create-user"));
    let (scored, pages) = all_rows(c, "/console/executions?type=score-lead").await;
    assert_eq!((scored.len(), pages), (11, 1), "{scored:?}");

    // By status, across actions and for one.
    let (rejected, _) = all_rows(c, "/console/executions?status=rejected").await;
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].2, "user-bad");
    let (replayed, _) = all_rows(c, "/console/executions?type=score-lead&status=replayed").await;
    assert_eq!(replayed.len(), 1);
    assert_eq!(replayed[0].2, "k-00");

    // Since: the newest record's time keeps it (and anything as new) only.
    let newest = all[0].0.trim_end_matches('Z').to_owned();
    let (recent, _) = all_rows(c, &format!("/console/executions?since={newest}")).await;
    assert!(!recent.is_empty() && recent.len() < 5, "{recent:?}");
    assert!(recent.iter().any(|(_, _, k, _)| k == "user-bad"));
    let (none, _) = all_rows(c, "/console/executions?since=2999-01-01T00:00").await;
    assert!(none.is_empty());

    // A cursor the page did not write: the page says so.
    let (status, html) = c.page("/console/executions?cursor=zz").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains(r#"id="api-error""#), "{html}");
}

#[tokio::test]
async fn the_executions_list_pages_newest_first_on_sqlite() {
    executions_list_on(&Console::new().await).await;
}

#[tokio::test]
async fn the_executions_list_pages_newest_first_on_dynamodb_local_and_moto() {
    for (var, what) in [
        (
            "ACTIONDO_TEST_DYNAMODB_LOCAL_URL",
            "the console's executions list on DynamoDB Local",
        ),
        (
            "ACTIONDO_TEST_MOTO_URL",
            "the console's executions list on moto",
        ),
    ] {
        let Some(url) = actiondo::testing::server_url(var, what) else {
            continue;
        };
        let config = actiondo::testing::local_aws_config(&url);
        let prefix = format!("c{}", uuid::Uuid::new_v4().simple());
        let store = DynamoStore::with_tables(&config, Tables::with_prefix(&prefix));
        store.create_tables().await.expect("tables created");
        executions_list_on(&Console::over(Arc::new(store)).await).await;
    }
}
