#!/usr/bin/env python3
"""Consistency of template.yaml, workflows/*.asl.json and functions/ that no linter checks.

Run by tests/run.sh (phase "templates") with the Python of .tools/venv, which has
cfn-lint (its YAML decoder reads the CloudFormation tags). Exit status 1 and one line per
problem when anything is off; nothing is skipped.

- every package under functions/ has exactly one AWS::Serverless::Function with
  CodeUri functions/<package>, BuildMethod rust-cargolambda, Binary <package> and a
  Description "<package> - ...", and every function of the template points at such a
  package;
- the router has one ACTIONDO_FUNCTION_<NAME> per action function and may invoke exactly
  those functions, and one ACTIONDO_WORKFLOW_<NAME> per state machine;
- every workflows/*.asl.json is the DefinitionUri of exactly one state machine;
- a state machine's DefinitionSubstitutions are exactly the ${...} of its definition, each
  `XFunctionArn: !GetAtt XFunction.Arn`, and its LambdaInvokePolicy entries are exactly
  the functions it invokes (least privilege both ways);
- results too large for a record (docs/architecture.md §4.6): the functions' Globals set
  ACTIONDO_RESULTS_BUCKET to ResultsBucket, which is encrypted, blocks public access and
  expires its objects after ResultsRetentionDays; every S3 permission the template grants
  is s3:PutObject / s3:GetObject on `${ResultsBucket.Arn}/results/*` and nothing wider;
- every Lambda Task sends the envelope of docs/architecture.md §7: {"params", "idempotencyKey":
  States.Format('{}#{}', $$.Execution.Id, $$.State.Name), "correlationId":
  $$.Execution.Id}, unwraps the invoke result with ResultSelector, retries the
  retryable error names with backoff and full jitter, and never retries a terminal one.

`--fix` first writes what a new action package needs (what `actiondo new` runs): for each
package under functions/ without a function, its AWS::Serverless::Function (named
<UpperCamelCase package>Function, after the last action function), the router's
ACTIONDO_FUNCTION_<NAME> variable and its ARN in RouterInvokePolicy, each list kept in
name order. It edits the text, so comments and layout stay; anything else it reports
without touching.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parent.parent
KEY = "States.Format('{}#{}', $$.Execution.Id, $$.State.Name)"
CORRELATION = "$$.Execution.Id"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
MUST_RETRY = {
    "ActionDo.Transient", "ActionDo.InProgress", "ActionDo.Conflict",
    "Lambda.ServiceException", "Lambda.AWSLambdaException",
    "Lambda.SdkClientException", "Lambda.TooManyRequestsException",
}
TERMINAL = {"ActionDo.Validation", "ActionDo.Rejected", "ActionDo.PayloadMismatch",
            "ActionDo.NotFound", "ActionDo.Unauthorized", "ActionDo.Forbidden"}

problems: list[str] = []


def problem(msg: str) -> None:
    problems.append(msg)


def get_att(value, attribute: str) -> str | None:
    """The logical id of `!GetAtt X.<attribute>`, else None."""
    if isinstance(value, dict) and list(value) == ["Fn::GetAtt"]:
        target = value["Fn::GetAtt"]
        if isinstance(target, str):
            target = target.split(".", 1)
        if len(target) == 2 and target[1] == attribute:
            return target[0]
    return None


def ref(value) -> str | None:
    if isinstance(value, dict) and list(value) == ["Ref"]:
        return value["Ref"]
    return None


def package_name(manifest: Path) -> str | None:
    """`name` of the [package] table (a regex: tomllib needs Python 3.11)."""
    m = re.search(r'^\[package\][^\[]*?^name\s*=\s*"([^"]+)"', manifest.read_text(), re.M | re.S)
    return m.group(1) if m else None


def check_functions(resources: dict) -> None:
    packages = {}
    for manifest in sorted((ROOT / "functions").glob("*/Cargo.toml")):
        name = package_name(manifest)
        packages[f"functions/{manifest.parent.name}"] = name
    seen: dict[str, str] = {}
    for logical, res in resources.items():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        props = res.get("Properties", {})
        code = str(props.get("CodeUri", "")).rstrip("/")
        meta = res.get("Metadata", {})
        if code not in packages:
            problem(f"{logical}: CodeUri {code!r} is not a package under functions/")
            continue
        if code in seen:
            problem(f"{logical}: {code} is deployed twice (also by {seen[code]})")
        seen[code] = logical
        if meta.get("BuildMethod") != "rust-cargolambda":
            problem(f"{logical}: Metadata.BuildMethod must be rust-cargolambda")
        binary = meta.get("BuildProperties", {}).get("Binary")
        if binary != packages[code]:
            problem(f"{logical}: BuildProperties.Binary is {binary!r}, the package is {packages[code]!r}")
        description = str(props.get("Description", ""))
        if not description.startswith(f"{packages[code]} - "):
            problem(f"{logical}: Description must start with '{packages[code]} - ' (got {description!r})")
        if len(description) > 256:
            problem(f"{logical}: Description is {len(description)} characters; Lambda takes 256")
    for code, name in packages.items():
        if code not in seen:
            problem(f"{code} (package {name}) has no AWS::Serverless::Function in template.yaml")


RESULTS_OBJECTS = {"Fn::Sub": "${ResultsBucket.Arn}/results/*"}


def check_results_bucket(template: dict) -> None:
    resources = template.get("Resources", {})
    env = (template.get("Globals", {}).get("Function", {}).get("Environment", {})
           .get("Variables", {}))
    if env.get("ACTIONDO_RESULTS_BUCKET") != {"Ref": "ResultsBucket"}:
        problem("Globals: ACTIONDO_RESULTS_BUCKET must be !Ref ResultsBucket")
    bucket = resources.get("ResultsBucket", {})
    if bucket.get("Type") != "AWS::S3::Bucket":
        problem("ResultsBucket: must be an AWS::S3::Bucket")
        return
    props = bucket.get("Properties", {})
    if not props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration"):
        problem("ResultsBucket: BucketEncryption is required")
    block = props.get("PublicAccessBlockConfiguration", {})
    for flag in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
        if block.get(flag) is not True:
            problem(f"ResultsBucket: PublicAccessBlockConfiguration.{flag} must be true")
    rules = props.get("LifecycleConfiguration", {}).get("Rules", [])
    if not any(r.get("Status") == "Enabled"
               and r.get("ExpirationInDays") == {"Ref": "ResultsRetentionDays"} for r in rules):
        problem("ResultsBucket: an enabled lifecycle rule must expire objects after "
                "!Ref ResultsRetentionDays (the idempotency retention)")
    for logical, res in resources.items():
        if res.get("Type") not in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy"):
            continue
        statements = res.get("Properties", {}).get("PolicyDocument", {}).get("Statement", [])
        for st in statements if isinstance(statements, list) else [statements]:
            actions = st.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            s3 = [a for a in actions if str(a).lower().startswith("s3:")]
            if not s3 or st.get("Effect") != "Allow":
                continue
            if set(s3) - {"s3:PutObject", "s3:GetObject"}:
                problem(f"{logical}: S3 actions {sorted(set(s3))}; results need only "
                        "s3:PutObject and s3:GetObject")
            resource = st.get("Resource")
            if resource != RESULTS_OBJECTS and resource != [RESULTS_OBJECTS]:
                problem(f"{logical}: S3 permissions on {resource!r}; only "
                        "!Sub '${ResultsBucket.Arn}/results/*'")


def check_router(resources: dict) -> None:
    """The router reaches every action function and only those: one ACTIONDO_FUNCTION_<NAME>
    variable per action function (Ref to it), and lambda:InvokeFunction on exactly their
    ARNs, across the router's managed policies."""
    router = resources.get("RouterFunction")
    if router is None:
        problem("RouterFunction is missing")
        return
    actions: dict[str, str] = {}  # logical id -> package name
    for logical, res in resources.items():
        if res.get("Type") != "AWS::Serverless::Function" or logical == "RouterFunction":
            continue
        binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if binary:
            actions[logical] = binary
    props = router.get("Properties", {})
    env = props.get("Environment", {}).get("Variables", {})
    wired = {k: ref(v) for k, v in env.items() if k.startswith("ACTIONDO_FUNCTION_")}
    for logical, name in actions.items():
        var = "ACTIONDO_FUNCTION_" + name.upper().replace("-", "_")
        if wired.get(var) != logical:
            problem(f"RouterFunction: {var} must be !Ref {logical} (got {wired.get(var)!r})")
    for var, target in wired.items():
        if target not in actions:
            problem(f"RouterFunction: {var} refers to {target!r}, which is not an action function")
    machines = {
        logical: Path(str(res.get("Properties", {}).get("DefinitionUri", ""))).name.removesuffix(".asl.json")
        for logical, res in resources.items()
        if res.get("Type") == "AWS::Serverless::StateMachine"
    }
    flows = {k: ref(v) for k, v in env.items() if k.startswith("ACTIONDO_WORKFLOW_")}
    for logical, name in machines.items():
        var = "ACTIONDO_WORKFLOW_" + name.upper().replace("-", "_")
        if flows.get(var) != logical:
            problem(f"RouterFunction: {var} must be !Ref {logical} (got {flows.get(var)!r})")
    for var, target in flows.items():
        if target not in machines:
            problem(f"RouterFunction: {var} refers to {target!r}, which is not a state machine")
    invokable: set[str] = set()
    for policy in props.get("Policies", []):
        name = ref(policy)
        doc = resources.get(name or "", {}).get("Properties", {}).get("PolicyDocument", {})
        for statement in doc.get("Statement", []):
            verbs = statement.get("Action", [])
            verbs = [verbs] if isinstance(verbs, str) else verbs
            if "lambda:InvokeFunction" not in verbs:
                continue
            targets = statement.get("Resource", [])
            targets = targets if isinstance(targets, list) else [targets]
            for target in targets:
                logical = get_att(target, "Arn")
                if logical is None:
                    problem(f"RouterFunction: {name} grants lambda:InvokeFunction on {target!r}, not an action's ARN")
                invokable.add(logical or "?")
    if invokable != set(actions):
        problem(
            "RouterFunction: lambda:InvokeFunction must cover exactly the action functions; "
            f"missing {sorted(set(actions) - invokable)}, extra {sorted(invokable - set(actions))}"
        )


def tasks(states: dict, path: str = ""):
    """Every state, with Parallel branches and Map iterators included."""
    for name, state in states.items():
        yield f"{path}{name}", state
        for branch in state.get("Branches", []):
            yield from tasks(branch.get("States", {}), f"{path}{name}/")
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from tasks(state[key].get("States", {}), f"{path}{name}/")


def check_task(where: str, state: dict, placeholders: set[str]) -> None:
    params = state.get("Parameters", {})
    fn = params.get("FunctionName", "")
    m = re.fullmatch(r"\$\{(\w+)\}", fn) if isinstance(fn, str) else None
    if not m:
        problem(f"{where}: FunctionName must be a ${{...FunctionArn}} substitution, not {fn!r}")
    payload = params.get("Payload")
    if not isinstance(payload, dict):
        problem(f"{where}: Payload must be the envelope object")
        return
    keys = set(payload)
    if not ({"params", "params.$"} & keys):
        problem(f"{where}: the Payload has no params")
    if payload.get("idempotencyKey.$") != KEY:
        problem(f"{where}: idempotencyKey.$ must be {KEY}")
    if payload.get("correlationId.$") != CORRELATION:
        problem(f"{where}: correlationId.$ must be {CORRELATION}")
    extra = keys - {"params", "params.$", "idempotencyKey.$", "correlationId.$"}
    if extra:
        problem(f"{where}: unexpected Payload fields {sorted(extra)}")
    if "ResultSelector" not in state:
        problem(f"{where}: no ResultSelector (the invoke result wraps the output in Payload)")
    retried: set[str] = set()
    for retrier in state.get("Retry", []):
        names = set(retrier.get("ErrorEquals", []))
        if names & TERMINAL:
            problem(f"{where}: retries terminal errors {sorted(names & TERMINAL)}")
        if names & MUST_RETRY:
            if retrier.get("JitterStrategy") != "FULL" or retrier.get("BackoffRate", 1) <= 1:
                problem(f"{where}: retrier {sorted(names)} needs BackoffRate > 1 and JitterStrategy FULL")
        retried |= names
    missing = MUST_RETRY - retried
    if missing:
        problem(f"{where}: does not retry {sorted(missing)}")


def check_state_machines(resources: dict) -> None:
    files = {f"workflows/{p.name}" for p in (ROOT / "workflows").glob("*.asl.json")}
    used: dict[str, str] = {}
    for logical, res in resources.items():
        if res.get("Type") != "AWS::Serverless::StateMachine":
            continue
        props = res.get("Properties", {})
        uri = props.get("DefinitionUri")
        if uri not in files:
            problem(f"{logical}: DefinitionUri {uri!r} is not a file workflows/*.asl.json")
            continue
        if uri in used:
            problem(f"{logical}: {uri} is already used by {used[uri]}")
        used[uri] = logical
        text = (ROOT / uri).read_text()
        definition = json.loads(text)
        placeholders = set(re.findall(r"\$\{(\w+)\}", text))
        subs = props.get("DefinitionSubstitutions", {})
        for name in sorted(placeholders - set(subs)):
            problem(f"{logical}: ${{{name}}} in {uri} has no DefinitionSubstitution")
        for name in sorted(set(subs) - placeholders):
            problem(f"{logical}: DefinitionSubstitution {name} is not used in {uri}")
        invoked = set()
        for name, value in subs.items():
            target = get_att(value, "Arn")
            if not name.endswith("FunctionArn") or target != name[: -len("Arn")]:
                problem(f"{logical}: {name} must be !GetAtt {name[:-len('Arn')]}.Arn")
            elif resources.get(target, {}).get("Type") != "AWS::Serverless::Function":
                problem(f"{logical}: {name} names {target}, which is not a function of the template")
            else:
                invoked.add(target)
        allowed = set()
        for policy in props.get("Policies", []):
            if isinstance(policy, dict) and "LambdaInvokePolicy" in policy:
                allowed.add(ref(policy["LambdaInvokePolicy"].get("FunctionName")))
        for name in sorted(invoked - allowed):
            problem(f"{logical}: invokes {name} without a LambdaInvokePolicy for it")
        for name in sorted(allowed - invoked):
            problem(f"{logical}: LambdaInvokePolicy for {name}, which {uri} never invokes")
        for where, state in tasks(definition.get("States", {})):
            if state.get("Type") == "Task":
                if state.get("Resource") != LAMBDA_INVOKE:
                    problem(f"{uri} {where}: Resource must be {LAMBDA_INVOKE}")
                else:
                    check_task(f"{uri} {where}", state, placeholders)
    for uri in sorted(files - set(used)):
        problem(f"{uri} is not the DefinitionUri of any state machine in template.yaml")


ROUTER_PACKAGE = "router"
SECTION_AFTER_ACTIONS = re.compile(r"^  # -+ router\b.*$", re.M)


def upper_camel(name: str) -> str:
    """`accept-order` -> `AcceptOrder` (the logical id prefix and the Rust type)."""
    return "".join(word[:1].upper() + word[1:] for word in name.split("-"))


def package_description(manifest: Path) -> str:
    m = re.search(r'^\[package\][^\[]*?^description\s*=\s*"((?:[^"\\]|\\.)*)"',
                  manifest.read_text(), re.M | re.S)
    return json.loads(f'"{m.group(1)}"') if m else ""


def yaml_scalar(text: str) -> str:
    """`text` as a YAML scalar: plain when that is safe, else single-quoted."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ,.;()/_+-]*", text) and not text.endswith(" "):
        return text
    return "'" + text.replace("'", "''") + "'"


def insert_sorted(text: str, line_re: str, key: str, new_line: str) -> str | None:
    """Insert `new_line` among the consecutive lines matching `line_re` (group 1 = their
    key) before the first one whose key is greater; None when there is no such list."""
    lines = text.split("\n")
    matching = [(i, m.group(1)) for i, line in enumerate(lines) if (m := re.fullmatch(line_re, line))]
    if not matching:
        return None
    at = next((i for i, k in matching if k > key), matching[-1][0] + 1)
    lines.insert(at, new_line)
    return "\n".join(lines)


def fix(text: str, resources: dict) -> tuple[str, list[str]]:
    """The template with what new action packages need (see the module docs), and what
    was added."""
    added: list[str] = []
    deployed = {
        str(res.get("Properties", {}).get("CodeUri", "")).rstrip("/")
        for res in resources.values() if res.get("Type") == "AWS::Serverless::Function"
    }
    new_blocks = []
    for manifest in sorted((ROOT / "functions").glob("*/Cargo.toml")):
        code = f"functions/{manifest.parent.name}"
        name = package_name(manifest)
        if code in deployed or name is None or manifest.parent.name == ROUTER_PACKAGE:
            continue
        logical = upper_camel(name) + "Function"
        if logical in resources:
            continue  # a resource of that name exists: the check reports it
        description = f"{name} - {package_description(manifest) or name}"[:256]
        new_blocks.append(f"""  {logical}:
    Type: AWS::Serverless::Function
    Metadata:
      BuildMethod: rust-cargolambda
      BuildProperties:
        Binary: {name}
    Properties:
      CodeUri: {code}
      Description: {yaml_scalar(description)}
      # Entities: drop EntitiesReadWritePolicy if the action neither reads nor writes any.
      Policies:
        - !Ref ActionStorePolicy
        - !Ref EntitiesReadWritePolicy

""")
        resources[logical] = {"Type": "AWS::Serverless::Function",
                              "Metadata": {"BuildProperties": {"Binary": name}}}
        added.append(f"{logical} (functions/{manifest.parent.name})")
    if new_blocks:
        marker = SECTION_AFTER_ACTIONS.search(text)
        if marker is None:
            problem("--fix: no '# ---- router' section comment in template.yaml to add functions before")
            return text, []
        text = text[: marker.start()] + "".join(new_blocks) + text[marker.start():]

    router = resources.get("RouterFunction", {}).get("Properties", {})
    wired = router.get("Environment", {}).get("Variables", {})
    invokable = set()
    for policy in router.get("Policies", []):
        for statement in resources.get(ref(policy) or "", {}).get("Properties", {}).get("PolicyDocument", {}).get("Statement", []):
            targets = statement.get("Resource", [])
            invokable |= {get_att(t, "Arn") for t in (targets if isinstance(targets, list) else [targets])}
    for logical, res in sorted(resources.items()):
        binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        if res.get("Type") != "AWS::Serverless::Function" or logical == "RouterFunction" or not binary:
            continue
        var = "ACTIONDO_FUNCTION_" + binary.upper().replace("-", "_")
        if var not in wired:
            fixed = insert_sorted(text, r" {10}(ACTIONDO_FUNCTION_\w+): !Ref \w+", var,
                                  f"          {var}: !Ref {logical}")
            if fixed is None:
                problem(f"--fix: no ACTIONDO_FUNCTION_ list in RouterFunction to add {var} to")
            else:
                text = fixed
                added.append(f"RouterFunction: {var}")
        if logical not in invokable:
            fixed = insert_sorted(text, r" {14}- !GetAtt (\w+)Function\.Arn", logical[: -len("Function")],
                                  f"              - !GetAtt {logical}.Arn")
            if fixed is None:
                problem(f"--fix: no list of function ARNs in RouterInvokePolicy to add {logical} to")
            else:
                text = fixed
                added.append(f"RouterInvokePolicy: {logical}.Arn")
    return text, added


def main() -> int:
    path = ROOT / "template.yaml"
    template, matches = decode(str(path))
    if "--fix" in sys.argv[1:] and template is not None and not matches:
        text, added = fix(path.read_text(), dict(template.get("Resources", {})))
        if added:
            path.write_text(text)
            for what in added:
                print(f"check_stack: --fix added {what}")
            template, matches = decode(str(path))
    if matches or template is None:
        for m in matches:
            problem(f"template.yaml: {m}")
    else:
        resources = template.get("Resources", {})
        check_functions(resources)
        check_results_bucket(template)
        check_router(resources)
        check_state_machines(resources)
    for p in problems:
        print(f"check_stack: {p}", file=sys.stderr)
    if problems:
        return 1
    print("check_stack: template.yaml, workflows/ and functions/ agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
