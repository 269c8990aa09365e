"""C26: random call sequences against the model."""

from __future__ import annotations

import pytest
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from ipamkit_conformance._checks import ClauseViolation
from ipamkit_conformance._helpers import clause
from ipamkit_conformance._machine import machine_for
from ipamkit_conformance._profiles import machine_settings
from ipamkit_conformance._report import VIOLATION_PROPERTY
from ipamkit_conformance._target import Target


@clause("C26")
def test_random_call_sequences(
    request: pytest.FixtureRequest, ipam_target: Target, ipam_profile: str
) -> None:
    check_sequences(request, ipam_target, ipam_profile, machine_for(ipam_target))


def check_sequences(
    request: pytest.FixtureRequest,
    ipam_target: Target,
    ipam_profile: str,
    machine: type[RuleBasedStateMachine],
) -> None:
    """Run ``machine`` as the profile says; a failure names the clause it breaks."""
    try:
        run_state_machine_as_test(machine, settings=machine_settings(ipam_profile, ipam_target))
    except ClauseViolation as violation:
        broken = violation
    else:
        return
    request.node.user_properties.append((VIOLATION_PROPERTY, broken.clause))
    if broken.clause in ipam_target.xfail:
        pytest.xfail(f"breaks {broken.clause}, listed with --ipam-xfail")
    notes = "\n".join(getattr(broken, "__notes__", []))
    replay = (
        "Replay: the CI profile is derandomized, so the same command finds it again."
        if ipam_profile == "ci"
        else "Replay: run the same command again (the example database keeps the failure), "
        "or add --hypothesis-seed=N to fix the random choices."
    )
    pytest.fail(
        f"{broken}\n\nThe same as hypothesis' state machine program:\n{notes}\n\n{replay}",
        pytrace=False,
    )
