//! `actiondo workflow`: the built binary runs a two-Task workflow locally — each Task is
//! the real `send-notification` action, in-process, posting to a webhook receiver this
//! test serves on 127.0.0.1 (a stand-in that records every request and, like a real
//! receiver, delivers once per `Idempotency-Key`).
//!
//! - run, describe, history, list; the name as idempotency key;
//! - one workflow's executions, newest first, by status, a page at a time;
//! - a transient failure past the retries, then redrive: the first Task never runs again;
//! - the process killed while a Task's request is blocked in the receiver: the execution
//!   shows as interrupted, a redrive completes it, and no Task's effect happens twice.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What the receiver was sent and how it behaves.
#[derive(Debug, Default)]
struct ReceiverState {
    /// Every request: (Idempotency-Key, message).
    requests: Vec<(String, String)>,
    /// Keys whose message was delivered (answered 2xx), once each.
    delivered: BTreeMap<String, String>,
    /// Requests with this message answer 503.
    fail: Option<String>,
    /// The first request with this message blocks until `released`.
    block: Option<String>,
    blocked: bool,
    released: bool,
}

#[derive(Clone)]
struct Receiver {
    state: Arc<(Mutex<ReceiverState>, Condvar)>,
    url: String,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let state: Arc<(Mutex<ReceiverState>, Condvar)> = Arc::default();
        let s = Arc::clone(&state);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let s = Arc::clone(&s);
                std::thread::spawn(move || handle(stream, &s));
            }
        });
        Self { state, url }
    }

    fn with<T>(&self, f: impl FnOnce(&mut ReceiverState) -> T) -> T {
        let (lock, cv) = &*self.state;
        let mut g = lock.lock().expect("lock");
        let out = f(&mut g);
        cv.notify_all();
        out
    }

    fn wait_until(&self, what: &str, f: impl Fn(&ReceiverState) -> bool) {
        let (lock, cv) = &*self.state;
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut g = lock.lock().expect("lock");
        while !f(&g) {
            assert!(
                Instant::now() < deadline,
                "gave up waiting for {what}: {g:?}"
            );
            g = cv
                .wait_timeout(g, Duration::from_millis(200))
                .expect("wait")
                .0;
        }
    }
}

fn handle(mut stream: TcpStream, state: &(Mutex<ReceiverState>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut key = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.to_ascii_lowercase().as_str() {
                "idempotency-key" => key = value.trim().to_owned(),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let (lock, cv) = state;
    let status = {
        let mut g = lock.lock().expect("lock");
        g.requests.push((key.clone(), message.clone()));
        cv.notify_all();
        if g.block.as_deref() == Some(message.as_str()) && !g.blocked {
            g.blocked = true;
            cv.notify_all();
            while !g.released {
                g = cv.wait(g).expect("wait");
            }
            // The caller is gone (killed): nothing is delivered on this connection.
            return;
        }
        if g.fail.as_deref() == Some(message.as_str()) {
            503
        } else {
            g.delivered.entry(key).or_insert(message);
            200
        }
    };
    let reason = if status == 200 {
        "OK"
    } else {
        "Service Unavailable"
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
}

fn task(state_message: &str, result: &str, next: Option<&str>) -> Value {
    let mut t = json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::lambda:invoke",
        "Parameters": {
            "FunctionName": "${SendNotificationFunctionArn}",
            "Payload": {
                "params": {"message.$": state_message, "channel": "#test"},
                "idempotencyKey.$": "States.Format('{}#{}', $$.Execution.Id, $$.State.Name)",
                "correlationId.$": "$$.Execution.Id"
            }
        },
        "ResultSelector": {"result.$": "$.Payload"},
        "ResultPath": result,
        "Retry": [{"ErrorEquals": ["ActionDo.Transient", "ActionDo.InProgress"], "IntervalSeconds": 1, "BackoffRate": 2, "MaxAttempts": 3}]
    });
    match next {
        Some(n) => t["Next"] = json!(n),
        None => t["End"] = json!(true),
    }
    t
}

struct Project {
    dir: tempfile::TempDir,
    receiver: Receiver,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("workflows")).expect("mkdir");
        let def = json!({"StartAt": "First", "States": {
            "First": task("$.one", "$.first", Some("Second")),
            "Second": task("$.two", "$.second", None),
        }});
        std::fs::write(
            dir.path().join("workflows/notify.asl.json"),
            def.to_string(),
        )
        .expect("write");
        Self {
            dir,
            receiver: Receiver::start(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_actiondo"));
        cmd.current_dir(self.dir.path())
            .env_remove("ACTIONDO_STORE")
            .env("NOTIFY_WEBHOOK_URL", &self.receiver.url)
            .env("NOTIFY_TIMEOUT_MS", "120000")
            .env("ACTIONDO_WORKFLOW_LEASE_SECS", "1")
            .env("ACTIONDO_WORKFLOW_FUNCTION_TIMEOUT_SECS", "2")
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("runs")
    }
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

const INPUT: &str = r#"{"one": "first message", "two": "second message"}"#;

#[test]
fn run_describe_history_and_the_name_as_key() {
    let p = Project::new();
    let out = p.run(&[
        "workflow", "run", "notify", "--input", INPUT, "--name", "n1",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let view = json_of(&out);
    assert_eq!(view["status"], "SUCCEEDED");
    assert_eq!(view["output"]["second"]["result"]["delivered"], true);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("First") && stderr.contains("Second"),
        "the timeline: {stderr}"
    );

    let described = json_of(&p.run(&["workflow", "describe", "notify", "n1"]));
    assert_eq!(described, view);

    let history = json_of(&p.run(&["workflow", "history", "notify", "n1", "--json"]));
    let arn = "arn:aws:states:local:000000000000:execution:notify:n1";
    let keys: Vec<&str> = history
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["type"] == "TaskScheduled")
        .filter_map(|e| e["details"]["parameters"]["Payload"]["idempotencyKey"].as_str())
        .collect();
    assert_eq!(keys, [format!("{arn}#First"), format!("{arn}#Second")]);
    // The webhook saw the same keys the history shows.
    let sent: Vec<String> = p
        .receiver
        .with(|s| s.requests.iter().map(|r| r.0.clone()).collect());
    assert_eq!(sent, keys);

    // The same name and input: the same execution, nothing sent again.
    let again = p.run(&[
        "workflow", "run", "notify", "--input", INPUT, "--name", "n1",
    ]);
    assert_eq!(json_of(&again), view);
    assert_eq!(p.receiver.with(|s| s.requests.len()), 2);
    // Another input under the name: refused.
    let other = p.run(&[
        "workflow",
        "run",
        "notify",
        "--input",
        r#"{"one": "x", "two": "y"}"#,
        "--name",
        "n1",
    ]);
    assert_eq!(other.status.code(), Some(1), "{other:?}");
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("PayloadMismatch"),
        "{other:?}"
    );

    let list = String::from_utf8_lossy(&p.run(&["workflow", "list"]).stdout).into_owned();
    assert!(
        list.contains("notify") && list.contains("n1 SUCCEEDED"),
        "{list}"
    );

    // Bad input never panics: a usage error.
    let bad = p.run(&["workflow", "run", "notify", "--input", "{nope"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}

#[test]
fn a_redrive_after_a_transient_failure_sends_the_first_notification_once() {
    let p = Project::new();
    p.receiver.with(|s| s.fail = Some("second message".into()));
    let out = p.run(&[
        "workflow",
        "--time-scale",
        "20",
        "run",
        "notify",
        "--input",
        INPUT,
        "--name",
        "r1",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let view = json_of(&out);
    assert_eq!(view["status"], "FAILED");
    assert_eq!(view["error"]["error"], "ActionDo.Transient");
    assert_eq!(view["error"]["cause"]["errorType"], "ActionDo.Transient");

    p.receiver.with(|s| s.fail = None);
    let out = p.run(&["workflow", "--time-scale", "20", "redrive", "notify", "r1"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let view = json_of(&out);
    assert_eq!(view["status"], "SUCCEEDED");
    assert_eq!(view["redriveCount"], 1);
    p.receiver.with(|s| {
        let first: Vec<_> = s
            .requests
            .iter()
            .filter(|r| r.1 == "first message")
            .collect();
        assert_eq!(first.len(), 1, "the first Task ran once overall: {s:?}");
        assert_eq!(s.delivered.len(), 2, "{s:?}");
    });
}

/// The names and statuses of `actiondo workflow executions … --json`, and its cursor.
fn listed(out: &Output) -> (Vec<(String, String)>, Option<String>) {
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let body = json_of(out);
    assert_eq!(body["workflow"], "notify", "{body}");
    let rows = body["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .map(|e| {
            (
                e["executionName"].as_str().expect("a name").to_owned(),
                e["status"].as_str().expect("a status").to_owned(),
            )
        })
        .collect();
    (rows, body["cursor"].as_str().map(str::to_owned))
}

#[test]
fn executions_are_listed_newest_first_by_status_and_page() {
    let p = Project::new();
    let none = p.run(&["workflow", "executions", "notify"]);
    assert_eq!(none.status.code(), Some(0), "{none:?}");
    assert!(
        String::from_utf8_lossy(&none.stdout).contains("no executions of notify"),
        "{none:?}"
    );
    let ok = p.run(&[
        "workflow", "run", "notify", "--input", INPUT, "--name", "e1",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    p.receiver.with(|s| s.fail = Some("two".into()));
    let failed = p.run(&[
        "workflow",
        "--time-scale",
        "20",
        "run",
        "notify",
        "--input",
        r#"{"one": "one", "two": "two"}"#,
        "--name",
        "e2",
    ]);
    assert_eq!(failed.status.code(), Some(1), "{failed:?}");
    p.receiver.with(|s| s.fail = None);
    let ok = p.run(&[
        "workflow",
        "run",
        "notify",
        "--input",
        r#"{"one": "three", "two": "four"}"#,
        "--name",
        "e3",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");

    let pair = |n: &str, s: &str| (n.to_owned(), s.to_owned());
    let (all, cursor) = listed(&p.run(&["workflow", "executions", "notify", "--json"]));
    assert_eq!(
        all,
        [
            pair("e3", "SUCCEEDED"),
            pair("e2", "FAILED"),
            pair("e1", "SUCCEEDED")
        ]
    );
    assert_eq!(cursor, None);
    let (failed, _) = listed(&p.run(&[
        "workflow",
        "executions",
        "notify",
        "--status",
        "FAILED",
        "--json",
    ]));
    assert_eq!(failed, [pair("e2", "FAILED")]);

    // Two pages of two.
    let (first, cursor) =
        listed(&p.run(&["workflow", "executions", "notify", "--limit", "2", "--json"]));
    assert_eq!(first, [pair("e3", "SUCCEEDED"), pair("e2", "FAILED")]);
    let cursor = cursor.expect("a second page");
    let (second, end) = listed(&p.run(&[
        "workflow",
        "executions",
        "notify",
        "--limit",
        "2",
        "--cursor",
        &cursor,
        "--json",
    ]));
    assert_eq!(second, [pair("e1", "SUCCEEDED")]);
    assert_eq!(end, None);

    // The table: one row per execution, newest first; the next page's cursor on stderr.
    let table = p.run(&["workflow", "executions", "notify", "--limit", "2"]);
    assert_eq!(table.status.code(), Some(0), "{table:?}");
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("execution") && text.contains("status"),
        "{text}"
    );
    let (e3, e2) = (text.find("e3"), text.find("e2"));
    assert!(e3.is_some() && e3 < e2 && !text.contains("e1"), "{text}");
    assert!(text.contains("FAILED"), "{text}");
    assert!(
        String::from_utf8_lossy(&table.stderr).contains(&format!("--cursor {cursor}")),
        "{table:?}"
    );

    // Bad options are usage errors; an unknown workflow is not found.
    for bad in [
        &["--limit", "0"][..],
        &["--status", "DONE"],
        &["--cursor", "forged"],
    ] {
        let mut args = vec!["workflow", "executions", "notify"];
        args.extend_from_slice(bad);
        let out = p.run(&args);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
    }
    let unknown = p.run(&["workflow", "executions", "nope"]);
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("NotFound"),
        "{unknown:?}"
    );
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_run_killed_during_a_task_is_interrupted_and_a_redrive_repeats_no_effect() {
    let p = Project::new();
    p.receiver.with(|s| s.block = Some("second message".into()));
    let mut child = p
        .command(&[
            "workflow", "run", "notify", "--input", INPUT, "--name", "k1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawns");
    p.receiver.wait_until("the second request", |s| s.blocked);
    kill(&mut child);

    // Running, with a lease nobody renews: interrupted.
    let mut view = json_of(&p.run(&["workflow", "describe", "notify", "k1"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while view["interrupted"] != true {
        assert!(Instant::now() < deadline, "never interrupted: {view}");
        std::thread::sleep(Duration::from_millis(200));
        view = json_of(&p.run(&["workflow", "describe", "notify", "k1"]));
    }
    assert_eq!(view["status"], "RUNNING");
    p.receiver.with(|s| s.released = true);

    // The redrive resumes at Second: the action's claim of the killed call is taken over
    // once its lease (the function timeout) has expired, and the same key is sent again.
    let out = p.run(&["workflow", "redrive", "notify", "k1"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(json_of(&out)["status"], "SUCCEEDED");
    p.receiver.with(|s| {
        let by_key = |k: &str| s.requests.iter().filter(|r| r.0 == k).count();
        let arn = "arn:aws:states:local:000000000000:execution:notify:k1";
        assert_eq!(by_key(&format!("{arn}#First")), 1, "{s:?}");
        // Every request carried one of the two keys, and each key was delivered once.
        assert!(
            s.requests
                .iter()
                .all(|r| r.0 == format!("{arn}#First") || r.0 == format!("{arn}#Second")),
            "{s:?}"
        );
        assert_eq!(s.delivered.len(), 2, "{s:?}");
    });
    let history = json_of(&p.run(&["workflow", "history", "notify", "k1", "--json"]));
    let kinds: Vec<&str> = history
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert!(kinds.contains(&"ExecutionRedriven"), "{kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| **k == "ExecutionSucceeded").count(),
        1
    );
}
