"""IAM-style policies: parsing errors name what is wrong; evaluation as IAM does it."""

from __future__ import annotations

from typing import Any

import pytest

from tessel.auth.policy import Decision, parse_policy, prefix_reach
from tessel.errors import InvalidInput

DS = "arn:aws:medical-imaging:us-east-1:000000000000:datastore/d1"
IS = DS + "/imageset/i1"


def decide(policy: dict[str, Any], action: str, arns: tuple[str, ...] = (DS,),
           context: dict[str, list[str]] | None = None) -> Decision:
    values = {k.lower(): v for k, v in (context or {}).items()}
    return parse_policy(policy).decide(action, arns, lambda key: values.get(key.lower()))


def allow(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any, resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def test_explicit_deny_wins_over_allow() -> None:
    policy = {"Statement": [allow("medical-imaging:*"), deny("medical-imaging:DeleteImageSet")]}
    assert decide(policy, "medical-imaging:GetImageFrame") == Decision.ALLOW
    assert decide(policy, "medical-imaging:DeleteImageSet") == Decision.DENY


def test_nothing_matching_is_an_implicit_deny() -> None:
    assert decide({"Statement": [allow("medical-imaging:Get*")]}, "medical-imaging:DeleteImageSet") == \
        Decision.IMPLICIT


def test_action_wildcards_match_case_insensitively_resources_do_not() -> None:
    policy = {"Statement": [allow("MEDICAL-IMAGING:get*", DS)]}
    assert decide(policy, "medical-imaging:GetImageFrame") == Decision.ALLOW
    assert decide({"Statement": [allow("medical-imaging:*", DS.upper())]}, "medical-imaging:GetDatastore") == \
        Decision.IMPLICIT
    assert decide({"Statement": [allow("medical-imaging:Get?mageFrame")]}, "medical-imaging:GetImageFrame") == \
        Decision.ALLOW


def test_a_datastore_resource_covers_its_image_sets() -> None:
    policy = {"Statement": [allow("medical-imaging:*", DS)]}
    assert decide(policy, "medical-imaging:GetImageSet", (IS, DS)) == Decision.ALLOW
    other = "arn:aws:medical-imaging:us-east-1:000000000000:datastore/d2"
    assert decide(policy, "medical-imaging:GetImageSet", (other + "/imageset/i1", other)) == Decision.IMPLICIT


def test_not_action_and_not_resource() -> None:
    policy = {"Statement": [{"Effect": "Allow", "NotAction": "medical-imaging:Delete*", "Resource": "*"}]}
    assert decide(policy, "medical-imaging:GetImageFrame") == Decision.ALLOW
    assert decide(policy, "medical-imaging:DeleteDatastore") == Decision.IMPLICIT
    policy = {"Statement": [{"Effect": "Allow", "Action": "medical-imaging:*", "NotResource": DS}]}
    assert decide(policy, "medical-imaging:GetImageSet", (IS, DS)) == Decision.IMPLICIT


def test_tag_conditions() -> None:
    policy = {"Statement": [allow("medical-imaging:*", "*", Condition={
        "StringEquals": {"aws:ResourceTag/project": ["alpha", "beta"]}})]}
    assert decide(policy, "medical-imaging:GetImageSet", (IS,), {"aws:ResourceTag/project": ["beta"]}) == \
        Decision.ALLOW
    assert decide(policy, "medical-imaging:GetImageSet", (IS,), {"aws:ResourceTag/project": ["gamma"]}) == \
        Decision.IMPLICIT
    assert decide(policy, "medical-imaging:GetImageSet", (IS,)) == Decision.IMPLICIT  # untagged


def test_negated_and_if_exists_and_null_operators_follow_iam() -> None:
    vip = {"Statement": [allow("medical-imaging:*"), deny("medical-imaging:*", "*", Condition={
        "StringEquals": {"aws:ResourceTag/vip": "true"}})]}
    assert decide(vip, "medical-imaging:GetImageSet", (IS,), {"aws:ResourceTag/vip": ["true"]}) == Decision.DENY
    assert decide(vip, "medical-imaging:GetImageSet", (IS,)) == Decision.ALLOW
    negated = {"Statement": [allow("medical-imaging:*", "*", Condition={
        "StringNotEquals": {"aws:ResourceTag/project": "secret"}})]}
    assert decide(negated, "medical-imaging:GetImageSet", (IS,)) == Decision.ALLOW  # absent key: true
    if_exists = {"Statement": [allow("medical-imaging:*", "*", Condition={
        "StringLikeIfExists": {"aws:ResourceTag/project": "a*"}})]}
    assert decide(if_exists, "medical-imaging:GetImageSet", (IS,)) == Decision.ALLOW
    assert decide(if_exists, "medical-imaging:GetImageSet", (IS,), {"aws:ResourceTag/project": ["b"]}) == \
        Decision.IMPLICIT
    null = {"Statement": [allow("medical-imaging:*", "*", Condition={"Null": {"aws:ResourceTag/project": "true"}})]}
    assert decide(null, "medical-imaging:GetImageSet", (IS,)) == Decision.ALLOW
    assert decide(null, "medical-imaging:GetImageSet", (IS,), {"aws:ResourceTag/project": ["x"]}) == \
        Decision.IMPLICIT


def test_source_address_and_time_conditions() -> None:
    policy = {"Statement": [allow("medical-imaging:*", "*", Condition={
        "IpAddress": {"aws:SourceIp": ["10.0.0.0/8", "127.0.0.1"]},
        "DateLessThan": {"aws:CurrentTime": "2100-01-01T00:00:00Z"}})]}
    assert decide(policy, "medical-imaging:GetDatastore", context={
        "aws:SourceIp": ["10.1.2.3"], "aws:CurrentTime": ["2030-01-01T00:00:00+00:00"]}) == Decision.ALLOW
    assert decide(policy, "medical-imaging:GetDatastore", context={
        "aws:SourceIp": ["192.168.1.1"], "aws:CurrentTime": ["2030-01-01T00:00:00+00:00"]}) == Decision.IMPLICIT
    assert decide(policy, "medical-imaging:GetDatastore", context={
        "aws:SourceIp": ["10.1.2.3"], "aws:CurrentTime": ["2101-01-01T00:00:00+00:00"]}) == Decision.IMPLICIT


@pytest.mark.parametrize("document, message", [
    ("not json", "not valid JSON"),
    ({"Statement": []}, "at least one statement"),
    ({"Statement": [{"Effect": "Permit", "Action": "medical-imaging:*"}]}, "Effect must be"),
    ({"Statement": [{"Effect": "Allow"}]}, "exactly one of Action and NotAction"),
    ({"Statement": [{"Effect": "Allow", "Action": "GetImageFrame"}]}, "is not service:Action"),
    ({"Statement": [allow("medical-imaging:*", "*", Condition={"StringMatches": {"aws:SourceIp": "x"}})]},
     "unknown condition operator 'StringMatches'"),
    ({"Statement": [allow("medical-imaging:*", "*", Condition={"StringEquals": {"aws:Username": "x"}})]},
     "unknown condition key 'aws:Username'"),
    ({"Statement": [allow("medical-imaging:*", "*", Condition={"IpAddress": {"aws:SourceIp": "nowhere"}})]},
     "is not an address or network"),
    ({"Statement": [allow("medical-imaging:*", "*", Condition={
        "ForAnyValue:StringEquals": {"aws:SourceIp": "x"}})]}, "set operators"),
    ({"Statement": [allow("medical-imaging:*", Sid=1, Principal="*")]}, "unknown field(s) Principal"),
])
def test_a_malformed_policy_is_refused_naming_the_problem(document: Any, message: str) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_policy(document)


def test_prefix_reach_tells_whether_a_pattern_reaches_inside_a_datastore() -> None:
    inside = DS + "/imageset/"
    assert prefix_reach("*", inside) == (True, True)
    assert prefix_reach(DS + "*", inside) == (True, True)
    assert prefix_reach(DS + "/imageset/i1", inside) == (True, False)
    assert prefix_reach(DS.replace("d1", "d2") + "*", inside) == (False, False)
    assert prefix_reach("arn:aws:medical-imaging:*:*:datastore/d?/*", inside) == (True, True)


def test_the_policy_module_examples_hold() -> None:
    import doctest

    import tessel.auth.policy

    assert doctest.testmod(tessel.auth.policy).failed == 0
