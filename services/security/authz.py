"""Model authorization: ask the Cerbos PDP whether a principal may invoke a model.

The policy lives in ``deploy/cerbos/policies`` (resource kind ``model``, action
``invoke``). The principal's roles and its ``allowed_models`` list, and the model's
attributes such as ``tier``, are what the policy decides on. The client is ``cerbos``'s
``AsyncCerbosClient`` over plaintext gRPC, because the PDP listens on loopback or in the
same pod.

When the PDP does not respond, :meth:`ModelAuthorizer.can_invoke` raises
:class:`~libs.errors.UnavailableError`, so requests fail closed: none passes without a
decision.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Mapping

import grpc
from cerbos.engine.v1 import engine_pb2
from cerbos.sdk.grpc.client import AsyncCerbosClient
from google.protobuf import struct_pb2

from libs.errors import InternalError, UnavailableError
from libs.principal import Principal
from libs.singleflight import SingleFlight

logger = logging.getLogger(__name__)

RESOURCE_KIND = "model"
INVOKE_ACTION = "invoke"
# Bound of the decision cache: one entry per key and model in use.
_MAX_CACHED_DECISIONS = 10_000

# Codes that mean the PDP is down, overloaded or too slow, as opposed to a bad request.
_UNAVAILABLE_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.CANCELLED,
})


def _string(value: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=value)


def _string_list(values: tuple[str, ...]) -> struct_pb2.Value:
    return struct_pb2.Value(
        list_value=struct_pb2.ListValue(values=[_string(value) for value in values])
    )


class ModelAuthorizer:
    """Checks ``invoke`` on resources of kind ``model`` against a Cerbos PDP."""

    def __init__(
        self, client: AsyncCerbosClient, grpc_address: str, timeout_s: float, decision_ttl_s: float = 0.0
    ) -> None:
        """Use ``client`` with a deadline of ``timeout_s`` per check; see :meth:`connect`."""
        self._client = client
        self.grpc_address = grpc_address
        self._timeout_s = timeout_s
        self._decision_ttl_s = decision_ttl_s
        self._decisions: OrderedDict[tuple[object, ...], tuple[bool, float]] = OrderedDict()
        self._checks: SingleFlight[bool] = SingleFlight()

    @classmethod
    async def connect(
        cls, grpc_address: str, timeout_s: float = 1.0, decision_ttl_s: float = 0.0
    ) -> ModelAuthorizer:
        """Create a client for the PDP's gRPC listener at ``grpc_address`` (``host:port``).

        Every check has a deadline of ``timeout_s`` seconds. The PDP is probed once. When
        it does not respond yet, a warning is logged and checks fail until it does.
        ``decision_ttl_s`` > 0 reuses a decision for the same key, roles, model list, model
        and attributes for that many seconds, so a policy change takes up to that long.
        """
        # NOTE: the client's own timeout_secs stays unset. With cerbos 0.16 and grpcio 1.85,
        # a value of 1 s or less made every check against Cerbos 0.55 fail at once with
        # DEADLINE_EXCEEDED, so asyncio.timeout bounds each call instead.
        client = AsyncCerbosClient(grpc_address, tls_verify=False)
        authorizer = cls(client, grpc_address, timeout_s, decision_ttl_s)
        try:
            async with asyncio.timeout(timeout_s):
                info = await client.server_info()
        except TimeoutError:
            logger.warning(
                "cerbos PDP not reachable yet", extra={"address": grpc_address, "code": "TIMEOUT"}
            )
        except grpc.aio.AioRpcError as exc:
            logger.warning(
                "cerbos PDP not reachable yet",
                extra={"address": grpc_address, "code": exc.code().name},
            )
        else:
            logger.info(
                "cerbos PDP connected", extra={"address": grpc_address, "version": info.version}
            )
        return authorizer

    async def can_invoke(
        self, principal: Principal, model: str, model_attributes: Mapping[str, str]
    ) -> bool:
        """Return True when the policy lets ``principal`` invoke ``model``.

        ``model_attributes`` come from the model catalog (``tier`` and the like). The
        attribute ``name`` is always ``model``, whatever the mapping holds.

        Raises:
            UnavailableError: the PDP did not respond within the deadline.
            InternalError: the PDP rejected the request as malformed.
        """
        if not principal.roles:
            # Cerbos requires at least one role, and a key without roles may do nothing.
            return False
        cache_key = _decision_key(principal, model, model_attributes)
        cached = self._decisions.get(cache_key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        if self._decision_ttl_s <= 0:
            return await self._check(principal, model, model_attributes)

        # Requests that miss together (at start, or when a decision expires under load)
        # share one PDP call instead of each making its own.
        return await self._checks.run(
            cache_key, lambda: self._check_and_remember(cache_key, principal, model, model_attributes)
        )

    def cached_decision(self, principal: Principal, model: str, model_attributes: Mapping[str, str]) -> bool | None:
        """Return the decision that :meth:`can_invoke` would reuse now, or None when it would ask the PDP."""
        if not principal.roles:
            return False
        cached = self._decisions.get(_decision_key(principal, model, model_attributes))
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        return None

    async def _check_and_remember(
        self, cache_key: tuple[object, ...], principal: Principal, model: str, model_attributes: Mapping[str, str]
    ) -> bool:
        allowed = await self._check(principal, model, model_attributes)
        self._decisions[cache_key] = (allowed, time.monotonic() + self._decision_ttl_s)
        self._decisions.move_to_end(cache_key)
        if len(self._decisions) > _MAX_CACHED_DECISIONS:
            self._decisions.popitem(last=False)
        return allowed

    async def _check(self, principal: Principal, model: str, model_attributes: Mapping[str, str]) -> bool:
        attributes = {key: _string(value) for key, value in model_attributes.items()}
        attributes["name"] = _string(model)
        resource = engine_pb2.Resource(id=model, kind=RESOURCE_KIND, attr=attributes)
        cerbos_principal = engine_pb2.Principal(
            id=principal.key_id,
            roles=list(principal.roles),
            attr={
                "tenant": _string(principal.tenant),
                "allowed_models": _string_list(principal.allowed_models),
            },
        )
        try:
            async with asyncio.timeout(self._timeout_s):
                allowed = await self._client.is_allowed(INVOKE_ACTION, cerbos_principal, resource)
        except TimeoutError as exc:
            raise self._unavailable("TIMEOUT") from exc
        except grpc.aio.AioRpcError as exc:
            if exc.code() in _UNAVAILABLE_CODES:
                raise self._unavailable(exc.code().name) from exc
            logger.error(
                "cerbos rejected the check",
                extra={"address": self.grpc_address, "code": exc.code().name},
            )
            raise InternalError(
                "the authorization check failed", reason="POLICY_CHECK_FAILED"
            ) from exc
        logger.debug(
            "model authorization",
            extra={"tenant": principal.tenant, "key_id": principal.key_id, "model": model,
                   "allowed": allowed},
        )
        return bool(allowed)

    def _unavailable(self, code: str) -> UnavailableError:
        logger.warning("cerbos check failed", extra={"address": self.grpc_address, "code": code})
        return UnavailableError(
            "the authorization policy engine is unavailable: retry shortly",
            reason="POLICY_UNAVAILABLE",
            retry_after_s=1.0,
        )

    async def close(self) -> None:
        """Close the gRPC channel."""
        await self._client.close()


def _decision_key(principal: Principal, model: str, model_attributes: Mapping[str, str]) -> tuple[object, ...]:
    # Everything the PDP receives, so that equal keys get equal decisions.
    return (
        principal.key_id,
        principal.tenant,
        tuple(principal.roles),
        tuple(principal.allowed_models),
        model,
        tuple(sorted(model_attributes.items())),
    )
