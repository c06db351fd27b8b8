"""Faults the fake injects: scripted one by one, or drawn at a seeded rate.

A `Fault` says how one request fails: an error status, a latency spike, a
dropped or reset connection, a body cut off part way, or a body that is not
JSON. ``processed`` says whether Shopify performed the grant before the
failure (the response was lost on the way back: a timeout, a reset, a 502,
504 or 520 after the rotation): that is the case Shopify's recovery window
exists for, and the one a client must survive. `Fault.lost_answers` lists them.
"""

from __future__ import annotations

import enum
import random
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

import attrs
import httpx

from ._answer import Answer

if TYPE_CHECKING:
    from collections.abc import Iterable


class Endpoint(enum.Enum):
    """The fake's endpoints, as targets for faults."""

    ADMIN_TOKEN = "admin_token"  # noqa: S105 - an endpoint's name
    """``POST https://{shop}/admin/oauth/access_token``: every Admin API grant."""
    ADMIN_API = "admin_api"
    """``https://{shop}/admin/api/{version}/graphql.json`` and ``shop.json``."""
    DISCOVERY = "discovery"
    """``GET https://{shop}/.well-known/openid-configuration``."""
    CUSTOMER_TOKEN = "customer_token"  # noqa: S105 - an endpoint's name
    """``POST https://shopify.com/authentication/{shop_id}/oauth/token``."""
    CUSTOMER_API = "customer_api"
    """``POST https://{shop}/customer/api/{version}/graphql``."""


#: Where faults go unless told otherwise: the two token endpoints.
TOKEN_ENDPOINTS: Final = frozenset({Endpoint.ADMIN_TOKEN, Endpoint.CUSTOMER_TOKEN})


class FaultKind(enum.Enum):
    """How a request fails."""

    STATUS = "status"
    """An HTTP error status (5xx, 520, 429 with ``Retry-After``...)."""
    SPIKE = "spike"
    """Extra latency, then the normal answer."""
    DROP = "drop"
    """The connection closes (or is reset) without any response."""
    TRUNCATE = "truncate"
    """The response's body stops part way and the connection closes."""
    NOT_JSON = "not_json"
    """A complete response whose body is not JSON (an HTML error page)."""


_HTML: Final = b"<!DOCTYPE html><html><body><h1>Service temporarily unavailable</h1></body></html>"


@attrs.frozen
class Fault:
    """One injected failure; build it with the class methods.

    Attributes:
        kind: The `FaultKind`.
        status: The answer's status (`STATUS`, `NOT_JSON`).
        retry_after: Seconds sent as ``Retry-After`` (`STATUS`).
        delay: Extra seconds before answering (`SPIKE`), or before failing.
        processed: Whether the grant took effect before the failure.
        reset: Reset the connection rather than close it (`DROP`).
        timeout: The client gives up waiting (`DROP`): `httpx.ReadTimeout`
            in process; over loopback the connection is dropped.
        cut: Fraction of the body sent before the connection closes (`TRUNCATE`).
        body: The answer's body (`NOT_JSON`).
        exception: Raised in process instead of the default transport error
            (`DROP`); over loopback the connection is dropped.
    """

    kind: FaultKind
    status: int = 200
    retry_after: float | None = None
    delay: float = 0.0
    processed: bool = False
    reset: bool = False
    timeout: bool = False
    cut: float = 0.5
    body: bytes = attrs.field(default=b"", repr=False)
    exception: BaseException | None = attrs.field(default=None, eq=False)

    @classmethod
    def http(
        cls, status: int, *, retry_after: float | None = None, processed: bool = False
    ) -> Fault:
        """Answer with an error ``status`` (and ``Retry-After`` when given)."""
        return cls(FaultKind.STATUS, status=status, retry_after=retry_after, processed=processed)

    @classmethod
    def rate_limited(cls, retry_after: float = 2.0) -> Fault:
        """Answer 429 with ``Retry-After``."""
        return cls.http(HTTPStatus.TOO_MANY_REQUESTS, retry_after=retry_after)

    @classmethod
    def spike(cls, delay: float) -> Fault:
        """Answer normally, ``delay`` seconds (trio time) late."""
        return cls(FaultKind.SPIKE, delay=delay)

    @classmethod
    def drop(cls, *, reset: bool = False, processed: bool = False) -> Fault:
        """Close (or reset) the connection without answering.

        In process this raises `httpx.RemoteProtocolError` ("Server
        disconnected without sending a response"), or `httpx.ReadError`
        ("Connection reset by peer") when ``reset``.
        """
        return cls(FaultKind.DROP, reset=reset, processed=processed)

    @classmethod
    def timed_out(cls, *, delay: float = 0.0, processed: bool = False) -> Fault:
        """No answer before the client gives up, ``delay`` seconds (trio time) on.

        In process this raises `httpx.ReadTimeout`; over loopback the
        connection is dropped after ``delay``. With ``processed`` the grant
        is performed first: the classic lost answer of a slow rotation.
        """
        return cls(FaultKind.DROP, delay=delay, timeout=True, processed=processed)

    @classmethod
    def lost_answers(cls) -> tuple[Fault, ...]:
        """Every way to lose a grant's answer after Shopify performed it.

        A closed or reset connection, a timeout, and 502, 504 and 520: the
        rotation happened (the old access token is revoked) and the client
        gets nothing usable. A body cut short (`truncate`) is one more.
        """
        return LOST_ANSWERS

    @classmethod
    def raise_(cls, exception: BaseException, *, processed: bool = False) -> Fault:
        """Raise ``exception`` in process; over loopback, drop the connection."""
        return cls(FaultKind.DROP, exception=exception, processed=processed)

    @classmethod
    def truncate(cls, cut: float = 0.5) -> Fault:
        """Perform the grant, then send only ``cut`` of the body and close."""
        return cls(FaultKind.TRUNCATE, cut=cut, processed=True)

    @classmethod
    def not_json(cls, status: int = 200, *, body: bytes = _HTML, processed: bool = False) -> Fault:
        """Answer ``status`` with a body that is not JSON (an HTML page by default)."""
        return cls(FaultKind.NOT_JSON, status=status, body=body, processed=processed)

    @property
    def needs_answer(self) -> bool:
        """Whether the real answer is computed (the grant performed) first."""
        return self.processed or self.kind is FaultKind.TRUNCATE

    def render(self, real: Answer | None, request: httpx.Request) -> Answer:
        """The answer this fault turns ``real`` (None when not processed) into."""
        if self.kind is FaultKind.DROP:
            error = self.exception or _transport_error(
                request, reset=self.reset, timeout=self.timeout
            )
            return Answer(drop=error, reset=self.reset)
        if self.kind is FaultKind.TRUNCATE and real is not None:
            return attrs.evolve(real, cut_at=int(len(real.body) * self.cut))
        if self.kind is FaultKind.NOT_JSON:
            return Answer(status=self.status, body=self.body, content_type="text/html")
        if self.kind is FaultKind.STATUS:
            headers = {}
            if self.retry_after is not None:
                headers["Retry-After"] = f"{self.retry_after:g}"
            return Answer.json(self.status, {"errors": _phrase(self.status)}, headers=headers)
        # A spike has slept already: the real answer goes out.
        return real or Answer.error(500, "server_error")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown Error"  # 520, Cloudflare's "origin returned an unknown error"


def _transport_error(request: httpx.Request, *, reset: bool, timeout: bool) -> httpx.TransportError:
    # The messages httpx gives for the same events on a real socket.
    if timeout:
        return httpx.ReadTimeout("timed out", request=request)
    if reset:
        return httpx.ReadError("[Errno 104] Connection reset by peer", request=request)
    return httpx.RemoteProtocolError(
        "Server disconnected without sending a response.", request=request
    )


_DEFAULTS: Final = {
    FaultKind.STATUS: Fault.http(HTTPStatus.SERVICE_UNAVAILABLE),
    FaultKind.SPIKE: Fault.spike(1.0),
    FaultKind.DROP: Fault.drop(),
    FaultKind.TRUNCATE: Fault.truncate(),
    FaultKind.NOT_JSON: Fault.not_json(),
}

#: What a `FaultPlan` draws from by default: every kind, some after processing.
DEFAULT_CHOICES: Final = (
    Fault.http(HTTPStatus.INTERNAL_SERVER_ERROR),
    Fault.http(HTTPStatus.SERVICE_UNAVAILABLE),
    Fault.http(520, processed=True),
    Fault.rate_limited(),
    Fault.drop(),
    Fault.drop(processed=True),
    Fault.drop(reset=True),
    Fault.truncate(),
    Fault.not_json(),
    Fault.spike(1.0),
)


#: Every way a processed grant's answer is lost: the rotation happened, the
#: client learns nothing usable (no answer, or a gateway error).
LOST_ANSWERS: Final = (
    Fault.drop(processed=True),
    Fault.drop(reset=True, processed=True),
    Fault.timed_out(processed=True),
    Fault.http(HTTPStatus.BAD_GATEWAY, processed=True),
    Fault.http(HTTPStatus.GATEWAY_TIMEOUT, processed=True),
    Fault.http(520, processed=True),
)


def as_fault(step: Fault | FaultKind | int | BaseException) -> Fault:
    """Read a scripted step: a `Fault`, a kind, a status, or an exception to raise."""
    if isinstance(step, Fault):
        return step
    if isinstance(step, FaultKind):
        return _DEFAULTS[step]
    if isinstance(step, BaseException):
        return Fault.raise_(step)
    if isinstance(step, int):
        retry_after = 2.0 if step == HTTPStatus.TOO_MANY_REQUESTS else None
        return Fault.http(step, retry_after=retry_after)
    msg = f"not a fault: {step!r}"
    raise TypeError(msg)


def _choices(value: Iterable[Fault | FaultKind]) -> tuple[Fault, ...]:
    return tuple(as_fault(choice) for choice in value)


def _endpoints(value: Iterable[Endpoint]) -> frozenset[Endpoint]:
    return frozenset(value)


def _rate(_instance: object, _attribute: object, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        msg = f"rate must be within [0, 1], not {value!r}"
        raise ValueError(msg)


@attrs.frozen
class FaultPlan:
    """Faults at a rate, drawn from a seeded random generator: reproducible.

    The same plan and the same sequence of requests give the same faults.
    Setting a plan on the fake (``fake.faults = plan``) starts its generator
    afresh.

    Attributes:
        rate: Probability that a request to one of ``endpoints`` fails.
        seed: Seed of the generator.
        choices: The faults drawn from, uniformly (`FaultKind` values stand
            for a default fault of that kind).
        endpoints: Where faults are injected: the token endpoints by default.
    """

    rate: float = attrs.field(validator=_rate)
    seed: int = 0
    choices: tuple[Fault, ...] = attrs.field(default=DEFAULT_CHOICES, converter=_choices)
    endpoints: frozenset[Endpoint] = attrs.field(default=TOKEN_ENDPOINTS, converter=_endpoints)

    def __attrs_post_init__(self) -> None:
        if not self.choices:
            msg = "a FaultPlan needs at least one fault to choose from"
            raise ValueError(msg)


@attrs.define(eq=False)
class FaultSource:
    """Decides the fault (if any) of each request: the script first, then the plan.

    Attributes:
        injected: Every fault injected so far, with its endpoint, in order.
    """

    injected: list[tuple[Endpoint, Fault]] = attrs.field(factory=list)
    _script: list[tuple[Fault, frozenset[Endpoint]]] = attrs.field(factory=list)
    _plan: FaultPlan | None = None
    _rng: random.Random = attrs.field(factory=random.Random)

    def script(self, steps: Iterable[Fault], endpoints: Iterable[Endpoint]) -> None:
        """Queue ``steps`` for the next requests to ``endpoints``."""
        targets = frozenset(endpoints)
        self._script.extend((step, targets) for step in steps)

    def next(self, endpoint: Endpoint, plan: FaultPlan | None) -> Fault | None:
        """The fault of the next request to ``endpoint``, drawn from ``plan`` if unscripted."""
        fault = self._scripted(endpoint)
        if fault is None and plan is not None and endpoint in plan.endpoints:
            if plan is not self._plan:
                # A new plan restarts its generator: runs are reproducible.
                self._plan = plan
                self._rng = random.Random(plan.seed)  # noqa: S311 - fault injection, not crypto
            if self._rng.random() < plan.rate:
                fault = self._rng.choice(plan.choices)
        if fault is not None:
            self.injected.append((endpoint, fault))
        return fault

    def _scripted(self, endpoint: Endpoint) -> Fault | None:
        for index, (fault, targets) in enumerate(self._script):
            if endpoint in targets:
                del self._script[index]
                return fault
        return None
