//! Issue 6, "each workflow executed end to end, locally": the state machines of
//! `workflows/` (as deployed, only the `${XFunctionArn}` substitutions filled in) run by
//! moto's Step Functions interpreter, each Lambda Task invoking the real action binary
//! under `cargo lambda watch`, storing in DynamoDB Local (module
//! `actiondo_e2e::states`). Outcomes are read back from what the world holds afterwards:
//! the execution's status, output and history, the entities and the audit in DynamoDB
//! Local, the `.eml` files of the email outbox, and the requests the external services
//! received.
//!
//! The external services are test servers on `127.0.0.1` (crate `wiremock`), not parts
//! of the product:
//!
//! - a Stripe-shaped payment provider ([`Provider`]): `POST /v1/payment_intents` charges
//!   once per `Idempotency-Key` and answers a repeated key with the stored charge, as
//!   Stripe does; it can be told to decline every card (`402 card_error`) or to be down
//!   (`503`) for its first N requests, before it charges anything;
//! - a webhook receiver for `send-notification`.
//!
//! Email goes to the outbox transport (`EMAIL_TRANSPORT=outbox`) in a temporary folder.
//!
//! Retry intervals are real seconds in moto. The ASL's first Retry has
//! `IntervalSeconds: 2` with `JitterStrategy: FULL` (moto applies it), so the one retry
//! of [`a_payment_provider_outage_is_retried_and_charges_once`] waits 0–2 s.

mod scenarios;

use std::collections::BTreeMap;

use actiondo::{AuditFilter, AuditRecord, AuditStatus, EntityKey};
use actiondo_e2e::Stack;
use actiondo_e2e::states::{Execution, StepFunctions, package_of_placeholder};
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEventType};
use scenarios::{
    Behaviour, CRM_FUNCTIONS, FIRST_OWNER, LEAD_FUNCTIONS, ONBOARDING_FUNCTIONS, Provider,
    crm_contact, eml_files, function_env, header, idempotency_key, json_body, nurture_lead,
    onboarding_input, qualified_lead, webhook_receiver,
};
use serde_json::{Value, json};
use wiremock::{MockServer, Request};

// ---------------------------------------------------------------- the world of one test

/// One test's world. Fields drop in order: Step Functions (moto) before the stack.
struct World {
    sfn: StepFunctions,
    stack: Stack,
    outbox: tempfile::TempDir,
    webhook: MockServer,
}

/// The stack with `functions`, configured for the provider (when given), the webhook,
/// the owners and the outbox; then moto with the workflows.
async fn world(functions: &[&str], provider: Option<&MockServer>) -> Option<World> {
    let outbox = tempfile::tempdir().expect("a temporary folder");
    let webhook = webhook_receiver().await;
    let mut builder = Stack::builder();
    for (key, value) in function_env(outbox.path(), &webhook, provider) {
        builder = builder.env(key, value);
    }
    for function in functions {
        builder = builder.function(*function);
    }
    let stack = builder.start().await?;
    let sfn = StepFunctions::start(&stack).await?;
    Some(World {
        sfn,
        stack,
        outbox,
        webhook,
    })
}

impl World {
    /// Run `workflow` to its end under a fresh execution name.
    async fn run(&mut self, workflow: &str, input: &Value) -> Execution {
        let name = execution_name();
        self.sfn.run(workflow, &name, input).await
    }

    /// The execution must have succeeded: its output, else a failure with its history.
    async fn succeeded(&self, execution: &Execution) -> Value {
        if execution.status != ExecutionStatus::Succeeded {
            panic!(
                "{} ended {:?} (error {:?}, cause {:?}); its history:\n{}",
                execution.arn,
                execution.status,
                execution.error,
                execution.cause,
                self.sfn.history_text(&execution.arn).await
            );
        }
        execution
            .output
            .clone()
            .expect("a succeeded execution has an output")
    }

    async fn entity(&self, pk: &str, sk: &str) -> Option<Value> {
        self.stack
            .entity(&EntityKey::new(pk, sk))
            .await
            .map(|entity| entity.doc)
    }

    async fn must_entity(&self, pk: &str, sk: &str) -> Value {
        self.entity(pk, sk)
            .await
            .unwrap_or_else(|| panic!("no entity {pk}/{sk}"))
    }

    /// The `.eml` files of the outbox: (file name, content).
    fn outbox(&self) -> Vec<(String, String)> {
        eml_files(self.outbox.path())
    }

    async fn webhook_calls(&self) -> Vec<Request> {
        self.webhook
            .received_requests()
            .await
            .expect("the webhook receiver records requests")
    }

    /// The audit records of `key`'s execution of `action`, oldest first.
    async fn audit_oldest_first(&self, action: &str, key: &str) -> Vec<AuditRecord> {
        let mut records = self.stack.audit(&format!("{action}#{key}")).await;
        records.reverse();
        records
    }

    /// Every Task the execution entered must be in the audit under its correlation id
    /// (the execution ARN), with exactly one `completed` record of its action under the key
    /// `<execution ARN>#<state>`; and the audit of that correlation id holds nothing else
    /// but the records of those Tasks. Returns the Tasks entered, in order.
    async fn assert_audit_by_correlation(&self, workflow: &str, arn: &str) -> Vec<String> {
        let tasks = task_functions(workflow);
        let history = self.sfn.history(arn).await;
        let entered: Vec<String> = history
            .iter()
            .filter(|e| *e.r#type() == HistoryEventType::TaskStateEntered)
            .filter_map(|e| e.state_entered_event_details())
            .map(|d| d.name().to_owned())
            .collect();
        let succeeded = history
            .iter()
            .filter(|e| *e.r#type() == HistoryEventType::TaskSucceeded)
            .count();
        assert!(!entered.is_empty(), "{arn} entered no Task");
        let records = self
            .stack
            .audit_records(AuditFilter::Correlation(arn.to_owned()))
            .await;
        for record in &records {
            assert_eq!(record.correlation_id.as_deref(), Some(arn));
        }
        let mut expected_executions = Vec::new();
        for state in &entered {
            let action = tasks
                .get(state)
                .unwrap_or_else(|| panic!("{state} is not a Lambda Task of {workflow}"));
            let execution = format!("{action}#{arn}#{state}");
            let completed: Vec<&AuditRecord> = records
                .iter()
                .filter(|r| r.execution == execution && r.status == AuditStatus::Completed)
                .collect();
            assert_eq!(
                completed.len(),
                1,
                "{state}: one completed {action} record under {execution}; the audit of {arn}: {:#?}",
                records
                    .iter()
                    .map(|r| (&r.execution, r.status))
                    .collect::<Vec<_>>()
            );
            assert_eq!(completed[0].action, *action);
            expected_executions.push(execution);
        }
        for record in &records {
            assert!(
                expected_executions.contains(&record.execution),
                "an audit record of {arn} that is no Task of it: {} ({:?})",
                record.execution,
                record.status
            );
        }
        let completed = records
            .iter()
            .filter(|r| r.status == AuditStatus::Completed)
            .count();
        assert_eq!(
            completed, succeeded,
            "one completed record per TaskSucceeded event"
        );
        entered
    }
}

fn execution_name() -> String {
    // Execution names: 1–80 characters; a fresh one per execution.
    format!("e2e-{}", uuid::Uuid::new_v4().simple())
}

/// The Lambda Tasks of `workflow` (its ASL file): state name → the action it invokes
/// (the package its `${XFunctionArn}` names).
fn task_functions(workflow: &str) -> BTreeMap<String, String> {
    let file = actiondo_e2e::workspace_root()
        .join("workflows")
        .join(format!("{workflow}.asl.json"));
    let asl: Value = serde_json::from_str(
        &std::fs::read_to_string(&file).expect("the workflow file is readable"),
    )
    .expect("the workflow file is JSON");
    let states = asl["States"].as_object().expect("States");
    states
        .iter()
        .filter_map(|(name, state)| {
            let function = state["Parameters"]["FunctionName"].as_str()?;
            let placeholder = function.strip_prefix("${")?.strip_suffix('}')?;
            Some((name.clone(), package_of_placeholder(placeholder)?))
        })
        .collect()
}

// ---------------------------------------------------------------- lead-qualification

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lead_qualification_qualifies_a_business_lead_and_nurtures_a_free_mail_one() {
    let Some(mut w) = world(LEAD_FUNCTIONS, None).await else {
        return;
    };

    // A qualified lead: business email, company, phone, full name, a demo request.
    let lead = qualified_lead();
    let qualified = w.run("lead-qualification", &lead).await;
    let out = w.succeeded(&qualified).await;
    assert_eq!(
        out["validateLead"]["result"],
        json!({"email": "ann.lee@acme.com", "name": "Ann Lee", "company": "Acme",
               "phone": "+12015550123", "source": "demo request"})
    );
    assert_eq!(out["enrichLead"]["result"]["companyDomain"], "acme.com");
    assert_eq!(out["enrichLead"]["result"]["freeMail"], false);
    assert_eq!(out["scoreLead"]["result"]["qualified"], true);
    // score-lead saw the enrichment: States.JsonMerge(validated lead, enrichment).
    let rules: Vec<&str> = out["scoreLead"]["result"]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["rule"].as_str())
        .collect();
    for rule in ["business-email", "company-domain", "phone", "full-name"] {
        assert!(rules.contains(&rule), "{rule} not in {rules:?}");
    }
    let contact_id = out["createOrUpdateContact"]["result"]["contactId"]
        .as_str()
        .expect("a contactId")
        .to_owned();
    assert_eq!(out["createOrUpdateContact"]["result"]["outcome"], "created");
    assert_eq!(
        out["assignOwner"]["result"]["contactId"],
        contact_id.as_str()
    );
    assert_eq!(out["assignOwner"]["result"]["owner"], FIRST_OWNER);
    assert_eq!(out["assignOwner"]["result"]["alreadyAssigned"], false);
    let email = &out["sendFollowUpEmail"]["result"];
    assert_eq!(email["to"], "ann.lee@acme.com");
    assert_eq!(email["template"], "lead-follow-up");
    assert_eq!(email["transport"], "outbox");
    assert_eq!(email["subject"], "Following up with Acme, Ann Lee");
    assert!(out.get("sendNurtureEmail").is_none());

    // The CRM entities it wrote.
    let contact = w.must_entity("contact#ann.lee@acme.com", "contact").await;
    assert_eq!(contact["contactId"], contact_id.as_str());
    assert_eq!(contact["name"], "Ann Lee");
    assert_eq!(contact["company"], "Acme");
    let assignment = w
        .must_entity(&format!("assignment#{contact_id}"), "owner")
        .await;
    assert_eq!(assignment["owner"], FIRST_OWNER);
    let rotation = w.must_entity("owners", "round-robin").await;
    assert_eq!(rotation["next"], 1);

    // The follow-up email in the outbox.
    let outbox = w.outbox();
    assert_eq!(outbox.len(), 1, "one email: {outbox:?}");
    let eml = &outbox[0].1;
    assert_eq!(header(eml, "To"), Some("ann.lee@acme.com"));
    assert_eq!(
        header(eml, "Subject"),
        Some("Following up with Acme, Ann Lee")
    );

    let entered = w
        .assert_audit_by_correlation("lead-qualification", &qualified.arn)
        .await;
    assert_eq!(
        entered,
        [
            "ValidateLead",
            "EnrichLead",
            "ScoreLead",
            "CreateOrUpdateContact",
            "AssignOwner",
            "SendFollowUpEmail"
        ]
    );

    // A lead that does not qualify: free mail, one name, no company, a newsletter.
    let lead = nurture_lead();
    let nurtured = w.run("lead-qualification", &lead).await;
    let out = w.succeeded(&nurtured).await;
    assert_eq!(out["enrichLead"]["result"]["freeMail"], true);
    assert_eq!(out["scoreLead"]["result"]["qualified"], false);
    assert!(
        out["scoreLead"]["result"]["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .any(|r| r["rule"] == "free-email"),
        "score-lead saw freeMail from the enrichment"
    );
    let email = &out["sendNurtureEmail"]["result"];
    assert_eq!(email["to"], "kim.free@gmail.com");
    assert_eq!(email["template"], "lead-nurture");
    assert_eq!(email["subject"], "Kim, three ways teams use atomic actions");
    for skipped in ["createOrUpdateContact", "assignOwner", "sendFollowUpEmail"] {
        assert!(
            out.get(skipped).is_none(),
            "{skipped} ran for a nurture lead"
        );
    }
    assert!(
        w.entity("contact#kim.free@gmail.com", "contact")
            .await
            .is_none()
    );
    let outbox = w.outbox();
    assert_eq!(outbox.len(), 2, "a second email: {outbox:?}");
    let nurture = outbox
        .iter()
        .find(|(_, eml)| header(eml, "To") == Some("kim.free@gmail.com"))
        .expect("the nurture email is in the outbox");
    assert_eq!(
        header(&nurture.1, "Subject"),
        Some("Kim, three ways teams use atomic actions")
    );
    let entered = w
        .assert_audit_by_correlation("lead-qualification", &nurtured.arn)
        .await;
    assert_eq!(
        entered,
        [
            "ValidateLead",
            "EnrichLead",
            "ScoreLead",
            "SendNurtureEmail"
        ]
    );
}

// ---------------------------------------------------------------- user-onboarding

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_onboarding_creates_provisions_charges_and_welcomes() {
    let provider = Provider::new(Behaviour::Charge, 0);
    let provider_server = provider.serve().await;
    let Some(mut w) = world(ONBOARDING_FUNCTIONS, Some(&provider_server)).await else {
        return;
    };

    let execution = w
        .run("user-onboarding", &onboarding_input("Ada@Example.com"))
        .await;
    let out = w.succeeded(&execution).await;
    let arn = execution.arn.as_str();

    let user_id = out["createUser"]["result"]["userId"]
        .as_str()
        .expect("a userId")
        .to_owned();
    assert_eq!(out["createUser"]["result"]["email"], "ada@example.com");
    assert_eq!(out["createUser"]["result"]["plan"], "pro");
    let provisioned = &out["provisionResources"]["result"];
    assert_eq!(provisioned["userId"], user_id.as_str());
    let workspace_id = provisioned["workspaceId"].as_str().expect("a workspaceId");
    let quota_id = provisioned["quotaId"].as_str().expect("a quotaId");
    let payment = &out["processPayment"]["result"];
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["amount"], 1999);
    assert_eq!(payment["currency"], "EUR");
    let payment_id = payment["paymentId"].as_str().expect("a paymentId");
    let welcome = &out["sendWelcomeEmail"]["result"];
    assert_eq!(welcome["userId"], user_id.as_str());
    assert_eq!(welcome["to"], "ada@example.com");
    assert_eq!(welcome["subject"], "Welcome to action.do, Ada Lovelace!");
    assert_eq!(welcome["transport"], "outbox");

    // The entities: an active user holding an active workspace and quota, and the payment.
    let profile = w.must_entity(&format!("user#{user_id}"), "profile").await;
    assert_eq!(profile["email"], "ada@example.com");
    assert_ne!(profile["status"], "onboarding_failed");
    let provisioning = w
        .must_entity(&format!("user#{user_id}"), "provisioning")
        .await;
    assert_eq!(provisioning["workspaceId"], workspace_id);
    assert_ne!(provisioning["status"], "released");
    let workspace = w
        .must_entity(&format!("workspace#{workspace_id}"), "workspace")
        .await;
    assert_eq!(workspace["ownerId"], user_id.as_str());
    assert_ne!(workspace["status"], "released");
    let quota = w.must_entity(&format!("quota#{quota_id}"), "quota").await;
    assert_ne!(quota["status"], "released");
    let stored = w
        .must_entity(&format!("payment#{payment_id}"), "payment")
        .await;
    assert_eq!(stored["userId"], user_id.as_str());
    assert_eq!(stored["amount"], 1999);
    assert_eq!(
        stored["idempotencyKey"],
        format!("{arn}#ProcessPayment").as_str()
    );

    // One charge at the provider, under the Task's key, with the workflow's parameters.
    let charges = provider.charges();
    assert_eq!(charges.len(), 1, "{charges:?}");
    let charge = &charges[0];
    assert_eq!(charge.idempotency_key, format!("{arn}#ProcessPayment"));
    assert_eq!(charge.intent["id"], payment_id);
    assert_eq!(charge.form["amount"], "1999");
    assert_eq!(charge.form["currency"], "eur");
    assert_eq!(charge.form["payment_method"], "pm_card_visa");
    assert_eq!(charge.form["metadata[user_id]"], user_id);
    assert_eq!(charge.form["description"], "action.do pro plan");

    // The welcome email in the outbox; no notification (nothing failed).
    let outbox = w.outbox();
    assert_eq!(outbox.len(), 1, "one email: {outbox:?}");
    assert_eq!(header(&outbox[0].1, "To"), Some("ada@example.com"));
    assert_eq!(
        header(&outbox[0].1, "Subject"),
        Some("Welcome to action.do, Ada Lovelace!")
    );
    assert!(w.webhook_calls().await.is_empty());

    // Every action of the execution, found in the audit by its correlation id.
    let entered = w.assert_audit_by_correlation("user-onboarding", arn).await;
    assert_eq!(
        entered,
        [
            "CreateUser",
            "ProvisionResources",
            "ProcessPayment",
            "SendWelcomeEmail"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_is_compensated_in_reverse_and_the_onboarding_fails() {
    let provider = Provider::new(Behaviour::Decline, 0);
    let provider_server = provider.serve().await;
    let Some(mut w) = world(ONBOARDING_FUNCTIONS, Some(&provider_server)).await else {
        return;
    };

    let execution = w
        .run("user-onboarding", &onboarding_input("grace@example.com"))
        .await;
    let arn = execution.arn.as_str();
    let history = w.sfn.history_text(arn).await;
    assert_eq!(
        execution.status,
        ExecutionStatus::Failed,
        "the history:\n{history}"
    );

    // Ended in the Fail state OnboardingFailed with the payment's error.
    assert_eq!(execution.error.as_deref(), Some("ActionDo.Rejected"));
    let cause: Value =
        serde_json::from_str(execution.cause.as_deref().expect("a cause")).expect("JSON cause");
    assert_eq!(cause["errorType"], "ActionDo.Rejected");
    let body: Value = serde_json::from_str(cause["errorMessage"].as_str().expect("a message"))
        .expect("the action's error body");
    assert_eq!(body["error"]["type"], "ActionDo.Rejected");
    assert_eq!(
        body["error"]["details"]["declineCode"],
        "insufficient_funds"
    );

    // The compensations ran in reverse order, then the notification, then the Fail state.
    let entered = w.sfn.states_entered(arn).await;
    assert_eq!(
        entered,
        [
            "CreateUser",
            "ProvisionResources",
            "ProcessPayment",
            "ReleaseResources",
            "MarkUser",
            "NotifyOnboardingFailed",
            "OnboardingFailed"
        ],
        "the history:\n{history}"
    );

    // What the compensations left: resources released, user marked; nothing charged.
    let user_id = w.must_entity("email#grace@example.com", "user").await["userId"]
        .as_str()
        .expect("a userId")
        .to_owned();
    let profile = w.must_entity(&format!("user#{user_id}"), "profile").await;
    assert_eq!(profile["status"], "onboarding_failed");
    let reason = profile["statusChange"]["reason"]
        .as_str()
        .expect("a reason");
    assert!(reason.contains("ActionDo.Rejected"), "{reason}");
    let provisioning = w
        .must_entity(&format!("user#{user_id}"), "provisioning")
        .await;
    assert_eq!(provisioning["status"], "released");
    let workspace_id = provisioning["workspaceId"].as_str().expect("a workspaceId");
    let quota_id = provisioning["quotaId"].as_str().expect("a quotaId");
    let workspace = w
        .must_entity(&format!("workspace#{workspace_id}"), "workspace")
        .await;
    assert_eq!(workspace["status"], "released");
    let quota = w.must_entity(&format!("quota#{quota_id}"), "quota").await;
    assert_eq!(quota["status"], "released");
    assert!(provider.charges().is_empty());
    assert!(w.entity("payment#pi_declined_1", "payment").await.is_none());
    assert!(w.outbox().is_empty(), "no welcome email");

    // The audit: the payment failed, then release-resources completed before mark-user.
    let payment = w
        .audit_oldest_first("process-payment", &format!("{arn}#ProcessPayment"))
        .await;
    assert_eq!(
        payment.iter().map(|r| r.status).collect::<Vec<_>>(),
        [AuditStatus::Failed]
    );
    let release = w
        .audit_oldest_first("release-resources", &format!("{arn}#ReleaseResources"))
        .await;
    let mark = w
        .audit_oldest_first("mark-user", &format!("{arn}#MarkUser"))
        .await;
    assert_eq!(release.len(), 1, "{release:?}");
    assert_eq!(mark.len(), 1, "{mark:?}");
    assert_eq!(release[0].status, AuditStatus::Completed);
    assert_eq!(mark[0].status, AuditStatus::Completed);
    assert!(
        release[0].seq < mark[0].seq,
        "release-resources ({}) before mark-user ({})",
        release[0].seq,
        mark[0].seq
    );
    assert_eq!(release[0].details["output"]["outcome"], "released");

    // The onboarding channel was told, with both compensations' outcomes.
    let calls = w.webhook_calls().await;
    assert_eq!(calls.len(), 1, "one notification");
    let note = json_body(&calls[0]);
    assert_eq!(note["channel"], "#onboarding");
    assert_eq!(note["data"]["userId"], user_id.as_str());
    assert_eq!(note["data"]["error"], "ActionDo.Rejected");
    assert_eq!(
        note["data"]["releaseResources"]["result"]["outcome"],
        "released"
    );
    assert_eq!(
        note["data"]["markUser"]["result"]["status"],
        "onboarding_failed"
    );
    assert_eq!(
        idempotency_key(&calls[0]),
        Some(format!("{arn}#NotifyOnboardingFailed"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_provider_outage_is_retried_and_charges_once() {
    // The provider answers its first request 503 (before charging), then works.
    let provider = Provider::new(Behaviour::Charge, 1);
    let provider_server = provider.serve().await;
    let Some(mut w) = world(ONBOARDING_FUNCTIONS, Some(&provider_server)).await else {
        return;
    };

    let execution = w
        .run("user-onboarding", &onboarding_input("linus@example.com"))
        .await;
    let out = w.succeeded(&execution).await;
    let arn = execution.arn.as_str();
    let key = format!("{arn}#ProcessPayment");
    assert_eq!(out["processPayment"]["result"]["status"], "succeeded");

    // The Task failed once with ActionDo.Transient and the Retry ran it again.
    let history = w.sfn.history(arn).await;
    let failures: Vec<String> = history
        .iter()
        .filter_map(|e| e.task_failed_event_details())
        .map(|d| d.error().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(failures, ["ActionDo.Transient"]);
    let payment_invokes = w
        .sfn
        .invocations()
        .iter()
        .filter(|i| i.function == "process-payment")
        .count();
    assert_eq!(payment_invokes, 2, "{:?}", w.sfn.invocations());

    // In the audit: retrying, then completed, under the one key.
    let audit = w.audit_oldest_first("process-payment", &key).await;
    assert_eq!(
        audit.iter().map(|r| r.status).collect::<Vec<_>>(),
        [AuditStatus::Retrying, AuditStatus::Completed],
        "{audit:#?}"
    );
    assert_eq!(audit[1].details["output"], out["processPayment"]["result"]);

    // Two requests at the provider with the same Idempotency-Key; one charge.
    let requests = provider_server
        .received_requests()
        .await
        .expect("the provider records requests");
    assert_eq!(requests.len(), 2);
    assert!(
        requests
            .iter()
            .all(|r| idempotency_key(r).as_deref() == Some(key.as_str()))
    );
    assert_eq!(
        requests[0].body, requests[1].body,
        "the same charge request"
    );
    let charges = provider.charges();
    assert_eq!(charges.len(), 1, "{charges:?}");
    let payment_id = out["processPayment"]["result"]["paymentId"]
        .as_str()
        .expect("a paymentId");
    assert_eq!(charges[0].intent["id"], payment_id);

    // The onboarding went on: the welcome email went out, the user is whole.
    assert_eq!(w.outbox().len(), 1);
    let entered = w.assert_audit_by_correlation("user-onboarding", arn).await;
    assert_eq!(
        entered,
        [
            "CreateUser",
            "ProvisionResources",
            "ProcessPayment",
            "SendWelcomeEmail"
        ]
    );
}

// ---------------------------------------------------------------- crm-new-lead

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_new_lead_creates_the_contact_assigns_it_and_notifies_sales() {
    let Some(mut w) = world(CRM_FUNCTIONS, None).await else {
        return;
    };

    let input = crm_contact();
    let execution = w.run("crm-new-lead", &input).await;
    let out = w.succeeded(&execution).await;
    let arn = execution.arn.as_str();

    let contact = &out["createOrUpdateContact"]["result"];
    assert_eq!(contact["email"], "lin.park@globex.example");
    assert_eq!(contact["outcome"], "created");
    let contact_id = contact["contactId"].as_str().expect("a contactId");
    assert_eq!(out["assignOwner"]["result"]["contactId"], contact_id);
    assert_eq!(out["assignOwner"]["result"]["owner"], FIRST_OWNER);
    assert_eq!(
        out["sendNotification"]["result"],
        json!({"delivered": true, "status": 200})
    );

    let stored = w
        .must_entity("contact#lin.park@globex.example", "contact")
        .await;
    assert_eq!(stored["contactId"], contact_id);
    assert_eq!(stored["company"], "Globex");
    let assignment = w
        .must_entity(&format!("assignment#{contact_id}"), "owner")
        .await;
    assert_eq!(assignment["owner"], FIRST_OWNER);

    // The sales channel got one webhook call, under the Task's key.
    let calls = w.webhook_calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(
        idempotency_key(&calls[0]),
        Some(format!("{arn}#SendNotification"))
    );
    assert_eq!(
        json_body(&calls[0]),
        json!({
            "message": format!("New lead lin.park@globex.example assigned to {FIRST_OWNER}"),
            "channel": "#sales",
            "data": {"contactId": contact_id, "outcome": "created", "owner": FIRST_OWNER, "alreadyAssigned": false}
        })
    );

    let entered = w.assert_audit_by_correlation("crm-new-lead", arn).await;
    assert_eq!(
        entered,
        ["CreateOrUpdateContact", "AssignOwner", "SendNotification"]
    );
}
