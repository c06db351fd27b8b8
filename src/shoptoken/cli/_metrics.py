"""``shoptoken run --metrics HOST:PORT``: where the metrics are served, and serving them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
import click

from .._log import get_logger

if TYPE_CHECKING:
    import trio

    from ..metrics import TokenMetrics

log = get_logger("shoptoken.cli")

_MAX_PORT: Final = 65535


@attrs.define(eq=False)
class Exporter:
    """The metrics of ``shoptoken run`` and the address they are served at."""

    host: str
    port: int
    metrics: TokenMetrics

    @classmethod
    def parse(cls, address: str, unhealthy_after: float) -> Exporter:
        """``HOST:PORT`` (``[::1]:9464`` for IPv6; port 0 picks a free one).

        Raises:
            click.BadParameter: A malformed address.
            click.ClickException: The ``metrics`` extra is not installed.
        """
        host, _, port = address.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not host or not (port.isascii() and port.isdigit()) or int(port) > _MAX_PORT:
            msg = "expected HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464"
            raise click.BadParameter(msg, param_hint="'--metrics'")
        try:
            from ..metrics import TokenMetrics  # noqa: PLC0415 - needs the optional metrics extra
        except ImportError:
            msg = "--metrics needs the metrics extra: pip install 'shoptoken[metrics]'"
            raise click.ClickException(msg) from None
        return cls(host, int(port), TokenMetrics(save_pending_threshold=unhealthy_after))

    async def start(self, nursery: trio.Nursery) -> None:
        """Serve /metrics and /healthz in ``nursery``; log where."""
        from ..metrics import serve_metrics  # noqa: PLC0415 - needs the optional metrics extra

        listeners = await nursery.start(serve_metrics, self.metrics, self.host, self.port)
        for listener in listeners:
            host, port = listener.socket.getsockname()[:2]
            log.info("shoptoken.cli.metrics.serving", host=host, port=port)
