"""The figures a demo run ends with, and how they are shown."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console


@attrs.frozen
class Report:
    """The figures a run ends with."""

    elapsed: float
    interrupted: bool
    installed: int
    refreshes: int
    recovered: int
    lost_answers: int
    faults: int
    reauthorizations: int
    survived: int | None
    api_calls: int
    postponed: int
    rejected_refreshes: int
    expired_calls: int
    revoked_calls: int
    unknown_calls: int = 0
    answers_lost: int = 0
    throttled: int = 0

    @property
    def ok(self) -> bool:
        """No call with a dead token, no rejected refresh, every token through the restart."""
        survived = self.survived is None or self.survived == self.installed
        dead_calls = self.expired_calls + self.revoked_calls + self.unknown_calls
        return dead_calls == 0 and self.rejected_refreshes == 0 and survived

    def figures(self) -> list[tuple[str, str]]:
        """Label and value of each figure, in the order shown."""
        survived = "-" if self.survived is None else f"{self.survived}/{self.installed}"
        return [
            ("shops installed (authorization-code flow)", str(self.installed)),
            ("seconds run", f"{self.elapsed:.1f}"),
            ("refreshes", str(self.refreshes)),
            ("faults injected", str(self.faults)),
            ("of which rotated by Shopify, the answer lost", str(self.answers_lost)),
            ("transient failures recovered", str(self.recovered)),
            ("lost answers recovered (previous refresh token)", str(self.lost_answers)),
            ("re-authorizations", str(self.reauthorizations)),
            ("tokens usable after the restart", survived),
            ("API calls", str(self.api_calls)),
            ("API calls postponed while a refresh was retried", str(self.postponed)),
            ("refreshes rejected by Shopify", str(self.rejected_refreshes)),
            ("token requests sent inside a Retry-After window", str(self.throttled)),
            ("API calls made with an expired token", str(self.expired_calls)),
            ("API calls made with a revoked token", str(self.revoked_calls)),
            ("API calls made with an unknown token", str(self.unknown_calls)),
        ]

    def verdict(self) -> str:
        """One line: OK, or what went wrong."""
        if self.ok:
            return "OK: every API call used a valid token and Shopify accepted every refresh."
        problems = []
        if self.expired_calls:
            problems.append(f"{self.expired_calls} API calls made with an expired token")
        if self.revoked_calls:
            problems.append(
                f"{self.revoked_calls} API calls made with a revoked token (replaced by a rotation)"
            )
        if self.unknown_calls:
            problems.append(f"{self.unknown_calls} API calls made with an unknown token")
        if self.rejected_refreshes:
            problems.append(f"{self.rejected_refreshes} refreshes rejected")
        if self.survived is not None and self.survived != self.installed:
            problems.append(f"{self.installed - self.survived} tokens lost in the restart")
        return "FAILED: " + ", ".join(problems) + "."


def show_report(out: Console, report: Report) -> None:
    """Print the figures and the verdict."""
    table = Table(
        title="Summary" + (" (interrupted)" if report.interrupted else ""),
        box=None,
        show_header=False,
        title_justify="left",
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for label, value in report.figures():
        table.add_row(label, value)
    out.print(table)
    out.print(Text(report.verdict(), style="bold green" if report.ok else "bold red"))
