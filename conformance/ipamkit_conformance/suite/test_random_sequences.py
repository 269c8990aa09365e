"""C26: random call sequences against the model."""

from __future__ import annotations

import pytest
from hypothesis.stateful import run_state_machine_as_test

from ipamkit_conformance._checks import ClauseViolation
from ipamkit_conformance._helpers import clause
from ipamkit_conformance._machine import _Machine, expected_break, machine_for
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
    machine: type[_Machine],
) -> None:
    """Run ``machine`` as the profile says; a failure names the clause it breaks."""
    chosen = machine_settings(ipam_profile, ipam_target)
    try:
        run_state_machine_as_test(machine, settings=chosen)
    except ClauseViolation as violation:
        broken = violation
    else:
        # Breaks of the clauses listed with --ipam-xfail end their example only, so
        # the search goes on for breaks of the others.
        expected = sorted(c for c in ipam_target.xfail if machine.tally[expected_break(c)])
        if expected:
            pytest.xfail(
                f"breaks {', '.join(expected)}, listed with --ipam-xfail, and no other clause"
            )
        return
    request.node.user_properties.append((VIOLATION_PROPERTY, broken.clause))
    notes = "\n".join(getattr(broken, "__notes__", []))
    if ipam_profile == "ci":
        replay = "Replay: the CI profile is derandomized, so the same command finds it again."
    elif chosen.database is None:  # hypothesis keeps no examples under CI
        replay = "Replay: add --hypothesis-seed=N to fix the random choices (no example database)."
    else:
        replay = (
            "Replay: run the same command again (the example database keeps the failure), "
            "or add --hypothesis-seed=N to fix the random choices."
        )
    pytest.fail(
        f"{broken}\n\nThe same as hypothesis' state machine program:\n{notes}\n\n{replay}",
        pytrace=False,
    )
