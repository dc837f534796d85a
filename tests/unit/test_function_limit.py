"""``GOVERNOR_MAX_FUNCTIONS``: a worker holds state for a bounded number of functions,
however many names its telemetry carries."""

from __future__ import annotations

import dataclasses

from schemas import CostEvent, Span
from streams.decisions.lifecycle import VerdictIssuer
from streams.decisions.policy import PolicyEngine
from streams.decisions.profiles import Spend
from streams.decisions.step import DecisionStep
from streams.decisions.thresholds import Thresholds
from streams.decisions.windows import WindowAggregator
from streams.settings import Settings

S = 1_000_000_000
WINDOW = 10 * S
T0 = 1_800_000_000 * S
SETTINGS = Settings(max_functions=3)
POLICIES = PolicyEngine(SETTINGS.policy_dir)


class Worker:
    """A decision step and its windows, taking cost events as the routes do."""

    def __init__(self, settings: Settings = SETTINGS) -> None:
        self.step = DecisionStep(settings, VerdictIssuer(b"v" * 32, 300 * S, "governor-worker"),
                                 POLICIES, Thresholds(settings), state_key=b"s" * 32)
        self.windows = WindowAggregator(WINDOW)
        self.names: set[str] = set()  # every function sent

    def seen(self, function: str) -> bool:
        """``function``'s event admitted and taken."""
        self.names.add(function)
        if not self.step.admits(function, self.windows):
            return False
        event = CostEvent(function=function, invocation_id="1", cost_usd=0.001,
                          time_unix_nano=T0)
        self.windows.add(event)
        self.step.on_event(event, WINDOW)
        return True

    def idle(self, *functions: str) -> None:
        """Every open window decided, then ``functions`` idle: their windows dropped,
        their state dormant."""
        for function, window in self.windows.close_due(T0 + 2 * WINDOW):
            self.step.on_window(function, window, T0 + 2 * WINDOW)
        self.windows.drop(lambda function: function not in functions)
        for function in functions:
            assert self.step.retire(function)

    @property
    def held(self) -> set[str]:
        """The functions with windows or decision state here."""
        return self.step.decider.functions() | {f for f in self.names if f in self.windows}


def test_a_new_function_beyond_the_limit_is_refused_while_none_is_dormant() -> None:
    worker = Worker()
    assert all(worker.seen(f"f{i}") for i in range(3))
    assert not worker.seen("x") and not worker.seen("y")
    assert worker.step.counters["functions_refused"] == 2
    assert worker.seen("f1")  # the ones held go on
    worker.idle()  # windows decided: state made, still three functions
    assert worker.step.decider.functions() == {"f0", "f1", "f2"}
    assert not worker.seen("x") and worker.step.counters["functions_refused"] == 3


def test_room_is_made_by_dropping_the_function_dormant_longest() -> None:
    worker = Worker()
    for i in range(3):
        worker.seen(f"f{i}")
    worker.idle("f1", "f0")  # dormant, f1 first
    assert worker.seen("new")
    assert worker.held == {"f0", "f2", "new"}
    assert worker.step.counters["functions_evicted"] == 1
    assert worker.seen("f0")  # dormant, so held: it resumes without making room
    assert worker.held == {"f0", "f2", "new"} and worker.step.counters["functions_evicted"] == 1
    assert not worker.seen("x")


def test_no_limit_holds_every_function() -> None:
    worker = Worker(dataclasses.replace(SETTINGS, max_functions=0))
    assert all(worker.seen(f"f{i}") for i in range(50))
    assert len(worker.windows) == 50 and not worker.step.counters["functions_refused"]


def _span(function: str) -> Span:
    return Span(function=function, trace_id="0" * 32, span_id="0" * 16, name="h",
                start_time_unix_nano=T0, end_time_unix_nano=T0 + S, time_unix_nano=T0)


def test_spans_of_new_functions_beyond_the_limit_hold_no_profile() -> None:
    worker = Worker()
    for i in range(5):
        worker.step.on_span(_span(f"s{i}"), worker.windows)
    profiles = worker.step.profiles
    assert len(profiles) == 3 and worker.step.counters["functions_refused"] == 2
    assert profiles.has("s0") and not profiles.has("s4")


def test_spans_of_a_function_held_here_are_taken_however_many_profiles() -> None:
    worker = Worker()
    for i in range(3):
        worker.step.on_span(_span(f"s{i}"), worker.windows)  # span-only names fill it
    assert worker.seen("f0")  # its cost events hold no profile until a window closes
    worker.step.on_span(_span("f0"), worker.windows)
    assert worker.step.profiles.has("f0") and not worker.step.counters["functions_refused"]


def test_team_ledgers_are_bounded_too() -> None:
    spend = Spend(max_teams=2)
    for team in ("a", "b", "c", "a"):
        spend.add("f", team, T0, 1.0, 1)
    assert spend.counters["teams_refused"] == 1
    assert spend.policy_input("f", "a", T0)["team_hour_usd"] == 2.0
    assert spend.policy_input("f", "c", T0)["team_hour_usd"] == 0.0
