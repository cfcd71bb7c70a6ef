"""template.yaml, samconfig.toml, the shared layer and the worker image: lint-clean and saying what the design needs."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from video_ai.local.resources import load_template
from video_ai.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}
ZIP_FUNCTIONS = ("ApiFunction", "IngestFunction", "CallbackFunction")
SECRET_VARIABLES = {
    "QDRANT_API_KEY_SECRET_ARN": "QdrantApiKeySecretArn",
    "WEBHOOK_SECRET_ARN": "WebhookSecretArn",
    "API_KEYS_SECRET_ARN": "ApiKeysSecretArn",
}
DOMAIN_METRICS = (
    "JobsAccepted",
    "JobsSucceeded",
    "JobsFailed",
    "VideoSecondsProcessed",
    "FramesIndexed",
    "JobLatency",
    "RealtimeFactor",
    "CallbackDeliveries",
    "QueueWait",
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE_PATH)


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = template["Resources"]
    return found


def props(resources: dict[str, Any], logical_id: str) -> dict[str, Any]:
    found: dict[str, Any] = resources[logical_id]["Properties"]
    return found


def function_environment(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    """Globals' variables merged with the function's own, as SAM merges them."""
    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    own = template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {})
    variables.update(own)
    return variables


def references(node: Any) -> set[str]:
    """Logical ids and parameters a node refers to (Ref, GetAtt, ${...} in Sub)."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref":
                found.add(str(value))
            elif key == "Fn::GetAtt":
                found.add(str(value[0]))
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                found |= {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)}
            found |= references(value)
    elif isinstance(node, list):
        for item in node:
            found |= references(item)
    return found


def sqs_event(resources: dict[str, Any], function: str) -> dict[str, Any]:
    events = [e for e in props(resources, function)["Events"].values() if e["Type"] == "SQS"]
    assert len(events) == 1
    found: dict[str, Any] = events[0]["Properties"]
    return found


# ---------------------------------------------------------------- lint


def test_cfn_lint_reports_nothing() -> None:
    from cfnlint.api import lint_file

    matches = lint_file(TEMPLATE_PATH)
    assert [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches] == []


def test_the_loader_reads_the_template_as_cfn_lint_does(template: dict[str, Any]) -> None:
    from cfnlint.decode import decode

    decoded, matches = decode(str(TEMPLATE_PATH))
    assert matches == []
    assert json.loads(json.dumps(template)) == json.loads(json.dumps(decoded))


# ---------------------------------------------------------------- worker and queues


def test_worker_consumes_the_jobs_queue_one_message_at_a_time(resources: dict[str, Any]) -> None:
    event = sqs_event(resources, "WorkerFunction")
    assert event["Queue"] == {"Fn::GetAtt": ["JobsQueue", "Arn"]}
    assert event["BatchSize"] == 1
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "WorkerMaxConcurrency"}


def test_the_jobs_dlq_is_consumed_by_a_light_function_that_may_fail_and_announce_jobs(
    resources: dict[str, Any],
) -> None:
    # A worker that dies on a job's last attempt leaves the job `processing`: the DLQ's consumer ends it.
    fn = props(resources, "JobsDeadLetterFunction")
    assert fn["CodeUri"] == props(resources, "IngestFunction")["CodeUri"]
    assert fn["Handler"] == "handler.dead_letter_handler"
    assert fn["Layers"] == [{"Ref": "SharedLayer"}] and "PackageType" not in fn
    event = sqs_event(resources, "JobsDeadLetterFunction")
    assert event["Queue"] == {"Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]}
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Lambda refuses an event source whose queue's visibility timeout is shorter than the function's timeout.
    assert props(resources, "JobsDeadLetterQueue")["VisibilityTimeout"] >= 6 * fn["Timeout"]
    policies = {name for policy in fn["Policies"] for name in policy}
    assert policies == {"DynamoDBCrudPolicy", "SNSPublishMessagePolicy"}
    # Its queue's depth stays near 0 now: what it consumed is alarmed on by the metric it counts.
    from video_ai.observability import CATALOGUE

    assert any(a["Namespace"] == "VideoAI" and a["MetricName"] == CATALOGUE["jobs_dead_lettered"].emf_name
               and a["Threshold"] == 0 for a in _alarms(resources).values())


def test_jobs_left_unsent_are_sent_on_a_schedule_by_a_light_function(resources: dict[str, Any]) -> None:
    # A submitter that dies between a job's record and its message left the job `queued` for good.
    from video_ai.services.requeue import REQUEUE_AFTER_S

    fn = props(resources, "JobsRequeueFunction")
    assert fn["CodeUri"] == props(resources, "IngestFunction")["CodeUri"]
    assert fn["Handler"] == "handler.requeue_handler"
    assert fn["Layers"] == [{"Ref": "SharedLayer"}] and "PackageType" not in fn
    (event,) = fn["Events"].values()
    assert event["Type"] == "Schedule" and event["Properties"]["Schedule"] == "rate(5 minutes)"
    assert {name for policy in fn["Policies"] for name in policy} == {"DynamoDBCrudPolicy", "SQSSendMessagePolicy"}
    # A job younger than the bound may still have a live submitter between its record and its send.
    assert max(props(resources, name)["Timeout"] for name in ("ApiFunction", "IngestFunction")) < REQUEUE_AFTER_S


def test_a_live_worker_never_outlives_its_lease_and_a_dead_ones_lease_ends_before_its_redelivery(
    resources: dict[str, Any],
) -> None:
    from video_ai.services.analyze_video import LEASE_S

    timeout = props(resources, "WorkerFunction")["Timeout"]
    assert timeout < LEASE_S <= timeout + 120  # the invocation ends before its lease does, skew allowed for
    assert props(resources, "JobsQueue")["VisibilityTimeout"] > LEASE_S  # a busy copy returns to an ended lease


def test_worker_is_an_image_sized_for_long_videos(template: dict[str, Any], resources: dict[str, Any]) -> None:
    worker = resources["WorkerFunction"]
    assert worker["Properties"]["PackageType"] == "Image"
    assert worker["Properties"]["Timeout"] == 900
    assert worker["Properties"]["EphemeralStorage"]["Size"] == 10240
    assert worker["Properties"]["MemorySize"] == {"Ref": "WorkerMemorySize"}
    assert template["Parameters"]["WorkerMemorySize"]["Default"] == 3008
    assert "Runtime" not in worker["Properties"] and "Layers" not in worker["Properties"]
    assert worker["Metadata"]["DockerContext"] == "."
    assert (ROOT / worker["Metadata"]["Dockerfile"]).is_file()


@pytest.mark.parametrize(
    ("queue", "dlq", "function"),
    [
        ("JobsQueue", "JobsDeadLetterQueue", "WorkerFunction"),
        ("UploadsQueue", "UploadsDeadLetterQueue", "IngestFunction"),
    ],
)
def test_queues_redrive_after_three_and_outlast_their_consumer(
    resources: dict[str, Any], queue: str, dlq: str, function: str
) -> None:
    queue_props = props(resources, queue)
    assert queue_props["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]}, "maxReceiveCount": 3}
    assert queue_props["VisibilityTimeout"] >= 6 * props(resources, function)["Timeout"]
    assert props(resources, dlq)["MessageRetentionPeriod"] > queue_props["MessageRetentionPeriod"]


def test_ingest_consumes_the_uploads_queue_in_batches(resources: dict[str, Any]) -> None:
    event = sqs_event(resources, "IngestFunction")
    assert event["Queue"] == {"Fn::GetAtt": ["UploadsQueue", "Arn"]}
    assert event["BatchSize"] == 10
    assert event["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


# ---------------------------------------------------------------- uploads


def test_uploads_notify_the_queue_for_video_suffixes_in_both_cases(resources: dict[str, Any]) -> None:
    configs = props(resources, "UploadsBucket")["NotificationConfiguration"]["QueueConfigurations"]
    assert {c["Event"] for c in configs} == {"s3:ObjectCreated:*"}
    assert all(c["Queue"] == {"Fn::GetAtt": ["UploadsQueue", "Arn"]} for c in configs)
    suffixes = [rule["Value"] for c in configs for rule in c["Filter"]["S3Key"]["Rules"] if rule["Name"] == "suffix"]
    assert len(suffixes) == len(configs) == len(set(suffixes))
    assert set(suffixes) == VIDEO_SUFFIXES | {s.upper() for s in VIDEO_SUFFIXES}


def test_uploads_queue_policy_names_the_bucket_without_a_circular_reference(resources: dict[str, Any]) -> None:
    bucket = resources["UploadsBucket"]
    policy = props(resources, "UploadsQueuePolicy")
    assert bucket["DependsOn"] == "UploadsQueuePolicy"
    assert "UploadsBucket" not in references(policy)  # a reference to the bucket would close a cycle
    statement = policy["PolicyDocument"]["Statement"][0]
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    source_arn = statement["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
    assert source_arn == "arn:${AWS::Partition}:s3:::" + bucket["Properties"]["BucketName"]["Fn::Sub"]
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_uploads_bucket_is_private_and_encrypted(resources: dict[str, Any]) -> None:
    bucket = props(resources, "UploadsBucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4
    rule = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    # Lower case only: S3 bucket names must be, whatever the Stage.
    assert re.fullmatch(r"[a-z0-9${}:-]+", bucket["BucketName"]["Fn::Sub"].replace("AWS::", "aws::").lower())


# ---------------------------------------------------------------- table


def test_jobs_table(resources: dict[str, Any]) -> None:
    table = props(resources, "JobsTable")
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "job_id", "KeyType": "HASH"}]
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    assert indexes["by_tenant"]["KeySchema"] == [
        {"AttributeName": "tenant", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert indexes["by_content"]["KeySchema"] == [{"AttributeName": "content_key", "KeyType": "HASH"}]
    assert {i["Projection"]["ProjectionType"] for i in indexes.values()} == {"ALL"}
    assert {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]} == {
        "job_id": "S",
        "tenant": "S",
        "created_at": "S",
        "content_key": "S",
        "unsent": "S",
    }
    # Sparse: only queued jobs never recorded as sent carry `unsent` (adapters/dynamodb_jobs.py).
    assert indexes["by_unsent"]["KeySchema"] == [
        {"AttributeName": "unsent", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}


# ---------------------------------------------------------------- callback and API


def test_callback_has_retries_and_an_on_failure_destination(resources: dict[str, Any]) -> None:
    callback = props(resources, "CallbackFunction")
    (event,) = callback["Events"].values()
    assert event["Type"] == "SNS"
    assert event["Properties"]["Topic"] == {"Ref": "JobFinishedTopic"}
    invoke = callback["EventInvokeConfig"]
    assert 1 <= invoke["MaximumRetryAttempts"] <= 2
    assert invoke["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["CallbackDeadLetterQueue", "Arn"]},
    }


def test_api_routes_everything_to_the_app_with_throttling(resources: dict[str, Any]) -> None:
    api = props(resources, "ApiFunction")
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in api["Events"].values()}
    assert routes == {("ANY", "/"), ("ANY", "/{proxy+}")}
    assert all(e["Type"] == "HttpApi" for e in api["Events"].values())
    throttling = props(resources, "HttpApi")["DefaultRouteSettings"]
    assert throttling["ThrottlingRateLimit"] and throttling["ThrottlingBurstLimit"]


@pytest.mark.parametrize("function", ZIP_FUNCTIONS)
def test_zip_functions_share_the_layer_on_one_architecture(resources: dict[str, Any], function: str) -> None:
    fn = props(resources, function)
    layer = resources["SharedLayer"]
    assert fn["Runtime"] == "python3.13" and fn["Handler"] == "handler.handler"
    assert fn["Layers"] == [{"Ref": "SharedLayer"}]
    assert fn["Architectures"] == layer["Properties"]["CompatibleArchitectures"]
    assert fn["Architectures"] == [layer["Metadata"]["BuildArchitecture"]]
    assert (ROOT / fn["CodeUri"]).is_dir()


def test_the_layer_makefile_builds_for_the_functions_architecture(resources: dict[str, Any]) -> None:
    makefile = (ROOT / "layers/shared/Makefile").read_text()
    arch = {"arm64": "aarch64", "x86_64": "x86_64"}[resources["SharedLayer"]["Metadata"]["BuildArchitecture"]]
    platforms = re.search(r"^PLATFORMS \?= (.+)$", makefile, re.M)
    assert platforms is not None
    assert all(p.endswith("_" + arch) for p in platforms.group(1).split())
    assert "build-SharedLayer:" in makefile
    # /opt is read-only in Lambda: byte-code must ship, hash-checked-free (zip rounds mtimes).
    assert re.search(r"compileall .*--invalidation-mode unchecked-hash", makefile)
    assert resources["SharedLayer"]["Metadata"]["BuildMethod"] == "makefile"


def _requirement_names(lines: list[str]) -> set[str]:
    names = set()
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[\[<>=!~ ;]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_the_layer_carries_exactly_the_base_dependencies() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    base = _requirement_names(pyproject["project"]["dependencies"])
    layer = _requirement_names((ROOT / "layers/shared/requirements.txt").read_text().splitlines())
    assert layer == base
    heavy = {"opencv-python-headless", "av", "onnxruntime", "qdrant-client", "qdrant-edge-py"}
    assert not layer & heavy


def _extras_installed(pyproject: dict[str, Any], extras: set[str]) -> list[str]:
    """The requirement lines `pip install ".[extras]"` installs from pyproject.toml, self-references expanded."""
    project = pyproject["project"]
    lines, todo, seen = list(project["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for line in project["optional-dependencies"][extra]:
            own = re.fullmatch(rf"{project['name']}\[([\w,-]+)\]", line)
            if own:
                todo.extend(own.group(1).split(","))
            else:
                lines.append(line)
    return lines


def _powertools_extras(lines: list[str]) -> set[str]:
    extras: set[str] = set()
    for line in lines:
        found = re.match(r"\s*aws-lambda-powertools\[([\w,]+)\]", line)
        if found:
            extras |= set(found.group(1).split(","))
    return extras


def _uses_tracer(function_dir: Path) -> bool:
    return any(re.search(r"\b(Tracer|XRayTracing)\b", path.read_text()) for path in function_dir.glob("*.py"))


@pytest.mark.parametrize("function", [*ZIP_FUNCTIONS, "WorkerFunction", "SearchFunction"])
def test_what_a_function_installs_carries_the_xray_sdk_its_tracer_imports(
    resources: dict[str, Any], function: str
) -> None:
    # powertools' Tracer imports aws_xray_sdk, which only its `tracer` extra brings and no AWS Python runtime ships:
    # without it `import handler` fails before the first job (seen on the worker image run as Lambda runs it).
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    props = resources[function]["Properties"]
    if props.get("PackageType") == "Image":
        source = resources["WorkerFunction"]["Metadata"]["Dockerfile"]
        dockerfile = (ROOT / source).read_text()
        installed = re.findall(r'pip install "\.\[([\w,]+)\]"', dockerfile)
        assert installed, f"{source} installs no extra of the package"
        lines = _extras_installed(pyproject, set(",".join(installed).split(",")))
        function_dir = ROOT / Path(source).parent
    else:
        lines = (ROOT / "layers/shared/requirements.txt").read_text().splitlines()
        function_dir = ROOT / props["CodeUri"]
    assert _uses_tracer(ROOT / "functions/worker"), "the check below must look at a handler that traces"
    if _uses_tracer(function_dir):
        assert "tracer" in _powertools_extras(lines), f"{function}: powertools without its tracer extra"


# ---------------------------------------------------------------- environment and permissions


def test_globals_set_the_variables_the_code_reads(template: dict[str, Any]) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for name in (
        "VIDEO_AI__AWS__JOBS_TABLE",
        "VIDEO_AI__AWS__JOBS_QUEUE_URL",
        "VIDEO_AI__AWS__TOPIC_ARN",
        "VIDEO_AI__AWS__UPLOADS_BUCKET",
        "VIDEO_AI__AWS__REGION",
        "VIDEO_AI__STAGE",
        "VIDEO_AI__QDRANT__URL",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_LOG_LEVEL",
    ):
        assert name in variables, name
    assert variables["VIDEO_AI__QDRANT__BACKEND"] == "server"
    assert variables["VIDEO_AI__DATA_DIR"] == "/tmp/video-ai"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "VideoAI"


@pytest.mark.parametrize("function", [*ZIP_FUNCTIONS, "WorkerFunction"])
def test_the_environment_is_valid_settings(template: dict[str, Any], function: str, tmp_path: Path) -> None:
    placeholders = {"Stage": "dev", "QdrantUrl": "https://qdrant.test:6333", "LogLevel": "INFO",
                    "AWS::Region": "eu-west-1"}
    environ = {}
    for name, value in function_environment(template, function).items():
        if isinstance(value, dict):
            value = placeholders.get(value["Ref"], f"resolved-{value['Ref']}")
        environ[name] = str(value)
    empty_config = tmp_path / "config.yml"
    empty_config.write_text("")
    settings = load_settings(path=empty_config, environ=environ)
    assert settings.aws.jobs_table == "resolved-JobsTable"
    assert settings.aws.jobs_queue_url == "resolved-JobsQueue"
    assert settings.aws.region == "eu-west-1"
    assert settings.qdrant.backend == "server" and settings.qdrant.server_url() == "https://qdrant.test:6333"
    assert settings.data_dir == Path("/tmp/video-ai")
    assert settings.profile == "deployed"


def _granted_secrets(resources: dict[str, Any], function: str) -> set[str]:
    granted = set()
    for policy in props(resources, function).get("Policies", []):
        if isinstance(policy, dict) and "AWSSecretsManagerGetSecretValuePolicy" in policy:
            granted.add(policy["AWSSecretsManagerGetSecretValuePolicy"]["SecretArn"]["Ref"])
    return granted


@pytest.mark.parametrize(
    ("function", "secrets"),
    [
        ("ApiFunction", {"ApiKeysSecretArn", "QdrantApiKeySecretArn"}),
        ("IngestFunction", set()),
        ("JobsDeadLetterFunction", set()),
        ("JobsRequeueFunction", set()),
        ("CallbackFunction", {"WebhookSecretArn"}),
        ("WorkerFunction", {"QdrantApiKeySecretArn"}),
    ],
)
def test_each_function_sees_and_may_read_only_its_secrets(
    template: dict[str, Any], resources: dict[str, Any], function: str, secrets: set[str]
) -> None:
    # The runtime fetches every secret whose ARN variable is set, so variable and permission must go together.
    environment = function_environment(template, function)
    referenced = {SECRET_VARIABLES[name] for name in environment if name in SECRET_VARIABLES}
    assert referenced == secrets
    assert _granted_secrets(resources, function) == secrets


def test_policies_are_sam_templates_scoped_to_our_resources(resources: dict[str, Any]) -> None:
    for function in (*ZIP_FUNCTIONS, "WorkerFunction", "JobsDeadLetterFunction", "JobsRequeueFunction"):
        for policy in props(resources, function)["Policies"]:
            assert isinstance(policy, dict), f"{function}: managed policy {policy!r}"
            ((name, scope),) = policy.items()
            if name == "Statement":  # inline: explicit actions on a resource of ours, named by a reference
                for statement in scope:
                    assert statement["Effect"] == "Allow"
                    assert all("*" not in action for action in statement["Action"]), f"{function}: {statement}"
                    assert isinstance(statement["Resource"], dict), f"{function}: {statement} is not scoped"
                continue
            assert name.endswith("Policy")
            assert all(isinstance(v, dict) for v in scope.values()), f"{function}: {name} is not scoped by a reference"


def test_the_worker_may_write_only_the_staging_prefix_which_expires_and_thumbnails(resources: dict[str, Any]) -> None:
    from video_ai.adapters.s3_store import ARTIFACTS_PREFIX, STAGING_PREFIX, THUMBNAILS_PREFIX

    statements = [st for pol in props(resources, "WorkerFunction")["Policies"] for st in pol.get("Statement", [])]
    puts = [st for st in statements if "s3:PutObject" in st["Action"]]
    # Thumbnails go with their job (DELETE /jobs/{id}, or a cancelled pass), so they need no expiry.
    assert [st["Resource"] for st in puts] == [{"Fn::Sub": "${UploadsBucket.Arn}/" + prefix + "*"}
                                               for prefix in (STAGING_PREFIX, THUMBNAILS_PREFIX, ARTIFACTS_PREFIX)]
    rules = resources["UploadsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    staged = [r for r in rules if r.get("Prefix") == STAGING_PREFIX]
    assert len(staged) == 1 and staged[0]["Status"] == "Enabled" and staged[0]["ExpirationInDays"] <= 7
    # The uploads bucket turns only video suffixes into jobs; a staged copy has none.
    for config in resources["UploadsBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"]:
        rule = config["Filter"]["S3Key"]["Rules"]
        assert all(r["Name"] == "suffix" and r["Value"].startswith(".") for r in rule)


def test_tracing_is_on(template: dict[str, Any]) -> None:
    assert template["Globals"]["Function"]["Tracing"] == "Active"


# ---------------------------------------------------------------- alarms, dashboard, outputs, parameters


def _alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::CloudWatch::Alarm"}


@pytest.mark.parametrize("dlq", ["JobsDeadLetterQueue", "UploadsDeadLetterQueue", "CallbackDeadLetterQueue"])
def test_every_dlq_alarms_on_any_message(resources: dict[str, Any], dlq: str) -> None:
    matching = [
        a
        for a in _alarms(resources).values()
        if a["MetricName"] == "ApproximateNumberOfMessagesVisible"
        and a["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}]
    ]
    assert len(matching) == 1
    assert matching[0]["Threshold"] == 0 and matching[0]["ComparisonOperator"] == "GreaterThanThreshold"


@pytest.mark.parametrize("function", ["WorkerFunction", "CallbackFunction"])
def test_function_errors_alarm(resources: dict[str, Any], function: str) -> None:
    assert any(
        a["Namespace"] == "AWS/Lambda"
        and a["MetricName"] == "Errors"
        and a["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function}}]
        for a in _alarms(resources).values()
    )


def test_dashboard_is_json_with_the_domain_metrics_and_dlq_depths(resources: dict[str, Any]) -> None:
    body = props(resources, "Dashboard")["DashboardBody"]["Fn::Sub"]
    rendered = re.sub(r"\$\{([^}!]+)\}", lambda m: "sub:" + m.group(1), body)
    widgets = json.loads(rendered)["widgets"]
    metrics = [m for w in widgets for m in w["properties"]["metrics"]]
    expressions = [m[0]["expression"] for m in metrics if isinstance(m[0], dict)]
    searched = {name for e in expressions for name in re.findall(r'MetricName="(\w+)"', e)}
    assert searched == set(DOMAIN_METRICS)
    assert all('stage="sub:Stage"' in e for e in expressions if "SEARCH" in e)
    assert {"'p50'", "'p95'"} <= {stat for e in expressions for stat in re.findall(r"'p\d+'", e)}
    depths = {m[3] for m in metrics if m[:2] == ["AWS/SQS", "ApproximateNumberOfMessagesVisible"]}
    assert depths == {f"sub:{q}.QueueName" for q in ("JobsDeadLetterQueue", "UploadsDeadLetterQueue",
                                                     "CallbackDeadLetterQueue")}


def test_outputs(template: dict[str, Any]) -> None:
    expected = {"ApiUrl", "UploadsBucketName", "JobFinishedTopicArn", "JobsQueueUrl", "UploadsQueueUrl"}
    assert expected | {"JobsTableName"} <= set(template["Outputs"])


def test_parameters(template: dict[str, Any]) -> None:
    parameters = template["Parameters"]
    for name in ("Stage", "QdrantUrl", "QdrantApiKeySecretArn", "WebhookSecretArn", "ApiKeysSecretArn",
                 "WorkerMaxConcurrency", "LogLevel", "AlarmTopicArn"):
        assert name in parameters, name
    assert parameters["Stage"]["AllowedValues"] == ["dev", "prod"]
    assert parameters["WorkerMaxConcurrency"]["MinValue"] >= 2  # the SQS event source's floor


# ---------------------------------------------------------------- samconfig, Dockerfile


def test_samconfig_environments(template: dict[str, Any]) -> None:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    stacks = set()
    for env in ("default", "dev", "prod"):
        deploy = config[env]["deploy"]["parameters"]
        stacks.add(config[env]["global"]["parameters"]["stack_name"])
        assert deploy["capabilities"] == "CAPABILITY_IAM"
        assert deploy["resolve_s3"] is True and deploy["resolve_image_repos"] is True
        overrides = dict(item.split("=", 1) for item in deploy["parameter_overrides"])
        assert set(overrides) <= set(template["Parameters"])
        assert overrides["Stage"] in template["Parameters"]["Stage"]["AllowedValues"]
    assert len(stacks) == 3
    prod = dict(i.split("=", 1) for i in config["prod"]["deploy"]["parameters"]["parameter_overrides"])
    assert prod["Stage"] == "prod"


def test_worker_dockerfile_installs_shared_and_bakes_the_model() -> None:
    dockerfile = (ROOT / "functions/worker/Dockerfile").read_text()
    assert [line for line in dockerfile.splitlines() if line.startswith("FROM")] == [
        "FROM public.ecr.aws/lambda/python:3.13"
    ]
    assert '".[worker]"' in dockerfile
    assert "COPY shared/video_ai" in dockerfile and "COPY pyproject.toml" in dockerfile
    assert "ENV VIDEO_AI__MODEL__PATH=/opt/video-ai/models/efficientnet-lite0.onnx" in dockerfile
    # --logits: the labels feature reads the ImageNet classifier output of the same graph (a default feature)
    assert 'video-ai model build --logits --out "${VIDEO_AI__MODEL__PATH}"' in dockerfile
    # The int8 OCR models (the default precision) are built into the image where the analyzer looks for them: a
    # cold start never quantises (~30 s), and /opt is read-only at run time anyway.
    assert "ENV VIDEO_AI__ANALYSIS__OCR__MODEL_DIR=/opt/video-ai/models/ocr" in dockerfile
    assert 'video-ai model build --ocr --out "${VIDEO_AI__ANALYSIS__OCR__MODEL_DIR}"' in dockerfile
    assert 'CMD ["handler.handler"]' in dockerfile
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in ignore and {"!pyproject.toml", "!shared/video_ai/", "!functions/worker/*.py"} <= set(ignore)


def test_the_worker_image_carries_the_pinned_speech_models_and_the_api_layer_does_not() -> None:
    from video_ai.adapters.whisper_transcriber import WEIGHTS

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    worker = _extras_installed(pyproject, {"worker"})
    pinned = {pin for weights in WEIGHTS.values() for pin in weights.source.split(" + ")}
    assert pinned <= {line.strip() for line in worker}  # exactly the versions whose sha256 the code checks
    assert "faster-whisper" in _requirement_names(worker)
    layer = _requirement_names((ROOT / "layers/shared/requirements.txt").read_text().splitlines())
    assert not layer & ({"faster-whisper", "ctranslate2"} | {pin.split("==")[0] for pin in pinned})
    dockerfile = (ROOT / "functions/worker/Dockerfile").read_text()
    assert "weight_files(w) for w in WEIGHTS.values()" in dockerfile and "SileroVad().session()" in dockerfile


def test_search_routes_run_on_the_worker_image(resources: dict[str, Any]) -> None:
    search = resources["SearchFunction"]
    worker = resources["WorkerFunction"]
    assert search["Properties"]["PackageType"] == "Image"
    assert search["Metadata"] == worker["Metadata"]  # one image, two commands
    assert search["Properties"]["ImageConfig"]["Command"] == ["handler.http_handler"]
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in search["Properties"]["Events"].values()}
    assert routes == {("POST", "/search"), ("GET", "/jobs/{job_id}/frames"), ("DELETE", "/jobs/{job_id}")}
    assert "def http_handler" in (ROOT / "functions" / "worker" / "handler.py").read_text()
    # The zip API function leaves exactly these routes out in Lambda (fewer routes to build at cold start).
    from video_ai.api.app import INDEX_ROUTES

    assert routes == INDEX_ROUTES
