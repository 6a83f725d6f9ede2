"""The fleet load generator: simulated agents producing a realistic, seeded mix of signed events.

Pure core: :func:`session_script` turns a seeded ``random.Random`` into one session's events
(LLM calls with models, token counts and cost; tool calls and results with latencies and some
failures; messages; errors; policy decisions; lessons). Shell: :func:`run_fleet` drives N agents
across T tenants through ``AgentClient`` at a target rate for a duration.

Agent keys come in as a mapping tenant -> [(agent_id, key_id, private_key)];
:func:`dev_agents` makes fresh ones for a dev run. Registering them with the control plane (so the
verifier accepts their events) is wired by the caller.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agenttrail.crypto import SigningKey, as_signing_key
from agenttrail.producers.client import AgentClient, Session
from agenttrail.producers.producer import EventSink

# model -> (USD per prompt token, USD per completion token, median latency ms)
MODELS: dict[str, tuple[float, float, float]] = {
    "gpt-4o": (2.5e-6, 10e-6, 900.0),
    "gpt-4o-mini": (0.15e-6, 0.6e-6, 450.0),
    "claude-sonnet-4": (3e-6, 15e-6, 1100.0),
    "claude-haiku-3.5": (0.8e-6, 4e-6, 500.0),
    "llama-3.1-70b": (0.6e-6, 0.8e-6, 700.0),
}
# tool -> (median latency ms, failure rate)
TOOLS: dict[str, tuple[float, float]] = {
    "web_search": (420.0, 0.04), "read_file": (8.0, 0.01), "write_file": (15.0, 0.02),
    "http_get": (260.0, 0.08), "sql_query": (55.0, 0.05), "run_tests": (4200.0, 0.15),
    "send_email": (180.0, 0.03),
}
TASKS = ("refund request", "summarise the incident report", "triage the failing build",
         "answer a billing question", "draft the release notes", "find duplicate tickets",
         "reconcile the invoice", "plan the data migration")
ERRORS = (("RateLimitError", "429 Too Many Requests from the model provider"),
          ("TimeoutError", "tool call exceeded its deadline"),
          ("ValidationError", "tool arguments did not match the schema"),
          ("ContextLengthExceeded", "prompt longer than the model's context window"))
LESSONS = (("retry the search with a narrower query when it returns nothing", "tools"),
           ("the billing API rounds to cents: compare amounts as integers", "data"),
           ("run the tests before proposing a patch", "process"),
           ("ask for the order id before looking up a refund", "support"))
POLICIES = ("pii_redaction", "spend_limit", "external_email", "prod_write")


@dataclass(frozen=True, slots=True)
class EventSpec:
    type: str
    payload: dict[str, Any]


def _lognormal(rng: random.Random, median: float, sigma: float = 0.6) -> float:
    return round(median * rng.lognormvariate(0.0, sigma), 1)


def _llm(rng: random.Random, model: str, prompt: str) -> EventSpec:
    in_cost, out_cost, latency = MODELS[model]
    prompt_tokens = rng.randint(150, 6000)
    completion_tokens = rng.randint(20, 1200)
    return EventSpec("llm_call", {
        "model": model, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "cost_usd": round(prompt_tokens * in_cost + completion_tokens * out_cost, 6),
        "latency_ms": _lognormal(rng, latency), "prompt": prompt,
        "completion": f"Working on it: step {rng.randint(1, 9)} of the plan.",
    })


def session_script(rng: random.Random, session_no: int = 0) -> list[EventSpec]:
    """The events of one session between session_start and session_end (deterministic in rng)."""
    model = rng.choice(list(MODELS))
    task = rng.choice(TASKS)
    events = [EventSpec("message", {"role": "user", "text": f"Please {task} (#{session_no})."})]
    for turn in range(rng.randint(1, 6)):
        events.append(_llm(rng, model, f"{task}: turn {turn}"))
        for _ in range(rng.choice((0, 1, 1, 2))):
            tool = rng.choice(list(TOOLS))
            latency, failure = TOOLS[tool]
            call_id = f"call-{session_no}-{turn}-{rng.getrandbits(32):08x}"
            events.append(EventSpec("tool_call", {"tool": tool, "call_id": call_id,
                                                  "args": {"query": task, "limit": rng.randint(1, 50)}}))
            ok = rng.random() >= failure
            result: dict[str, Any] = {"tool": tool, "call_id": call_id, "status": "ok" if ok else "error",
                                      "latency_ms": _lognormal(rng, latency)}
            result["output"] = f"{rng.randint(0, 40)} results" if ok else "upstream returned 503"
            events.append(EventSpec("tool_result", result))
        if rng.random() < 0.04:
            kind, message = rng.choice(ERRORS)
            events.append(EventSpec("error", {"kind": kind, "message": message}))
        if rng.random() < 0.06:
            decision = "deny" if rng.random() < 0.3 else "allow"
            events.append(EventSpec("policy_decision", {"policy": rng.choice(POLICIES), "decision": decision,
                                                        "reason": f"rule matched on turn {turn}"}))
    if rng.random() < 0.05:
        text, category = rng.choice(LESSONS)
        events.append(EventSpec("lesson", {"text": text, "category": category}))
    events.append(EventSpec("message", {"role": "assistant", "text": f"Done: {task}."}))
    return events


# -- agents -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FleetAgent:
    tenant_id: str
    agent_id: str
    key: SigningKey


AgentKeys = Mapping[str, Sequence[tuple[str, str | None, Any]]]


DevAgents = dict[str, list[tuple[str, str, SigningKey]]]


def dev_agents(tenants: Sequence[str], agents_per_tenant: int) -> DevAgents:
    """Fresh keypairs for a dev run: tenant -> [(agent_id, key_id, key)]."""
    out: DevAgents = {}
    for tenant in tenants:
        keys = [SigningKey.generate() for _ in range(agents_per_tenant)]
        out[tenant] = [(f"sim-{tenant}-{i:03d}", k.key_id, k) for i, k in enumerate(keys)]
    return out


# -- runner -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FleetProgress:
    elapsed: float
    duration: float
    sent: int
    acknowledged: int
    failed: int
    spooled: int


@dataclass(frozen=True, slots=True)
class FleetReport:
    tenants: int
    agents: int
    sessions: int
    sent: int
    acknowledged: int
    failed: int
    spooled: int
    seconds: float
    events_per_s: float
    acknowledged_per_s: float
    by_type: dict[str, int] = field(default_factory=dict)


class _SimAgent:
    def __init__(self, client: AgentClient, rng: random.Random) -> None:
        self.client, self.rng = client, rng
        self.session: Session | None = None
        self.script: Iterator[EventSpec] = iter(())
        self.sessions = 0

    def step(self) -> str:
        """Emit the agent's next event (opening/closing sessions as scripts run out); its type."""
        if self.session is None:
            self.session = self.client.session()
            self.script = iter(session_script(self.rng, self.sessions))
            self.sessions += 1
            self.session.start()
            return "session_start"
        spec = next(self.script, None)
        if spec is None:
            self.session.end()
            self.session = None
            return "session_end"
        self.session.emit(spec.type, spec.payload)
        return spec.type

    def finish(self) -> int:
        if self.session is not None:
            self.session.end()
            self.session = None
            return 1
        return 0


def _counts(producer: EventSink, sent: int) -> tuple[int, int, int]:
    stats = getattr(producer, "stats", None)
    if stats is None:
        return sent, 0, 0
    return stats.acknowledged, stats.failed, stats.spooled


def run_fleet(producer: EventSink, agents: AgentKeys, *, rate: float, duration: float, seed: int = 0,
              max_event_bytes: int | None = None, flush_timeout: float = 30.0,
              on_progress: Callable[[FleetProgress], None] | None = None,
              progress_every: float = 0.25) -> FleetReport:
    """Drive every agent at ``rate`` events/s in total (0: as fast as possible) for ``duration`` s."""
    rng = random.Random(seed)
    sims: list[_SimAgent] = []
    for tenant, rows in agents.items():
        for agent_id, key_id, private_key in rows:
            client = AgentClient(None, tenant, agent_id, key_id, as_signing_key(private_key),
                                 producer=producer, max_event_bytes=max_event_bytes)
            sims.append(_SimAgent(client, random.Random(rng.getrandbits(64))))
    if not sims:
        raise ValueError("the fleet needs at least one agent")
    by_type: Counter[str] = Counter()
    sent = 0
    start = time.monotonic()
    next_report = start
    end = start + duration
    while (now := time.monotonic()) < end:
        if rate > 0:
            due = int((now - start) * rate) + 1
            if sent >= due:
                time.sleep(min((sent + 1) / rate - (now - start), end - now, 0.05))
                continue
            burst = min(due - sent, 1000)
        else:
            burst = 1000
        for _ in range(burst):
            by_type[rng.choice(sims).step()] += 1
        sent += burst
        if on_progress is not None and now >= next_report:
            on_progress(FleetProgress(now - start, duration, sent, *_counts(producer, sent)))
            next_report = now + progress_every
    for sim in sims:
        if sim.finish():
            by_type["session_end"] += 1
            sent += 1
    producer.flush(flush_timeout)
    seconds = time.monotonic() - start
    acked, failed, spooled = _counts(producer, sent)
    if on_progress is not None:
        on_progress(FleetProgress(seconds, duration, sent, acked, failed, spooled))
    return FleetReport(
        tenants=len(agents), agents=len(sims), sessions=sum(s.sessions for s in sims), sent=sent,
        acknowledged=acked, failed=failed, spooled=spooled, seconds=round(seconds, 3),
        events_per_s=round(sent / seconds, 1) if seconds else 0.0,
        acknowledged_per_s=round(acked / seconds, 1) if seconds else 0.0, by_type=dict(by_type),
    )
