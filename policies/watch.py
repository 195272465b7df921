"""Watch policy files for changes: a cheap ``stat`` per check, the file's hash only when it moved.

:meth:`PolicyWatcher.changes` returns each file whose content changed since it was last accepted
or refused — loaded and validated, or with its errors. What to do with a change (swap it in
between batches, or keep the running policy) is the caller's business.

>>> import tempfile, pathlib, os
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> p = d / "p.yaml"
>>> _ = p.write_text("version: 1\\nmodel: m\\n")
>>> w = PolicyWatcher([p])
>>> w.changes()
[]
>>> _ = p.write_text("version: 1\\nmodel: m\\nrules: [{name: r, when: 'x >', do: alert}]\\n")
>>> [(c.path.name, c.policy, [e.short() for e in c.errors]) for c in w.changes()]   # doctest: +ELLIPSIS
[('p.yaml', None, ["p.yaml:3:29: rules[0].when: CEL: syntax error: ..."])]
>>> w.changes()             # refused once, not again until the file changes
[]
>>> _ = p.write_text("version: 1\\nmodel: m\\nmonitors: {e: {kind: adwin, series: error}}\\n")
>>> [(c.path.name, sorted(c.policy.spec.monitors)) for c in w.changes()]
[('p.yaml', ['e'])]
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from driftwarden.policies.loader import LoadedPolicy, PolicyError, load_text, read_policy_text


@dataclass(frozen=True)
class PolicyChange:
    """A policy file whose content changed: ``policy`` when it is valid, else ``errors``."""

    path: Path
    policy: LoadedPolicy | None
    errors: list[PolicyError] = field(default_factory=list)


@dataclass
class _Seen:
    stat: tuple[int, int] | None
    digest: str | None


class PolicyWatcher:
    """Remembers each file's last seen ``(mtime_ns, size)`` and content digest."""

    def __init__(self, paths: Iterable[str | Path], digests: dict[Path, str] | None = None) -> None:
        self._seen: dict[Path, _Seen] = {}
        for p in paths:
            path = Path(p)
            digest = (digests or {}).get(path)
            if digest is None:
                digest = _digest(path)
            self._seen[path] = _Seen(_stat(path), digest)

    @classmethod
    def of(cls, policies: Iterable[LoadedPolicy]) -> PolicyWatcher:
        """Watch the files of loaded policies, taking their loaded content as the baseline."""
        policies = list(policies)
        return cls([p.path for p in policies], {p.path: p.digest for p in policies})

    @property
    def paths(self) -> list[Path]:
        return list(self._seen)

    def changes(self) -> list[PolicyChange]:
        """Files whose content changed since the last call, each loaded (or refused with its errors)."""
        out = []
        for path, seen in self._seen.items():
            stat = _stat(path)
            if stat == seen.stat:
                continue
            seen.stat = stat
            if stat is None:
                continue  # editors replace files by rename: a file briefly missing is looked at again next time
            text, errors = read_policy_text(path)  # within the size limit; not UTF-8 is an error with its position
            if text is None:
                digest = "unreadable:" + ";".join(map(str, errors))
                if digest != seen.digest:
                    seen.digest = digest
                    out.append(PolicyChange(path, None, errors))
                continue
            digest = hashlib.sha256(text.encode()).hexdigest()
            if digest == seen.digest:
                continue
            seen.digest = digest
            policy, errors = load_text(path, text)  # never raises: bounded YAML, errors with positions
            out.append(PolicyChange(path, policy, errors))
        return out


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _digest(path: Path) -> str | None:
    text, _ = read_policy_text(path)
    return hashlib.sha256(text.encode()).hexdigest() if text is not None else None
