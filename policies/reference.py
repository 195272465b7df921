"""The docs site's policy reference (docs/policy-reference.md), generated from the schema (field, type, default,
meaning).

``python -m driftwarden.policies.reference --write docs/policy-reference.md`` rewrites the part of that page
between :data:`START` and :data:`END`; a test regenerates it and fails when the page is stale (after a field or a
monitor kind was added: run the command and commit the page).

>>> text = render()
>>> "| `cooldown` | duration | — |" in text and "### `adwin`" in text
True
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from driftwarden.policies.schema import (
    MONITOR_MODELS,
    Action,
    DataSpec,
    DeploySpec,
    Policy,
    ReferenceSpec,
    Rule,
    TrainSpec,
    WindowSpec,
)
from pydantic import BaseModel

START = "<!-- policy-reference:start -->"
END = "<!-- policy-reference:end -->"

DURATION_FIELDS = {"cooldown", "keep_firing_for", "timeout", "time", "inhibits_for"}
CONDITION_FIELDS = {"when", "require", "promote_if", "rollback_if"}

CONTEXT = """\
## Condition context

Conditions (`when`, `require`) are [CEL](https://cel.dev) over these names; every condition is
compiled when the policy loads, and a name that is not defined is an error there, not at run time.

| name | type | meaning |
|---|---|---|
| `<monitor>.drift` | bool | the monitor's latest verdict (a streaming detector's is an edge: true for the signal that raised it) |
| `<monitor>.value` | double | its statistic (share of drifted features, metric value, gap, detector estimate) |
| `<monitor>.p_value` | double | p-value where the test has one (1.0 before the first signal) |
| `<monitor>.threshold` | double | what `value` was compared with |
| `<monitor>.share_drifted` | double | feature_drift: share of drifted features |
| `<monitor>.features.<name>` | map | feature_drift: per feature `method`, `value`, `p_value`, `threshold`, `drift` (use `has(m.features.x)` before the first window) |
| `<monitor>.ready`, `<monitor>.at` | bool, int | it has spoken; event index of its latest signal (-1 before) |
| `<monitor>.<field>` | any | the kind's own fields, e.g. `ci_low`, `ci_high`, `groups`, `count`, `window_end` |
| `events.count` | int | prediction events of this model so far |
| `labels.count` | int | labels joined to their predictions so far |
| `dead_letters.count` | int | records naming this model that did not decode or validate (a record whose model cannot be read counts only in `dead_letters.stream`) |
| `dead_letters.stream` | int | records of the whole stream that did not decode or validate: every model's, and those naming no valid model |
| `model.name`, `model.version` | string | the model and the version in production (`""` when the registry has none) |
| `model.age` | double | seconds since that version was registered (infinite when unknown) |
| `actions.<name or type>.since` | double | seconds of event time since the last decision for that action (`retrain`, `alert`, or an action's name; infinite if never; dry-run rules do not count) |
| `actions.<name or type>.count` | int | decisions for it so far |
| `fired_within("<monitor>", "<duration>")` | bool | the monitor signalled drift within that much event time: turns edges into levels |
| `count("<monitor>", "<duration>")` | int | how many drift signals within that much event time |
| `seconds("<duration>")` | double | a duration in seconds, e.g. `model.age > seconds("30d")` |

A rule is evaluated when a monitor its `when` names (directly or inside `fired_within`/`count`)
emits a signal, at that signal's event index and event time; one that names no monitor, at every
signal. Rule time never goes backwards (late events do not rewind `for` or `cooldown`).
"""

SEMANTICS = """\
## Rule semantics (as Prometheus alerting rules and Alertmanager)

- `when` holds → the rule is **pending**; once it has held for `for` (`N windows`: N consecutive
  evaluations; or a duration of event time) it is **firing**. When `when` stops holding the rule
  is inactive again — unless `keep_firing_for` keeps it firing that long, so that one clean window
  does not restart `for`.
- A firing rule emits a **decision** when `require` holds too, `cooldown` has passed since its
  last decision (a repeat interval) and fewer than `max_per_day` decisions fell in the last 24 h.
- `inhibited_by: [retrain]` mutes the rule for the span of a retrain decision of the same model,
  in event time: from the decision's event time for the action's `inhibits_for` (default its
  `train.timeout`, the longest the training may take; 0 for an alert). A muted firing emits nothing
  and uses none of the cooldown or daily budget, so the rule decides on its first evaluation after
  the span if it still holds. The span depends on the events only, never on how long the retrain
  really takes: `replay`, a paced run (`--pace`) and an unpaced one make the same decisions. The
  action's record keeps the event position when its outcome was observed (`observed_at`).
- `schedule` rules fire at their cron times (APScheduler, UTC), subject to `require`,
  `inhibited_by`, `cooldown` and `max_per_day`.
- `severity`, `labels` and `annotations` are copied into every decision and alert.
- `dry_run: true` emits and records the rule's decisions but never runs the action (as
  `driftwarden run --dry-run` does for every rule).
- Rule state (pending since, firing history) is checkpointed with the monitors: a restart makes the
  same decisions as an uninterrupted run. A daemon watches its policy files and swaps a changed,
  valid file in between two batches; an invalid one is refused with its errors logged and the
  old policy keeps running. A monitor whose definition did not change keeps its state; a rule
  keeps its firing history, and its pending state when its condition and timing did not change.
"""

TUNING = """\
## Worked example: tuning a threshold with `replay`

`driftwarden replay` runs monitors and rules over recorded events exactly as the daemon would and
executes nothing; it ends with a table per rule (firings, first and last event index, what would
have been done), and with `--json` its last line carries the same as `rules`. The demo records its
stream; in it the world changes at about event 16,000 (prediction 8,000, labels interleaved).
Try the retrain rule of `examples/credit/policy.yaml` with other values:

```console
$ driftwarden demo --out out/demo >/dev/null
$ sed 's/threshold: 0.8/threshold: 0.97/; s/for: 3 windows/for: 1 windows/' examples/credit/policy.yaml > /tmp/p.yaml
$ driftwarden replay --policy /tmp/p.yaml --events out/demo/events.jsonl --json | tail -1 \\
    | jq -c '.rules[] | select(.rule == "retrain-on-degradation") | {firings, first_at}'
```

| `threshold` | `for` | firings | first at | verdict |
|---|---|---|---|---|
| 0.97 | 1 windows | 1 | 1999 | false alarm: healthy windows score 0.956-0.982 |
| 0.8 | 1 windows | 1 | 16999 | first degraded window |
| 0.8 | 3 windows | 1 | 18999 | the shipped policy: two windows later, robust to one bad window |
| 0.5 | 3 windows | 0 | — | misses the degradation (accuracy fell to about 0.5) |

Any firing before the known onset is a false alarm; pick the value that fires soon after the onset
and never before it. To try a new value on live traffic first, add the rule again under another
name with `dry_run: true` and read its decisions in `driftwarden history`.
"""


def _type(prop: dict[str, Any], defs: dict[str, Any], name: str = "") -> str:
    if name in DURATION_FIELDS:
        return "duration"
    if name in CONDITION_FIELDS:
        return "CEL"
    if "$ref" in prop:
        return prop["$ref"].rsplit("/", 1)[-1]
    if "const" in prop:
        return f"`{prop['const']}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"])
    if "anyOf" in prop:
        parts = [_type(p, defs) for p in prop["anyOf"] if p.get("type") != "null"]
        return " \\| ".join(dict.fromkeys(parts)) or "null"
    if "oneOf" in prop:
        return "monitor (by `kind`)"
    kind = prop.get("type")
    if kind == "array":
        return f"list of {_type(prop.get('items', {}), defs)}"
    if kind == "object":
        extra = prop.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return f"map of {_type(extra, defs)}"
        return "map"
    return {"integer": "int", "number": "number", "string": "string", "boolean": "bool"}.get(kind or "", "any")


def _default(prop: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in prop or prop["default"] is None:
        return "—"
    value = prop["default"]
    if value is True or value is False:
        return f"`{str(value).lower()}`"
    if value in ({}, []):
        return f"`{value}`"
    return f"`{value}`"


def _table(model: type[BaseModel], skip: tuple[str, ...] = ()) -> str:
    schema = model.model_json_schema(by_alias=True)
    defs = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for name, prop in schema.get("properties", {}).items():
        if name in skip:
            continue
        meaning = (prop.get("description") or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name}` | {_type(prop, defs, name)} | {_default(prop, name in required)} | {meaning} |")
    return "\n".join(rows)


SECTIONS: tuple[tuple[str, type[BaseModel]], ...] = (
    ("Policy (top level)", Policy),
    ("Rule (`rules[]`)", Rule),
    ("Action (`actions.<name>`)", Action),
    ("TrainSpec (`actions.<name>.train`)", TrainSpec),
    ("DataSpec (`actions.<name>.data`)", DataSpec),
    ("DeploySpec (`actions.<name>.deploy`)", DeploySpec),
    ("WindowSpec (`monitors.<name>.window`)", WindowSpec),
    ("ReferenceSpec (`reference`)", ReferenceSpec),
)


def render() -> str:
    """The reference as Markdown (the text between the page's markers)."""
    out = [
        "Generated from the policy schema by `python -m driftwarden.policies.reference --write docs/policy-reference.md`",
        "(a test keeps it in sync). `driftwarden schema` prints the same as a JSON Schema for editor completion; `driftwarden",
        "validate` reports every error as `file:line:col: field.path: message`, with the fix where one is known.",
        "Durations are a number and a unit: `30s`, `10m`, `6h`, `1d`, `1w` (combined: `1h30m`).",
        "",
    ]
    for title, model in SECTIONS:
        out += [f"## {title}", "", _table(model), ""]
    out += [
        "## Monitor kinds",
        "",
        "A monitor's keys are `kind` and that kind's parameters; windowed kinds take `window`.",
        "",
    ]
    for kind, model in MONITOR_MODELS.items():
        doc = (model.__doc__ or "").strip()
        out += [f"### `{kind}`", "", doc, "", _table(model, skip=("kind",)), ""]
    out += [CONTEXT, SEMANTICS, TUNING.rstrip()]
    return "\n".join(out)


def replace_section(text: str, section: str) -> str:
    """``text`` with everything between the markers replaced by ``section``."""
    start, end = text.index(START) + len(START), text.index(END)
    return text[:start] + "\n" + section.strip() + "\n" + text[end:]


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(replace_section(path.read_text(), render()))
        return 0
    print(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
