"""Create the stack's table, queues, topic and bucket in moto from template.yaml's own Properties.

moto cannot deploy a SAM template (the transform is not emulated), so the tests and `video-ai serve` create the
resources the functions talk to from the template's resource Properties instead: key schema, indexes, TTL, queue
attributes and redrive policies, queue policies, bucket settings and its ObjectCreated notification with its suffix
filters. Infrastructure and tests then cannot drift. Functions, alarms, log groups and the API are not created.

Intrinsic functions are resolved with simple local rules: `Stage` is the `stage` argument, other parameters take
their Default, `AWS::StackName` is `video-ai-<stage>`, and a resource without an explicit name is named
`video-ai-<logical-id-in-kebab-case>-<stage>`.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import yaml
from botocore.exceptions import ClientError

from video_ai.adapters.aws import AwsClients, error_code
from video_ai.domain.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import QueueConfigurationTypeDef, ServerSideEncryptionRuleTypeDef
    from mypy_boto3_sqs.literals import QueueAttributeNameType

logger = logging.getLogger(__name__)

# Logical ids in template.yaml that LocalResources exposes.
JOBS_TABLE = "JobsTable"
JOBS_QUEUE = "JobsQueue"
JOBS_DLQ = "JobsDeadLetterQueue"
UPLOADS_QUEUE = "UploadsQueue"
UPLOADS_DLQ = "UploadsDeadLetterQueue"
CALLBACK_DLQ = "CallbackDeadLetterQueue"
JOB_FINISHED_TOPIC = "JobFinishedTopic"
UPLOADS_BUCKET = "UploadsBucket"

TABLE, QUEUE, QUEUE_POLICY, TOPIC, BUCKET = (
    "AWS::DynamoDB::Table",
    "AWS::SQS::Queue",
    "AWS::SQS::QueuePolicy",
    "AWS::SNS::Topic",
    "AWS::S3::Bucket",
)
# Creation order by type; references inside a type (a queue's DLQ) are created on demand.
_CREATION_ORDER = (TABLE, QUEUE, TOPIC, QUEUE_POLICY, BUCKET)

# CloudFormation queue properties that are SQS attributes of the same name.
_QUEUE_ATTRIBUTES: tuple[QueueAttributeNameType, ...] = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "SqsManagedSseEnabled",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "FifoQueue",
    "ContentBasedDeduplication",
)

_PSEUDO_DEFAULT_PARTITION = "aws"
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class _NoValue:
    """AWS::NoValue: the property or list item it stands for is dropped."""


NO_VALUE = _NoValue()


@dataclass(frozen=True, slots=True)
class LocalResources:
    """Names, URLs and ARNs of the created resources."""

    table_name: str
    jobs_queue_url: str
    jobs_dlq_url: str
    uploads_queue_url: str
    uploads_dlq_url: str
    topic_arn: str
    uploads_bucket: str
    callback_dlq_url: str

    def aws_settings(self) -> dict[str, str]:
        """The `aws` settings that name these resources (jobs table, jobs queue, topic, uploads bucket)."""
        return {
            "jobs_table": self.table_name,
            "jobs_queue_url": self.jobs_queue_url,
            "topic_arn": self.topic_arn,
            "uploads_bucket": self.uploads_bucket,
        }

    def environment(self) -> dict[str, str]:
        """The VIDEO_AI__AWS__* variables the functions read, as template.yaml's Globals set them in AWS."""
        return {f"VIDEO_AI__AWS__{name.upper()}": value for name, value in self.aws_settings().items()}


class _TemplateLoader(yaml.SafeLoader):
    """YAML loader that reads CloudFormation's short tags (`!Ref X` -> `{"Ref": "X"}`, `!Sub` -> `Fn::Sub`, ...)."""


def _construct_intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix in ("Ref", "Condition"):
        return {suffix: value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_TemplateLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    """template.yaml as a dict, short tags as their long forms (`{"Ref": ...}`, `{"Fn::Sub": ...}`), as cfn-lint's
    decoder gives it; a plain YAML loader rather than cfn-lint's, whose import alone costs ~2 s."""
    try:
        template = yaml.load(path.read_text(encoding="utf-8"), Loader=_TemplateLoader)  # a SafeLoader subclass
    except FileNotFoundError:
        raise ConfigError(f"{path}: template not found") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: cannot read the template: {err}") from None
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise ConfigError(f"{path}: no Resources section")
    return template


def kebab(name: str) -> str:
    """`JobsDeadLetterQueue` -> `jobs-dead-letter-queue`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower()


def create_resources(
    session_or_clients: boto3.session.Session | AwsClients,
    template_path: Path = Path("template.yaml"),
    stage: str = "local",
    *,
    endpoint_url: str | None = None,
) -> LocalResources:
    """Create (or find, when they already exist) the template's table, queues, topic and bucket; return their ids.

    `session_or_clients` is a boto3 Session (clients are built from it lazily, with `endpoint_url`, e.g. a
    ThreadedMotoServer's) or the project's `AwsClients`. With in-process `mock_aws`, leave `endpoint_url` unset.
    """
    if isinstance(session_or_clients, AwsClients):
        clients = session_or_clients
    else:
        region = session_or_clients.region_name or "us-east-1"
        clients = AwsClients(region, endpoint_url=endpoint_url, session=session_or_clients)
    builder = _StackBuilder(clients, load_template(template_path), stage)
    builder.create_all()
    return LocalResources(
        table_name=builder.ref(JOBS_TABLE),
        jobs_queue_url=builder.ref(JOBS_QUEUE),
        jobs_dlq_url=builder.ref(JOBS_DLQ),
        uploads_queue_url=builder.ref(UPLOADS_QUEUE),
        uploads_dlq_url=builder.ref(UPLOADS_DLQ),
        topic_arn=builder.ref(JOB_FINISHED_TOPIC),
        uploads_bucket=builder.ref(UPLOADS_BUCKET),
        callback_dlq_url=builder.ref(CALLBACK_DLQ),
    )


def create_jobs_table(clients: AwsClients, template_path: Path = Path("template.yaml"), stage: str = "local") -> str:
    """Only the jobs table, from the template's own properties (repository tests need nothing else); its name."""
    return _StackBuilder(clients, load_template(template_path), stage).ref(JOBS_TABLE)


class _StackBuilder:
    """Creates supported resources on demand and resolves the intrinsic functions that point at them."""

    def __init__(self, clients: AwsClients, template: dict[str, Any], stage: str) -> None:
        self.clients = clients
        self.stage = stage
        self.resources: dict[str, Any] = template["Resources"]
        self.parameters: dict[str, Any] = template.get("Parameters") or {}
        self.conditions: dict[str, Any] = template.get("Conditions") or {}
        # logical id -> {"Ref": ..., "Arn": ..., other GetAtt attributes}
        self.created: dict[str, dict[str, str]] = {}
        self._in_progress: set[str] = set()
        self._account_id: str | None = None
        self._creators: dict[str, Callable[[str, dict[str, Any]], dict[str, str]]] = {
            TABLE: self._create_table,
            QUEUE: self._create_queue,
            TOPIC: self._create_topic,
            BUCKET: self._create_bucket,
            QUEUE_POLICY: self._apply_queue_policy,
        }

    # ------------------------------------------------------------------ orchestration

    def create_all(self) -> None:
        for resource_type in _CREATION_ORDER:
            for logical_id, resource in self.resources.items():
                if isinstance(resource, dict) and resource.get("Type") == resource_type:
                    self.ensure(logical_id)

    def ensure(self, logical_id: str) -> dict[str, str]:
        if logical_id in self.created:
            return self.created[logical_id]
        resource = self.resources.get(logical_id)
        if not isinstance(resource, dict):
            raise ConfigError(f"template: no resource {logical_id!r}")
        creator = self._creators.get(str(resource.get("Type")))
        if creator is None:
            raise ConfigError(f"template: {logical_id} ({resource.get('Type')}) cannot be created locally")
        if logical_id in self._in_progress:
            raise ConfigError(f"template: circular reference through {logical_id}")
        self._in_progress.add(logical_id)
        try:
            properties = self.resolve(resource.get("Properties") or {})
            self.created[logical_id] = creator(logical_id, properties)
        finally:
            self._in_progress.discard(logical_id)
        return self.created[logical_id]

    def ref(self, logical_id: str) -> str:
        return self.ensure(logical_id)["Ref"]

    def default_name(self, logical_id: str) -> str:
        return f"video-ai-{kebab(logical_id)}-{self.stage}"

    # ------------------------------------------------------------------ intrinsic functions

    def resolve(self, node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1:
                (key, value), = node.items()
                if key == "Ref":
                    return self._resolve_ref(str(value))
                if key == "Fn::GetAtt":
                    return self._resolve_getatt(value)
                if key == "Fn::Sub":
                    return self._resolve_sub(value)
                if key == "Fn::If":
                    condition, if_true, if_false = value
                    return self.resolve(if_true if self._condition(str(condition)) else if_false)
                if key == "Fn::Join":
                    separator, items = value
                    return str(separator).join(str(i) for i in self.resolve(items))
                if key == "Fn::Select":
                    index, items = value
                    return self.resolve(items)[int(self.resolve(index))]
                if key.startswith("Fn::"):
                    raise ConfigError(f"template: {key} is not supported locally")
            resolved = {str(k): self.resolve(v) for k, v in node.items()}
            return {k: v for k, v in resolved.items() if v is not NO_VALUE}
        if isinstance(node, list):
            return [item for item in (self.resolve(i) for i in node) if item is not NO_VALUE]
        return node

    def _resolve_ref(self, name: str) -> Any:
        pseudo = self._pseudo(name)
        if pseudo is not None:
            return pseudo
        if name in self.parameters:
            return self._parameter(name)
        return self.ref(name)

    def _pseudo(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        values: dict[str, Callable[[], str]] = {
            "AWS::Region": lambda: self.clients.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": lambda: _PSEUDO_DEFAULT_PARTITION,
            "AWS::StackName": lambda: f"video-ai-{self.stage}",
            "AWS::URLSuffix": lambda: "amazonaws.com",
        }
        getter = values.get(name)
        if getter is None and name.startswith("AWS::"):
            raise ConfigError(f"template: pseudo parameter {name} is not supported locally")
        return getter() if getter is not None else None

    def _parameter(self, name: str) -> Any:
        if name == "Stage":
            return self.stage
        spec = self.parameters[name]
        return str(spec.get("Default", "")) if isinstance(spec, dict) else ""

    def _resolve_getatt(self, value: Any) -> str:
        logical_id, attribute = value if isinstance(value, list) else str(value).split(".", 1)
        attributes = self.ensure(str(logical_id))
        if str(attribute) not in attributes:
            raise ConfigError(f"template: {logical_id}.{attribute} is not available locally")
        return attributes[str(attribute)]

    def _resolve_sub(self, value: Any) -> str:
        text, variables = (value[0], self.resolve(value[1])) if isinstance(value, list) else (value, {})

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal} stays literal
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                return self._resolve_getatt(name)
            return str(self._resolve_ref(name))

        return _SUB_VARIABLE.sub(substitute, str(text))

    def _condition(self, name: str) -> bool:
        if name not in self.conditions:
            raise ConfigError(f"template: no condition {name!r}")
        return self._evaluate(self.conditions[name])

    def _evaluate(self, node: Any) -> bool:
        (key, value), = node.items()
        if key == "Fn::Equals":
            left, right = (self.resolve(v) for v in value)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self._evaluate(value[0])
        if key == "Fn::And":
            return all(self._evaluate(v) for v in value)
        if key == "Fn::Or":
            return any(self._evaluate(v) for v in value)
        if key == "Condition":
            return self._condition(str(value))
        raise ConfigError(f"template: condition function {key} is not supported locally")

    def account_id(self) -> str:
        """The account moto issues ARNs in, read from a queue's ARN (queues are created before anything needs it)."""
        if self._account_id is None:
            for attributes in self.created.values():
                arn = attributes.get("Arn", "")
                if arn.startswith("arn:") and arn.split(":")[4]:
                    self._account_id = arn.split(":")[4]
                    break
            else:
                self._account_id = "123456789012"  # moto's default account
        return self._account_id

    # ------------------------------------------------------------------ resources

    def _create_table(self, logical_id: str, props: dict[str, Any]) -> dict[str, str]:
        name = str(props.get("TableName") or self.default_name(logical_id))
        ddb = self.clients.dynamodb
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        indexes = [
            {"IndexName": i["IndexName"], "KeySchema": i["KeySchema"], "Projection": i["Projection"]}
            for i in props.get("GlobalSecondaryIndexes", [])
        ]
        if indexes:
            request["GlobalSecondaryIndexes"] = indexes
        try:
            ddb.create_table(**request)
        except ClientError as err:
            if error_code(err) != "ResourceInUseException":
                raise
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
            )
        arn = ddb.describe_table(TableName=name)["Table"]["TableArn"]
        logger.debug("table %s ready", name)
        return {"Ref": name, "Arn": arn}

    def _create_queue(self, logical_id: str, props: dict[str, Any]) -> dict[str, str]:
        name = str(props.get("QueueName") or self.default_name(logical_id))
        attributes = {key: _queue_attribute(props[key]) for key in _QUEUE_ATTRIBUTES if key in props}
        url = self.clients.sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = self.clients.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return {"Ref": url, "Arn": arn, "QueueName": name, "QueueUrl": url}

    def _apply_queue_policy(self, logical_id: str, props: dict[str, Any]) -> dict[str, str]:
        policy = json.dumps(props["PolicyDocument"])
        for url in props.get("Queues", []):
            self.clients.sqs.set_queue_attributes(QueueUrl=str(url), Attributes={"Policy": policy})
        return {"Ref": logical_id}

    def _create_topic(self, logical_id: str, props: dict[str, Any]) -> dict[str, str]:
        name = str(props.get("TopicName") or self.default_name(logical_id))
        attributes = {"DisplayName": str(props["DisplayName"])} if "DisplayName" in props else {}
        arn = self.clients.sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
        return {"Ref": arn, "TopicArn": arn, "TopicName": name}

    def _create_bucket(self, logical_id: str, props: dict[str, Any]) -> dict[str, str]:
        name = str(props.get("BucketName") or self.default_name(logical_id)).lower()
        s3 = self.clients.s3
        try:
            if self.clients.region == "us-east-1":
                s3.create_bucket(Bucket=name)
            else:
                s3.create_bucket(
                    Bucket=name,
                    CreateBucketConfiguration={"LocationConstraint": self.clients.region},  # type: ignore[typeddict-item]
                )
        except ClientError as err:
            if error_code(err) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        if "VersioningConfiguration" in props:
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]}
            )
        if "PublicAccessBlockConfiguration" in props:
            s3.put_public_access_block(
                Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
            )
        encryption = props.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration")
        if encryption:
            s3.put_bucket_encryption(
                Bucket=name, ServerSideEncryptionConfiguration={"Rules": [_encryption_rule(r) for r in encryption]}
            )
        notifications = props.get("NotificationConfiguration", {}).get("QueueConfigurations", [])
        if notifications:
            s3.put_bucket_notification_configuration(
                Bucket=name,
                NotificationConfiguration={"QueueConfigurations": [_queue_notification(n) for n in notifications]},
            )
        arn = f"arn:{_PSEUDO_DEFAULT_PARTITION}:s3:::{name}"
        return {"Ref": name, "Arn": arn, "DomainName": f"{name}.s3.amazonaws.com"}


def _queue_attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _queue_notification(config: dict[str, Any]) -> QueueConfigurationTypeDef:
    """CloudFormation's QueueConfiguration -> the S3 API's (Queue -> QueueArn, Event -> Events, S3Key.Rules)."""
    out: QueueConfigurationTypeDef = {"QueueArn": config["Queue"], "Events": [config["Event"]]}
    rules = config.get("Filter", {}).get("S3Key", {}).get("Rules", [])
    if rules:
        out["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
    return out


def _encryption_rule(rule: dict[str, Any]) -> ServerSideEncryptionRuleTypeDef:
    """CloudFormation's ServerSideEncryptionRule -> the S3 API's (ServerSideEncryptionByDefault is renamed)."""
    out: ServerSideEncryptionRuleTypeDef = {}
    default = rule.get("ServerSideEncryptionByDefault")
    if default:
        out["ApplyServerSideEncryptionByDefault"] = {"SSEAlgorithm": default["SSEAlgorithm"]}
        if "KMSMasterKeyID" in default:
            out["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] = default["KMSMasterKeyID"]
    if "BucketKeyEnabled" in rule:
        out["BucketKeyEnabled"] = bool(rule["BucketKeyEnabled"])
    return out
