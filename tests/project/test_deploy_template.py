"""deploy/cloudformation.yaml's logic, read as YAML: no AWS, no cloud-radar.

What the operator is promised in docs/deploy.md (readiness gates traffic and roll-outs,
failed boots roll back, every alarm pages the topic) is checked on the template itself,
and the user data's signalling is run in bash with a fake cfn-signal. So are the limits
AWS sets on its size, which cfn-lint does not check; tests/project/test_deploy_guide.py
runs the guide's commands with the template.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode_str

from ecommerce import metrics
from tests.support.locks import read_lock

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "deploy" / "cloudformation.yaml"
GUIDE_PATH = TEMPLATE_PATH.parents[1] / "docs" / "deploy.md"
#: CloudFormation's limits on a template (its quotas page): the body sent inline, which
#: `aws cloudformation deploy` refuses to send past it unless given --s3-bucket; a template
#: in S3, 1 MB (read as 10**6 bytes, the stricter reading); and the counts of a template.
INLINE_TEMPLATE_BYTES = 51_200
S3_TEMPLATE_BYTES = 1_000_000
MAX_RESOURCES, MAX_PARAMETERS, MAX_OUTPUTS = 500, 200, 200
#: EC2's limit on user data, before base64; the rest of the 16 KB is left to what !Sub puts
#: in (the stack's name, the region, the parameters' values).
USER_DATA_BYTES = 16 * 1024 - 2048
#: Substituted for each ${...} of the user data's !Sub, for a syntax check and a run.
SAMPLE_SUB_VALUE = "sample"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    decoded, problems = decode_str(TEMPLATE_PATH.read_text())
    assert not problems, problems
    return decoded


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


@pytest.fixture(scope="module")
def user_data(resources: dict[str, Any]) -> str:
    sub = resources["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]
    script, _variables = sub["Fn::Sub"]
    return str(script)


def substituted(script: str) -> str:
    """The user data as bash sees it: ${Name} replaced, ${!Name} left as ${Name}."""
    script = re.sub(r"\$\{(?!!)[A-Za-z0-9:.]+\}", SAMPLE_SUB_VALUE, script)
    return script.replace("${!", "${")


def evaluate_condition(
    template: dict[str, Any], expression: Any, parameters: dict[str, Any]
) -> Any:
    """Just enough of CloudFormation's condition functions for this template's Conditions."""
    if isinstance(expression, str):
        return expression
    if isinstance(expression, list):
        return [evaluate_condition(template, item, parameters) for item in expression]
    (function, argument), *_ = expression.items()
    if function == "Ref":
        return parameters.get(argument, template["Parameters"][argument].get("Default"))
    if function == "Condition":
        return evaluate_condition(template, template["Conditions"][argument], parameters)
    values = evaluate_condition(template, argument, parameters)
    if function == "Fn::Equals":
        return values[0] == values[1]
    if function == "Fn::Not":
        return not values[0]
    if function == "Fn::And":
        return all(values)
    if function == "Fn::Or":
        return any(values)
    if function == "Fn::Join":
        separator, items = values
        return separator.join(items if isinstance(items, list) else items.split(","))
    raise AssertionError(f"condition function {function} not handled here")


def created_resources(template: dict[str, Any], parameters: dict[str, Any]) -> set[str]:
    return {
        name
        for name, resource in template["Resources"].items()
        if "Condition" not in resource
        or evaluate_condition(template, {"Condition": resource["Condition"]}, parameters)
    }


def test_the_template_fits_how_the_guide_deploys_it(template: dict[str, Any]) -> None:
    size = len(TEMPLATE_PATH.read_bytes())
    assert size <= S3_TEMPLATE_BYTES
    deploys = re.findall(
        r"aws cloudformation deploy\b(?:[^\n]*\\\n)*[^\n]*", GUIDE_PATH.read_text()
    )
    assert len(deploys) >= 5  # create, update, the key rotation's two, a roll-back
    if size > INLINE_TEMPLATE_BYTES:
        for command in deploys:
            assert '--s3-bucket "$BUCKET"' in command, command
    assert len(template["Resources"]) <= MAX_RESOURCES
    assert len(template["Parameters"]) <= MAX_PARAMETERS
    assert len(template["Outputs"]) <= MAX_OUTPUTS


def test_the_user_data_fits_ec2s_limit(user_data: str) -> None:
    assert len(user_data.encode()) <= USER_DATA_BYTES


def test_target_group_checks_readiness(resources: dict[str, Any]) -> None:
    health_check = resources["TargetGroup"]["Properties"]
    assert health_check["HealthCheckPath"] == "/readyz"
    assert health_check["Matcher"] == {"HttpCode": "200"}
    # The probe queries the database: its timeout must fit inside the interval.
    assert health_check["HealthCheckTimeoutSeconds"] < health_check["HealthCheckIntervalSeconds"]
    assert health_check["UnhealthyThresholdCount"] >= 2  # one slow answer does not flap it


def test_auto_scaling_group_waits_for_ready_signals(resources: dict[str, Any]) -> None:
    group = resources["AutoScalingGroup"]
    assert group["CreationPolicy"]["ResourceSignal"]["Count"] == {"Ref": "DesiredCapacity"}
    rolling = group["UpdatePolicy"]["AutoScalingRollingUpdate"]
    assert rolling["WaitOnResourceSignals"] is True
    assert rolling["MinInstancesInService"] == {"Ref": "MinSize"}
    assert rolling["MaxBatchSize"] == 1
    assert re.fullmatch(r"PT\d+M", rolling["PauseTime"])
    assert set(rolling["SuspendProcesses"]) >= {
        "HealthCheck",
        "ReplaceUnhealthy",
        "AZRebalance",
        "AlarmNotification",
        "ScheduledActions",
    }


def test_user_data_signals_success_only_after_readyz(user_data: str) -> None:
    assert "aws-cfn-bootstrap" in user_data  # /opt/aws/bin/cfn-signal on Amazon Linux 2023
    start = user_data.index("systemctl enable --now ecommerce.service")
    poll = user_data.index("http://127.0.0.1:8000/readyz")
    success = user_data.index("signal_stack 0")
    assert start < poll < success
    # The signal names this stack, the group's logical id and the region.
    assert "readonly STACK_NAME='${AWS::StackName}'" in user_data
    assert "--resource AutoScalingGroup" in user_data
    assert '--region "$REGION"' in user_data
    assert "trap on_exit EXIT" in user_data
    assert user_data.index("trap on_exit EXIT") < user_data.index("dnf install")


def test_the_release_hash_is_optional_and_checked_before_unpacking(
    template: dict[str, Any], user_data: str
) -> None:
    parameter = template["Parameters"]["ArtifactSha256"]
    pattern = parameter["AllowedPattern"]
    assert parameter["Default"] == "" and re.fullmatch(pattern, "")
    assert re.fullmatch(pattern, "0f" * 32) and not re.fullmatch(pattern, "0F" * 32)
    assert "readonly ARTIFACT_SHA256='${ArtifactSha256}'" in user_data
    checked = user_data.index('echo "$ARTIFACT_SHA256  $release_tarball" | sha256sum --check')
    assert user_data.index("aws s3 cp") < checked < user_data.index('tar -xzf "$release_tarball"')


def test_init_db_out_of_retries_fails_the_boot(user_data: str) -> None:
    after_init_db = user_data[user_data.index("init-db; then") :]
    give_up = after_init_db.index('if [ "$migrated" != true ]; then')
    assert after_init_db.index("exit 1", give_up) < after_init_db.index("systemctl enable --now")


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_user_data_is_valid_bash(user_data: str, tmp_path: Path) -> None:
    script = tmp_path / "user-data.sh"
    script.write_text(substituted(user_data))
    result = subprocess.run(
        ["bash", "-n", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def run_signalling(user_data: str, tmp_path: Path, body: str) -> list[str]:
    """The user data's signal functions and trap, a fake cfn-signal, then ``body``."""
    functions = substituted(
        user_data[user_data.index("signal_stack() {") : user_data.index("trap on_exit EXIT")]
    )
    recorded = tmp_path / "signals"
    fake = tmp_path / "cfn-signal"
    fake.write_text(f'#!/bin/bash\necho "$*" >> {recorded}\n')
    fake.chmod(0o755)
    script = (
        "set -euo pipefail\nreadonly REGION=eu-west-1 STACK_NAME=shop\n"
        + functions.replace("/opt/aws/bin/cfn-signal", str(fake))
        + "trap on_exit EXIT\n"
        + body
    )
    subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    return recorded.read_text().splitlines() if recorded.exists() else []


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize(
    ("body", "exit_code"),
    [
        ("false\necho never reached\n", "1"),  # any command failing under set -e
        ("exit 1\n", "1"),  # init-db out of retries, /readyz never ready
        ("signal_stack 0\n", "0"),  # ready
    ],
)
def test_user_data_signals_once_with_the_outcome(
    user_data: str, tmp_path: Path, body: str, exit_code: str
) -> None:
    signals = run_signalling(user_data, tmp_path, body)
    assert signals == [
        f"-e {exit_code} --stack shop --resource AutoScalingGroup --region eu-west-1"
    ]


def topic_reference() -> dict[str, Any]:
    return {"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]}


def test_every_alarm_notifies_the_topic(resources: dict[str, Any]) -> None:
    alarms = {
        name: r["Properties"]
        for name, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    assert len(alarms) >= 4
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == [topic_reference()], name
        assert alarm["OKActions"] == [topic_reference()], name
        assert alarm["TreatMissingData"] in {"breaching", "notBreaching", "ignore", "missing"}, name


def alarmed_metrics(resources: dict[str, Any]) -> set[tuple[str, str]]:
    found = set()
    for resource in resources.values():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        alarm = resource["Properties"]
        if "MetricName" in alarm:
            found.add((alarm["Namespace"], alarm["MetricName"]))
        for query in alarm.get("Metrics", []):
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                found.add((metric["Namespace"], metric["MetricName"]))
    return found


def test_alarms_cover_the_load_balancer_the_cache_table_and_the_app(
    resources: dict[str, Any],
) -> None:
    watched = alarmed_metrics(resources)
    assert watched >= {
        ("AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count"),
        ("AWS/ApplicationELB", "HTTPCode_Target_5XX_Count"),
        ("AWS/ApplicationELB", "UnHealthyHostCount"),
        ("AWS/ApplicationELB", "TargetResponseTime"),
        ("AWS/DynamoDB", "ThrottledRequests"),
        ("AWS/DynamoDB", "SystemErrors"),
        ("ecommerce", "ecommerce_cache_requests_total"),
        ("ecommerce", "ecommerce_db_loads_total"),
        ("ecommerce", "ecommerce_cache_owed_updates_pending"),
        ("ecommerce", "ecommerce_cache_rejected_entries_total"),
    }
    p99 = resources["TargetResponseTimeP99Alarm"]["Properties"]
    assert p99["ExtendedStatistic"] == "p99"


def test_app_alarms_watch_series_the_app_exports_and_the_agent_ships(
    resources: dict[str, Any], user_data: str
) -> None:
    """A renamed Prometheus metric would leave its alarm silently without data."""
    exported = {
        collector._name + ("_total" if collector._type == "counter" else "")
        for collector in vars(metrics).values()
        if hasattr(collector, "_type") and hasattr(collector, "_name")
    }
    app_metrics = {
        name for namespace, name in alarmed_metrics(resources) if namespace == "ecommerce"
    }
    assert app_metrics <= exported
    for name in app_metrics:
        assert f'"^{name}$"' in user_data  # one of the agent's metric_selectors


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({}, {"AlarmTopic"}),
        ({"AlarmEmail": "oncall@example.com"}, {"AlarmTopic", "AlarmEmailSubscription"}),
        ({"AlarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:oncall"}, set()),
        (
            {
                "AlarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:oncall",
                "AlarmEmail": "oncall@example.com",
            },
            set(),  # the email belongs to the topic the stack would have made
        ),
    ],
)
def test_alarm_topic_parameters_create_the_right_resources(
    template: dict[str, Any], parameters: dict[str, str], expected: set[str]
) -> None:
    created = created_resources(template, parameters)
    assert created & {"AlarmTopic", "AlarmEmailSubscription"} == expected
    assert "UnhealthyHostsAlarm" in created  # alarms exist whichever topic they notify


def test_access_logs_follow_the_bucket_parameter(template: dict[str, Any]) -> None:
    assert evaluate_condition(template, {"Condition": "HasAccessLogBucket"}, {}) is False
    assert (
        evaluate_condition(
            template, {"Condition": "HasAccessLogBucket"}, {"AccessLogBucket": "my-logs"}
        )
        is True
    )


def test_every_checkov_skip_gives_a_reason(resources: dict[str, Any]) -> None:
    skips = [
        (name, skip)
        for name, resource in resources.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for name, skip in skips:
        assert re.fullmatch(r"CKV_AWS_\d+", skip["id"]), name
        assert len(skip.get("comment", "")) > 20, (name, skip["id"])


def test_checkov_lock_pins_and_hashes_what_make_lint_runs() -> None:
    """checkov's own lock (its packaging<24 pin cannot share the dev lock): pinned, hashed."""
    requirements = TEMPLATE_PATH.parent.parent / "requirements"
    wanted = [
        line.strip()
        for line in (requirements / "checkov.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    pins = read_lock(requirements / "checkov.txt")
    for requirement in wanted:
        name, version = requirement.split("==")
        assert pins[name] == version
