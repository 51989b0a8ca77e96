"""The CRM, both ways: connectors for the CRMs clients use, pushing scores and pulling outcomes.

- :func:`connector_for`: the connector of a ``crm:`` configuration section, imported only when
  asked for (``import leadscoring.crm`` loads no HTTP library).
- :func:`auth_headers`: the credentials header of every request to the CRM (push, pull, check),
  the token read from the environment and never logged or put in a message.
- :func:`json_client`: the JSON client (:class:`leadscoring.crm.http.JsonClient`) of a ``crm:``
  section, with its credentials and timeout, for pulls and checks.
"""

from __future__ import annotations

import base64
import importlib
import os
from typing import TYPE_CHECKING, Any

from leadscoring.config import ConfigError

if TYPE_CHECKING:
    from leadscoring.config.sections import CrmConfig
    from leadscoring.crm.connector import Connector
    from leadscoring.crm.http import JsonClient

#: The environment variable holding the CRM token when no ``crm:`` section says otherwise.
DEFAULT_TOKEN_ENV = "LEADSCORING_CRM_TOKEN"

#: ``crm.kind`` -> "module:Class" of its connector.
CONNECTORS: dict[str, str] = {
    "hubspot": "leadscoring.crm.hubspot:HubSpot",
    "salesforce": "leadscoring.crm.salesforce:Salesforce",
    "dynamics": "leadscoring.crm.dynamics:Dynamics",
    "pipedrive": "leadscoring.crm.pipedrive:Pipedrive",
    "odoo": "leadscoring.crm.odoo:Odoo",
    "rest": "leadscoring.crm.rest:Rest",
}


def connector_for(crm: CrmConfig) -> Connector:
    """The connector of ``crm.kind``, built from ``crm.url`` and ``crm.page_size`` with
    ``crm.options`` (``crm.rest`` for ``kind: rest``). Bad settings raise a one-line
    :class:`ConfigError` naming the setting."""
    target = CONNECTORS.get(crm.kind)
    if target is None:
        raise ConfigError(f"crm.kind: unknown CRM kind {crm.kind!r}; use one of {sorted(CONNECTORS)}")
    module_name, class_name = target.split(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"crm.kind: the {crm.kind} connector cannot be loaded ({exc})") from None
    if crm.kind == "rest":
        if crm.options:
            raise ConfigError(f"crm.options: not read for kind rest (its settings go in crm.rest); found {sorted(crm.options)}")
        return cls(crm.url, crm.rest, crm.page_size)
    return cls(crm.url, crm.options, crm.page_size)


def auth_headers(crm: CrmConfig | None, default_env: str = DEFAULT_TOKEN_ENV) -> dict[str, str]:
    """The credentials header for ``crm`` (``crm.auth``), the token read from the variable
    ``crm.token_env``:

    - ``bearer``: ``Authorization: Bearer <token>``;
    - ``header``: the header ``crm.auth_header`` carries the token as is;
    - ``basic``: the token is ``user:password``, sent as ``Authorization: Basic ...``;
    - ``none``: no header.

    A variable that is unset or empty when ``auth`` is not ``none`` is a one-line
    :class:`ConfigError` naming the variable (never its value). Without a ``crm:`` section
    (``crm`` None: ``push --crm-url`` alone) the token in ``default_env`` is sent as a bearer
    token when set, and nothing otherwise."""
    if crm is None:
        token = os.environ.get(default_env, "")
        return {"Authorization": f"Bearer {token}"} if token else {}
    if crm.auth == "none":
        return {}
    token = os.environ.get(crm.token_env, "")
    if not token:
        state = "is empty" if crm.token_env in os.environ else "is not set"
        raise ConfigError(f"crm.token_env: the environment variable {crm.token_env} {state}; it must hold the CRM's credentials")
    if crm.auth == "bearer":
        return {"Authorization": f"Bearer {token}"}
    if crm.auth == "header":
        return {crm.auth_header: token}
    user, sep, password = token.partition(":")
    if not sep or not user:
        raise ConfigError(f"crm.auth basic: {crm.token_env} must hold user:password")
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")}


def json_client(crm: CrmConfig, **kw: Any) -> JsonClient:
    """The JSON client for ``crm`` (named by its kind, at ``crm.url``, with its credentials
    and ``crm.timeout``); ``kw`` goes to :class:`JsonClient` (e.g. ``transport``, ``sleep``)."""
    from leadscoring.crm.http import JsonClient

    kw.setdefault("timeout", crm.timeout)
    return JsonClient(crm.kind, crm.url, headers=auth_headers(crm), **kw)
