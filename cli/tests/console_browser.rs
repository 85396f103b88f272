//! The console in a real headless Chromium (docs/architecture.md §11), driven over
//! WebDriver (`chromedriver`, W3C protocol, spoken with reqwest): against an `actiondo
//! serve` with data, type the API key into the page, filter the executions, open one and
//! read its timeline, run an action from the try-it form, open a workflow's graph, list a
//! workflow's executions and open one from the list.
//! Screenshots go to `.tools/logs/console-*.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`./tests/run.sh` installs them). Without
//! them a plain `cargo test` says `skipped:`; under `CI=true` or
//! `ACTIONDO_TEST_REQUIRE_INFRA=1` their absence fails the test.

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a page may take to show what a step waits for (a bound, never asserted).
const PATIENCE: Duration = Duration::from_secs(30);

/// A child process killed (and reaped) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// `actiondo ARGS` in `dir`: its standard output.
fn actiondo(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_actiondo"))
        .current_dir(dir)
        .args(args)
        .env_remove("ACTIONDO_STORE")
        .env_remove("RUST_LOG")
        .output()
        .expect("run actiondo");
    assert!(out.status.success(), "actiondo {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The stand-ins of the outside services user-onboarding calls
/// (`tests/stand-ins/local_services.py`: a payment provider, `--down` for an outage, and
/// a webhook receiver) on `port`, listening when this returns.
fn stand_ins(port: u16, down: bool) -> Running {
    let mut command = Command::new("python3");
    command
        .arg(repo_root().join("tests/stand-ins/local_services.py"))
        .args(["--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if down {
        command.arg("--down");
    }
    let running = Running(command.spawn().expect("python3 runs the stand-ins"));
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < PATIENCE, "the stand-ins never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    running
}

/// `actiondo serve` on a free loopback port, its outside services the stand-ins on
/// `services` and the workflow engine's time 100 times faster (the Retry backoff); its
/// base URL.
fn serve(dir: &Path, services: u16) -> (Running, String) {
    // The project folder: its workflows/ (the graphs) and template.yaml (the engine).
    let project = repo_root();
    let mut child = Command::new(env!("CARGO_BIN_EXE_actiondo"))
        .current_dir(dir)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--time-scale",
            "100",
            "--dir",
        ])
        .arg(&project)
        .env_remove("ACTIONDO_STORE")
        .env_remove("RUST_LOG")
        .env("PAYMENT_API_URL", format!("http://127.0.0.1:{services}"))
        .env("PAYMENT_API_KEY", "sk_test_local")
        .env(
            "NOTIFY_WEBHOOK_URL",
            format!("http://127.0.0.1:{services}/hook"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn actiondo serve");
    let stderr = child.stderr.take().expect("stderr");
    let running = Running(child);
    let mut lines = std::io::BufReader::new(stderr).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("actiondo serve exited before listening")
            .expect("stderr");
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .expect("an address")
                .to_owned();
        }
    };
    // Keep draining its standard error so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (running, base)
}

/// A WebDriver session of chromedriver.
struct Browser {
    http: reqwest::Client,
    session: String,
    shots: PathBuf,
    _driver: Running,
}

impl Browser {
    async fn start(profile: &Path, shots: PathBuf) -> Self {
        let port = actiondo::testing::unused_port().expect("a free port");
        let driver = Running(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn chromedriver"),
        );
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            let ready = http.get(format!("{base}/status")).send().await;
            if let Ok(r) = ready
                && let Ok(body) = r.json::<Value>().await
                && body["value"]["ready"] == true
            {
                break;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "chromedriver never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|a| (*a).to_owned())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("JSON");
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"));
        Self {
            session: format!("{base}/session/{id}"),
            http,
            shots,
            _driver: driver,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request
            .send()
            .await
            .expect("WebDriver")
            .json()
            .await
            .expect("JSON");
        answer["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// The first element matching `css`, if any.
    async fn find(&self, css: &str) -> Option<String> {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT].as_str().map(str::to_owned)
    }

    /// Wait until `css` matches an element whose text satisfies `ok`; its text.
    async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        let mut last = String::new();
        loop {
            if let Some(element) = self.find(css).await {
                let text = self
                    .call(
                        reqwest::Method::GET,
                        &format!("/element/{element}/text"),
                        None,
                    )
                    .await;
                // Not a string: an error, such as a stale element (the page was swapped
                // between the lookup and the read); look again.
                if let Some(text) = text.as_str() {
                    last = text.to_owned();
                    if ok(&last) {
                        return last;
                    }
                }
            }
            if started.elapsed() > PATIENCE {
                self.shot("timeout").await;
                panic!("{css} never showed what was expected; last text: {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        self.wait_text(css, |_| true).await;
        self.find(css).await.expect("the element")
    }

    async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{element}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// Run `script` (a function body) with `args`.
    async fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    async fn shot(&self, name: &str) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        if let Some(b64) = png.as_str() {
            use base64::Engine as _;
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(b64) {
                let _ = std::fs::create_dir_all(&self.shots);
                let _ = std::fs::write(self.shots.join(format!("console-{name}.png")), bytes);
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session (closes Chromium); the driver is killed after.
        let url = self.session.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    let _ = reqwest::Client::new().delete(url).send().await;
                });
            }
        })
        .join();
    }
}

/// The onboarding input of `who`, paying with `method`.
fn onboarding(who: &str, method: &str) -> Value {
    json!({
        "user": {"email": format!("{who}@example.com"), "name": who},
        "payment": {"amount": 1200, "currency": "eur", "paymentMethod": method},
    })
}

/// Start user-onboarding execution `name` through the API.
async fn start_onboarding(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    name: &str,
    input: &Value,
) {
    let status = http
        .post(format!("{base}/workflows/user-onboarding"))
        .bearer_auth(key)
        .header("idempotency-key", name)
        .json(input)
        .send()
        .await
        .expect("POST /workflows")
        .status();
    assert_eq!(status, 202, "{name} starts");
}

/// `GET /workflows/user-onboarding/executions/{name}` once it is no longer RUNNING.
async fn settled(http: &reqwest::Client, base: &str, key: &str, name: &str) -> Value {
    let started = Instant::now();
    loop {
        let body: Value = http
            .get(format!(
                "{base}/workflows/user-onboarding/executions/{name}"
            ))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET")
            .json()
            .await
            .expect("JSON");
        if body["status"] != "RUNNING" {
            return body;
        }
        assert!(started.elapsed() < PATIENCE, "{name} never settled: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The outcome each state of the graph shows (`data-outcome`), by state.
async fn graph_outcomes(browser: &Browser) -> BTreeMap<String, String> {
    let outcomes = browser
        .script(
            "return Array.from(document.querySelectorAll('svg#graph g.node')).map(g => [g.dataset.state, g.dataset.outcome]);",
            json!([]),
        )
        .await;
    outcomes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|pair| Some((pair[0].as_str()?.to_owned(), pair[1].as_str()?.to_owned())))
        .collect()
}

/// The states of user-onboarding and the outcome each should show, `none` for the rest.
fn expect_outcomes(shown: &BTreeMap<String, String>, expected: &[(&str, &str)]) {
    let all = [
        "CreateUser",
        "ProvisionResources",
        "ProcessPayment",
        "SendWelcomeEmail",
        "ReleaseResources",
        "MarkUser",
        "NotifyOnboardingFailed",
        "UserRejected",
        "OnboardingFailed",
    ];
    assert_eq!(
        shown.keys().map(String::as_str).collect::<Vec<_>>().len(),
        all.len(),
        "{shown:?}"
    );
    for state in all {
        let want = expected
            .iter()
            .find(|(s, _)| *s == state)
            .map_or("none", |(_, o)| *o);
        assert_eq!(
            shown.get(state).map(String::as_str),
            Some(want),
            "{state} in {shown:?}"
        );
    }
}

/// Open execution `name` of user-onboarding from the Workflows page (its name typed
/// into the page's form), once its status badge reads `status`.
async fn open_workflow_execution(browser: &Browser, name: &str, status: &str) {
    browser.click("header a[href='/console/workflows']").await;
    browser
        .click("#workflows a[href='/console/workflows/user-onboarding']")
        .await;
    browser.element("svg#graph").await;
    browser
        .type_into("#execution-form input[name=execution]", name)
        .await;
    browser.click("#execution-form button").await;
    browser.wait_text("h1", |t| t.contains(name)).await;
    browser
        .wait_text("#execution-status", |t| t == status)
        .await;
}

/// The executions the open workflow page lists: (name, status) by row, top to bottom.
async fn listed_executions(browser: &Browser) -> Vec<(String, String)> {
    let rows = browser
        .script(
            "return Array.from(document.querySelectorAll('#workflow-executions tr.execution-row')).map(r => [r.dataset.name, r.querySelector('.badge').textContent, r.querySelector('a.workflow-execution-link').getAttribute('href')]);",
            json!([]),
        )
        .await;
    rows.as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| {
            let name = row[0].as_str()?.to_owned();
            // Each row links to its execution's page.
            assert_eq!(
                row[2].as_str(),
                Some(format!("/console/workflows/user-onboarding?execution={name}").as_str()),
                "{row}"
            );
            Some((name, row[1].as_str()?.to_owned()))
        })
        .collect()
}

/// Open the list of user-onboarding's executions from the Workflows page.
async fn open_workflow_list(browser: &Browser) {
    browser.click("header a[href='/console/workflows']").await;
    browser
        .click("#workflows a[href='/console/workflows/user-onboarding']")
        .await;
    browser.element("#workflow-executions").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        assert!(
            !actiondo::testing::infra_required(),
            "{CHROMIUM} and {CHROMEDRIVER} are required for this run (apt-get install chromium chromium-driver; ./tests/run.sh does)"
        );
        eprintln!("skipped: the console browser test needs {CHROMIUM} and {CHROMEDRIVER}");
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let key = actiondo(
        dir.path(),
        &["keys", "create", "--scope", "*", "--scope", "workflow:*"],
    )
    .trim()
    .to_owned();
    let services = actiondo::testing::unused_port().expect("a free port");
    let stand_in = stand_ins(services, false);
    let (_server, base) = serve(dir.path(), services);

    // Data: older executions (for a second page), a completed execution and its
    // replay, a rejected one, under a correlation id; then two onboardings, one whose
    // payment is declined (and compensated), one that succeeds.
    let http = reqwest::Client::new();
    for i in 0..15 {
        let status = http
            .post(format!("{base}/actions/validate-lead"))
            .bearer_auth(&key)
            .header("idempotency-key", format!("bulk-{i:02}"))
            .json(&json!({"email": format!("b{i}@acme.com"), "name": format!("B {i}")}))
            .send()
            .await
            .expect("POST")
            .status();
        assert_eq!(status, 200);
    }
    let lead = json!({"email": "ann@acme.com", "name": "Ann Lee", "freeMail": false});
    for _ in 0..2 {
        let status = http
            .post(format!("{base}/actions/score-lead"))
            .bearer_auth(&key)
            .header("idempotency-key", "lead-ann")
            .header("x-correlation-id", "campaign-7")
            .json(&lead)
            .send()
            .await
            .expect("POST")
            .status();
        assert_eq!(status, 200);
    }
    let status = http
        .post(format!("{base}/actions/create-user"))
        .bearer_auth(&key)
        .header("idempotency-key", "user-bad")
        .json(&json!({"email": "not an address", "name": "X"}))
        .send()
        .await
        .expect("POST")
        .status();
    assert_eq!(status, 400);
    start_onboarding(
        &http,
        &base,
        &key,
        "onboard-grace",
        &onboarding("grace", "pm_card_chargeDeclined"),
    )
    .await;
    let grace = settled(&http, &base, &key, "onboard-grace").await;
    assert_eq!(grace["status"], "FAILED", "{grace}");
    start_onboarding(
        &http,
        &base,
        &key,
        "onboard-ada",
        &onboarding("ada", "pm_card_visa"),
    )
    .await;
    let ada = settled(&http, &base, &key, "onboard-ada").await;
    assert_eq!(ada["status"], "SUCCEEDED", "{ada}");

    let shots = repo_root().join(".tools/logs");
    let browser = Browser::start(&dir.path().join("profile"), shots).await;

    // 1. The page asks for the key; typed in, the executions show.
    browser.goto(&format!("{base}/console/executions")).await;
    browser.type_into("#key-form input[name=key]", &key).await;
    browser.click("#key-form button").await;
    let table = browser
        .wait_text("#executions", |t| t.contains("lead-ann"))
        .await;
    assert!(table.contains("user-bad"), "{table}");
    let stored = browser
        .script("return sessionStorage.getItem('actiondo.key');", json!([]))
        .await;
    assert_eq!(stored, json!(key), "the key is kept for the tab");
    browser.shot("executions").await;
    if std::env::var("ACTIONDO_UPDATE_CONSOLE_PNG").is_ok_and(|v| v == "1") {
        // README's screenshot (docs/console.png), from this page.
        std::fs::copy(
            repo_root().join(".tools/logs/console-executions.png"),
            repo_root().join("docs/console.png"),
        )
        .expect("docs/console.png written");
    }

    // Paging with the API's cursors: the 15 oldest (validate-lead) spill onto page 2.
    assert!(
        !table.contains("bulk-00"),
        "the oldest are on page 2: {table}"
    );
    let rows = browser
        .script(
            "return document.querySelectorAll('#executions tr.row').length;",
            json!([]),
        )
        .await;
    assert_eq!(rows, json!(25), "a page holds 25 rows");
    browser.click("#next-page").await;
    let older = browser
        .wait_text("#executions", |t| t.contains("bulk-00"))
        .await;
    assert!(
        !older.contains("lead-ann") && !older.contains("onboard-"),
        "{older}"
    );
    let url = browser.call(reqwest::Method::GET, "/url", None).await;
    assert!(
        url.as_str().unwrap_or_default().contains("cursor="),
        "{url}"
    );
    browser.shot("executions-older").await;

    // 2. Filter by status: only the rejected request.
    browser
        .script(
            "document.querySelector('select[name=status]').value = 'rejected';",
            json!([]),
        )
        .await;
    browser.click("#filters button").await;
    let filtered = browser
        .wait_text("#executions", |t| {
            !t.contains("lead-ann") && t.contains("user-bad")
        })
        .await;
    assert!(filtered.contains("rejected"), "{filtered}");
    let url = browser.call(reqwest::Method::GET, "/url", None).await;
    assert!(
        url.as_str().unwrap_or_default().contains("status=rejected"),
        "{url}"
    );
    // A request refused before it ran has no record; its page still says why.
    browser.click("a.execution-link").await;
    let why = browser.wait_text("#why", |t| !t.is_empty()).await;
    assert!(why.contains("ActionDo.Validation"), "{why}");
    browser.shot("rejected").await;

    // 3. By correlation id, then open the execution and read its timeline.
    browser
        .goto(&format!(
            "{base}/console/executions?correlationId=campaign-7"
        ))
        .await;
    browser
        .wait_text("#executions", |t| {
            t.contains("lead-ann") && !t.contains("user-bad")
        })
        .await;
    browser.click("a.execution-link").await;
    let timeline = browser
        .wait_text("#timeline", |t| t.contains("replayed"))
        .await;
    assert!(timeline.contains("completed"), "{timeline}");
    let first = timeline.find("completed").unwrap_or(usize::MAX);
    let replay = timeline.find("replayed").unwrap_or(0);
    assert!(first < replay, "oldest first: {timeline}");
    let status = browser.wait_text("#record-status", |t| !t.is_empty()).await;
    assert_eq!(status, "COMPLETED");
    browser.shot("execution").await;

    // 4. Run an action from the try-it form.
    browser.click("header a[href='/console/actions']").await;
    browser.element("table#actions").await;
    browser
        .click("#actions a[href='/console/actions/score-lead']")
        .await;
    browser
        .type_into("input[name='p.email']", "bob@globex.com")
        .await;
    browser.type_into("input[name='p.name']", "Bob Stone").await;
    browser
        .script(
            "document.querySelector(\"select[name='p.freeMail']\").value = 'false';",
            json!([]),
        )
        .await;
    browser
        .type_into("input[name=idempotencyKey]", "try-bob")
        .await;
    browser.click("#try-it button").await;
    let outcome = browser
        .wait_text("#outcome-body", |t| t.contains("\"result\""))
        .await;
    let body: Value = serde_json::from_str(&outcome).expect("the outcome is the API's JSON");
    assert!(body["result"].is_object(), "{body}");
    assert_eq!(body["error"], Value::Null);
    browser.shot("try-it").await;
    let record = http
        .get(format!("{base}/executions/score-lead/try-bob"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET")
        .json::<Value>()
        .await
        .expect("JSON");
    assert_eq!(record["execution"]["status"], "COMPLETED", "{record}");

    // 5. A workflow's graph.
    browser.click("header a[href='/console/workflows']").await;
    browser
        .click("#workflows a[href='/console/workflows/user-onboarding']")
        .await;
    browser
        .element("svg#graph g[data-state='CreateUser']")
        .await;
    let states = browser
        .script(
            "return Array.from(document.querySelectorAll('svg#graph g.node')).map(g => g.dataset.state);",
            json!([]),
        )
        .await;
    let states: Vec<&str> = states
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for state in [
        "CreateUser",
        "ProcessPayment",
        "SendWelcomeEmail",
        "OnboardingFailed",
    ] {
        assert!(states.contains(&state), "{state} in {states:?}");
    }
    let drawn = browser
        .script(
            "const b = document.querySelector(\"svg#graph g[data-state='CreateUser'] rect\").getBBox(); return b.width > 0 && b.height > 0;",
            json!([]),
        )
        .await;
    assert_eq!(drawn, json!(true), "the state boxes are drawn");
    browser.shot("workflow").await;

    // 6. From the failed payment to its workflow execution: the executions filtered by
    //    the execution's ARN (the correlation id its Tasks carry) and by status.
    let arn = grace["executionArn"].as_str().expect("an execution ARN");
    browser.click("header a[href='/console/executions']").await;
    browser
        .type_into("#filters input[name=correlationId]", arn)
        .await;
    browser
        .script(
            "document.querySelector('select[name=status]').value = 'failed';",
            json!([]),
        )
        .await;
    browser.click("#filters button").await;
    let failed = browser
        .wait_text("#executions", |t| {
            t.contains("onboard-grace#ProcessPayment") && !t.contains("try-bob")
        })
        .await;
    assert!(failed.contains("ActionDo.Rejected"), "{failed}");
    assert!(
        !failed.contains("#CreateUser"),
        "only the failed attempt: {failed}"
    );
    browser.click("#executions a.workflow-link").await;
    browser
        .wait_text("#execution-status", |t| t == "FAILED")
        .await;

    // 7. The declined payment: each state's outcome, why it failed, the history.
    expect_outcomes(
        &graph_outcomes(&browser).await,
        &[
            ("CreateUser", "succeeded"),
            ("ProvisionResources", "succeeded"),
            ("ProcessPayment", "caught"),
            ("ReleaseResources", "succeeded"),
            ("MarkUser", "succeeded"),
            ("NotifyOnboardingFailed", "succeeded"),
            ("OnboardingFailed", "failed"),
        ],
    );
    let why = browser
        .wait_text("#execution-failure", |t| !t.is_empty())
        .await;
    assert!(
        why.contains("ActionDo.Rejected") && why.contains("ProcessPayment"),
        "{why}"
    );
    let title = browser
        .script(
            "return document.querySelector(\"svg#graph g[data-state='ProcessPayment'] title\").textContent;",
            json!([]),
        )
        .await;
    assert!(
        title
            .as_str()
            .unwrap_or_default()
            .contains("ActionDo.Rejected"),
        "{title}"
    );
    let history: Value = http
        .get(format!(
            "{base}/workflows/user-onboarding/executions/onboard-grace/history"
        ))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET history")
        .json()
        .await
        .expect("JSON");
    let listed = browser
        .script(
            "return Array.from(document.querySelectorAll('#history tbody tr')).map(r => r.dataset.type);",
            json!([]),
        )
        .await;
    let api_types: Vec<Value> = history["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].clone())
        .collect();
    assert_eq!(listed, json!(api_types), "every history event, in order");
    assert!(
        api_types.contains(&json!("TaskFailed")) && api_types.contains(&json!("ExecutionFailed"))
    );
    browser
        .script(
            "document.querySelector('svg#graph').scrollIntoView();",
            json!([]),
        )
        .await;
    browser.shot("workflow-declined").await;
    // Its Task's execution: the attempt that failed, and why.
    browser.click("a.caught-link").await;
    let why = browser.wait_text("#why", |t| !t.is_empty()).await;
    assert!(why.contains("ActionDo.Rejected"), "{why}");
    let timeline = browser
        .wait_text("#timeline", |t| t.contains("failed"))
        .await;
    assert!(timeline.contains("attempt 1"), "{timeline}");
    browser.element("#workflow-link").await;
    browser.shot("workflow-task").await;

    // 8. The executions of user-onboarding, newest first with their statuses, on the
    //    Workflows page (its latest) and the workflow's own list; filtered by status; the
    //    one that succeeded opened from the list: its path succeeded, the compensations
    //    never ran, and there is nothing to redrive.
    browser.click("header a[href='/console/workflows']").await;
    let latest = browser
        .wait_text(
            "#workflows tr[data-workflow='user-onboarding'] td.latest",
            |t| t.contains("onboard-ada"),
        )
        .await;
    let (ada_at, grace_at) = (
        latest.find("onboard-ada").unwrap_or(usize::MAX),
        latest.find("onboard-grace").unwrap_or(0),
    );
    assert!(ada_at < grace_at, "newest first: {latest}");
    open_workflow_list(&browser).await;
    assert_eq!(
        listed_executions(&browser).await,
        [
            ("onboard-ada".to_owned(), "SUCCEEDED".to_owned()),
            ("onboard-grace".to_owned(), "FAILED".to_owned()),
        ],
        "newest first, with their statuses"
    );
    let colour = browser
        .script(
            "return getComputedStyle(document.querySelector(\"#workflow-executions tr[data-name='onboard-grace'] .badge\")).color;",
            json!([]),
        )
        .await;
    assert_eq!(colour, json!("rgb(179, 38, 30)"), "a failure is red");
    browser.shot("workflow-executions").await;
    browser
        .script(
            "document.querySelector('#status-filter select[name=status]').value = 'FAILED';",
            json!([]),
        )
        .await;
    browser.click("#status-filter button").await;
    browser
        .wait_text("#workflow-executions", |t| !t.contains("onboard-ada"))
        .await;
    assert_eq!(
        listed_executions(&browser).await,
        [("onboard-grace".to_owned(), "FAILED".to_owned())]
    );
    let url = browser.call(reqwest::Method::GET, "/url", None).await;
    assert!(
        url.as_str().unwrap_or_default().contains("status=FAILED"),
        "{url}"
    );
    open_workflow_list(&browser).await;
    browser
        .click("#workflow-executions a.workflow-execution-link[href$='execution=onboard-ada']")
        .await;
    browser.wait_text("h1", |t| t.contains("onboard-ada")).await;
    browser
        .wait_text("#execution-status", |t| t == "SUCCEEDED")
        .await;
    expect_outcomes(
        &graph_outcomes(&browser).await,
        &[
            ("CreateUser", "succeeded"),
            ("ProvisionResources", "succeeded"),
            ("ProcessPayment", "succeeded"),
            ("SendWelcomeEmail", "succeeded"),
        ],
    );
    assert!(
        browser.find("#redrive").await.is_none(),
        "no redrive for a success"
    );

    // 9. A provider outage outlasts ProcessPayment's retries; once the provider is back,
    //    the console's redrive button finishes the execution.
    drop(stand_in);
    let stand_in = stand_ins(services, true);
    start_onboarding(
        &http,
        &base,
        &key,
        "onboard-alan",
        &onboarding("alan", "pm_card_visa"),
    )
    .await;
    let alan = settled(&http, &base, &key, "onboard-alan").await;
    assert_eq!(alan["status"], "FAILED", "{alan}");
    drop(stand_in);
    let _stand_in = stand_ins(services, false);
    open_workflow_execution(&browser, "onboard-alan", "FAILED").await;
    expect_outcomes(
        &graph_outcomes(&browser).await,
        &[
            ("CreateUser", "succeeded"),
            ("ProvisionResources", "succeeded"),
            ("ProcessPayment", "failed"),
        ],
    );
    let why = browser
        .wait_text("#execution-failure", |t| !t.is_empty())
        .await;
    assert!(
        why.contains("ActionDo.Transient") && why.contains("ProcessPayment"),
        "{why}"
    );
    browser.shot("workflow-outage").await;
    browser.click("#redrive").await;
    // The page follows the running execution until it ends.
    browser
        .wait_text("#execution-status", |t| t == "SUCCEEDED")
        .await;
    expect_outcomes(
        &graph_outcomes(&browser).await,
        &[
            ("CreateUser", "succeeded"),
            ("ProvisionResources", "succeeded"),
            ("ProcessPayment", "succeeded"),
            ("SendWelcomeEmail", "succeeded"),
        ],
    );
    let entered = browser
        .wait_text("#states tr[data-state='ProcessPayment']", |t| !t.is_empty())
        .await;
    assert!(
        entered.contains("2×"),
        "entered again by the redrive: {entered}"
    );
    browser
        .script(
            "document.querySelector('svg#graph').scrollIntoView();",
            json!([]),
        )
        .await;
    browser.shot("workflow-redriven").await;
    let alan = settled(&http, &base, &key, "onboard-alan").await;
    assert_eq!(alan["status"], "SUCCEEDED", "{alan}");
    assert_eq!(alan["redriveCount"], 1, "{alan}");

    // 10. Back to the list: the redriven execution is the newest (it keeps its start),
    //     succeeded, redriven once; paging with the API's cursor reaches the oldest.
    browser.click("#all-executions").await;
    browser
        .wait_text("#workflow-executions", |t| t.contains("onboard-alan"))
        .await;
    assert_eq!(
        listed_executions(&browser).await,
        [
            ("onboard-alan".to_owned(), "SUCCEEDED".to_owned()),
            ("onboard-ada".to_owned(), "SUCCEEDED".to_owned()),
            ("onboard-grace".to_owned(), "FAILED".to_owned()),
        ]
    );
    let redrives = browser
        .wait_text("#workflow-executions tr[data-name='onboard-alan']", |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        redrives.trim_end().ends_with('1'),
        "redriven once: {redrives}"
    );
    let page: Value = http
        .get(format!(
            "{base}/workflows/user-onboarding/executions?limit=2"
        ))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET executions")
        .json()
        .await
        .expect("JSON");
    let cursor = page["cursor"].as_str().expect("a second page").to_owned();
    let older: Value = http
        .get(format!(
            "{base}/workflows/user-onboarding/executions?limit=2&cursor={cursor}"
        ))
        .bearer_auth(&key)
        .send()
        .await
        .expect("GET executions")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        older["executions"][0]["executionName"], "onboard-grace",
        "{older}"
    );
    assert!(older.get("cursor").is_none(), "{older}");
    browser.shot("workflow-executions-after").await;
}
